"""Pieces shared by gradient descent and gradient flow: validation, recording, batching."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._quiet import quietly
from ..models import Model
from ..options import MAX_SAVE
from ..problems.base import Problem
from ..trajectory import Trajectory
from ._sparse import (
    SparseCompletion,
    backend_data,
    record,  # noqa: F401  (re-exported: one recorder for both backends)
)


class PrecisionWarning(UserWarning):
    """The requested dtype cannot represent the initialization faithfully."""


@contextlib.contextmanager
def deliberate_atol():
    """For internal flows whose ``atol`` is below the factors' rounding on purpose (GLRL's new
    escape direction starts far below the learned factors): no :class:`PrecisionWarning`."""
    with quietly(PrecisionWarning):
        yield


class ResolutionWarning(UserWarning):
    """Float resolution cannot resolve the directions that escape after the first one
    (depth >= 3 from tiny factors; see ``rankbias.dynamics.flow.precision.warn_resolution``)."""


@contextlib.contextmanager
def no_host_callbacks():
    """Trace diffrax/equinox code with ``equinox.error_if`` checks compiled as NaN outputs
    instead of host callbacks (``EQX_ON_ERROR=nan`` for this trace only).

    JAX does not write executables that contain host callbacks to the persistent
    compilation cache ("uses host callbacks"), so with equinox's default (``raise``, a
    ``pure_callback``) every new process compiled the flow again (measured: 49 s first call,
    49 s in a second process on a loaded machine). Our inputs are validated at the boundary
    and every solve runs with ``throw=False``; a check that would fire yields NaNs, which the
    drivers report as a ``FloatingPointError``. A user's ``EQX_ON_ERROR`` other than
    ``raise`` is kept.
    """
    try:
        from equinox import _errors
    except ImportError:  # pragma: no cover - a future equinox
        yield
        return
    old = getattr(_errors, "EQX_ON_ERROR", None)
    if old != "raise":
        yield
        return
    # equinox's switch is module state that _errors does not re-export
    _errors.EQX_ON_ERROR = "nan"  # pyright: ignore[reportPrivateImportUsage]
    try:
        yield
    finally:
        _errors.EQX_ON_ERROR = old  # pyright: ignore[reportPrivateImportUsage]


def resolve_dtype(dtype):
    if dtype is None:
        return jnp.float64
    dt = jnp.dtype(dtype)
    if dt not in (jnp.dtype(jnp.float64), jnp.dtype(jnp.float32)):
        raise ValueError(f"`dtype` must be float64 or float32, got {dt}")
    return dt


def check_problem_model(problem, model) -> None:
    """Validate that ``problem`` and ``model`` are rankbias objects of the same shape."""
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    if not isinstance(model, Model):
        raise ValueError(f"`model` must be a rankbias Model, got {type(model).__name__}")
    if tuple(problem.shape) != tuple(model.shape):
        raise ValueError(f"`model` has shape {model.shape} but `problem` has shape {problem.shape}")


def check_params(model, params, dtype, name="params"):
    """Validate one parameter tuple for ``model`` and cast it to ``dtype`` (a resolved dtype)."""
    if not isinstance(params, (tuple, list, np.ndarray, jax.Array)):
        model.check_params(params, name)  # raises, naming `name` (None, a number, ...)
    for j, p in enumerate((params,) if isinstance(params, (np.ndarray, jax.Array)) else params):
        if np.iscomplexobj(p):
            raise ValueError(
                f"`{name}[{j}]` must be real, got a complex array (dtype {np.asarray(p).dtype})"
            )
    params = model.check_params(params, name)
    if dtype == jnp.float32:
        warn_float32(params)
    return tuple(p.astype(dtype) for p in params)


def check_run(problem, model, params, dtype, name="params"):
    """Validate a (problem, model, params) triple at the boundary; cast to ``dtype``."""
    check_problem_model(problem, model)
    dtype = resolve_dtype(dtype)
    return problem.astype(dtype), check_params(model, params, dtype, name), dtype


def check_initial_loss(problem, model, params, name: str = "params"):
    """Raise ``ValueError`` at once when ``f(W(0))`` or ``grad f(W(0))`` is not finite (a
    NaN start would otherwise cost a full run of rejected steps); returns ``(W0, f, G)``."""
    W0 = model.product(tuple(jnp.asarray(p) for p in params))
    f, G = problem.loss_and_grad(W0)
    if not bool(jnp.isfinite(f)):
        raise ValueError(
            f"the loss at the initial point, f(W(0)) = {float(f)}, is not finite; "
            f"check the problem (a CustomLoss's f) and `{name}`"
        )
    if not bool(jnp.all(jnp.isfinite(G))):
        raise ValueError(
            f"the gradient at the initial point, grad f(W(0)), is not finite; "
            f"check the problem (a CustomLoss's f) and `{name}`"
        )
    return W0, f, G


def warn_float32(params) -> None:
    f32 = np.finfo(np.float32)
    for j, p in enumerate(params):
        a = np.abs(np.asarray(p, dtype=np.float64))
        nz = a[a > 0]
        if nz.size == 0:
            continue
        if np.any(nz < f32.tiny):
            warnings.warn(
                f"float32: entries of factor {j} (min |x| = {nz.min():.3g}) underflow "
                f"below float32's smallest normal {f32.tiny:.3g}; use float64",
                PrecisionWarning,
                stacklevel=4,
            )
            return
    # The end-to-end product below float32's epsilon relative to O(1) updates: the first
    # gradient steps round away the initialization's information.
    prod = 1.0
    for p in params:
        prod *= float(np.max(np.abs(np.asarray(p, dtype=np.float64))))
    if prod < f32.eps:
        warnings.warn(
            f"float32: the initial product has scale ~{prod:.3g} < float32 epsilon "
            f"{f32.eps:.3g}; its information is lost next to O(1) updates; use float64",
            PrecisionWarning,
            stacklevel=4,
        )


def build_trajectory(rec: dict, times, final_params, model, info: dict, steps=None) -> Trajectory:
    final_params = tuple(np.asarray(p, dtype=np.float64) for p in final_params)
    final_matrix = np.asarray(model.product(tuple(jnp.asarray(p) for p in final_params)))
    return Trajectory(
        times=np.asarray(times, dtype=np.float64),
        loss=np.asarray(rec["loss"], dtype=np.float64),
        grad_norm=np.asarray(rec["grad_norm"], dtype=np.float64),
        singular_values=np.asarray(rec["sv"], dtype=np.float64),
        final_params=final_params,
        final_matrix=final_matrix,
        steps=None if steps is None else np.asarray(steps, dtype=np.int64),
        matrices=None if "W" not in rec else np.asarray(rec["W"], dtype=np.float64),
        info=info,
        metrics={
            k: np.asarray(v, dtype=np.float64)
            for k, v in rec.items()
            if k not in ("loss", "grad_norm", "sv", "W", "time")
        },
    )


def stack_trees(trees: Sequence):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def index_tree(tree, i):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def batch_runs(problem, p_axis, params, B: int) -> Iterator[tuple]:
    """The runs of a batch of :func:`prepare_batch`, one by one: ``(problem, params, name)``,
    with ``name = "params_list[i]"`` for the boundary checks' messages."""
    for i in range(B):
        run_problem = problem if p_axis is None else index_tree(problem, i)
        yield run_problem, index_tree(params, i), f"params_list[{i}]"


