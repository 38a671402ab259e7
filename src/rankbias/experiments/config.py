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

import contextlib
import copy
import difflib
import functools
import itertools
import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._validation import check_shape
from ..dynamics import BACKENDS, SOLVERS
from ..dynamics._flow import MAX_SAVE, MAX_STEPS_CAP, flow_defaults
from ..dynamics._gd import MAX_STEPS
from ..optimizers import OPTIMIZERS, check_hyperparams

__all__ = [
    "ConfigError",
    "Axis",
    "Sweep",
    "RunSpec",
    "SCHEMA",
    "ALIASES",
    "load_config",
    "read_config_text",
    "parse_config",
    "validate",
    "apply_overrides",
    "apply_quick",
    "expand",
    "dump_toml",
    "config_diff",
    "check_custom",
    "short",
    "MAX_STEPS",
    "LEGACY_DEFAULTS",
]


class ConfigError(ValueError):
    """A config is malformed; the message names the offending key path.

    ``errors`` lists every problem found (a config is checked whole, so that two typos are
    reported by one run); the message is the one problem, or all of them, one a line.
    """

    def __init__(self, message: str = "", errors: list[str] | None = None):
        self.errors = list(errors) if errors else [message]
        if errors and len(errors) > 1:
            message = f"{len(errors)} problems in the config:\n" + "\n".join(
                f"  - {e}" for e in errors
            )
        elif errors:
            message = errors[0]
        super().__init__(message)


class _Errors:
    """Collects the :class:`ConfigError` of independent checks, raised together at the end."""

    def __init__(self) -> None:
        self.items: list[str] = []

    @contextlib.contextmanager
    def check(self, prefix: str = ""):
        try:
            yield
        except ConfigError as e:
            self.items.extend(f"{prefix}{x}" for x in e.errors if f"{prefix}{x}" not in self.items)

    def raise_any(self, limit: int = 20) -> None:
        if not self.items:
            return
        items = self.items
        if len(items) > limit:  # e.g. one semantic error repeated by every run of a big grid
            items = items[:limit] + [f"... and {len(items) - limit} more"]
        raise ConfigError(errors=items)


# Key -> (type, default, check). check: None, ("choice", options), (">", v), (">=", v),
# ("range", lo, hi) (lo < x <= hi), ("between", lo, hi) (lo <= x <= hi); default None: unset.
_F = "float"
_FA = "float_or_auto"  # a number, or "auto" (gtol: the dtype's default)
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
#: The most GD/optax steps a config may ask for (``dynamics.steps``): the library's own bound,
#: :data:`rankbias.dynamics.MAX_STEPS` (one decision, one place), so ``steps = 1e13`` is refused
#: before any run starts instead of running for years.
_STEPS_WHY = (
    "10^8 steps already take about half an hour on the smallest problem; a larger count is a "
    "typo or a run that never ends: use the gradient flow (method = 'flow') for long horizons"
)

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
        # Defaults are the library's (rb.gradient_flow, rb.gradient_descent, rb.train; a test
        # compares them). None: the library's own choice (rtol, curvature_tol, certificate_tol
        # and gtol = "auto" follow the dtype, rb.dynamics.flow_defaults).
        "dtype": (_S, None, ("choice", ("float64", "float32"))),  # None: float64
        "t_max": (_F, 1e4, (">", 0.0)),
        "t_min": (_F, None, (">", 0.0)),
        "rtol": (_F, None, (">", 0.0)),
        "atol": (_F, None, (">", 0.0)),  # None: scaled to the init (rb.gradient_flow)
        "solver": (_S, "rkc", ("choice", SOLVERS)),
        "gtol": (_FA, "auto", (">", 0.0)),
        "curvature_tol": (_F, None, (">", 0.0)),
        "certificate_tol": (_F, None, (">", 0.0)),
        "max_steps": (_I, 1_000_000, ("between", 1, MAX_STEPS_CAP)),
        "backend": (_S, "auto", ("choice", BACKENDS)),
        "lr": (_F, 0.01, (">", 0.0)),
        "steps": (_I, 1000, ("between", 1, MAX_STEPS, _STEPS_WHY)),
        "divergence_factor": (_F, 1e8, (">", 0.0)),
        "n_save": (_I, 200, ("between", 2, MAX_SAVE)),  # records per run: bounded memory
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

