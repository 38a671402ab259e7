"""Experiment configs: the TOML schema, its validation, overrides and grid expansion.

Two kinds of config share a header (``name``, ``description``, ``kind``):

* ``kind = "reproduction"``: ``runner = "module:function"`` and a ``[params]`` table; the
  function ``f(out_dir, quick=False, **params) -> dict`` does everything itself.
* ``kind = "sweep"``: ``[problem]``, ``[model]``, ``[init]``, ``[dynamics]``, ``[sweep]`` and
  ``[record]`` tables (see :data:`SCHEMA` and ``docs/experiments.md``). :func:`expand` turns it
  into one fully resolved run config per point of the sweep.

Every error is a :class:`ConfigError` (a ``ValueError``) naming the key path, e.g.
``dynamics.lr must be > 0, got -1``.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..dynamics import SOLVERS
from ..optimizers import OPTIMIZERS, check_hyperparams

__all__ = [
    "ConfigError",
    "Axis",
    "Sweep",
    "RunSpec",
    "SCHEMA",
    "ALIASES",
    "load_config",
    "parse_config",
    "validate",
    "apply_overrides",
    "apply_quick",
    "expand",
    "dump_toml",
    "config_diff",
    "short",
]


class ConfigError(ValueError):
    """A config is malformed; the message names the offending key path."""


# Key -> (type, default, check). check: None, ("choice", options), (">", v), (">=", v),
# ("range", lo, hi) (lo < x <= hi), ("between", lo, hi) (lo <= x <= hi); default None: unset.
_F = "float"
_I = "int"
_S = "str"
_B = "bool"
_OPTAX_KEYS: dict[str, tuple] = {
    "optimizer": (_S, "group_rmsprop", ("choice", tuple(OPTIMIZERS))),
    "batch_size": (_I, None, (">=", 1)),
    "batch_seed": (_I, 0, (">=", 0)),
    **{
        k: (_F, None, (">=", 0.0))
        for k in sorted({h for o in OPTIMIZERS.values() for h in o.defaults})
    },
}
SCHEMA: dict[str, dict[str, tuple]] = {
    "problem": {
        "type": (
            _S,
            "completion",
            ("choice", ("completion", "sensing", "estimation", "ratings")),
        ),
        "shape": ("shape", [10, 10], None),
        "rank": (_I, 2, (">=", 1)),
        "psd": (_B, True, None),
        "spectrum": ("floats", None, None),
        "fraction": (_F, 0.5, ("range", 0.0, 1.0)),
        "measurements": (_I, 100, (">=", 1)),
        "noise": (_F, 0.0, (">=", 0.0)),
        "seed": (_I, 0, (">=", 0)),
        # type = "ratings": a `user item rating [timestamp]` file (rb.load_ratings), split at
        # random with `seed` into training entries and `test_fraction` held-out ones.
        "path": (_S, None, None),
        "test_fraction": (_F, 0.1, ("between", 0.0, 0.99)),
    },
    "model": {
        "type": (_S, "deep", ("choice", ("deep", "symmetric"))),
        "depth": (_I, 2, (">=", 1)),
        "width": (_I, None, (">=", 1)),
    },
    "init": {
        "name": (
            _S,
            "gaussian",
            ("choice", ("gaussian", "identity", "perturbed_identity", "balanced", "orthogonal")),
        ),
        "scale": (_F, 1e-3, (">", 0.0)),
        "per_factor": (_B, False, None),
        "beta": (_F, None, (">=", 0.0)),
        "seed": (_I, 0, (">=", 0)),
    },
    "dynamics": {
        "method": (_S, "flow", ("choice", ("flow", "gd", "optax"))),
        "t_max": (_F, 1e4, (">", 0.0)),
        "t_min": (_F, None, (">", 0.0)),
        "rtol": (_F, 1e-8, (">", 0.0)),
        "atol": (_F, None, (">", 0.0)),  # None: scaled to the init (rb.gradient_flow)
        "solver": (_S, "rkc", ("choice", SOLVERS)),
        "gtol": (_F, 1e-10, (">", 0.0)),
        "max_steps": (_I, 1_000_000, (">=", 1)),
        "lr": (_F, 0.01, (">", 0.0)),
        "steps": (_I, 1000, (">=", 1)),
        "n_save": (_I, 100, ("between", 2, 100_000)),  # records per run: bounded memory
        # method = "optax" (rb.train): the optimizer, its hyper-parameters (None: its
        # default), minibatch size (None: full batch) and minibatch seed.
        **_OPTAX_KEYS,
    },
    "record": {
        "metrics": (
            "strs",
            ["loss", "grad_norm", "singular_values", "effective_rank", "distance_to_truth"],
            None,
        ),
        "custom": ("strs", [], None),
    },
}

METRICS = (
    "loss",
    "grad_norm",
    "singular_values",
    "effective_rank",
    "distance_to_truth",
    "final_matrix",
    "matrices",
    "heldout_rmse",
)

# Short axis names (used as dataset dimensions) for the usual sweep keys.
ALIASES: dict[str, str] = {
    "alpha": "init.scale",
    "scale": "init.scale",
    "seed": "init.seed",
    "init_seed": "init.seed",
    "depth": "model.depth",
    "width": "model.width",
    "problem": "problem.seed",
    "problem_seed": "problem.seed",
    "fraction": "problem.fraction",
    "measurements": "problem.measurements",
    "noise": "problem.noise",
    "rank": "problem.rank",
    "lr": "dynamics.lr",
    "t_max": "dynamics.t_max",
    "steps": "dynamics.steps",
    "init": "init.name",
    "optimizer": "dynamics.optimizer",
    "batch_size": "dynamics.batch_size",
    "batch_seed": "dynamics.batch_seed",
}
_SHORT = {v: k for k, v in reversed(list(ALIASES.items()))}
_SHORT.update({"init.scale": "alpha", "init.seed": "seed", "problem.seed": "problem"})

_HEADER = {"name", "description", "kind"}
_QUICK = "quick"  # a sweep's [quick] table: overrides that define `rankbias run --quick`
_SWEEP_KEYS = {"grid", "zip", "batch_size"}
# Runs per vmapped chunk when [sweep] does not say. A chunk's runs are saved when the chunk
# ends, so this is also the checkpoint granularity. Measured (benchmarks/RESULTS.md, section
# 6, a loaded 2-core CPU): 8 runs of a 10x10 depth-3 flow took 37 s as one chunk (25 s of it
# compiling) against 45 s one by one; a chunk of 64 would hold ~2 minutes of work unsaved.
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: ``name`` (dataset dimension), the config ``keys`` it sets
    (several for a zipped group), and one tuple of values per key."""

    name: str
    keys: tuple[str, ...]
    values: tuple[tuple, ...]

    def __len__(self) -> int:
        return len(self.values[0])


