"""Options of the engines, defined once: default, validation, whether it is part of the compile
key, and the TOML key of a sweep config.

Each engine has one frozen option object:

* :class:`FlowOptions`: :func:`rankbias.gradient_flow` and :func:`rankbias.gradient_flow_batch`;
* :class:`DescentOptions`: :func:`rankbias.gradient_descent` and its batch;
* :class:`TrainOptions`: :func:`rankbias.train` and :func:`rankbias.train_batch`;
* :class:`GLRLOptions`: :func:`rankbias.glrl`.

The public functions keep plain keyword arguments and build the object, which validates itself
once (``ValueError`` naming the argument). A field marked ``static`` changes what is compiled
(a solver, a record count, a dtype: each engine's static configuration, e.g.
:class:`rankbias.dynamics.flow.settings.FlowConfig`, holds it or the shapes carry it); the
others are values the compiled code takes as arguments. The sweep schema (:mod:`rankbias.experiments.schema`) is generated from these
fields, so a default or an allowed key cannot differ between the library and a TOML file (a
test compares each public signature with its option object).

Check grammar (shared with the config schema): ``(">", lo)``, ``(">=", lo)``,
``("range", lo, hi)`` for ``lo < x <= hi``, ``("between", lo, hi[, why])`` for
``lo <= x <= hi``, ``("choice", names)``; ``None``: no bound.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import (
    check_bool,
    check_choice,
    check_float_dtype,
    check_int,
    check_positive,
)

#: Gradient-flow solvers (:func:`rankbias.gradient_flow`, ``solver=``).
SOLVERS = ("hybrid", "rkc", "rodas4", "krylov", "tsit5", "dopri5", "dopri8", "kvaerno5")
#: Where the gradient of a completion problem is computed (``backend=``).
BACKENDS = ("auto", "dense", "sparse")
#: How the ``n_save`` record points are spaced (``save_spacing=``): ``"log"`` (the default:
#: ``0`` then log-spaced) or ``"linear"`` (evenly spaced from ``0`` to the end).
SPACINGS = ("log", "linear")
#: Float dtypes a run may use (``dtype=``; ``None`` is float64).
DTYPES = ("float64", "float32")
#: The largest ``n_save``: a record holds ``min(m, n) + 2`` floats (and ``W`` with
#: ``save_matrices``); 10^5 records of a 1000 x 1000 run are 800 MB.
MAX_SAVE = 100_000
#: The most accepted steps of one flow (``max_steps``): diffrax counts steps in int32.
MAX_STEPS_CAP = 2**31 - 2
MAX_STEPS = 100_000_000
"""The most ``steps`` one gradient-descent or optimizer run may take (``10^8``).