# Which methods use each dynamics key (the others: every method). A key of another method
# would be silently ignored by the run, so it is refused, with the key probably meant.
_FLOW_KEYS = (
    "t_max", "t_min", "rtol", "atol", "solver", "gtol", "curvature_tol", "certificate_tol",
    "max_steps",
)  # fmt: skip
_METHODS: dict[str, tuple[str, ...]] = {
    **{k: ("flow",) for k in _FLOW_KEYS},
    "backend": ("flow", "gd"),
    **{k: ("gd", "optax") for k in ("lr", "steps", "divergence_factor")},
    **{k: ("optax",) for k in _OPTAX_KEYS},
}
# (key, method) -> the key the user probably meant (absent: the method has no such setting).
_MEANT: dict[tuple[str, str], str] = {
    ("alpha", "flow"): "init.scale",
    ("alpha", "gd"): "init.scale",
    ("steps", "flow"): "dynamics.t_max",
    ("t_max", "gd"): "dynamics.steps",
    ("t_max", "optax"): "dynamics.steps",
    ("max_steps", "gd"): "dynamics.steps",
    ("max_steps", "optax"): "dynamics.steps",
    ("batch_seed", "flow"): "init.seed",
    ("batch_seed", "gd"): "init.seed",
}
_MEANT_WHY = {
    "init.scale": "the init scale, which the sweep alias `alpha` sets",
    "dynamics.t_max": "a flow's horizon is a time, about lr * steps",
    "dynamics.steps": "GD and optax count steps, not time",
    "init.seed": "the seed of the initialization",
}


def _other_method(key: str, method: str) -> str | None:
    """The error for dynamics key ``key`` under ``method`` if it belongs to other methods."""
    owners = _METHODS.get(key)
    if owners is None or method in owners:
        return None
    who = " and ".join(f"'{m}'" for m in owners)
    msg = f"dynamics.{key} belongs to method{'s' * (len(owners) > 1)} {who}"
    if key in _OPTAX_KEYS and key not in ("optimizer", "batch_size", "batch_seed"):
        msg += " (an optimizer hyper-parameter)"
    meant = _MEANT.get((key, method))
    if meant:
        return f"{msg}; for method '{method}' did you mean {meant} ({_MEANT_WHY[meant]})?"
    return (
        f"{msg}; method '{method}' has no such setting: remove it, or set "
        f"dynamics.method = '{owners[0]}'"
    )


def _did_you_mean(sec: str, key: str) -> str:
    """`` Did you mean X?`` for an unknown key ``sec.key`` (an alias or a close spelling)."""
    if key in ALIASES and ALIASES[key] != f"{sec}.{key}":
        return f"; did you mean {ALIASES[key]} (what the alias `{key}` sets)?"
    close = difflib.get_close_matches(key, list(SCHEMA.get(sec, {})), n=1, cutoff=0.7)
    return f"; did you mean {sec}.{close[0]}?" if close else ""


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
    _check_depth(raw, source)
    validate(raw)
    return raw


#: Nesting a config may have (sections, sub-tables, lists of values); deeper is refused before
#: any recursive code (validation, ``--set``, diffs) walks it.
_MAX_DEPTH = 8


