"""``--set KEY=VALUE`` overrides and a sweep's ``[quick]`` variant, applied to a raw config.

The functions here only edit the config; :func:`rankbias.experiments.toml_io.apply_overrides`
and :func:`~rankbias.experiments.toml_io.apply_quick` validate the result.
"""

from __future__ import annotations

import copy
import tomllib

from .errors import ConfigError, check_depth, short
from .schema import ALIASES, SCHEMA

__all__ = ["QUICK", "override", "quick_variant", "flatten", "zip_list"]

QUICK = "quick"  # a sweep's [quick] table: overrides that define `rankbias run --quick`


def _parse_value(text: str, key: str = "value"):
    """A ``--set`` value as TOML (a bare word: a string); errors name ``key``."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string
    except RecursionError:
        raise ConfigError(
            f"--set {short(key, 40, quote=False)}: the value is nested too deeply"
        ) from None
    except ValueError as e:  # e.g. Python's limit on the digits of an integer (4300)
        raise ConfigError(
            f"--set {short(key, 40, quote=False)}: cannot read the value "
            f"{short(text, 40, quote=False)}: {short(str(e), 200, quote=False)}"
        ) from None
    check_depth(value, f"--set {short(key, 40, quote=False)}")
    return value


def _split(o: str) -> tuple[str, str]:
    if "=" not in o:
        raise ConfigError(f"--set expects KEY=VALUE, got {short(o)}")
    k, v = o.split("=", 1)
    k = k.strip()
    if not k:
        raise ConfigError(f"--set expects KEY=VALUE, got {short(o)}")
    return k, v.strip()


def zip_list(sweep: dict) -> list[dict]:
    """The zipped groups of ``[sweep]`` (one table or an array of tables) as a list."""
    z = sweep.get("zip", [])
    return [z] if isinstance(z, dict) else list(z)


def _set_path(raw: dict, key: str, value) -> None:
    """``--set a.b.c=value``: the table path is created where missing."""
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(
                f"--set {short(key, 40, quote=False)}: {short(p, 40, quote=False)} is not a table"
            )
        node = nxt
    node[parts[-1]] = value


def _set_swept(sweep: dict, candidates: list[str], value) -> bool:
    """Set the values of the axis named by one of ``candidates`` where it is swept."""
    for cand in candidates:
        full = ALIASES.get(cand, cand)
        for group in [sweep.get("grid", {})] + zip_list(sweep):
            for k in list(group):
                if k == cand or ALIASES.get(k, k) == full:
                    group[k] = value if isinstance(value, list) else [value]
                    return True
    return False


def _set(raw: dict, key: str, value) -> None:
    if "." in key:
        _set_path(raw, key, value)
        return
    sweep = raw.setdefault("sweep", {})
    candidates = [key] + ([key[:-1]] if key.endswith("s") else [])
    if _set_swept(sweep, candidates, value):
        return
    for cand in candidates:
        if cand in ALIASES:
            sec, kk = ALIASES[cand].split(".")
            if isinstance(value, list):
                sweep.setdefault("grid", {})[cand] = value
            else:
                raw.setdefault(sec, {})[kk] = value
            return
    if key in raw and key not in SCHEMA:
        raw[key] = value
        return
    raise ConfigError(
        f"--set: unknown key {short(key, 40)}; use a dotted path (e.g. dynamics.t_max) or "
        f"a sweep axis ({', '.join(sorted(ALIASES))})"
    )


def override(raw: dict, overrides: list[str] | dict) -> dict:
    """A copy of ``raw`` with ``KEY=VALUE`` overrides applied, not validated (see
    :func:`rankbias.experiments.toml_io.apply_overrides` for the grammar)."""
    raw = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        if isinstance(value, str) and not isinstance(overrides, dict):
            value = _parse_value(value, key)
        _set(raw, key, value)
    return raw


def flatten(table: dict, prefix: str = "") -> dict:
    """Nested tables as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def quick_variant(raw: dict) -> dict:
    """``raw`` without its ``[quick]`` table, the table applied as overrides (not validated);
    a :class:`ConfigError` if there is none (``--quick`` must never be silently ignored)."""
    if QUICK not in raw:
        raise ConfigError(
            f"experiment {short(raw.get('name'))} defines no quick variant (a "
            f"[quick] table of overrides); run it without --quick, or add one"
        )
    base = {k: v for k, v in raw.items() if k != QUICK}
    return override(base, flatten(raw[QUICK]))