@dataclass(frozen=True)
class RunSpec:
    """One run: its resolved config (``problem``, ``model``, ``init``, ``dynamics``,
    ``record``), its position in the sweep grid and its content hash."""

    config: dict
    index: tuple[int, ...]
    key: str


@dataclass
class Sweep:
    """A validated sweep: the base config, its axes and the expanded runs (grid order)."""

    name: str
    description: str
    base: dict
    axes: list[Axis]
    runs: list[RunSpec] = field(default_factory=list)
    batch_size: int = 8  # see DEFAULT_BATCH
    raw: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_config(path: str | Path) -> dict:
    """Read a TOML file; a syntax error becomes a :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<string>") -> dict:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML in {source}: {e}") from None
    validate(raw)
    return raw


def short(v, limit: int = 80, *, quote: bool = True) -> str:
    """``repr``-like text of ``v`` (a string unquoted with ``quote=False``), cut to ``limit``
    characters: messages never echo a 100 KB value."""
    text = repr(v) if isinstance(v, str) and quote else str(v)
    return text if len(text) <= limit else f"{text[: limit - 25]}... ({len(text)} characters)"


def _fmt(v) -> str:
    return short(v)


def _check_value(path: str, kind: str, check, v):
    """Validate and normalise one value; raise ConfigError naming ``path``."""
    if kind in (_F, _I):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{path} must be a number, got {_fmt(v)}")
        if kind == _I:
            if isinstance(v, float):
                if not v.is_integer():
                    raise ConfigError(f"{path} must be an integer, got {v}")
                v = int(v)
        else:
            v = float(v)
            if not math.isfinite(v):
                raise ConfigError(f"{path} must be finite, got {v}")
    elif kind == _S:
        if not isinstance(v, str):
            raise ConfigError(f"{path} must be a string, got {_fmt(v)}")
    elif kind == _B:
        if not isinstance(v, bool):
            raise ConfigError(f"{path} must be true or false, got {_fmt(v)}")
    elif kind == "shape":
        if (
            not isinstance(v, list)
            or len(v) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in v)
        ):
            raise ConfigError(f"{path} must be a pair of positive integers [m, n], got {_fmt(v)}")
        v = [int(s) for s in v]
    elif kind == "floats":
        if (
            not isinstance(v, list)
            or not v
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in v)
        ):
            raise ConfigError(f"{path} must be a non-empty list of numbers, got {_fmt(v)}")
        v = [float(s) for s in v]
    elif kind == "strs":
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise ConfigError(f"{path} must be a list of strings, got {_fmt(v)}")
    if check is None:
        return v
    op = check[0]
    if op == "choice" and v not in check[1]:
        raise ConfigError(f"{path} must be one of {', '.join(map(repr, check[1]))}, got {_fmt(v)}")
    if op == ">" and not v > check[1]:
        raise ConfigError(f"{path} must be > {check[1]:g}, got {_fmt(v)}")
    if op == ">=" and not v >= check[1]:
        raise ConfigError(f"{path} must be >= {check[1]:g}, got {_fmt(v)}")
    if op == "range" and not (check[1] < v <= check[2]):
        raise ConfigError(f"{path} must be in ({check[1]:g}, {check[2]:g}], got {_fmt(v)}")
    if op == "between" and not (check[1] <= v <= check[2]):
        raise ConfigError(f"{path} must be between {check[1]:,} and {check[2]:,}, got {_fmt(v)}")
    return v


def _resolve_key(key: str, where: str) -> str:
    """An axis key: an alias (``alpha``) or a dotted path (``init.scale``)."""
    full = ALIASES.get(key, key)
    parts = full.split(".")
    if (
        len(parts) != 2
        or parts[0] not in SCHEMA
        or parts[0] == "record"
        or parts[1] not in SCHEMA[parts[0]]
    ):
        raise ConfigError(
            f"{where}: unknown sweep key {short(key)}; use a dotted path such as "
            f"'init.scale' or one of the aliases {', '.join(sorted(ALIASES))}"
        )
    return full


def _header(raw: dict) -> str:
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a TOML table")
    kind = raw.get("kind", "sweep")
    if kind not in ("sweep", "reproduction"):
        raise ConfigError(f"kind must be 'sweep' or 'reproduction', got {_fmt(kind)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("name must be a non-empty string")
    if "description" in raw and not isinstance(raw["description"], str):
        raise ConfigError("description must be a string")
    return kind


def validate(raw: dict) -> dict:
    """Check a raw config (as parsed from TOML); raise :class:`ConfigError` naming the key."""
    kind = _header(raw)
    if kind == "reproduction":
        allowed = _HEADER | {"runner", "params"}
        for k in raw:
            if k not in allowed:
                raise ConfigError(
                    f"unknown key {k!r} in a reproduction config "
                    f"(allowed: {', '.join(sorted(allowed))})"
                )
        runner = raw.get("runner")
        if not isinstance(runner, str) or runner.count(":") != 1 or not all(runner.split(":")):
            raise ConfigError(f"runner must be 'package.module:function', got {_fmt(runner)}")
        if not isinstance(raw.get("params", {}), dict):
            raise ConfigError("params must be a table")
        return raw
    for k, v in raw.items():
        if k in _HEADER:
            continue
        if k == "sweep":
            _validate_sweep(v)
            continue
        if k == _QUICK:
            if not isinstance(v, dict) or not v:
                raise ConfigError("quick must be a non-empty table of overrides ([quick])")
            continue
        if k not in SCHEMA:
            raise ConfigError(
                f"unknown section {short(k)} (allowed: name, description, kind, "
                f"{', '.join(SCHEMA)}, sweep, quick)"
            )
        if not isinstance(v, dict):
            raise ConfigError(f"{k} must be a table ([{k}])")
        for kk, vv in v.items():
            if kk not in SCHEMA[k]:
                raise ConfigError(
                    f"unknown key {k}.{short(kk, 40, quote=False)} (allowed: {', '.join(SCHEMA[k])})"
                )
            t, _, check = SCHEMA[k][kk]
            _check_value(f"{k}.{kk}", t, check, vv)
    for m in raw.get("record", {}).get("metrics", []):
        if m not in METRICS:
            raise ConfigError(
                f"record.metrics: unknown metric {short(m)} (allowed: {', '.join(METRICS)})"
            )
    ptype = raw.get("problem", {}).get("type", "completion")
    if "heldout_rmse" in raw.get("record", {}).get("metrics", []) and ptype not in (
        "completion",
        "ratings",
    ):
        raise ConfigError(
            "record.metrics: heldout_rmse needs problem.type 'completion' (scored on the "
            f"unobserved entries of the truth) or 'ratings' (the held-out split), got {ptype!r}"
        )
    if ptype == "ratings" and not raw.get("problem", {}).get("path"):
        raise ConfigError("problem.path (a ratings file) is required by problem.type = 'ratings'")
    for c in raw.get("record", {}).get("custom", []):
        if c.count(":") != 1:
            raise ConfigError(f"record.custom: {short(c)} must be 'module:function'")
    if _QUICK in raw:
        try:
            validate(apply_quick(raw))
        except ConfigError as e:
            raise ConfigError(f"quick: {e}") from None
    return raw


def _validate_sweep(sw) -> None:
    if not isinstance(sw, dict):
        raise ConfigError("sweep must be a table ([sweep])")
    for k in sw:
        if k not in _SWEEP_KEYS:
            raise ConfigError(f"unknown key sweep.{k} (allowed: {', '.join(sorted(_SWEEP_KEYS))})")
    if "batch_size" in sw:
        _check_value("sweep.batch_size", _I, (">=", 1), sw["batch_size"])
    seen: dict[str, str] = {}
    grid = sw.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError("sweep.grid must be a table of lists")
    groups = [("sweep.grid", {k: v}) for k, v in grid.items()]
    zips = sw.get("zip", [])
    if isinstance(zips, dict):
        zips = [zips]
    if not isinstance(zips, list) or not all(isinstance(z, dict) for z in zips):
        raise ConfigError(
            "sweep.zip must be a table of equal-length lists, or an array of such "
            "tables ([[sweep.zip]])"
        )
    groups += [(f"sweep.zip[{i}]", z) for i, z in enumerate(zips)]
    for where, group in groups:
        if not group:
            raise ConfigError(f"{where} is empty")
        lengths = set()
        for k, vals in group.items():
            path = f"{where}.{k}" if where == "sweep.grid" else f"{where}.{k}"
            full = _resolve_key(k, path)
            if full == "dynamics.method":
                raise ConfigError(
                    f"{path}: dynamics.method cannot be swept (flow and gd have "
                    f"different time axes); run one sweep per method"
                )
            if full in seen:
                raise ConfigError(f"{path}: {full} is swept twice (also in {seen[full]})")
            seen[full] = path
            if not isinstance(vals, list) or not vals:
                raise ConfigError(f"{path} must be a non-empty list, got {_fmt(vals)}")
            sec, kk = full.split(".")
            t, _, check = SCHEMA[sec][kk]
            for i, v in enumerate(vals):
                _check_value(f"{path}[{i}]", t, check, v)
            lengths.add(len(vals))
        if len(lengths) > 1:
            raise ConfigError(
                f"{where}: zipped lists must have equal lengths, got "
                f"{', '.join(f'{k}: {len(v)}' for k, v in group.items())}"
            )
        _no_duplicates(where, group)


def _no_duplicates(where: str, group: dict) -> None:
    """Refuse repeated sweep points: they are one run, and a coordinate must be unique."""

    def norm(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    raw_points = list(zip(*group.values(), strict=True))
    points = [repr(tuple(norm(v) for v in p)) for p in raw_points]
    if len(set(points)) == len(points):
        return
    seen: dict[str, int] = {}
    for p in points:
        seen[p] = seen.get(p, 0) + 1
    worst = max(seen, key=seen.__getitem__)
    n = seen[worst]
    first = raw_points[points.index(worst)]
    rep = str(first[0]) if len(first) == 1 else "(" + ", ".join(map(str, first)) + ")"
    raise ConfigError(
        f"{where}.{'/'.join(group)} repeats values ({short(rep, 40, quote=False)} appears {n} "
        f"times; {len(points)} values, {len(seen)} distinct): a repeated point is "
        f"the same run; list each value once"
    )


# ---------------------------------------------------------------------------------------------
# Overrides (--set) and the quick variant


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string


def apply_overrides(raw: dict, overrides: list[str] | dict) -> dict:
    """Apply ``KEY=VALUE`` overrides (VALUE in TOML syntax, bare words are strings).

    ``KEY`` is a dotted path (``dynamics.t_max=100``, ``sweep.grid.alpha=[1e-2]``) or the name
    of a sweep axis, optionally plural (``alphas=[1e-4,1e-8]`` sets the values of the axis
    ``alpha`` wherever it is swept; an alias not yet swept becomes a new grid axis when given a
    list, a fixed value otherwise).
    """
    raw = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        if isinstance(value, str) and not isinstance(overrides, dict):
            value = _parse_value(value)
        _set(raw, key, value)
    validate(raw)
    return raw


def _flatten_quick(table: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(_flatten_quick(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
    if _QUICK not in raw:
        raise ConfigError(
            f"experiment {short(raw.get('name'))} defines no quick variant (a "
            f"[quick] table of overrides); run it without --quick, or add one"
        )
    base = {k: v for k, v in raw.items() if k != _QUICK}
    return apply_overrides(base, _flatten_quick(raw[_QUICK]))


def dump_toml(raw: dict) -> str:
    """TOML text of a config (tables, arrays of tables, scalars, lists); ``parse_config`` of
    the result gives ``raw`` back. Used to store the configuration as run, overrides applied."""

    def val(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a valid TOML basic string
        if isinstance(v, float):
            return (
                "inf"
                if v == math.inf
                else "-inf"
                if v == -math.inf
                else "nan"
                if v != v
                else repr(v)
            )
        if isinstance(v, int):
            return str(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{key(k)} = {val(x)}" for k, x in v.items()) + " }"
        raise ConfigError(f"cannot write {type(v).__name__} value {short(v)} as TOML")

    def key(k: str) -> str:
        return k if k and all(c.isalnum() or c in "-_" for c in k) else json.dumps(k)

    lines: list[str] = []

    def table(d: dict, path: list[str]) -> None:
        scal = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if path and (scal or not d):
            lines.append(f"\n[{'.'.join(key(p) for p in path)}]")
        lines.extend(f"{key(k)} = {val(v)}" for k, v in scal.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(v, path + [k])

    table(raw, [])
    return "\n".join(lines).lstrip("\n") + "\n"


def config_diff(old: dict, new: dict, limit: int = 12) -> list[str]:
    """Lines ``key: old -> new`` for every dotted key whose value differs (at most ``limit``)."""
    a, b = _flatten_quick(_jsonable(old)), _flatten_quick(_jsonable(new))
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, _MISSING) != b.get(k, _MISSING):
            out.append(f"{k}: {short(a.get(k, '(unset)'), 50)} -> {short(b.get(k, '(unset)'), 50)}")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


_MISSING = object()


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, sort_keys=True, default=float))


def _split(o: str) -> tuple[str, str]:
    if "=" not in o:
        raise ConfigError(f"--set expects KEY=VALUE, got {short(o)}")
    k, v = o.split("=", 1)
    k = k.strip()
    if not k:
        raise ConfigError(f"--set expects KEY=VALUE, got {short(o)}")
    return k, v.strip()


def _set(raw: dict, key: str, value) -> None:
    if "." in key:
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
        return
    sweep = raw.setdefault("sweep", {})
    candidates = [key] + ([key[:-1]] if key.endswith("s") else [])
    for cand in candidates:
        full = ALIASES.get(cand, cand)
        for group in [sweep.get("grid", {})] + _zip_list(sweep):
            for k in list(group):
                if k == cand or ALIASES.get(k, k) == full:
                    group[k] = value if isinstance(value, list) else [value]
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


def _zip_list(sweep: dict) -> list[dict]:
    z = sweep.get("zip", [])
    return [z] if isinstance(z, dict) else list(z)


# ---------------------------------------------------------------------------------------------
# Expansion

_TYPE_NAMES = {
    _F: "float",
    _I: "int",
    _S: "string",
    _B: "bool",
    "shape": "[int, int]",
    "floats": "list of floats",
    "strs": "list of strings",
}


def _check_text(check) -> str:
    if check is None:
        return ""
    op = check[0]
    if op == "choice":
        return "one of " + ", ".join(f"`{c}`" for c in check[1])
    if op in (">", ">="):
        return f"{op} {check[1]:g}"
    if op == "range":
        return f"in ({check[1]:g}, {check[2]:g}]"
    return f"{check[1]:,} to {check[2]:,}"


def schema_table() -> str:
    """The config schema (:data:`SCHEMA`) as a markdown table: key, type, default, allowed
    values. The sweeps guide quotes it; a test checks that the two agree."""
    rows = ["| key | type | default | allowed |", "|---|---|---|---|"]
    for sec, keys in SCHEMA.items():
        for k, (t, d, chk) in keys.items():
            default = "unset" if d is None else f"`{json.dumps(d)}`"
            rows.append(f"| `{sec}.{k}` | {_TYPE_NAMES[t]} | {default} | {_check_text(chk)} |")
    return "\n".join(rows)


def _defaults(raw: dict) -> dict:
    """The base config with every default filled in (no sweep)."""
    base = {}
    for sec, keys in SCHEMA.items():
        given = raw.get(sec, {})
        base[sec] = {
            k: _check_value(f"{sec}.{k}", t, chk, given[k])
            if given.get(k) is not None
            else copy.deepcopy(d)
            for k, (t, d, chk) in keys.items()
        }
    return base


def _axis_name(key: str) -> str:
    full = ALIASES.get(key, key)
    return key if key in ALIASES else _SHORT.get(full, full.replace(".", "_"))


def _normalise_run(cfg: dict) -> dict:
    """Drop the keys a run does not use, so that they do not change its hash."""
    cfg = copy.deepcopy(cfg)
    p, d, i, m = cfg["problem"], cfg["dynamics"], cfg["init"], cfg["model"]
    if p["type"] == "ratings":
        for k in ("rank", "psd", "spectrum", "fraction", "noise"):
            p.pop(k)
    else:
        p.pop("path"), p.pop("test_fraction")
    if p["type"] not in ("completion", "ratings"):
        p.pop("fraction")
    if p["type"] != "sensing":
        p.pop("measurements")
    if p["type"] == "completion":
        p.pop("noise")
    if d["method"] == "flow":
        d.pop("lr"), d.pop("steps")
    else:
        for k in ("t_max", "t_min", "rtol", "atol", "solver", "gtol", "max_steps"):
            d.pop(k)
    # optax keys only where used, so that flow and gd run keys are those of before
    used = set(OPTIMIZERS[d["optimizer"]].defaults) if d["method"] == "optax" else set()
    if d["method"] == "optax":
        used |= {"optimizer", "batch_size"} | ({"batch_seed"} if d["batch_size"] else set())
    for k in _OPTAX_KEYS:
        if k not in used:
            d.pop(k)
    if i["name"] != "perturbed_identity":
        i.pop("beta")
    if m["type"] == "symmetric":
        m.pop("depth")
    return cfg


def _check_truth(p: dict, m: dict, where: str) -> None:
    mm, nn = p["shape"]
    if p["rank"] > min(mm, nn):
        raise ConfigError(
            f"{where}problem.rank={p['rank']} exceeds min(problem.shape)={min(mm, nn)}"
        )
    if p["psd"] and mm != nn:
        raise ConfigError(
            f"{where}problem.psd = true needs a square problem.shape, got {p['shape']}"
        )
    if m["type"] == "symmetric" and mm != nn:
        raise ConfigError(
            f"{where}model.type = 'symmetric' needs a square problem.shape, got {p['shape']}"
        )
    if m["type"] == "symmetric" and not p["psd"]:
        raise ConfigError(f"{where}model.type = 'symmetric' needs problem.psd = true")
    if p.get("spectrum") is not None and len(p["spectrum"]) != p["rank"]:
        raise ConfigError(
            f"{where}problem.spectrum has {len(p['spectrum'])} values, "
            f"expected problem.rank={p['rank']}"
        )


def _check_run(cfg: dict, where: str) -> None:
    p, m = cfg["problem"], cfg["model"]
    if p["type"] == "ratings":  # no generated truth: rank, psd and spectrum do not apply
        if m["type"] == "symmetric":
            raise ConfigError(f"{where}model.type = 'symmetric' cannot fit a ratings matrix")
    else:
        _check_truth(p, m, where)
    d = cfg["dynamics"]
    if d["method"] == "flow" and d.get("t_min") is not None and not d["t_min"] < d["t_max"]:
        raise ConfigError(
            f"{where}dynamics.t_min must be < dynamics.t_max={d['t_max']:g}, got {d['t_min']:g}"
        )
    if d["method"] == "optax":
        hyper = {k: d[k] for k in OPTIMIZERS[d["optimizer"]].defaults if d.get(k) is not None}
        try:
            check_hyperparams(d["optimizer"], d["lr"], hyper)
        except ValueError as e:
            raise ConfigError(f"{where}dynamics: {e}") from None
        for k in (
            set(_OPTAX_KEYS)
            - set(OPTIMIZERS[d["optimizer"]].defaults)
            - {"optimizer", "batch_size", "batch_seed"}
        ):
            if d.get(k) is not None:
                raise ConfigError(
                    f"{where}dynamics.{k} is not a hyper-parameter of "
                    f"dynamics.optimizer = {d['optimizer']!r} (it has: lr, "
                    f"{', '.join(OPTIMIZERS[d['optimizer']].defaults) or 'no other'})"
                )
    if cfg["init"]["name"] == "perturbed_identity" and cfg["init"].get("beta") is None:
        raise ConfigError(f"{where}init.beta is required by init.name = 'perturbed_identity'")


def _ratings_file(path: str, where: str) -> tuple[tuple[int, int], str]:
    """The ``(users, items)`` shape (largest ids) and SHA-256 of a ratings file."""
    try:
        st = Path(path).stat()
        return _ratings_file_cached(str(path), st.st_mtime_ns, st.st_size)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{where}problem.path: cannot read ratings from {short(path)}: {e}"
        ) from None


@functools.lru_cache(maxsize=16)
def _ratings_file_cached(path: str, mtime_ns: int, size: int) -> tuple[tuple[int, int], str]:
    import hashlib

    from ..problems import load_ratings

    data = Path(path).read_bytes()
    prob, _ = load_ratings(path, test_fraction=0.0)
    return (int(prob.shape[0]), int(prob.shape[1])), hashlib.sha256(data).hexdigest()


def expand(raw: dict, code_version: str | None = None) -> Sweep:
    """Expand a validated sweep config into its runs (grid axes in order, then zipped groups;
    the last axis varies fastest). Each run's key is the hash of its config and the code
    version (:func:`rankbias.store.run_key`)."""
    from ..store import run_key  # late: store imports nothing from here

    validate(raw)
    if raw.get("kind", "sweep") != "sweep":
        raise ConfigError(f"{raw.get('name')!r} is a {raw.get('kind')} config, not a sweep")
    base = _defaults(raw)
    sw = raw.get("sweep", {})
    axes: list[Axis] = []
    for k, vals in sw.get("grid", {}).items():
        full = _resolve_key(k, f"sweep.grid.{k}")
        sec, kk = full.split(".")
        t, _, chk = SCHEMA[sec][kk]
        vals = tuple(_check_value(full, t, chk, v) for v in vals)
        axes.append(Axis(_axis_name(k), (full,), (vals,)))
    for z in _zip_list(sw):
        keys, values = [], []
        for k, vals in z.items():
            full = _resolve_key(k, f"sweep.zip.{k}")
            sec, kk = full.split(".")
            t, _, chk = SCHEMA[sec][kk]
            keys.append(full)
            values.append(tuple(_check_value(full, t, chk, v) for v in vals))
        axes.append(Axis(_axis_name(next(iter(z))), tuple(keys), tuple(values)))
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"sweep: two axes share the name {[n for n in names if names.count(n) > 1][0]!r}"
        )
    sweep = Sweep(
        name=raw["name"],
        description=raw.get("description", ""),
        base=base,
        axes=axes,
        batch_size=int(sw.get("batch_size", DEFAULT_BATCH)),
        raw=raw,
    )
    for idx in itertools.product(*(range(len(a)) for a in axes)):
        cfg = copy.deepcopy(base)
        for a, i in zip(axes, idx, strict=True):
            for key, vals in zip(a.keys, a.values, strict=True):
                sec, kk = key.split(".")
                cfg[sec][kk] = vals[i]
        where = (
            ""
            if not axes
            else "run "
            + ", ".join(f"{a.name}={a.values[0][i]}" for a, i in zip(axes, idx, strict=True))
            + ": "
        )
        if cfg["problem"]["type"] == "ratings":
            shape, digest = _ratings_file(cfg["problem"]["path"], where)
            if "shape" not in raw.get("problem", {}):
                cfg["problem"]["shape"] = list(shape)
            elif any(g < f for g, f in zip(cfg["problem"]["shape"], shape, strict=True)):
                raise ConfigError(
                    f"{where}problem.shape={cfg['problem']['shape']} is smaller than the ids "
                    f"of {short(cfg['problem']['path'])} need ({list(shape)})"
                )
            cfg["problem"]["sha256"] = digest  # the data, not its path, identifies the run
        _check_run(cfg, where)
        cfg = _normalise_run(cfg)
        sweep.runs.append(RunSpec(cfg, tuple(idx), run_key(cfg, code_version)))
    return sweep