def _check_depth(raw, source: str) -> None:
    stack = [(raw, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ConfigError(
                f"invalid config {source}: tables or arrays nested more than {_MAX_DEPTH} "
                f"levels deep (a config needs at most 4)"
            )
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


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
    elif kind == _FA:
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f'{path} must be a number or "auto", got {_fmt(v)}')
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
        why = f" ({check[3]})" if len(check) > 3 else ""
        raise ConfigError(
            f"{path} must be between {check[1]:,} and {check[2]:,}{why}, got {_fmt(v)}"
        )
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


def _header(raw: dict, errs: _Errors) -> str:
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a TOML table")
    kind = raw.get("kind", "sweep")
    if kind not in ("sweep", "reproduction"):
        with errs.check():
            raise ConfigError(f"kind must be 'sweep' or 'reproduction', got {_fmt(kind)}")
        kind = "sweep"  # check the rest as a sweep, the usual kind
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        errs.items.append("name must be a non-empty string")
    if "description" in raw and not isinstance(raw["description"], str):
        errs.items.append("description must be a string")
    return kind


def validate(raw: dict) -> dict:
    """Check a raw config (as parsed from TOML); raise :class:`ConfigError` listing every
    problem found, each naming its key path (``ConfigError.errors``)."""
    errs = _Errors()
    kind = _header(raw, errs)
    if kind == "reproduction":
        allowed = _HEADER | {"runner", "params"}
        for k in raw:
            if k not in allowed:
                errs.items.append(
                    f"unknown key {short(k)} in a reproduction config "
                    f"(allowed: {', '.join(sorted(allowed))})"
                )
        runner = raw.get("runner")
        if not isinstance(runner, str) or runner.count(":") != 1 or not all(runner.split(":")):
            errs.items.append(f"runner must be 'package.module:function', got {_fmt(runner)}")
        if not isinstance(raw.get("params", {}), dict):
            errs.items.append("params must be a table")
        errs.raise_any()
        return raw
    dyn = raw.get("dynamics")
    method = dyn.get("method", "flow") if isinstance(dyn, dict) else "flow"
    for k, v in raw.items():
        if k in _HEADER:
            continue
        if k == "sweep":
            _validate_sweep(v, method, errs)
            continue
        if k == _QUICK:
            if not isinstance(v, dict) or not v:
                errs.items.append("quick must be a non-empty table of overrides ([quick])")
            continue
        if k not in SCHEMA:
            errs.items.append(
                f"unknown section {short(k)} (allowed: name, description, kind, "
                f"{', '.join(SCHEMA)}, sweep, quick)"
                + (f"; did you mean [{close[0]}]?" if (close := _close(k, SCHEMA)) else "")
            )
            continue
        if not isinstance(v, dict):
            errs.items.append(f"{k} must be a table ([{k}])")
            continue
        for kk, vv in v.items():
            if kk not in SCHEMA[k]:
                allowed = f"allowed: {', '.join(SCHEMA[k])}"
                if k == "dynamics" and method in ("flow", "gd", "optax"):
                    mine = [x for x in SCHEMA[k] if method in _METHODS.get(x, (method,))]
                    allowed = f"allowed for method '{method}': {', '.join(mine)}"
                errs.items.append(
                    f"unknown key {k}.{short(kk, 40, quote=False)} "
                    f"({allowed}){_did_you_mean(k, kk)}"
                )
                continue
            if k == "dynamics" and method in ("flow", "gd", "optax"):
                other = _other_method(kk, method)
                if other:
                    errs.items.append(other)
                    continue
            t, _, check = SCHEMA[k][kk]
            with errs.check():
                _check_value(f"{k}.{kk}", t, check, vv)
    record = raw["record"] if isinstance(raw.get("record"), dict) else {}
    metrics = record.get("metrics", [])
    metrics = metrics if isinstance(metrics, list) else []
    for m in metrics:
        if m not in METRICS:
            errs.items.append(
                f"record.metrics: unknown metric {short(m)} (allowed: {', '.join(METRICS)})"
            )
    problem = raw["problem"] if isinstance(raw.get("problem"), dict) else {}
    ptype = problem.get("type", "completion")
    if "heldout_rmse" in metrics and ptype not in ("completion", "ratings"):
        errs.items.append(
            "record.metrics: heldout_rmse needs problem.type 'completion' (scored on the "
            f"unobserved entries of the truth) or 'ratings' (the held-out split), got {ptype!r}"
        )
    if ptype == "ratings" and not problem.get("path"):
        errs.items.append("problem.path (a ratings file) is required by problem.type = 'ratings'")
    custom = record.get("custom", [])
    for c in custom if isinstance(custom, list) else []:
        if not isinstance(c, str) or c.count(":") != 1 or not all(c.split(":")):
            errs.items.append(f"record.custom: {short(c)} must be 'module:function'")
    if _QUICK in raw and not errs.items and isinstance(raw[_QUICK], dict) and raw[_QUICK]:
        with errs.check("quick: "):
            validate(apply_quick(raw))
    errs.raise_any()
    return raw


def _close(key, options) -> list[str]:
    return difflib.get_close_matches(str(key), list(options), n=1, cutoff=0.7)


def _validate_sweep(sw, method: str, errs: _Errors) -> None:
    if not isinstance(sw, dict):
        errs.items.append("sweep must be a table ([sweep])")
        return
    for k in sw:
        if k not in _SWEEP_KEYS:
            errs.items.append(
                f"unknown key sweep.{short(k, 40, quote=False)} (allowed: "
                f"{', '.join(sorted(_SWEEP_KEYS))})"
                + (f"; did you mean sweep.{close[0]}?" if (close := _close(k, _SWEEP_KEYS)) else "")
            )
    if "batch_size" in sw:
        with errs.check():
            _check_value("sweep.batch_size", _I, (">=", 1), sw["batch_size"])
    seen: dict[str, str] = {}
    grid = sw.get("grid", {})
    if not isinstance(grid, dict):
        errs.items.append("sweep.grid must be a table of lists")
        grid = {}
    groups = [("sweep.grid", {k: v}) for k, v in grid.items()]
    zips = sw.get("zip", [])
    if isinstance(zips, dict):
        zips = [zips]
    if not isinstance(zips, list) or not all(isinstance(z, dict) for z in zips):
        errs.items.append(
            "sweep.zip must be a table of equal-length lists, or an array of such "
            "tables ([[sweep.zip]])"
        )
        zips = []
    groups += [(f"sweep.zip[{i}]", z) for i, z in enumerate(zips)]
    for where, group in groups:
        with errs.check():
            _validate_group(where, group, method, seen)


def _validate_group(where: str, group: dict, method: str, seen: dict[str, str]) -> None:
    """One grid axis or zipped group; raises the :class:`ConfigError` of all its keys."""
    if not group:
        raise ConfigError(f"{where} is empty")
    errs = _Errors()
    lengths = set()
    for k, vals in group.items():
        path = f"{where}.{k}"
        with errs.check():
            full = _resolve_key(k, path)
            if full == "dynamics.method":
                raise ConfigError(
                    f"{path}: dynamics.method cannot be swept (flow and gd have "
                    f"different time axes); run one sweep per method"
                )
            sec, kk = full.split(".")
            other = _other_method(kk, method) if sec == "dynamics" else None
            if other:
                raise ConfigError(f"{path}: {other}")
            if full in seen:
                raise ConfigError(f"{path}: {full} is swept twice (also in {seen[full]})")
            seen[full] = path
            if not isinstance(vals, list) or not vals:
                raise ConfigError(f"{path} must be a non-empty list, got {_fmt(vals)}")
            t, _, check = SCHEMA[sec][kk]
            for i, v in enumerate(vals):
                _check_value(f"{path}[{i}]", t, check, v)
            lengths.add(len(vals))
    errs.raise_any()
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
    _check_depth(value, f"--set {short(key, 40, quote=False)}")
    return value


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
            value = _parse_value(value, key)
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
    """Lines ``key: old -> new`` for every dotted key whose value differs (at most ``limit``).

    A key left out on one side counts as its default (``kind`` as ``'sweep'``, a schema key as
    :data:`SCHEMA`'s default): only differences that change what is run are listed. If the two
    differ only in writing a default out, those keys are listed, marked so.
    """
    a, b = _flatten_quick(_jsonable(old)), _flatten_quick(_jsonable(new))
    fa, fb = _flatten_quick(_with_defaults(old)), _flatten_quick(_with_defaults(new))
    out = _diff_lines(fa, fb)
    if not out:
        out = [f"{line} (written out at its default)" for line in _diff_lines(a, b)]
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


def _diff_lines(a: dict, b: dict) -> list[str]:
    return [
        f"{k}: {short(a.get(k, '(unset)'), 50)} -> {short(b.get(k, '(unset)'), 50)}"
        for k in sorted(set(a) | set(b))
        if a.get(k, _MISSING) != b.get(k, _MISSING)
    ]


def _with_defaults(raw) -> dict:
    """``raw`` (JSON-like) with the header's and the schema's defaults filled in."""
    raw = _jsonable(raw) if isinstance(raw, dict) else {}
    raw.setdefault("kind", "sweep")
    raw.setdefault("description", "")
    if raw["kind"] != "sweep":
        return raw
    for sec, keys in SCHEMA.items():
        table = raw.setdefault(sec, {})
        if isinstance(table, dict):
            for k, (_, d, _) in keys.items():
                if table.get(k) is None:
                    table[k] = d
            for k in [k for k, v in table.items() if v is None]:
                table.pop(k)  # unset: nothing to compare
    sweep = raw.setdefault("sweep", {})
    if isinstance(sweep, dict):
        sweep.setdefault("batch_size", DEFAULT_BATCH)
    return _jsonable(raw)


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
    _FA: 'float or `"auto"`',
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
    rows = ["| key | type | default | allowed | methods |", "|---|---|---|---|---|"]
    for sec, keys in SCHEMA.items():
        for k, (t, d, chk) in keys.items():
            default = "unset" if d is None else f"`{json.dumps(d)}`"
            used = ", ".join(_METHODS.get(k, ("all",))) if sec == "dynamics" else ""
            rows.append(
                f"| `{sec}.{k}` | {_TYPE_NAMES[t]} | {default} | {_check_text(chk)} | {used} |"
            )
    return "\n".join(rows)


def _defaults(raw: dict, defaults: dict | None = None) -> dict:
    """The base config with every default filled in (no sweep); ``defaults`` (dotted keys)
    replace the schema's."""
    defaults = defaults or {}
    base = {}
    for sec, keys in SCHEMA.items():
        given = raw.get(sec, {})
        base[sec] = {
            k: _check_value(f"{sec}.{k}", t, chk, given[k])
            if given.get(k) is not None
            else copy.deepcopy(defaults.get(f"{sec}.{k}", d))
            for k, (t, d, chk) in keys.items()
        }
    return base


def _axis_name(key: str) -> str:
    full = ALIASES.get(key, key)
    return key if key in ALIASES else _SHORT.get(full, full.replace(".", "_"))


#: Dynamics keys added to the schema after sweeps were stored, with the default at which
#: they are left out of the run key (that of every run stored before them).
_KEY_NEUTRAL = {
    "backend": "auto",
    "curvature_tol": None,
    "certificate_tol": None,
    "divergence_factor": 1e8,
    "dtype": None,
}

#: Defaults of the schema before this version, by key. A results folder whose runs were keyed
#: with them is resumed with them (``expand(raw, defaults=LEGACY_DEFAULTS)``, see
#: :func:`rankbias.experiments.registry.run_experiment`), never silently re-computed.
LEGACY_DEFAULTS: dict[str, object] = {"dynamics.n_save": 100}


def _normalise_run(cfg: dict) -> dict:
    """Drop the keys a run does not use, so that they do not change its hash."""
    cfg = copy.deepcopy(cfg)
    p, d, i, m = cfg["problem"], cfg["dynamics"], cfg["init"], cfg["model"]
    if p["type"] == "ratings":
        for k in ("rank", "psd", "spectrum", "fraction", "noise"):
            p.pop(k)
    else:
        p.pop("path")
        p.pop("test_fraction")
    if p["type"] not in ("completion", "ratings"):
        p.pop("fraction")
    if p["type"] != "sensing":
        p.pop("measurements")
    if p["type"] == "completion":
        p.pop("noise")
    # Keys added to the schema after the first stored sweeps enter the key only when set to
    # something else than their default: the runs stored before keep their keys.
    for k, default in _KEY_NEUTRAL.items():
        if d.get(k, default) == default:
            d.pop(k, None)
    if d.get("dtype") == "float64":
        d.pop("dtype")
    if d["method"] == "flow":
        # the dtype's defaults, resolved: a float64 run's key holds rtol = 1e-8 and
        # gtol = 1e-10, as when these were the schema's defaults
        tol = flow_defaults(d.get("dtype") or "float64")
        if d["rtol"] is None:
            d["rtol"] = tol["rtol"]
        if d["gtol"] == "auto":
            d["gtol"] = tol["gtol"]
    for k in list(d):
        if k not in _OPTAX_KEYS and d["method"] not in _METHODS.get(k, (d["method"],)):
            d.pop(k)  # another method's key (validate refuses them; here: their defaults)
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
    out = []
    if p["rank"] > min(mm, nn):
        out.append(f"{where}problem.rank={p['rank']} exceeds min(problem.shape)={min(mm, nn)}")
    if p.get("type") != "ratings":  # a generated truth is a dense (m, n) matrix
        try:  # refused here, before the folder is written, not in the first run
            check_shape(p["shape"], "problem.shape", dense=True)
        except ValueError as e:
            out.append(f"{where}{e}")
    if p["psd"] and mm != nn:
        out.append(f"{where}problem.psd = true needs a square problem.shape, got {p['shape']}")
    if m["type"] == "symmetric" and mm != nn:
        out.append(
            f"{where}model.type = 'symmetric' needs a square problem.shape, got {p['shape']}"
        )
    if m["type"] == "symmetric" and not p["psd"]:
        out.append(f"{where}model.type = 'symmetric' needs problem.psd = true")
    if p.get("spectrum") is not None and len(p["spectrum"]) != p["rank"]:
        out.append(
            f"{where}problem.spectrum has {len(p['spectrum'])} values, "
            f"expected problem.rank={p['rank']}"
        )
    if out:
        raise ConfigError(errors=out)


def _check_run(cfg: dict, where: str) -> None:
    """The checks that need a whole run config; raises every problem found together."""
    errs = _Errors()
    p, m = cfg["problem"], cfg["model"]
    with errs.check():
        if p["type"] == "ratings":  # no generated truth: rank, psd and spectrum do not apply
            if m["type"] == "symmetric":
                raise ConfigError(f"{where}model.type = 'symmetric' cannot fit a ratings matrix")
        else:
            _check_truth(p, m, where)
    d = cfg["dynamics"]
    if d["method"] == "flow" and d.get("t_min") is not None and not d["t_min"] < d["t_max"]:
        errs.items.append(
            f"{where}dynamics.t_min must be < dynamics.t_max={d['t_max']:g}, got {d['t_min']:g}"
        )
    if d["method"] == "optax":
        hyper = {k: d[k] for k in OPTIMIZERS[d["optimizer"]].defaults if d.get(k) is not None}
        try:
            check_hyperparams(d["optimizer"], d["lr"], hyper)
        except ValueError as e:
            errs.items.append(f"{where}dynamics: {e}")
        for k in sorted(
            set(_OPTAX_KEYS)
            - set(OPTIMIZERS[d["optimizer"]].defaults)
            - {"optimizer", "batch_size", "batch_seed"}
        ):
            if d.get(k) is not None:
                errs.items.append(
                    f"{where}dynamics.{k} is not a hyper-parameter of "
                    f"dynamics.optimizer = {d['optimizer']!r} (it has: lr, "
                    f"{', '.join(OPTIMIZERS[d['optimizer']].defaults) or 'no other'})"
                )
    if cfg["init"]["name"] == "perturbed_identity" and cfg["init"].get("beta") is None:
        errs.items.append(f"{where}init.beta is required by init.name = 'perturbed_identity'")
    errs.raise_any()


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


def expand(raw: dict, code_version: str | None = None, *, defaults: dict | None = None) -> Sweep:
    """Expand a validated sweep config into its runs (grid axes in order, then zipped groups;
    the last axis varies fastest). Each run's key is the hash of its config and the code
    version (:func:`rankbias.store.run_key`).

    ``defaults`` (dotted keys, e.g. :data:`LEGACY_DEFAULTS`) replace the schema's defaults of
    the keys the config does not set. Every ``record.custom`` function is imported here, before
    any run (a typo must not cost the results of a whole sweep). Raises :class:`ConfigError`
    listing every problem (of at most 20 runs).
    """
    from ..store import run_key  # late: store imports nothing from here

    validate(raw)
    if raw.get("kind", "sweep") != "sweep":
        raise ConfigError(f"{raw.get('name')!r} is a {raw.get('kind')} config, not a sweep")
    errs = _Errors()
    for name in raw.get("record", {}).get("custom", []):
        with errs.check():
            check_custom(name)
    base = _defaults(raw, defaults)
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
        with errs.check():
            _check_run(cfg, where)
        if errs.items:
            continue  # collect the errors of every run, keys are of no use
        cfg = _normalise_run(cfg)
        sweep.runs.append(RunSpec(cfg, tuple(idx), run_key(cfg, code_version)))
    errs.raise_any()
    return sweep


def check_custom(name: str) -> Callable[..., Any]:
    """The function ``module:function`` of ``record.custom``, imported; a
    :class:`ConfigError` naming it if it cannot be imported or is not callable. Importing runs
    the module's code, as a Python file would (a config is code, see the sweeps guide)."""
    import importlib

    mod, _, fn = name.partition(":")
    try:
        f = getattr(importlib.import_module(mod), fn)
    except ImportError as e:
        raise ConfigError(
            f"record.custom: cannot import module {mod!r} of {short(name)}: {e}; the module "
            f"must be importable: on PYTHONPATH (`python -m rankbias` also looks in the "
            f"working folder, the `rankbias` command does not)"
        ) from None
    except AttributeError:
        raise ConfigError(
            f"record.custom: module {mod!r} has no function {fn!r} (from {short(name)})"
        ) from None
    if not callable(f):
        raise ConfigError(f"record.custom: {short(name)} is a {type(f).__name__}, not a function")
    return f