def batch_data(problem, p_axis, model, backend: str, B: int):
    """:func:`backend_data` for a batch of :func:`prepare_batch`: ``problem`` shared
    (``p_axis`` None) or stacked along axis 0 (``B`` runs); sparse tables are stacked the
    same way."""
    if p_axis is None:
        return backend_data(problem, model, backend)
    if backend != "sparse":
        return problem
    return SparseCompletion.from_problems([index_tree(problem, i) for i in range(B)], model)


def prepare_batch(problems, model, params_list, dtype):
    """Validate a batch; returns (stacked problem or single problem, problem axis, stacked params)."""
    params_list = list(params_list)
    if not params_list:
        raise ValueError("`params_list` is empty")
    if isinstance(problems, Problem):
        plist = [problems]
    else:
        plist = list(problems)
        if len(plist) not in (1, len(params_list)):
            raise ValueError(
                f"`problems` must be one problem or {len(params_list)} problems "
                f"(one per run), got {len(plist)}"
            )
    for q in plist:
        check_problem_model(q, model)
    dtype = resolve_dtype(dtype)
    checked = [
        check_params(model, p, dtype, name=f"params_list[{i}]") for i, p in enumerate(params_list)
    ]
    plist = [q.astype(dtype) for q in plist]
    if len(plist) == 1:
        return plist[0], None, stack_trees(checked), dtype, len(checked)
    structs = {jax.tree_util.tree_structure(q) for q in plist}
    shapes = {tuple(x.shape for x in jax.tree_util.tree_leaves(q)) for q in plist}
    if len(structs) != 1 or len(shapes) != 1:
        raise ValueError(
            "`problems` must share type and array shapes to be batched "
            "(e.g. the same number of observed entries); run them separately"
        )
    return stack_trees(plist), 0, stack_trees(checked), dtype, len(checked)


