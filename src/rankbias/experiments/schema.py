"""The sweep config schema: every key, its type, default and allowed values, and who uses it.

``[dynamics]`` is generated from the engines' option objects (:mod:`rankbias.options`): each
``dynamics.method`` takes the TOML keys of one option class, with that class's defaults and
checks, so a default or an allowed key cannot differ between the library and a config:

* ``flow``: :class:`~rankbias.options.FlowOptions` (:func:`rankbias.gradient_flow`);
* ``gd``: :class:`~rankbias.options.DescentOptions` (:func:`rankbias.gradient_descent`);
* ``optax``: :class:`~rankbias.options.TrainOptions` (:func:`rankbias.train`) and one key per
  optimizer hyper-parameter (:data:`rankbias.optimizers.OPTIMIZERS`);
* ``glrl``: :class:`~rankbias.options.GLRLOptions` (:func:`rankbias.glrl`).

A key shared by several methods has one meaning per method (:func:`dynamics_spec`);
:data:`SCHEMA` holds, for each key, the definition of the first method that takes it (in the
order above). Entries are ``(kind, default, check)`` in the grammar of :mod:`rankbias.options`
(``None`` default: unset, the library's own choice).
"""

from __future__ import annotations

import json

from ..optimizers import OPTIMIZERS
from ..options import DescentOptions, FlowOptions, GLRLOptions, TrainOptions, toml_keys

__all__ = [
    "SCHEMA",
    "DYNAMICS",
    "METHODS",
    "ALIASES",
    "METRICS",
    "DEFAULT_BATCH",
    "dynamics_spec",
    "spec",
    "schema_table",
]

_F = "float"
_FA = "float_or_auto"  # a number, or "auto" (gtol: the dtype's default)
_I = "int"
_S = "str"
_B = "bool"

#: Optimizer hyper-parameters, each a ``[dynamics]`` key of method ``optax`` (None: its
#: optimizer's default).
HYPER = tuple(sorted({h for o in OPTIMIZERS.values() for h in o.defaults}))


def _optax_keys() -> dict[str, tuple]:
    keys = toml_keys(TrainOptions)
    kind, default, _ = keys["optimizer"]
    # the options module names no optimizer (it imports nothing heavy): the choice is here
    keys["optimizer"] = (kind, default, ("choice", tuple(OPTIMIZERS)))
    keys.update({h: (_F, None, (">=", 0.0)) for h in HYPER})
    return keys


#: ``dynamics.method`` -> its ``[dynamics]`` keys ``{key: (kind, default, check)}``.
DYNAMICS: dict[str, dict[str, tuple]] = {
    "flow": toml_keys(FlowOptions),
    "gd": toml_keys(DescentOptions),
    "optax": _optax_keys(),
    "glrl": toml_keys(GLRLOptions),
}
METHODS = tuple(DYNAMICS)
_METHOD_KEY = (_S, "flow", ("choice", METHODS))

# The order in which the keys are listed (messages, the guide's table); a key added to an
# option class and not named here comes after these, in its class's order.
_ORDER = (
    "method", "dtype", "t_max", "t_min", "rtol", "atol", "solver", "gtol", "curvature_tol",
    "certificate_tol", "max_steps", "backend", "lr", "steps", "divergence_factor", "n_save",
    "optimizer", "batch_size", "batch_seed", *HYPER,
)  # fmt: skip


def _union() -> dict[str, tuple]:
    seen: dict[str, tuple] = {"method": _METHOD_KEY}
    for keys in DYNAMICS.values():
        for k, v in keys.items():
            seen.setdefault(k, v)
    order = [k for k in _ORDER if k in seen] + [k for k in seen if k not in _ORDER]
    return {k: seen[k] for k in order}