A step costs at least ~10 us on a CPU even on tiny problems (17 us measured at 8 x 8), so
``10^8`` steps already take about half an hour; a larger count is a typo or a run that never
ends: the gradient flow is the tool for long horizons."""
DIVERGENCE_WHY = "a growth factor of the loss"
N_SAVE_WHY = "each record holds the loss, the gradient norm and all singular values"
STEPS_WHY = (
    "10^8 steps already take about half an hour on the smallest problem; a larger count is a "
    "typo or a run that never ends: use the gradient flow (method = 'flow') for long horizons"
)


@dataclass(frozen=True)
class Option:
    """How one option is checked, compiled and written in TOML.

    ``kind``: ``"float"``, ``"float_or_auto"`` (a number or ``"auto"``), ``"int"``, ``"str"``,
    ``"bool"``. ``check``: the bound (the grammar above) that a TOML value and, unless
    ``validate`` is given, a library argument must meet. ``validate``: the library's own check
    ``(value, name) -> value`` where it accepts more than one TOML value can hold (per-run
    sequences, dtype objects, optax transforms); a TOML value must then meet both, and a test
    checks that every value ``check`` accepts, ``validate`` accepts too. ``toml``: the key a
    sweep config uses (``""``: the field's name). ``static``: part of the
    compile key."""

    kind: str
    check: tuple | None = None
    static: bool = False
    toml: str = ""  # "": the field's own name
    validate: Callable[[Any, str], Any] | None = None


def option(
    default: Any,
    kind: str,
    check: tuple | None = None,
    *,
    static: bool = False,
    toml: str = "",
    validate: Callable[[Any, str], Any] | None = None,
) -> Any:
    """A dataclass field carrying its :class:`Option` (its default is the library's)."""
    o = Option(kind, check, static, toml, validate)
    return field(default=default, metadata={"option": o})


def options_of(cls) -> dict[str, tuple[Any, Option]]:
    """``{field name: (default, Option)}`` of an option class, in declaration order."""
    return {
        f.name: (f.default, f.metadata["option"])
        for f in dataclasses.fields(cls)
        if "option" in f.metadata
    }


def toml_keys(cls) -> dict[str, tuple[str, Any, tuple | None]]:
    """The sweep schema's ``[dynamics]`` entries of an option class: ``{key: (kind, default,
    check)}`` (the config's tuple format), for the fields that are TOML values."""
    out = {}
    for name, (default, o) in options_of(cls).items():
        out[o.toml or name] = (o.kind, default, o.check)
    return out


def check_value(name: str, value: Any, o: Option) -> Any:
    """``value`` validated against ``o`` (``None`` passes: the engine's own choice); raises
    ``ValueError`` naming ``name``, with the messages of :mod:`rankbias._validation`."""
    if value is None:
        return None
    if o.validate is not None:
        return o.validate(value, name)
    c = o.check
    why = f" ({c[-1]})" if c is not None and isinstance(c[-1], str) and c[0] != "choice" else ""
    if o.kind == "bool":
        return check_bool(value, name)
    if o.kind == "str":
        if c is not None and c[0] == "choice":
            return check_choice(value, name, c[1])
        return value
    if o.kind == "float_or_auto" and value == "auto":
        return value
    if o.kind == "int":
        lo = c[1] if c is not None and c[0] in (">=", "between") else None
        hi = c[2] if c is not None and c[0] == "between" else None
        v = check_int(value, name, minimum=lo)
        if hi is not None and v > hi:
            raise ValueError(f"`{name}` must be <= {hi}{why}, got {v}")
        return v
    if c is None:
        return float(value)
    op, lo = c[0], c[1]
    v = check_positive(value, name, allow_zero=not (op == ">" and lo == 0.0))
    if op == ">" and not v > lo:
        raise ValueError(f"`{name}` must be > {lo:g}{why}, got {v}")
    if op == ">=" and not v >= lo:
        raise ValueError(f"`{name}` must be >= {lo:g}{why}, got {v}")
    if op in ("range", "between"):
        hi = c[2]
        ok = (lo < v <= hi) if op == "range" else (lo <= v <= hi)
        if not ok:
            what = f"in ({lo}, {hi}]" if op == "range" else f"in [{lo}, {hi}]"
            raise ValueError(f"`{name}` must be {what}{why}, got {v}")
    return v


def check_steps(steps, name: str = "steps") -> int:
    """``steps`` as an int in ``[0, MAX_STEPS]`` (the library runs zero steps: the record of
    the initialization); raises ``ValueError`` naming ``name``."""
    steps = check_int(steps, name, minimum=0)
    if steps > MAX_STEPS:
        raise ValueError(
            f"`{name}` must be <= {MAX_STEPS:_} (MAX_STEPS: at >= ~10 us per step such a run "
            f"would not finish), got {steps:_}; run fewer steps, or chain runs from "
            f"the previous run's final_params"
        )
    return steps


def check_lr(lr, name: str = "lr"):
    """``lr``: a positive number or (batches) one per run, returned as given."""
    try:
        lrs = np.atleast_1d(np.asarray(lr, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a positive number (or one per run), got {lr!r}"
        ) from None
    for v in lrs:
        check_positive(v, name)
    return lr


def check_dtype_name(dtype, name: str = "dtype") -> str:
    """A float dtype (``"float64"``, ``jnp.float32``, ...) as its name; ``ValueError`` else."""
    return check_float_dtype(dtype, name).name


def check_save_points(save_at, name: str = "save_at"):
    """Explicit record points (times or steps, any order) as a tuple of floats, or ``None``;
    their range is checked by the engine against ``t_max`` or ``steps``."""
    if save_at is None:
        return None
    try:
        a = np.asarray(save_at, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a list of record times or steps, got {save_at!r}"
        ) from None
    if a.size > MAX_SAVE:
        raise ValueError(f"`{name}` holds {a.size} points; at most {MAX_SAVE}")
    return tuple(float(x) for x in a)


def check_seeds(seed, name: str = "seed"):
    """A non-negative integer seed, or (batches) one per run, returned as given."""
    for s in np.atleast_1d(np.asarray(seed)).ravel():
        check_int(s, name, minimum=0)
    return seed


class _Checked:
    """Validates every field once, at construction (frozen: the object is its own record)."""

    def __post_init__(self) -> None:
        for name, (_, o) in options_of(type(self)).items():
            object.__setattr__(self, name, check_value(name, getattr(self, name), o))

    def replace(self, **changes: Any):
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)  # pyright: ignore[reportArgumentType]


@dataclass(frozen=True)
class FlowOptions(_Checked):
    """Settings of one gradient flow (or a batch of them). ``None``: the dtype's default
    (:func:`rankbias.dynamics.flow_defaults`), for ``atol``: scaled to the initialization."""

    t_max: float = option(1e4, "float", (">", 0.0))
    rtol: float | None = option(None, "float", (">", 0.0))
    atol: float | None = option(None, "float", (">", 0.0))
    solver: str = option("rkc", "str", ("choice", SOLVERS), static=True)
    gtol: float | str | None = option("auto", "float_or_auto", (">", 0.0))
    curvature_tol: float | None = option(None, "float", (">", 0.0))
    certificate_tol: float | None = option(None, "float", (">", 0.0))
    n_save: int = option(200, "int", ("between", 2, MAX_SAVE, N_SAVE_WHY), static=True)
    t_min: float | None = option(None, "float", (">", 0.0))
    save_spacing: str = option("log", "str", ("choice", SPACINGS))
    save_at: tuple | None = option(None, "floats", validate=check_save_points)
    # a step budget the compiled solve takes as a value (one program for every budget)
    max_steps: int = option(1_000_000, "int", ("between", 1, MAX_STEPS_CAP))
    dtype: str | None = option(
        None, "str", ("choice", DTYPES), static=True, validate=check_dtype_name
    )
    backend: str = option("auto", "str", ("choice", BACKENDS), static=True)

    def __post_init__(self) -> None:
        if isinstance(self.curvature_tol, float | int) and self.curvature_tol == math.inf:
            # inf: no Lanczos test; every other value must be a positive finite number
            object.__setattr__(self, "curvature_tol", None)
            super().__post_init__()
            object.__setattr__(self, "curvature_tol", math.inf)
        else:
            super().__post_init__()
        if self.rtol is not None and self.rtol >= 1:
            raise ValueError(f"`rtol` must be < 1 (a relative tolerance), got {self.rtol}")
        if self.t_min is not None and self.t_min >= self.t_max:
            raise ValueError(f"`t_min` must be < t_max = {self.t_max:g}, got {self.t_min:g}")


@dataclass(frozen=True)
class DescentOptions(_Checked):
    """Settings of gradient descent ``x_{k+1} = x_k - lr * s(k) * grad L(x_k)``.

    ``lr`` and ``steps`` are required arguments of :func:`rankbias.gradient_descent`; their
    defaults here are a sweep config's (``dynamics.lr``, ``dynamics.steps``)."""

    lr: float = option(0.01, "float", (">", 0.0), validate=check_lr)
    # A sweep run takes at least one step (zero steps record nothing to compare); the library
    # also runs zero steps (the record of the initialization).
    steps: int = option(1000, "int", ("between", 1, MAX_STEPS, STEPS_WHY), validate=check_steps)
    n_save: int = option(200, "int", ("between", 2, MAX_SAVE, N_SAVE_WHY), static=True)
    save_spacing: str = option("log", "str", ("choice", SPACINGS))
    save_at: tuple | None = option(None, "floats", validate=check_save_points)
    divergence_factor: float = option(1e8, "float", (">", 1.0, DIVERGENCE_WHY))
    dtype: str | None = option(
        None, "str", ("choice", DTYPES), static=True, validate=check_dtype_name
    )
    backend: str = option("auto", "str", ("choice", BACKENDS), static=True)


@dataclass(frozen=True)
class TrainOptions(_Checked):
    """Settings of an optax optimizer run (:func:`rankbias.train`); the optimizer's
    hyper-parameters are keys of their own (:data:`rankbias.optimizers.OPTIMIZERS`).

    The defaults of ``optimizer``, ``lr`` and ``steps`` are a sweep config's: ``train``
    requires ``optimizer`` and ``steps``, and its ``lr=None`` means the optimizer factory's
    own step size (a config always gives a number). The allowed optimizer names are the
    config schema's (:mod:`rankbias.experiments.schema`): this module imports no optimizer."""

    optimizer: str = option("group_rmsprop", "str", static=True)
    lr: float | None = option(0.01, "float", (">", 0.0), validate=check_lr)
    steps: int = option(1000, "int", ("between", 1, MAX_STEPS, STEPS_WHY), validate=check_steps)
    batch_size: int | None = option(None, "int", (">=", 1), static=True)
    seed: int = option(0, "int", (">=", 0), toml="batch_seed", validate=check_seeds)
    n_save: int = option(200, "int", ("between", 2, MAX_SAVE, N_SAVE_WHY), static=True)
    save_spacing: str = option("log", "str", ("choice", SPACINGS))
    save_at: tuple | None = option(None, "floats", validate=check_save_points)
    divergence_factor: float = option(1e8, "float", (">", 1.0, DIVERGENCE_WHY))
    dtype: str | None = option(
        None, "str", ("choice", DTYPES), static=True, validate=check_dtype_name
    )
    backend: str = option("auto", "str", ("choice", BACKENDS), static=True)


@dataclass(frozen=True)
class GLRLOptions(_Checked):
    """Settings of Greedy Low-Rank Learning (:func:`rankbias.glrl`). ``None``: GLRL's own
    choice, which depends on the problem's size (dense up to 200 per side)."""

    eps: float = option(1e-30, "float", ("range", 0.0, 1.0))
    tol: float = option(1e-9, "float", (">", 0.0))
    psd: bool = option(True, "bool")  # PSD GLRL (W = U U^T); False: W = U V^T
    max_rank: int | None = option(None, "int", (">=", 0))
    phase_gtol: float | None = option(None, "float", (">", 0.0))
    max_phase_time: float | None = option(None, "float", (">", 0.0))
    n_save: int | None = option(None, "int", ("between", 2, MAX_SAVE), static=True)
    rtol: float | None = option(None, "float", (">", 0.0))
    atol: float = option(1e-14, "float", (">", 0.0))
    solver: str = option("auto", "str", ("choice", ("auto", *SOLVERS)), static=True)
    record_matrices: bool | None = option(None, "bool", static=True)
    seed: int = option(0, "int", (">=", 0))
    polish: bool = option(True, "bool")


__all__ = [
    "BACKENDS",
    "DTYPES",
    "MAX_SAVE",
    "MAX_STEPS",
    "MAX_STEPS_CAP",
    "SOLVERS",
    "SPACINGS",
    "DescentOptions",
    "FlowOptions",
    "GLRLOptions",
    "Option",
    "TrainOptions",
    "option",
    "options_of",
    "toml_keys",
]