def batch_apply(fn, in_axes, args, cpu_vmap: bool = False):
    """Apply ``fn`` over a batch as one compiled computation.

    Accelerators, and CPU with ``cpu_vmap=True``: ``vmap`` (batched kernels). Otherwise on CPU:
    ``lax.map`` (a compiled loop over the runs). For adaptive flows vmap costs on CPU: a
    vmapped ``while_loop`` steps every run until the slowest is done, and the Tsit5/RKC switch
    (``lax.cond``) becomes a ``select`` that evaluates both branches. For GD (fixed steps, all
    runs in lockstep) vmap wins on CPU: at 300 x 300, depth 3, batch 16, 90 ms per step
    against 152 ms with ``lax.map`` (66% against 37% of the matmul rate; equal at 100 x 100).
    """
    if cpu_vmap or jax.default_backend() != "cpu":
        return jax.vmap(fn, in_axes=in_axes)(*args)
    mapped = tuple(a for a, ax in zip(args, in_axes, strict=True) if ax is not None)
    fixed = [a if ax is None else None for a, ax in zip(args, in_axes, strict=True)]

    def one(xs):
        it = iter(xs)
        return fn(
            *[next(it) if ax is not None else f for f, ax in zip(fixed, in_axes, strict=True)]
        )

    return jax.lax.map(one, mapped)


def check_record_points(save_at, end, *, steps: bool) -> np.ndarray:
    """``save_at`` (record points in any order) as a sorted vector in ``[0, end]``: int64
    step indices up to ``end = steps`` (gradient descent, optimizers) or float64 times up to
    ``end = t_max`` (gradient flow); at most ``MAX_SAVE`` of them. Raises ``ValueError`` for
    a non-numeric, non-finite, out-of-range or (steps) non-integer point."""
    what, noun = ("step indices", "steps") if steps else ("times", "times")
    try:
        a = np.asarray(save_at, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"`save_at` must be an array of {what}, got {save_at!r}") from None
    if a.size > MAX_SAVE:
        raise ValueError(f"`save_at` holds {a.size} {noun}; at most {MAX_SAVE}")
    if steps and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
        raise ValueError(
            "`save_at` must hold integer step indices (gradient descent records after whole steps)"
        )
    ok = np.isfinite(a) & (a >= 0) & (a <= end)
    if not ok.all():
        bound = f"steps={end}" if steps else f"t_max={end:g}"
        raise ValueError(f"`save_at` {noun} must lie in [0, {bound}], got {a[~ok][0]:g}")
    a = np.sort(a)  # a set of record points: any order
    return a.astype(np.int64) if steps else a
