"""Validation of a parsed config: every value against the schema, with messages that say what
to do (the key probably meant, the method a key belongs to, a close spelling).

:func:`validate` checks a config whole and raises one :class:`ConfigError` listing every
problem; the checks that need a whole run (truth and model shapes) run at expansion
(:mod:`rankbias.experiments.expand`).
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Callable
from typing import Any

from .._deprecation import warn_renamed
from .errors import ConfigError, _Errors, short
from .overrides import QUICK, quick_variant
from .schema import _METHODS, ALIASES, HYPER, METHODS, METRICS, SCHEMA, SECTIONS_UNUSED, spec

__all__ = ["validate", "check_value", "resolve_key", "check_custom"]

_HEADER = {"name", "description", "kind"}
_SWEEP_KEYS = {"grid", "zip", "chunk_size", "batch_size"}  # batch_size: chunk_size, deprecated

# (key, method) -> the key the user probably meant (absent: the method has no such setting).
_MEANT: dict[tuple[str, str], str] = {
    ("alpha", "flow"): "init.scale",
    ("alpha", "gd"): "init.scale",
    ("alpha", "glrl"): "dynamics.eps",
    ("steps", "flow"): "dynamics.t_max",
    ("t_max", "gd"): "dynamics.steps",
    ("t_max", "optax"): "dynamics.steps",
    ("max_steps", "gd"): "dynamics.steps",
    ("max_steps", "optax"): "dynamics.steps",
    ("batch_seed", "flow"): "init.seed",
    ("batch_seed", "gd"): "init.seed",
    **{("seed", m): "init.seed" for m in ("flow", "gd", "optax")},
}
_MEANT_WHY = {
    "init.scale": "the init scale, which the sweep alias `alpha` sets",
    "dynamics.t_max": "a flow's horizon is a time, about lr * steps",
    "dynamics.steps": "GD and optax count steps, not time",
    "init.seed": "the seed of the initialization",
    "dynamics.eps": "GLRL's init scale: the squared norm of each new column",
}


# ---------------------------------------------------------------------------------------------
# One value


def _number(path: str, v, *, integer: bool):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{path} must be a number, got {short(v)}")
    if integer:
        if isinstance(v, float):
            if not v.is_integer():
                raise ConfigError(f"{path} must be an integer, got {v}")
            v = int(v)
        return v
    v = float(v)
    if not math.isfinite(v):
        raise ConfigError(f"{path} must be finite, got {v}")
    return v


def _float_or_auto(path: str, v):
    if v == "auto":
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f'{path} must be a number or "auto", got {short(v)}')
    return _number(path, v, integer=False)


def _typed(path: str, v, ok: bool, what: str):
    if not ok:
        raise ConfigError(f"{path} must be {what}, got {short(v)}")
    return v


def _shape(path: str, v):
    ok = (
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in v)
    )
    _typed(path, v, ok, "a pair of positive integers [m, n]")
    return [int(s) for s in v]


def _floats(path: str, v):
    ok = (
        isinstance(v, list)
        and bool(v)
        and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in v)
    )
    _typed(path, v, ok, "a non-empty list of numbers")
    return [float(s) for s in v]


_KINDS: dict[str, Callable[[str, Any], Any]] = {
    "float": lambda p, v: _number(p, v, integer=False),
    "int": lambda p, v: _number(p, v, integer=True),
    "float_or_auto": _float_or_auto,
    "str": lambda p, v: _typed(p, v, isinstance(v, str), "a string"),
    "bool": lambda p, v: _typed(p, v, isinstance(v, bool), "true or false"),
    "shape": _shape,
    "floats": _floats,
    "strs": lambda p, v: _typed(
        p, v, isinstance(v, list) and all(isinstance(s, str) for s in v), "a list of strings"
    ),
}


def _bound(path: str, check, v) -> None:
    op = check[0]
    if op == "choice" and v not in check[1]:
        raise ConfigError(f"{path} must be one of {', '.join(map(repr, check[1]))}, got {short(v)}")
    why = f" ({check[-1]})" if op != "choice" and isinstance(check[-1], str) else ""
    if op == ">" and not v > check[1]:
        raise ConfigError(f"{path} must be > {check[1]:g}{why}, got {short(v)}")
    if op == ">=" and not v >= check[1]:
        raise ConfigError(f"{path} must be >= {check[1]:g}{why}, got {short(v)}")
    if op == "range" and not (check[1] < v <= check[2]):
        raise ConfigError(f"{path} must be in ({check[1]:g}, {check[2]:g}], got {short(v)}")
    if op == "between" and not (check[1] <= v <= check[2]):
        raise ConfigError(
            f"{path} must be between {check[1]:,} and {check[2]:,}{why}, got {short(v)}"
        )


def check_value(path: str, kind: str, check, v):
    """Validate and normalise one value (an int-valued float of an ``int`` key becomes an int,
    a number of a ``float`` key a float); raise :class:`ConfigError` naming ``path``."""
    v = _KINDS[kind](path, v)
    if check is not None and not (kind == "float_or_auto" and v == "auto"):
        _bound(path, check, v)
    return v


def resolve_key(key: str, where: str) -> str:
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


# ---------------------------------------------------------------------------------------------
# Keys of another method, unknown keys


def _other_method(key: str, method: str) -> str | None:
    """The error for dynamics key ``key`` under ``method`` if it belongs to other methods."""
    owners = _METHODS.get(key)
    if owners is None or method in owners:
        return None
    # name the methods of its kind first: a flow, GD or optax config is pointed to GLRL only
    # for a GLRL-only key
    owners = tuple(m for m in owners if m in _neighbours(method)) or owners
    who = " and ".join(f"'{m}'" for m in owners)
    msg = f"dynamics.{key} belongs to method{'s' * (len(owners) > 1)} {who}"
    if key in HYPER:
        msg += " (an optimizer hyper-parameter)"
    meant = _MEANT.get((key, method))
    if meant:
        return f"{msg}; for method '{method}' did you mean {meant} ({_MEANT_WHY[meant]})?"
    return (
        f"{msg}; method '{method}' has no such setting: remove it, or set "
        f"dynamics.method = '{owners[0]}'"
    )


def _neighbours(method: str) -> tuple[str, ...]:
    """The methods whose keys a typo under ``method`` is compared with: GLRL's keys stand
    apart (a flow, GD or optax config is not offered a GLRL setting, nor the reverse)."""
    return ("glrl",) if method == "glrl" else tuple(m for m in METHODS if m != "glrl")


def _did_you_mean(sec: str, key: str, method: str = "flow") -> str:
    """`` Did you mean X?`` for an unknown key ``sec.key`` (an alias or a close spelling)."""
    if key in ALIASES and ALIASES[key] != f"{sec}.{key}":
        return f"; did you mean {ALIASES[key]} (what the alias `{key}` sets)?"
    keys = list(SCHEMA.get(sec, {}))
    if sec == "dynamics":
        near = _neighbours(method)
        keys = [k for k in keys if any(m in _METHODS.get(k, near) for m in near)]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.7)
    return f"; did you mean {sec}.{close[0]}?" if close else ""


def _close(key, options) -> list[str]:
    return difflib.get_close_matches(str(key), list(options), n=1, cutoff=0.7)


def _unused_section(sec: str, method: str) -> str | None:
    if isinstance(method, str) and sec in SECTIONS_UNUSED.get(method, ()):
        return (
            f"[{sec}] is not used by dynamics.method = '{method}' (GLRL grows its own factors; "
            f"dynamics.eps is its init scale): remove it"
        )
    return None


# ---------------------------------------------------------------------------------------------
# A whole config


def _header(raw: dict, errs: _Errors) -> str:
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a TOML table")
    kind = raw.get("kind", "sweep")
    if kind not in ("sweep", "reproduction"):
        with errs.check():
            raise ConfigError(f"kind must be 'sweep' or 'reproduction', got {short(kind)}")
        kind = "sweep"  # check the rest as a sweep, the usual kind
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        errs.items.append("name must be a non-empty string")
    if "description" in raw and not isinstance(raw["description"], str):
        errs.items.append("description must be a string")
    return kind


def _validate_reproduction(raw: dict, errs: _Errors) -> None:
    allowed = _HEADER | {"runner", "params"}
    for k in raw:
        if k not in allowed:
            errs.items.append(
                f"unknown key {short(k)} in a reproduction config "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
    runner = raw.get("runner")
    if not isinstance(runner, str) or runner.count(":") != 1 or not all(runner.split(":")):
        errs.items.append(f"runner must be 'package.module:function', got {short(runner)}")
    if not isinstance(raw.get("params", {}), dict):
        errs.items.append("params must be a table")


def _validate_section(k: str, v, method: str, errs: _Errors) -> None:
    """The keys of one schema section ``[k]``."""
    if not isinstance(v, dict):
        errs.items.append(f"{k} must be a table ([{k}])")
        return
    unused = _unused_section(k, method)
    if unused:
        errs.items.append(unused)
        return
    known = method in METHODS
    for kk, vv in v.items():
        if kk not in SCHEMA[k]:
            allowed = f"allowed: {', '.join(SCHEMA[k])}"
            if k == "dynamics" and known:
                mine = [x for x in SCHEMA[k] if method in _METHODS.get(x, (method,))]
                allowed = f"allowed for method '{method}': {', '.join(mine)}"
            errs.items.append(
                f"unknown key {k}.{short(kk, 40, quote=False)} "
                f"({allowed}){_did_you_mean(k, kk, method)}"
            )
            continue
        other = _other_method(kk, method) if k == "dynamics" and known else None
        if other:
            errs.items.append(other)
            continue
        t, _, check = spec(k, kk, method)
        with errs.check():
            check_value(f"{k}.{kk}", t, check, vv)


def _validate_record(raw: dict, errs: _Errors) -> None:
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
    if problem.get("normalization", "sum") != "sum" and ptype not in ("completion", "ratings"):
        errs.items.append(
            f"problem.normalization = {short(str(problem.get('normalization')))} applies to "
            f"problem.type 'completion' or 'ratings' only, got {ptype!r} (remove the key)"
        )
    if ptype == "ratings" and not problem.get("path"):
        errs.items.append("problem.path (a ratings file) is required by problem.type = 'ratings'")
    custom = record.get("custom", [])
    for c in custom if isinstance(custom, list) else []:
        if not isinstance(c, str) or c.count(":") != 1 or not all(c.split(":")):
            errs.items.append(f"record.custom: {short(c)} must be 'module:function'")


def validate(raw: dict) -> dict:
    """Check a raw config (as parsed from TOML); raise :class:`ConfigError` listing every
    problem found, each naming its key path (``ConfigError.errors``)."""
    errs = _Errors()
    kind = _header(raw, errs)
    if kind == "reproduction":
        _validate_reproduction(raw, errs)
        errs.raise_any()
        return raw
    dyn = raw.get("dynamics")
    method = dyn.get("method", "flow") if isinstance(dyn, dict) else "flow"
    for k, v in raw.items():
        if k in _HEADER:
            continue
        if k == "sweep":
            _validate_sweep(v, method, errs)
        elif k == QUICK:
            if not isinstance(v, dict) or not v:
                errs.items.append("quick must be a non-empty table of overrides ([quick])")
        elif k not in SCHEMA:
            errs.items.append(
                f"unknown section {short(k)} (allowed: name, description, kind, "
                f"{', '.join(SCHEMA)}, sweep, quick)"
                + (f"; did you mean [{close[0]}]?" if (close := _close(k, SCHEMA)) else "")
            )
        else:
            _validate_section(k, v, method, errs)
    _validate_record(raw, errs)
    if QUICK in raw and not errs.items and isinstance(raw[QUICK], dict) and raw[QUICK]:
        with errs.check("quick: "):
            validate(quick_variant(raw))
    errs.raise_any()
    return raw


# ---------------------------------------------------------------------------------------------
# [sweep]


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
    if "batch_size" in sw:  # the old spelling of chunk_size (runs per vmapped chunk)
        if "chunk_size" in sw:
            errs.items.append(
                "sweep.batch_size is the deprecated spelling of sweep.chunk_size: give one"
            )
        else:
            warn_renamed("[sweep] of a config", "batch_size", "chunk_size")
    for k in ("chunk_size", "batch_size"):
        if k in sw:
            with errs.check():
                check_value(f"sweep.{k}", "int", (">=", 1), sw[k])
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


def _axis_key(path: str, k: str, method: str, seen: dict[str, str]) -> str:
    """The dotted key of sweep axis ``k``, refused if it cannot be swept under ``method``."""
    full = resolve_key(k, path)
    if full == "dynamics.method":
        raise ConfigError(
            f"{path}: dynamics.method cannot be swept (flow and gd have "
            f"different time axes); run one sweep per method"
        )
    sec, kk = full.split(".")
    other = _other_method(kk, method) if sec == "dynamics" and method in METHODS else None
    other = other or _unused_section(sec, method)
    if other:
        raise ConfigError(f"{path}: {other}")
    if full in seen:
        raise ConfigError(f"{path}: {full} is swept twice (also in {seen[full]})")
    seen[full] = path
    return full


def _validate_group(where: str, group: dict, method: str, seen: dict[str, str]) -> None:
    """One grid axis or zipped group; raises the :class:`ConfigError` of all its keys."""
    if not group:
        raise ConfigError(f"{where} is empty")
    errs = _Errors()
    lengths = set()
    for k, vals in group.items():
        path = f"{where}.{k}"
        with errs.check():
            sec, kk = _axis_key(path, k, method, seen).split(".")
            if not isinstance(vals, list) or not vals:
                raise ConfigError(f"{path} must be a non-empty list, got {short(vals)}")
            t, _, check = spec(sec, kk, method)
            for i, v in enumerate(vals):
                check_value(f"{path}[{i}]", t, check, v)
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


def check_custom(name: str) -> Callable[..., Any]:
    """The function ``module:function`` of ``record.custom``, imported; a
    :class:`ConfigError` naming it if it cannot be imported or is not callable. Importing runs
    the module's code, as a Python file would (a config is code, see the sweeps guide)."""
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