SCHEMA: dict[str, dict[str, tuple]] = {
    "problem": {
        "type": (
            _S,
            "completion",
            ("choice", ("completion", "sensing", "estimation", "ratings", "regression")),
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
        # completion and ratings: f = c/2 sum_Omega (W_ij - M_ij)^2 with c = 1 ("sum") or
        # c = 1/|Omega| ("mean", the reference code's scale at half its lr); left out of the
        # run key at "sum", so that the runs stored before it keep their keys
        "normalization": (_S, "sum", ("choice", ("sum", "mean"))),
    },
    "model": {
        "type": (_S, "deep", ("choice", ("deep", "symmetric", "diagonal"))),
        "depth": (_I, 2, (">=", 1)),
        "width": (_I, None, (">=", 1)),
        # type = "diagonal" (rb.DiagonalNetwork): beta = u_1 * ... * u_L or u^L - v^L
        "form": (_S, "product", ("choice", ("product", "two_branch"))),
    },
    "init": {
        "name": (
            _S,
            "gaussian",
            (
                "choice",
                (
                    "gaussian",
                    "identity",
                    "perturbed_identity",
                    "balanced",
                    "orthogonal",
                    # model.type = "diagonal" (its scale is per weight)
                    "uniform",
                    "zhao",
                ),
            ),
        ),
        "scale": (_F, 1e-3, (">", 0.0)),
        "per_factor": (_B, False, None),
        "beta": (_F, None, (">=", 0.0)),
        "seed": (_I, 0, (">=", 0)),
    },
    # the library's defaults (a test compares them with each public signature)
    "dynamics": _union(),
    "record": {
        "metrics": (
            "strs",
            ["loss", "grad_norm", "singular_values", "effective_rank", "distance_to_truth"],
            None,
        ),
        "custom": ("strs", [], None),
    },
}

#: ``[dynamics]`` key -> the methods that take it (``method`` itself: every method).
_METHODS: dict[str, tuple[str, ...]] = {
    k: tuple(m for m in METHODS if k in DYNAMICS[m]) for k in SCHEMA["dynamics"] if k != "method"
}

#: Sections a method builds its run from: GLRL grows its own factors (``dynamics.eps`` is its
#: init scale), so ``[model]`` and ``[init]`` mean nothing to it.
SECTIONS_UNUSED = {"glrl": ("model", "init")}


def dynamics_spec(method: str) -> dict[str, tuple]:
    """The ``[dynamics]`` keys of ``method`` (``method`` included): ``{key: (kind, default,
    check)}``; an unknown method: the whole table."""
    keys = DYNAMICS.get(method) if isinstance(method, str) else None
    return {"method": _METHOD_KEY, **keys} if keys is not None else SCHEMA["dynamics"]


def spec(sec: str, key: str, method: str = "flow") -> tuple:
    """``(kind, default, check)`` of ``sec.key`` as ``method`` reads it."""
    if sec == "dynamics":
        return dynamics_spec(method).get(key, SCHEMA[sec][key])
    return SCHEMA[sec][key]


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
SHORT = {v: k for k, v in reversed(list(ALIASES.items()))}
SHORT.update({"init.scale": "alpha", "init.seed": "seed", "problem.seed": "problem"})

# Runs per vmapped chunk when [sweep] does not say. A chunk's runs are saved when the chunk
# ends, so this is also the checkpoint granularity. Measured (benchmarks/RESULTS.md, section
# 6, a loaded 2-core CPU): 8 runs of a 10x10 depth-3 flow took 37 s as one chunk (25 s of it
# compiling) against 45 s one by one; a chunk of 64 would hold ~2 minutes of work unsaved.
DEFAULT_BATCH = 8

# ---------------------------------------------------------------------------------------------
# The schema as the sweeps guide shows it

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


def _default_text(d) -> str:
    return "unset" if d is None else f"`{json.dumps(d)}`"


def _row(sec: str, k: str, t: str, d, chk) -> str:
    """One table row; a dynamics key another method reads differently gets that method's
    default and allowed values too (``glrl: ...``)."""
    default, allowed, used = _default_text(d), _check_text(chk), ""
    if sec == "dynamics":
        owners = _METHODS.get(k, METHODS)
        used = "all" if owners == METHODS else ", ".join(owners)
        for m in owners if k != "method" else ():
            _, dm, cm = DYNAMICS[m][k]
            if m != owners[0]:
                default += f" ({m}: {_default_text(dm)})" if dm != d else ""
                allowed += f" ({m}: {_check_text(cm)})" if cm != chk else ""
    return f"| `{sec}.{k}` | {_TYPE_NAMES[t]} | {default} | {allowed} | {used} |"


def schema_table() -> str:
    """The config schema (:data:`SCHEMA`) as a markdown table: key, type, default, allowed
    values. The sweeps guide quotes it; a test checks that the two agree."""
    rows = ["| key | type | default | allowed | methods |", "|---|---|---|---|---|"]
    for sec, keys in SCHEMA.items():
        for k, (t, d, chk) in keys.items():
            rows.append(_row(sec, k, t, d, chk))
    return "\n".join(rows)
