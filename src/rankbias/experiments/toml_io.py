"""Configs as text: read and parse TOML, apply overrides, write a config back, compare two.

Every function returns or takes a raw config (the dict TOML parses to) and validates it
(:func:`rankbias.experiments.validate.validate`); every error is a :class:`ConfigError`.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

from .errors import ConfigError, check_depth, short
from .overrides import flatten, override, quick_variant
from .schema import DEFAULT_BATCH, SCHEMA, spec
from .validate import validate

__all__ = [
    "read_config_text",
    "load_config",
    "parse_config",
    "apply_overrides",
    "apply_quick",
    "dump_toml",
    "config_diff",
]


def read_config_text(path: str | Path) -> str:
    """The text of a config file; a :class:`ConfigError` naming the file if it is missing,
    unreadable or not UTF-8 (TOML is UTF-8)."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
            f"{e.start}); TOML files are UTF-8: re-save it as UTF-8, or move it out of the "
            f"config folders"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None


def load_config(path: str | Path) -> dict:
    """Read a TOML file; a syntax error becomes a :class:`ConfigError` naming the file."""
    return parse_config(read_config_text(path), source=str(path))


def parse_config(text: str, source: str = "<string>") -> dict:
    """Parse and :func:`validate` TOML text; every error is a :class:`ConfigError` (the
    syntax errors name ``source``)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML in {source}: {e}") from None
    except RecursionError:
        raise ConfigError(
            f"invalid config {source}: its tables or arrays are nested too deeply to parse "
            f"(a config needs at most 4 levels)"
        ) from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"invalid TOML in {source}: {short(str(e), 200, quote=False)}") from None
    check_depth(raw, source)
    validate(raw)
    return raw


def apply_overrides(raw: dict, overrides: list[str] | dict) -> dict:
    """Apply ``KEY=VALUE`` overrides (VALUE in TOML syntax, bare words are strings).

    ``KEY`` is a dotted path (``dynamics.t_max=100``, ``sweep.grid.alpha=[1e-2]``) or the name
    of a sweep axis, optionally plural (``alphas=[1e-4,1e-8]`` sets the values of the axis
    ``alpha`` wherever it is swept; an alias not yet swept becomes a new grid axis when given a
    list, a fixed value otherwise).
    """
    return validate(override(raw, overrides))


def apply_quick(raw: dict) -> dict:
    """The quick variant of a sweep: its ``[quick]`` table applied as overrides.

    ``[quick]`` holds keys as ``--set`` takes them, as nested tables or aliases, e.g.::

        [quick]
        seeds = [0]                      # an axis alias: the values of the axis ``seed``
        dynamics = { steps = 100 }       # the same as --set dynamics.steps=100
        sweep.grid.alpha = [1e-2, 1e-3]

    Returns the resolved config without the ``[quick]`` table. Raises :class:`ConfigError`
    if the config has no ``[quick]`` table (``--quick`` must never be silently ignored).
    """
    return validate(quick_variant(raw))


def _toml_float(v: float) -> str:
    if v != v:
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "-_" for c in k) else json.dumps(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, float):
        return _toml_float(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise ConfigError(f"cannot write {type(v).__name__} value {short(v)} as TOML")


def dump_toml(raw: dict) -> str:
    """TOML text of a config (tables, arrays of tables, scalars, lists); ``parse_config`` of
    the result gives ``raw`` back. Used to store the configuration as run, overrides applied."""
    lines: list[str] = []

    def table(d: dict, path: list[str]) -> None:
        scal = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if path and (scal or not d):
            lines.append(f"\n[{'.'.join(_toml_key(p) for p in path)}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scal.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(v, path + [k])

    table(raw, [])
    return "\n".join(lines).lstrip("\n") + "\n"


def config_diff(old: dict, new: dict, limit: int = 12) -> list[str]:
    """Lines ``key: old -> new`` for every dotted key whose value differs (at most ``limit``).

    A key left out on one side counts as its default (``kind`` as ``'sweep'``, a schema key as
    :data:`SCHEMA`'s default): only differences that change what is run are listed. If the two
    differ only in writing a default out, those keys are listed, marked so.
    """
    a, b = flatten(_jsonable(old)), flatten(_jsonable(new))
    fa, fb = flatten(_with_defaults(old)), flatten(_with_defaults(new))
    out = _diff_lines(fa, fb)
    if not out:
        out = [f"{line} (written out at its default)" for line in _diff_lines(a, b)]
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


_MISSING = object()


def _diff_lines(a: dict, b: dict) -> list[str]:
    return [
        f"{k}: {short(a.get(k, '(unset)'), 50)} -> {short(b.get(k, '(unset)'), 50)}"
        for k in sorted(set(a) | set(b))
        if a.get(k, _MISSING) != b.get(k, _MISSING)
    ]


def _with_defaults(raw) -> dict:
    """``raw`` (JSON-like) with the header's and the schema's defaults filled in (a dynamics
    key at its method's default)."""
    raw = _jsonable(raw) if isinstance(raw, dict) else {}
    raw.setdefault("kind", "sweep")
    raw.setdefault("description", "")
    if raw["kind"] != "sweep":
        return raw
    dyn = raw.get("dynamics")
    method = dyn.get("method", "flow") if isinstance(dyn, dict) else "flow"
    for sec, keys in SCHEMA.items():
        table = raw.setdefault(sec, {})
        if isinstance(table, dict):
            for k in keys:
                if table.get(k) is None:
                    table[k] = spec(sec, k, method)[1]
            for k in [k for k, v in table.items() if v is None]:
                table.pop(k)  # unset: nothing to compare
    sweep = raw.setdefault("sweep", {})
    if isinstance(sweep, dict):
        sweep.setdefault("chunk_size", sweep.pop("batch_size", DEFAULT_BATCH))
    return _jsonable(raw)


def same_spelling(raw):
    """``raw`` with ``[sweep] batch_size`` (the deprecated spelling) written ``chunk_size``: a
    folder written with the old spelling is the same experiment as its config rewritten."""
    sweep = raw.get("sweep") if isinstance(raw, dict) else None
    if not isinstance(sweep, dict) or "batch_size" not in sweep or "chunk_size" in sweep:
        return raw  # as given: nothing to respell
    sweep = {("chunk_size" if k == "batch_size" else k): v for k, v in sweep.items()}
    return {**raw, "sweep": sweep}


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, sort_keys=True, default=float))
