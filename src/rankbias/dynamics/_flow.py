r"""Gradient flow ``d params/dt = -grad L(params)`` by adaptive ODE integration (diffrax).

``L(params) = f(W_L ... W_1)`` (deep) or ``1/2 f(U U^T)`` (symmetric). The state is the flat
parameter vector. Solvers: ``"rkc"`` (default; stabilised explicit, for the stiff plateaus
of small initializations, see :mod:`rankbias.dynamics._rkc`), ``"hybrid"`` (RKC plus dense
Rodas4 steps, :mod:`rankbias.dynamics._rosenbrock`), ``"krylov"`` (RKC plus matrix-free
Rodas4 steps, :mod:`rankbias.dynamics._krylov`), ``"rodas4"``, and diffrax's ``"tsit5"``,
``"dopri5"``, ``"dopri8"`` (explicit) and ``"kvaerno5"`` (implicit, dense Newton) for
reference and comparison.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._aot import aot_jit
from .._lanczos import lanczos_extremes
from .._validation import check_bool, check_choice, check_int, check_positive
from ..status import RunStatus
from ._common import (
    PrecisionWarning,
    ResolutionWarning,
    batch_apply,
    batch_data,
    build_trajectory,
    check_initial_loss,
    check_run,
    index_tree,
    no_host_callbacks,
    prepare_batch,
    record,
    resolve_dtype,
)
from ._krylov import dominant_eigenpairs
from ._rkc import RKC
from ._sparse import (
    backend_data,
    choose_backend,
    loss_and_grad,
    loss_and_grad_norm,
    optimality_gap,
)

__all__ = ["gradient_flow", "gradient_flow_batch", "SOLVERS", "save_times"]

SOLVERS = ("hybrid", "rkc", "rodas4", "krylov", "tsit5", "dopri5", "dopri8", "kvaerno5")

#: ``"hybrid"`` takes Rodas4 steps (dense Jacobian: ``P`` JVPs and an ``O(P^3)`` LU) only
#: for at most this many parameters; above it, it is ``"rkc"``.
DENSE_LIMIT = 3000
#: ``"hybrid"`` switches from an RKC step to a Rodas4 step above this many stages.
DENSE_STAGES = 100
#: ``"krylov"``'s Rodas4 steps solve by GMRES, preconditioned by the exact inverse on this
#: many dominant eigenvectors of the Jacobian (``min(KRYLOV_RANK, P)``).
KRYLOV_RANK = 1024


@dataclass(frozen=True)
class _FlowConfig:
    """The static part of a flow: with the shapes and dtypes, the compilation key."""

    solver: str
    steady_stop: bool  # gtol is not None: the steady-state event is compiled in
    save_matrices: bool


class _Tols(NamedTuple):
    """The traced settings of a flow (scalar arrays of the state's dtype; ``max_steps`` an
    int): runs that differ only in these reuse one compiled solve."""

    rtol: jax.Array
    atol: jax.Array
    gtol: jax.Array
    curvature_tol: jax.Array
    certificate_tol: jax.Array
    max_steps: jax.Array


def _tols(dtype, rtol, atol, gtol, curvature_tol, certificate_tol, max_steps) -> _Tols:
    def f(x):
        return jnp.asarray(0.0 if x is None else x, dtype)

    return _Tols(
        f(rtol),
        f(atol),
        f(gtol),
        f(curvature_tol),
        f(certificate_tol),
        jnp.asarray(max_steps, jnp.int32),
    )


#: The static step bound of every ``diffeqsolve`` (the user's ``max_steps`` is a traced
#: budget, enforced by :class:`_Segmented`); no buffer is sized by it.
MAX_STEPS_CAP = 2**31 - 2


def _make_solver(name: str, size: int | None = None):
    """The diffrax solver for ``name``; ``size`` (the state's length) decides whether
    ``"hybrid"`` may take dense Rodas4 steps."""
    if name == "hybrid":
        dense = size is not None and size <= DENSE_LIMIT
        return RKC(dense_stages=DENSE_STAGES if dense else None)
    if name == "krylov":
        return RKC(krylov_stages=DENSE_STAGES, krylov_rank=KRYLOV_RANK)
    if name == "rodas4":
        return RKC(tsit5_limit=-1.0, dense_stages=0)
    if name == "rkc":
        return RKC()
    if name == "tsit5":
        return diffrax.Tsit5()
    if name == "dopri5":
        return diffrax.Dopri5()
    if name == "dopri8":
        return diffrax.Dopri8()
    return diffrax.Kvaerno5()


def save_times(t_max: float, n_save: int, t_min: float | None = None, extra=None) -> np.ndarray:
    """``0``, then ``n_save - 1`` log-spaced times from ``t_min`` to ``t_max``, plus ``extra``."""
    t_min = min(1e-2, t_max / 1e4) if t_min is None else t_min
    grid = np.concatenate([[0.0], np.geomspace(t_min, t_max, max(n_save - 1, 1))])
    if extra is not None:
        extra = np.asarray(extra, dtype=np.float64).ravel()
        if np.any(~np.isfinite(extra)) or np.any(extra < 0) or np.any(extra > t_max):
            raise ValueError(f"`save_at` times must lie in [0, t_max={t_max:g}]")
        grid = np.concatenate([grid, extra])
    return np.unique(grid)


def _vector_field(model):
    def vf(t, y, problem):
        _, g, _ = loss_and_grad(problem, model, model.unflatten(y))
        return -model.flatten(g)

    return vf


def _steady_event(model):
    """Converged: a small parameter gradient at a point certified not to be a saddle.

    The gradient is also tiny at the saddles the flow visits (the origin, and between the
    greedy phases), and at depth >= 3 these are high-order saddles with ~zero curvature.
    Where the model class has no rank constraint, a minimiser of ``L`` has ``grad f(W) = 0``
    (PSD-KKT for ``U U^T``): we require that residual to be ``<= certificate_tol`` relative
    to ``||grad f(W(0))||``. Rank-constrained widths fall back to ``f(W) < f(W(0))`` and a
    Lanczos test ``lambda_min(Hessian) >= -curvature_tol``, which cannot see high-order saddles
    (the loss test first: the 24 Hessian products run only where both cheap tests pass;
    ``curvature_tol = inf`` skips them).
    """
    vf = _vector_field(model)
    # Whether the class has a certificate is static (None for a rank constraint).
    has_gap = jax.eval_shape(lambda: model.optimality_gap(jnp.zeros(model.shape))) is not None

    def cond_fn(t, y, args, **kwargs):
        problem, loss0, gnorm0, tols = args[:4]
        params = model.unflatten(y)
        f, g, aux = loss_and_grad(problem, model, params)
        small = jnp.sqrt(sum(jnp.sum(x * x) for x in g)) <= tols.gtol

        if has_gap:

            def certified():
                gap = optimality_gap(problem, model, aux)
                return gap <= tols.certificate_tol * jnp.maximum(gnorm0, 1e-300)

            return jax.lax.cond(small, certified, lambda: jnp.array(False))

        def curvature():
            hvp = lambda v: -jax.jvp(lambda z: vf(t, z, problem), (y,), (v,))[1]
            v0 = jnp.cos(jnp.arange(y.size, dtype=y.dtype) * 0.7548776662 + 0.1)
            lo, _ = lanczos_extremes(hvp, v0, 24)
            return lo >= -tols.curvature_tol

        return jax.lax.cond(
            small & (f < loss0 * (1 - 1e-6)),
            lambda: jax.lax.cond(jnp.isinf(tols.curvature_tol), lambda: jnp.array(True), curvature),
            lambda: jnp.array(False),
        )

    return diffrax.Event(cond_fn)


_OWN = ("hybrid", "rkc", "rodas4", "krylov")  # solvers built on RKC, which count their evaluations

#: Proposed steps shorter than this fraction of the time already integrated (16 in a row) end
#: the solve segment, and the flow goes on from a clock reset to 0. Float64 time has spacing
#: ``~2.2e-16 t``: an escape lasting O(1) time units at t ~ 1e16 (depth 4 from alpha 1e-32)
#: cannot be stepped through on that clock, whereas the flow is autonomous and restarting it
#: costs a few evaluations. The threshold keeps ``dt >= 2^22`` float64 spacings (float32
#: runs use ``2^-13``: ``2^10`` spacings).
TIME_RESOLUTION = 2.0**-30

_DT_MIN = diffrax.RESULTS.dt_min_reached  # the segment-end signal (no dtmin is set anywhere)
# Ends a segment for a new Krylov basis (no diffrax solver we use raises it).
_REBUILD = diffrax.RESULTS.nonlinear_divergence
_UNRESOLVED_STEPS = 16


class _Segmented(diffrax.AbstractAdaptiveStepSizeController):
    """Wraps a controller: ends the solve with ``RESULTS.dt_min_reached`` when the proposed
    step has stayed below ``resolution * t`` for ``_UNRESOLVED_STEPS`` consecutive steps, and
    with ``max_steps_reached`` after ``budget`` steps. Its state carries the step count and the
    next step size, for the next segment.

    One short step is no signal: a step can land a few float64 spacings before a save time,
    and the next, clipped to it, is then that short (seen in GLRL's flows); from there the
    controller regrows the step by at most 10x per step, past the threshold within 7 steps.
    """

    controller: diffrax.AbstractAdaptiveStepSizeController
    budget: object  # steps left (int or scalar array)
    resolution: float = eqx.field(static=True, default=TIME_RESOLUTION)
    # Only a Krylov solver asks for a basis; for any other an all -inf error is an overflow.
    krylov: bool = eqx.field(static=True, default=False)

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return eqx.tree_at(lambda s: s.controller, self, self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t_next, inner = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        zero = jnp.asarray(0, jnp.int32)
        return t_next, (inner, zero, t_next - t0, zero)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        inner0, n, _, streak = state
        # An all -inf error: the Krylov solver asks for a new basis. Reject the step, keep it
        # for the next segment, and end this one. Any other non-finite error rejects the step.
        if self.krylov:
            rebuild = jnp.all(y_error == -jnp.inf)
        else:
            rebuild = jnp.zeros((), bool)
        y_error = jnp.where(rebuild | jnp.isfinite(y_error), y_error, jnp.inf)
        keep, next_t0, next_t1, jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, jnp.where(rebuild, 0.0, y_error), error_order, inner0
        )
        keep = keep & ~rebuild
        next_t0, next_t1 = jnp.where(rebuild, t0, next_t0), jnp.where(rebuild, t1, next_t1)
        inner = jax.tree_util.tree_map(lambda a, b: jnp.where(rebuild, a, b), inner0, inner)
        dt = next_t1 - next_t0
        n = n + 1
        streak = jnp.where(dt < self.resolution * next_t0, streak + 1, 0)
        ok = result == diffrax.RESULTS.successful
        # equinox's Enumeration types a member as its Literal, not as RESULTS
        result = diffrax.RESULTS.where(ok & rebuild, _REBUILD, result)  # pyright: ignore[reportArgumentType]
        ok = result == diffrax.RESULTS.successful
        result = diffrax.RESULTS.where(ok & (streak >= _UNRESOLVED_STEPS), _DT_MIN, result)
        ok = result == diffrax.RESULTS.successful
        result = diffrax.RESULTS.where(
            ok & (n >= self.budget), diffrax.RESULTS.max_steps_reached, result
        )
        return keep, next_t0, next_t1, jump, (inner, n, dt, streak), result


def _krylov_rank(solver, size: int) -> int:
    """``k`` of the Krylov basis that ``solver`` uses at this size (0: none)."""
    if isinstance(solver, RKC) and solver.krylov_stages is not None:
        return min(solver.krylov_rank, size)
    return 0


def _no_basis(k: int, y: jax.Array):
    """The placeholder Krylov basis: zeros (``theta == 0`` makes a Krylov step ask for one)."""
    return jnp.zeros((k, y.size), y.dtype), jnp.zeros((k,), y.dtype)


@eqx.filter_jit
def _build_basis(problem, y, model, k: int):
    """``(Vt, theta)``: ``k`` dominant eigenpairs of the flow's Jacobian ``-H`` at ``y``
    (``Vt`` ``(k, P)``)."""
    vf = _vector_field(model)
    _, jvp = jax.linearize(lambda z: vf(0.0, z, problem), y)
    return dominant_eigenpairs(jvp, y.size, k, y.dtype)


def _solve(
    problem, y0, ts, t_max, tols: _Tols, model, cfg: _FlowConfig, resume=None, basis=None
) -> dict[str, Any]:
    """One segment of the flow, on a clock that starts at 0.

    Everything that may differ between runs of the same shapes (data, ``y0``, save times,
    ``t_max``, the tolerances and the step budget in ``tols``) is traced; ``model`` and
    ``cfg`` are static.

    ``resume = (offset, dt0, solver_state, budget, loss0, gnorm0)`` continues a flow stopped
    by :class:`_Segmented` at global time ``offset``: save times are shifted by it, the
    solver's state (RKC's spectral data and evaluation count) and the stopping test's
    references (``loss0``, ``||grad f(W(0))||`` of the original start) carry over.
    ``basis = (Vt, theta)`` is the Krylov basis of ``"krylov"``
    (zeros, i.e. none yet, by default); it reaches the solver as the last of its ``args``,
    constant over the segment (carried in the solver's state, its ``k x P`` floats would be
    copied at every step: measured 64 ms per step at ``P = 30,000``, ``k = 1024``).
    """
    vf = _vector_field(model)
    solver = _make_solver(cfg.solver, y0.size)
    k = _krylov_rank(solver, y0.size)
    if k and basis is None:
        basis = _no_basis(k, y0)
    if resume is None:
        offset, dt0, solver_state, budget = 0.0, None, None, tols.max_steps
        loss0, gnorm0 = loss_and_grad_norm(problem, model, model.unflatten(y0))
    else:
        offset, dt0, solver_state, budget, loss0, gnorm0 = resume
    t1 = t_max - offset
    ts = jnp.clip(ts - offset, 0.0, t1)  # times before the segment: saved, then discarded

    def term_fn(t, y, args):
        return vf(t, y, args[0])

    def rec(t, y, args):
        return record(args[0], model, model.unflatten(y), cfg.save_matrices)

    own = cfg.solver in _OWN
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=ts, fn=rec), diffrax.SubSaveAt(t1=True)],
        solver_state=own,
        controller_state=True,
    )
    event = _steady_event(model) if cfg.steady_stop else None
    # Steps land on the save times: records carry no interpolation error.
    resolution = TIME_RESOLUTION if y0.dtype == jnp.float64 else 2.0**-13
    # The eqx.Module dataclass __init__ is not inferred through the diffrax base (pyright)
    controller = _Segmented(
        diffrax.ClipStepSizeController(  # pyright: ignore[reportCallIssue]
            diffrax.PIDController(rtol=tols.rtol, atol=tols.atol), step_ts=ts
        ),
        budget,
        resolution,
        krylov=bool(k),
    )
    with no_host_callbacks():
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(term_fn),
            solver,
            t0=0.0,
            t1=t1,
            dt0=dt0,
            y0=y0,
            args=(problem, loss0, gnorm0, tols) + ((basis,) if k else ()),
            saveat=saveat,
            stepsize_controller=controller,
            max_steps=MAX_STEPS_CAP,
            event=event,
            throw=False,
            solver_state=solver_state if own else None,
        )
    # SaveAt(subs=..., controller_state=True, solver_state=own) saves these
    assert sol.ys is not None and sol.ts is not None and sol.controller_state is not None
    recs, yfinal = sol.ys
    final_rec = record(problem, model, model.unflatten(yfinal[0]), cfg.save_matrices)
    return dict(
        recs=recs,
        ts=sol.ts[0],
        t_final=sol.ts[1][0],
        y_final=yfinal[0],
        final_rec=final_rec,
        result=sol.result._value,
        num_steps=sol.stats["num_steps"],
        num_accepted=sol.stats["num_accepted_steps"],
        num_rejected=sol.stats["num_rejected_steps"],
        nfe=_count_evals(cfg, sol, resume),
        solver_state=sol.solver_state if own else None,
        dt_next=sol.controller_state[2],
        loss0=loss0,
        gnorm0=gnorm0,
    )


#: Stages of diffrax's explicit Runge-Kutta solvers (all FSAL: a step evaluates ``stages - 1``
#: of them, the first step all of them).
_RK_STAGES = {"tsit5": 7, "dopri5": 7, "dopri8": 14}


def _count_evals(cfg: _FlowConfig, sol, resume):
    """Vector-field evaluations of one segment (a JVP counts as one), or ``None`` where the
    solver does not expose them (``"kvaerno5"``: its Newton iterations are not counted).

    Beyond the solver's own: the steady-state test (one gradient at the start of the
    segment and after every step; its Lanczos products, run only where the gradient is
    already below ``gtol``, are not counted) and the records (one gradient per saved time,
    plus the segment's end).
    """
    steps = sol.stats["num_steps"]
    if cfg.solver in _OWN:
        solver_nfe = sol.solver_state[3]  # RKC counts its stages, power iterations and init
        if resume is not None:
            solver_nfe = solver_nfe - resume[2][3]  # the counter carries over segments
    elif cfg.solver in _RK_STAGES:
        # FSAL: the first step also evaluates f(y0) (exact unless the first step is rejected,
        # which repeats it: the initial step selection makes that rare).
        solver_nfe = (_RK_STAGES[cfg.solver] - 1) * steps + (steps > 0)
    else:
        return None
    # No initial step-size selection: diffrax's PID picks dt0 = 0.01 without evaluations
    # for the wrapped terms that diffeqsolve passes it.
    extra = steps + 1 if cfg.steady_stop else 0
    saved = jnp.sum(jnp.isfinite(sol.ts[0])) + 1
    return (solver_nfe + extra + saved).astype(jnp.int64)


_solve_jit = aot_jit(_solve)
_RESTART = int(_DT_MIN._value)
_NEW_BASIS = int(_REBUILD._value)


def _resume(problem, first, ts, t_max, tols, model, cfg, max_steps: int):
    """Continue a solve that stopped on the time-resolution signal or asked for a new Krylov
    basis, segment after segment.

    ``first`` is the first segment's output (one run); returns it with the records of all
    segments merged (each save time taken from the segment that covers it), the global
    stopping time, the summed step counts, ``restarts`` (the number of clock resets) and
    ``krylov_builds`` (bases built at the state where the segment stopped; the step that
    asked is retried with it).
    """
    out: dict[str, Any] = dict(first, restarts=0, krylov_builds=0)
    if int(out["result"]) not in (_RESTART, _NEW_BASIS):
        return out
    ts_np = np.asarray(ts)
    recs = {k: np.array(v) for k, v in out["recs"].items()}
    counts = {k: int(out[k]) for k in ("num_steps", "num_accepted", "num_rejected")}
    nfe = None if out["nfe"] is None else int(out["nfe"])  # per segment: summed
    offset, restarts, builds = 0.0, 0, 0
    y = out["y_final"]
    rank = _krylov_rank(_make_solver(cfg.solver, y.size), y.size)
    basis = _no_basis(rank, y) if rank else None
    while int(out["result"]) in (_RESTART, _NEW_BASIS) and counts["num_steps"] < max_steps:
        offset += float(out["t_final"])
        state = out["solver_state"]
        if int(out["result"]) == _NEW_BASIS:
            basis = _build_basis(problem, out["y_final"], model, rank)
            state = tuple(state[:4]) + (jnp.zeros_like(state[4]),)  # a fresh basis
            builds += 1
        else:
            restarts += 1
        resume = (
            jnp.asarray(offset, ts.dtype),
            jnp.asarray(out["dt_next"], ts.dtype),
            state,
            jnp.asarray(max_steps - counts["num_steps"], jnp.int32),
            out["loss0"],
            out["gnorm0"],
        )
        out = _solve_jit(problem, out["y_final"], ts, t_max, tols, model, cfg, resume, basis)
        saved = np.isfinite(np.asarray(out["ts"])) & (ts_np >= offset)
        for k in recs:
            recs[k][saved] = np.asarray(out["recs"][k])[saved]
        for k in counts:
            counts[k] += int(out[k])
        if nfe is not None:
            nfe += int(out["nfe"])
    result = int(out["result"])
    if result in (_RESTART, _NEW_BASIS):  # the step budget ran out first
        result = int(diffrax.RESULTS.max_steps_reached._value)
    if nfe is not None:
        nfe += 3 * rank * builds  # the builds' JVPs
    return dict(
        out,
        recs=recs,
        t_final=offset + float(out["t_final"]),
        restarts=restarts,
        krylov_builds=builds,
        result=result,
        nfe=nfe,
        **counts,
    )


def default_atol(rtol: float, y0: np.ndarray) -> float:
    """``min(1e-12, 1e-4 * rtol * max|y0|)``: an absolute floor below the initial factors.

    A fixed ``atol`` (say 1e-12) exceeds every factor entry once ``alpha^(1/L) < 1e-12``
    (``alpha <= 1e-24`` at depth 2), and the error control would then ignore the small
    directions whose competition decides which one escapes first.

    Float32 (``y0``'s dtype): ``min(1e-6, max(1e-4 rtol max|y0|, 10 eps max|y0|))``. Below
    ``~10 eps max|y0|`` the error estimate of a component near zero is rounding noise:
    measured on the 15 x 15, depth-3 completion from scale 1e-3 (``max|y0| = 0.1``), atol
    1e-12 took 15,469 steps (5,281 rejected) to the steady state, 1e-8 took 3,345 and 1e-6
    625, all ending within 4.4e-4 of the float64 end point.
    """
    top = float(np.max(np.abs(y0))) if y0.size else 1.0
    if np.asarray(y0).dtype == np.float32:
        eps = float(np.finfo(np.float32).eps)
        return float(min(1e-6, max(1e-4 * rtol * top, 10 * eps * top, 1e-30)))
    return float(min(1e-12, max(1e-4 * rtol * top, 1e-300)))


#: A user's ``atol`` above this fraction of the initial factors' largest entry warns: the
#: error control then ignores the factors' small components, whose competition decides the
#: escapes. Measured on the 8 x 8 depth-3 completion from scale 1e-9 (entries <= 8.5e-4):
#: atol = 1e-3 max|y0| ended within 6e-10 of the default's end point at a steady state,
#: 1e-2 max|y0| and above lost the steady state (t_max), 10 max|y0| moved it by 2.5e-6.
ATOL_MAX_RATIO = 1e-3


def _warn_atol(atol: float, y0: np.ndarray, rtol: float) -> None:
    """A :class:`PrecisionWarning` when ``atol < eps max|y0|``: the rounding of the factors'
    entries alone exceeds it (many rejected steps, or no progress); and when
    ``atol > ATOL_MAX_RATIO max|y0|`` (of the run with the smallest init, for a batch of
    ``y0`` rows): the error control no longer sees the initial factors' entries."""
    eps = float(np.finfo(np.asarray(y0).dtype).eps)
    top = float(np.max(np.abs(y0))) if np.size(y0) else 0.0
    rows = np.asarray(y0).reshape(-1, np.shape(y0)[-1]) if np.size(y0) else None
    if rows is not None:
        y_small = rows[np.argmin(np.abs(rows).max(axis=1))]
        small = float(np.max(np.abs(y_small)))
        if 0 < small < atol / ATOL_MAX_RATIO:
            warnings.warn(
                f"`atol` = {atol:g} is large against the initial factors' entries "
                f"(max|params| = {small:.2g}): the error control ignores components below "
                f"atol, which changes the trajectory; take atol <= "
                f"{ATOL_MAX_RATIO * small:.2g} ({ATOL_MAX_RATIO:g} max|params|) or atol=None "
                f"(the default here: {default_atol(rtol, y_small):.2g})",
                PrecisionWarning,
                stacklevel=4,
            )
    if atol < eps * top:
        warnings.warn(
            f"`atol` = {atol:g} is below the rounding of the initial factors in "
            f"{np.asarray(y0).dtype} (eps max|params| = {eps * top:.2g}): expect many "
            f"rejected steps; atol=None derives one from the dtype",
            PrecisionWarning,
            stacklevel=4,
        )


def _deep_scale(model, y0: np.ndarray) -> tuple[int, float, float]:
    """``(L, max|y0|, eps of y0's dtype)``; ``L = 0`` for models without a depth."""
    top = float(np.max(np.abs(y0))) if y0.size else 0.0
    return getattr(model, "depth", 0), top, float(np.finfo(y0.dtype).eps)


def below_rounding_floor(model, y0: np.ndarray) -> bool:
    """``max|y0|^(L-2) < 100 eps`` at depth ``L >= 3``: after the first escape the curvature
    along the next directions (``~max|y0|^(L-2)`` of the learned one's) is at the rounding
    level of the gradient in ``y0``'s dtype (see :func:`warn_resolution`)."""
    depth, top, eps = _deep_scale(model, y0)
    return depth >= 3 and 0 < top and top ** (depth - 2) < 100 * eps


#: Later escapes of a depth-L flow are unresolved when ``max|y0|^(L-1)`` is below this
#: fraction of the dtype's epsilon (measured, see :func:`warn_resolution`).
LATER_ESCAPE_FLOOR = 1e-2


def later_escapes_unresolved(model, y0: np.ndarray) -> bool:
    """``max|y0|^(L-1) < LATER_ESCAPE_FLOOR * eps`` at depth ``L >= 3``."""
    depth, top, eps = _deep_scale(model, y0)
    return depth >= 3 and 0 < top and top ** (depth - 1) < LATER_ESCAPE_FLOOR * eps


def warn_resolution(model, y0: np.ndarray, stacklevel: int = 3) -> None:
    """Warn when the later escapes of a deep flow are below float resolution.

    At depth ``L >= 3`` a direction barely grows before the previous one escapes (its
    growth is a blow-up, not an exponential): after the first escape it still has its initial
    size ``a ~ max|y0|`` per factor, and its drive, ``~a^(L-1)``, is computed from factor
    entries that are now O(1). Its escape time is then set by the rounding of the gradient
    (and, at coarse ``rtol``, by the local errors), not by the initialization. Measured against
    closed forms (``tests/test_escape_times.py``: identical init seen in random orthogonal
    frames, depth 3 and 4, whose escape times are quadratures), the second escape is off by
    ~1e-5 ``eps / max|y0|^(L-1)``: <= 5e-4 at ``max|y0|^(L-1) = 0.3 eps``, 0.1-0.4% at
    3e-3 eps, 3-5% at 3e-4 eps, 5-30% at 3e-5 eps (depth 3, ``a = 1e-8 ... 1e-10``; depth 4
    at ``a = 1e-6``: 0.1% at 4e-3 eps), whatever ``rtol`` (1e-8 to 1e-11) or solver. So the
    warning fires when ``max|y0|^(L-1) < LATER_ESCAPE_FLOOR eps`` (float64, depth 3:
    ``alpha <~ 3e-27``; depth 4: ``alpha <~ 3e-24``). ``rtol`` is not part of the test: at
    ``a = 1e-8`` the second escape is right to 5e-4 at ``rtol = 1e-8``.

    When moreover ``max|y0|^(L-2) < 100 eps`` (float64: depth 4 from ``alpha ~ 1e-32``), the
    curvature along the next directions, ``~max|y0|^(L-2)`` of the learned one's, is at the
    rounding level of the float64 gradient: measured on 20x20 depth 4 at alpha 1e-32 after the
    first escape, the float64 gradient differs from an 80-bit one at the same state by 99-214%
    (``tests/test_long_times.py``). The stretch after the first escape is then pure rounding
    noise (its error estimates grow with ``h``, so steps stay short); the warning says so.
    """
    depth, top, eps = _deep_scale(model, y0)
    if below_rounding_floor(model, y0):
        warnings.warn(
            f"depth-{depth} flow from factors of size max|y0| = {top:.2g}: after the first "
            f"escape the curvature along the next directions (~max|y0|^{depth - 2} = "
            f"{top ** (depth - 2):.1g} of the learned one's) is at the rounding level of the "
            f"{y0.dtype} gradient; the later escapes are driven by rounding noise, no solver or "
            f"rtol resolves them, and the stretch after the first escape needs very many short "
            f"steps. The first escape is not affected (docs: Numerical notes, 'Resolution of later escapes')",
            ResolutionWarning,
            stacklevel=stacklevel,
        )
    elif later_escapes_unresolved(model, y0):
        warnings.warn(
            f"depth-{depth} flow from factors of size max|y0| = {top:.2g}: max|y0|^{depth - 1} "
            f"= {top ** (depth - 1) / eps:.1g} eps of {y0.dtype}, so the directions escaping "
            f"after the first one have a drive below the gradient's rounding error, and their "
            f"escape times are unresolved: measured errors ~1e-5 eps / max|y0|^{depth - 1} "
            f"(3-5% at 3e-4 eps, 5-30% at 3e-5 eps), whatever the solver or rtol. The first "
            f"escape is not affected (docs: Numerical notes, 'Resolution of later escapes')",
            ResolutionWarning,
            stacklevel=stacklevel,
        )


#: Float64 defaults of the flow's tolerances; other dtypes scale them (:func:`flow_defaults`).
_DEFAULTS64 = dict(rtol=1e-8, gtol=1e-10, curvature_tol=1e-6, certificate_tol=1e-6)


def flow_defaults(dtype) -> dict:
    """Default ``rtol``, ``gtol``, ``curvature_tol`` and ``certificate_tol`` for ``dtype``.

    Float64: ``rtol = 1e-8``, ``gtol = 1e-10``, ``curvature_tol = certificate_tol = 1e-6``.
    Float32 (``eps = 1.2e-7``): ``rtol = 1e-5`` (local errors are estimated from differences
    of states whose rounding is ``eps |y|``; below ``~100 eps`` the estimate is noise and the
    controller shrinks the step without end), ``gtol = 1e-5`` and ``certificate_tol =
    curvature_tol = 1e-4`` (the gradient at a minimiser is computed to ``~eps ||M||``
    per entry: the float64 thresholds are below it and the steady state is never certified).
    """
    if jnp.dtype(dtype) == jnp.float64:
        return dict(_DEFAULTS64)
    return dict(rtol=1e-5, gtol=1e-5, curvature_tol=1e-4, certificate_tol=1e-4)


def _check_flow_args(
    t_max,
    rtol,
    atol,
    solver,
    max_steps,
    gtol,
    n_save,
    curvature_tol,
    certificate_tol,
    t_min,
    save_at,
    dtype,
):
    """Validate the flow's settings; returns them with the dtype's defaults filled in (``gtol``
    stays ``None`` when given as ``None``; ``"auto"`` is the dtype's default)."""
    t_max = check_positive(t_max, "t_max")
    d = flow_defaults(dtype)
    rtol = d["rtol"] if rtol is None else check_positive(rtol, "rtol")
    if rtol >= 1:
        raise ValueError(f"`rtol` must be < 1 (a relative tolerance), got {rtol}")
    if atol is not None:
        atol = check_positive(atol, "atol")
    check_choice(solver, "solver", SOLVERS)
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    if max_steps > MAX_STEPS_CAP:
        raise ValueError(f"`max_steps` must be <= {MAX_STEPS_CAP}, got {max_steps}")
    n_save = check_int(n_save, "n_save", minimum=2)
    if n_save > MAX_SAVE:
        raise ValueError(
            f"`n_save` must be <= {MAX_SAVE} (each record holds the loss, the "
            f"gradient norm and all singular values), got {n_save}"
        )
    if isinstance(gtol, str):
        if gtol != "auto":
            raise ValueError(f"`gtol` must be a positive number, None or 'auto', got {gtol!r}")
        gtol = d["gtol"]
    elif gtol is not None:
        gtol = check_positive(gtol, "gtol")
    if curvature_tol is None:
        curvature_tol = d["curvature_tol"]
    elif not (isinstance(curvature_tol, (int, float)) and curvature_tol == float("inf")):
        curvature_tol = check_positive(curvature_tol, "curvature_tol")  # inf: no Lanczos test
    certificate_tol = (
        d["certificate_tol"]
        if certificate_tol is None
        else check_positive(certificate_tol, "certificate_tol")
    )
    if t_min is not None:
        t_min = check_positive(t_min, "t_min")
        if t_min >= t_max:
            raise ValueError(f"`t_min` must be < t_max = {t_max:g}, got {t_min:g}")
    if save_at is not None:
        save_at = check_save_at(save_at, t_max)
    eps = float(jnp.finfo(dtype).eps)
    name = jnp.dtype(dtype).name
    for key, v, floor in (
        ("rtol", rtol, 10 * eps),
        ("certificate_tol", certificate_tol, 100 * eps),
        ("curvature_tol", curvature_tol, 100 * eps),
    ):
        if v < floor:
            warnings.warn(
                f"`{key}` = {v:g} is below what {name} resolves (~{floor:.1g}, "
                f"eps = {eps:.2g}): the solver may take tiny steps without end or never "
                f"certify the steady state; the {name} default is "
                f"{d[key]:g}",
                PrecisionWarning,
                stacklevel=3,
            )
    return (
        t_max,
        rtol,
        atol,
        gtol,
        max_steps,
        n_save,
        curvature_tol,
        certificate_tol,
        t_min,
        save_at,
    )


#: The largest ``n_save``: a record holds ``min(m, n) + 2`` floats (and ``W`` with
#: ``save_matrices``); 10^5 records of a 1000 x 1000 run are 800 MB.
MAX_SAVE = 100_000


def check_save_at(save_at, t_max: float) -> np.ndarray:
    """``save_at`` (times in any order) as a sorted float64 vector in ``[0, t_max]``; raises
    ``ValueError`` for non-finite or out-of-range times, or more than ``MAX_SAVE``."""
    try:
        a = np.asarray(save_at, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"`save_at` must be an array of times, got {save_at!r}") from None
    if a.size > MAX_SAVE:
        raise ValueError(f"`save_at` holds {a.size} times; at most {MAX_SAVE}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > t_max):
        bad = a[~(np.isfinite(a) & (a >= 0) & (a <= t_max))][0]
        raise ValueError(f"`save_at` times must lie in [0, t_max={t_max:g}], got {bad:g}")
    return np.sort(a)  # a set of record times: any order, duplicates merged


def _check_initial_state(
    problem,
    model,
    params,
    dtype,
    t_max: float,
    max_steps: int,
    solver: str = "rkc",
    name: str = "params",
) -> None:
    """Fail before compiling when the flow from ``params`` cannot be computed.

    * ``||W(0)||`` too large for the dtype: ``(sqrt(width) max|params|)^L`` (a bound on
      ``||W(0)||_2``) above :data:`MAX_INIT_SCALE`;
    * ``f(W(0))`` or ``grad f(W(0))`` not finite;
    * (``DeepFactorization``, stability-limited solvers) more than ``EVALS_PER_STEP *
      max_steps`` gradient evaluations needed:
      gradient flow conserves the imbalances ``D_j = W_{j+1}^T W_{j+1} - W_j W_j^T``, so the
      factors never shrink below ``||D_j||`` and the Hessian radius stays ``>~ c delta^(L-1)``
      (``delta = max_j ||D_j||_2``, ``c`` the curvature of ``f`` along ``W(0)``). RKC's
      ``s``-stage step is stable for ``h rho <= 0.65 s^2`` (``s <= 2000``), an explicit
      Runge--Kutta step for ``h rho <~ 3.3`` with 6: at least ``t_max rho / 1300``
      (resp. ``t_max rho / 0.55``) evaluations. On the 8 x 8, depth-2, ``t_max = 100``
      completion from a gaussian init of scale ``alpha`` (end-to-end), ``delta ~ 2 alpha``
      and ``c ~ 0.67``: ``alpha = 1e6`` needs >= 1e5 (it runs: 1,087 steps, loss 5e-17),
      ``alpha = 1e10`` >= 1e9 (refused; it ran for hours).
    """
    top = max(
        (float(np.max(np.abs(np.asarray(p, dtype=np.float64)))) if np.size(p) else 0.0)
        for p in params
    )
    depth = len(params)
    dname = jnp.dtype(dtype).name
    limit = MAX_INIT_SCALE[dname]
    width = max(max(np.shape(p)) for p in params)
    # U U^T is a product of two factors of size max|U|.
    w_bound = (np.sqrt(width) * top) ** (depth if depth > 1 else 2)
    if w_bound > limit:
        raise ValueError(
            f"`{name}`: the initial factors are too large for {dname} (init scale max|{name}| = "
            f"{top:.3g}, so ||W(0)|| is up to ~{w_bound:.3g} > {limit:.3g}: the loss ~ ||W||^2 "
            f"and the flow's stiffness overflow); use a smaller init `scale`"
        )
    W0, f, G = check_initial_loss(problem, model, params, name)
    if (
        depth < 2
        or not hasattr(model, "widths")
        or solver in ("rodas4", "kvaerno5", "hybrid", "krylov")
    ):
        return
    Ws = [np.asarray(p, dtype=np.float64) for p in params]
    delta = max(
        float(np.linalg.norm(Ws[j + 1].T @ Ws[j + 1] - Ws[j] @ Ws[j].T, 2))
        for j in range(depth - 1)
    )
    nW = float(jnp.linalg.norm(W0))
    if not delta > 0 or not nW > 0:
        return
    G2 = problem.grad(2.0 * W0)
    c = float(jnp.linalg.norm(G2 - G)) / nW
    rho = c * delta ** (depth - 1)
    # Evaluations per unit of t * rho at the cheapest stable schedule: RKC with s = 2000
    # stages covers h rho = 0.65 s^2 with s + 3 evaluations; Tsit5-like methods 3.3 with 6.
    per_eval = 0.65 * 2000.0 if solver == "rkc" else 3.3 / 6
    need = t_max * rho / per_eval
    if need > EVALS_PER_STEP * max_steps:
        raise ValueError(
            f"`{name}`: init scale max|{name}| = {top:.3g} is too large to integrate: the flow "
            f"conserves the factor imbalance (||W_(j+1)^T W_(j+1) - W_j W_j^T|| = {delta:.3g}), "
            f"so the Hessian radius stays >~ {rho:.3g}, and solver {solver!r} needs at least "
            f"~{need:.3g} gradient evaluations to reach t_max = {t_max:g}, more than "
            f"{EVALS_PER_STEP} x max_steps = {EVALS_PER_STEP * max_steps:.3g}; use a smaller "
            f"init `scale` (or a shorter `t_max`, or a larger `max_steps`)"
        )


#: A stability-limited flow is refused when it needs more than this many gradient
#: evaluations per allowed step (``max_steps``): 1e8 evaluations at the default ``max_steps``
#: (an 8 x 8 evaluation costs ~10 us, a 100 x 100 one ~1 ms).
EVALS_PER_STEP = 100

#: Largest ``(sqrt(width) max|params(0)|)^L`` (a bound on ``||W(0)||_2``) accepted per dtype:
#: ``1e30`` in float64 (the loss ``~||W||^2 = 1e60`` stays far from overflow at 1e308, and the
#: flow from ``||W|| = 1e30`` shrinks in ~one time unit but needs steps ``~1/||W||^(2-2/L)``:
#: there is no useful run beyond), ``1e12`` in float32 (overflow at 3.4e38).
MAX_INIT_SCALE = {"float64": 1e30, "float32": 1e12}


def _status(out_result: int) -> str:
    if out_result == int(diffrax.RESULTS.successful._value):
        return RunStatus.T_MAX.value
    if out_result == int(diffrax.RESULTS.event_occurred._value):
        return RunStatus.STEADY_STATE.value
    if out_result == int(diffrax.RESULTS.max_steps_reached._value):
        return RunStatus.MAX_STEPS.value
    return RunStatus.SOLVER_FAILURE.value


def _max_steps_advice(cfg, settings, num_rejected: int, num_steps: int, dtype) -> str:
    """What would help a flow that ran out of steps (it depends on what was used)."""
    if cfg.solver in ("tsit5", "dopri5", "dopri8"):
        return (
            "use solver='rkc' (stabilised explicit: the flow is likely stiff), or raise `max_steps`"
        )
    tips = []
    d = flow_defaults(dtype)
    if num_rejected > 0.3 * max(num_steps, 1):
        tips.append(
            f"{num_rejected} of {num_steps} steps were rejected: the tolerances are near "
            f"the rounding level of {jnp.dtype(dtype).name} (rtol={settings['rtol']:g}, "
            f"atol={settings['atol']:.3g}); loosen them"
            + ("" if jnp.dtype(dtype) == jnp.float64 else " or use float64")
        )
    if settings["rtol"] < d["rtol"]:
        tips.append(
            f"rtol={settings['rtol']:g} is below the {jnp.dtype(dtype).name} default {d['rtol']:g}"
        )
    if cfg.solver == "rkc":
        tips.append(
            f"for the stiff stretch between escapes (depth >= 3 from small inits) "
            f"solver='hybrid' takes dense Rodas4 steps (<= {DENSE_LIMIT} parameters)"
        )
    tips.append("raise `max_steps` or shorten `t_max`")
    return "; ".join(tips)


def _postprocess(out, ts_np, model, cfg, settings, wall, extra_info):
    t_final = float(out["t_final"])
    keep = ts_np <= t_final * (1 + 1e-12)
    recs = {k: np.asarray(v)[keep] for k, v in out["recs"].items()}
    times = ts_np[keep]
    if times[-1] < t_final:
        recs = {
            k: np.concatenate([v, np.asarray(out["final_rec"][k])[None]]) for k, v in recs.items()
        }
        times = np.concatenate([times, [t_final]])
    status = _status(int(out["result"]))
    t_max = settings["t_max"]
    info: dict[str, Any] = dict(
        method="gradient_flow",
        solver=cfg.solver,
        rtol=settings["rtol"],
        atol=settings["atol"],
        gtol=settings["gtol"],
        t_max=t_max,
        t_final=t_final,
        status=status,
        num_steps=int(out["num_steps"]),
        num_accepted=int(out["num_accepted"]),
        num_rejected=int(out["num_rejected"]),
        num_vf_evals=None if out["nfe"] is None else int(out["nfe"]),
        restarts=int(out.get("restarts", 0)),
        wall_time=wall,
        **extra_info,
    )
    if out.get("krylov_builds"):
        info["krylov_builds"] = int(out["krylov_builds"])
    if status == "max_steps":
        advice = _max_steps_advice(
            cfg, settings, info["num_rejected"], info["num_steps"], extra_info["dtype"]
        )
        warnings.warn(
            f"gradient_flow stopped at max_steps={settings['max_steps']} at "
            f"t={t_final:.4g} < t_max={t_max:g} (solver {cfg.solver!r}); {advice}",
            RuntimeWarning,
            stacklevel=3,
        )
    if status == "solver_failure" or not np.all(np.isfinite(recs["loss"])):
        raise FloatingPointError(
            f"gradient_flow failed at t={t_final:.4g} (solver {cfg.solver!r}, status "
            f"{status}): the trajectory became non-finite; lower rtol/atol or check the problem"
        )
    y_final = np.asarray(out["y_final"], dtype=np.float64)
    final_params = model.unflatten(jnp.asarray(y_final))
    return build_trajectory(recs, times, final_params, model, info)


def gradient_flow(
    problem,
    model,
    params,
    t_max: float = 1e4,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    solver: str = "rkc",
    gtol: float | str | None = "auto",
    curvature_tol: float | None = None,
    certificate_tol: float | None = None,
    n_save: int = 200,
    t_min: float | None = None,
    save_at=None,
    save_matrices: bool = False,
    max_steps: int = 1_000_000,
    dtype=None,
    error_estimate: bool = False,
    backend: str = "auto",
):
    r"""Integrate the gradient flow ``d params/dt = -grad L(params)`` from ``params``.

    ``L = f(W_L ... W_1)`` for :class:`DeepFactorization`, ``1/2 f(U U^T)`` for
    :class:`SymmetricFactorization`. Adaptive steps (PID control of the local error against
    ``atol + rtol |y|``) in float64 unless ``dtype=float32``.

    Compiled once per shapes, dtype, solver, ``gtol is None`` and ``save_matrices``: runs
    that differ in the init, the data, ``t_max``, the tolerances, ``max_steps`` or the save
    times (of equal number) reuse the compiled solve.

    Arguments:
        t_max: final time (the flow stops earlier at a steady state, see ``gtol``).
        rtol: relative tolerance; default from the dtype (:func:`flow_defaults`: ``1e-8`` in
            float64, ``1e-5`` in float32). One below ``10 eps`` warns (:class:`PrecisionWarning`).
        atol: absolute tolerance; default ``min(1e-12, 1e-4 rtol max|params(0)|)`` so that it
            stays below the initial factors at any scale.
        solver: ``"rkc"`` (default, stiff-capable, see :class:`rankbias.dynamics.RKC`),
            ``"hybrid"`` (RKC plus dense Rodas4 steps where RKC would need more than
            ``DENSE_STAGES`` stages, for at most ``DENSE_LIMIT`` parameters: the stretch
            between two escapes of depth >= 3 flows from tiny scales), ``"krylov"`` (the
            same with matrix-free Rodas4 steps, GMRES preconditioned by ``KRYLOV_RANK``
            dominant Jacobian eigenvectors: any ``P``; experimental, docs: Numerical notes), ``"rodas4"``,
            ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"kvaerno5"``. At depth ``L >= 3`` with
            ``max|params(0)|^(L-1) < 0.01 eps`` a :class:`ResolutionWarning` says that the
            later escape times are below float resolution (:func:`warn_resolution`).
        gtol: stop at a steady state: ``||grad L|| <= gtol`` at a point certified not to be
            a saddle: ``||grad f(W)|| <= certificate_tol ||grad f(W(0))||`` (PSD-KKT residual
            for ``U U^T``) when no width constrains the rank; otherwise ``f(W) < f(W(0))`` and
            Hessian ``lambda_min >= -curvature_tol`` (Lanczos; blind to the high-order
            saddles of depth >= 3). Uncertified points run on to ``t_max``; ``None``
            always runs to ``t_max``. ``"auto"``: ``1e-10`` (float64), ``1e-5`` (float32);
            ``curvature_tol`` and ``certificate_tol`` default to ``1e-6`` (float64) and
            ``1e-4`` (float32); ``curvature_tol=inf`` drops the Lanczos test (any point
            with a small gradient and a lower loss stops the flow).
        n_save, t_min, save_at: record at ``t = 0``, ``n_save - 1`` log-spaced times in
            ``[t_min, t_max]`` (``0 < t_min < t_max``, default ``min(1e-2, t_max / 1e4)``)
            and the extra times ``save_at`` (sorted, in ``[0, t_max]``); the stopping time is
            appended. ``2 <= n_save <= MAX_SAVE``.
        save_matrices: also keep ``W(t)`` at each recorded time.
        error_estimate: solve a second time with tolerances / 10 and report the largest
            difference of ``W`` at the recorded times and at the end (``info["error_estimate"]``).
        backend: how ``grad L`` is evaluated (``info["backend"]`` records the choice).
            ``"dense"``: through the product ``W`` (``(m, n)``; ``O(m n k)`` per evaluation
            and a full SVD of ``W`` per record). ``"sparse"`` (:class:`MatrixCompletion`
            with :class:`SymmetricFactorization` or :class:`DeepFactorization` of depth
            ``>= 2``): in factor form, ``W = A B^T`` never formed: residuals
            ``r_ij = c (<A_i, B_j> - M_ij)`` on ``Omega``, ``grad L = sym(G) U`` (symmetric)
            or ``(A^T G, backward pass of G B)`` (deep), ``O(|Omega| k + (m + n) k^2 L)`` per
            evaluation; singular values from QR of the factors. ``"auto"`` (default): sparse
            for width-limited models when ``m n >= SPARSE_RATIO |Omega|`` (see
            :func:`rankbias.dynamics.choose_backend`), else dense. Same flow, same stopping
            rules, equal to solver tolerance.

    Returns:
        :class:`Trajectory` with ``info`` holding ``status`` (``"t_max"``, ``"steady_state"``,
        ``"max_steps"``), ``num_steps``, ``num_rejected``, ``num_vf_evals`` (gradient
        evaluations and JVPs of the whole solve, stopping tests and records included; a lower
        bound for the RKC-based solvers, which lose rejected attempts; ``None`` for
        ``"kvaerno5"``; docs: the gradient-flow guide), ``wall_time`` and
        ``restarts``: how often the clock was reset to 0 because the steps stayed below
        ``TIME_RESOLUTION`` times the time integrated (escapes at ``t >~ 1e12``; the flow is
        autonomous, so the solve goes on exactly; step counts and ``max_steps`` cover all
        segments).

    Raises:
        ValueError: a bad argument (named); an initial point where ``f(W(0))`` or its gradient
            is not finite; factors too large for the dtype or for any run to finish within
            ``max_steps`` (:func:`_check_initial_state`). ``FloatingPointError``: the
            trajectory became non-finite.
    """
    dtype = resolve_dtype(dtype)
    (t_max, rtol, atol, gtol, max_steps, n_save, curvature_tol, certificate_tol, t_min, save_at) = (
        _check_flow_args(
            t_max,
            rtol,
            atol,
            solver,
            max_steps,
            gtol,
            n_save,
            curvature_tol,
            certificate_tol,
            t_min,
            save_at,
            dtype,
        )
    )
    problem, params, dtype = check_run(problem, model, params, dtype)
    backend = choose_backend(backend, problem, model)
    _check_initial_state(problem, model, params, dtype, t_max, max_steps, solver)
    data = backend_data(problem, model, backend)
    flat0 = np.concatenate([np.ravel(np.asarray(p)) for p in params])
    if atol is None:
        atol = default_atol(rtol, flat0)
    else:
        _warn_atol(atol, flat0, rtol)
    warn_resolution(model, flat0)
    cfg = _FlowConfig(solver, gtol is not None, check_bool(save_matrices, "save_matrices"))
    tols = _tols(dtype, rtol, atol, gtol, curvature_tol, certificate_tol, max_steps)
    settings = dict(t_max=t_max, rtol=rtol, atol=atol, gtol=gtol, max_steps=max_steps)
    ts_np = save_times(t_max, n_save, t_min, save_at)
    y0 = model.flatten(params)
    t0 = time.perf_counter()
    ts, tm = jnp.asarray(ts_np, dtype), jnp.asarray(t_max, dtype)
    out = _resume(
        data,
        _solve_jit(data, y0, ts, tm, tols, model, cfg),
        ts,
        tm,
        tols,
        model,
        cfg,
        max_steps,
    )
    out = jax.block_until_ready(out)
    wall = time.perf_counter() - t0
    traj = _postprocess(
        out, ts_np, model, cfg, settings, wall, dict(dtype=str(jnp.dtype(dtype)), backend=backend)
    )
    if error_estimate:
        fine = gradient_flow(
            problem,
            model,
            params,
            t_max,
            rtol=rtol / 10,
            atol=atol / 10,
            solver=solver,
            gtol=gtol,
            curvature_tol=curvature_tol,
            certificate_tol=certificate_tol,
            n_save=n_save,
            t_min=t_min,
            save_at=save_at,
            save_matrices=False,
            max_steps=max_steps,
            dtype=dtype,
            backend=backend,
        )
        n = min(len(traj), len(fine))
        sv_err = float(np.max(np.abs(traj.singular_values[:n] - fine.singular_values[:n])))
        traj.info["error_estimate"] = dict(
            final_matrix=float(np.linalg.norm(traj.final_matrix - fine.final_matrix)),
            singular_values_max=sv_err,
        )
    return traj


def gradient_flow_batch(
    problems,
    model,
    params_list,
    t_max: float = 1e4,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    solver: str = "rkc",
    gtol: float | str | None = "auto",
    curvature_tol: float | None = None,
    certificate_tol: float | None = None,
    n_save: int = 200,
    t_min: float | None = None,
    save_at=None,
    save_matrices: bool = False,
    max_steps: int = 1_000_000,
    dtype=None,
    on_failure: str = "raise",
    backend: str = "auto",
):
    """Many gradient flows that share shapes, as one vmapped computation.

    ``problems`` is one problem (shared) or a list with one problem per run (same type and
    array shapes); ``params_list`` holds one initial parameter tuple per run. Each run keeps
    its own adaptive step sizes and stopping time; results equal :func:`gradient_flow`
    run by run (same arithmetic, up to the last bits of batched matrix products). The
    settings are those of :func:`gradient_flow` (traced: no recompilation when they change).

    ``on_failure="raise"`` raises for the first run whose solve failed (non-finite
    trajectory); ``"return"`` puts the ``FloatingPointError`` in that run's place.

    Returns a list of :class:`Trajectory`, in the order of ``params_list``.

    Raises:
        ValueError: as :func:`gradient_flow`, for any run of the batch (before compiling).
    """
    if on_failure not in ("raise", "return"):
        raise ValueError(f"`on_failure` must be 'raise' or 'return', got {on_failure!r}")
    dtype = resolve_dtype(dtype)
    (t_max, rtol, atol, gtol, max_steps, n_save, curvature_tol, certificate_tol, t_min, save_at) = (
        _check_flow_args(
            t_max,
            rtol,
            atol,
            solver,
            max_steps,
            gtol,
            n_save,
            curvature_tol,
            certificate_tol,
            t_min,
            save_at,
            dtype,
        )
    )
    problem, p_axis, params, dtype, B = prepare_batch(problems, model, params_list, dtype)
    backend = choose_backend(backend, problem if p_axis is None else index_tree(problem, 0), model)
    for i in range(B):
        _check_initial_state(
            problem if p_axis is None else index_tree(problem, i),
            model,
            index_tree(params, i),
            dtype,
            t_max,
            max_steps,
            solver,
            name=f"params_list[{i}]",
        )
    y0 = jax.vmap(model.flatten)(params)
    flat0 = np.asarray(y0)
    if atol is None:
        # One tolerance for the batch: that of the smallest init.
        atol = min(default_atol(rtol, y) for y in flat0)
    else:
        _warn_atol(atol, flat0, rtol)
    # The smallest init decides, as for atol.
    warn_resolution(model, np.array([np.abs(flat0).max(axis=1).min()]))
    cfg = _FlowConfig(solver, gtol is not None, check_bool(save_matrices, "save_matrices"))
    tols = _tols(dtype, rtol, atol, gtol, curvature_tol, certificate_tol, max_steps)
    settings = dict(t_max=t_max, rtol=rtol, atol=atol, gtol=gtol, max_steps=max_steps)
    ts_np = save_times(t_max, n_save, t_min, save_at)
    problem = batch_data(problem, p_axis, model, backend, B)
    t0 = time.perf_counter()
    ts, tm = jnp.asarray(ts_np, dtype), jnp.asarray(t_max, dtype)
    out = jax.block_until_ready(_batched_solve(problem, y0, ts, tm, tols, model, cfg, p_axis))
    wall = time.perf_counter() - t0
    result = []
    for i in range(B):
        t1 = time.perf_counter()
        # Runs that outgrew float64 time resolution go on one by one (rare: escapes at t >~ 1e12).
        out_i = _resume(
            problem if p_axis is None else index_tree(problem, i),
            index_tree(out, i),
            ts,
            tm,
            tols,
            model,
            cfg,
            max_steps,
        )
        wall_i = wall / B + time.perf_counter() - t1
        try:
            result.append(
                _postprocess(
                    out_i,
                    ts_np,
                    model,
                    cfg,
                    settings,
                    wall_i,
                    dict(dtype=str(jnp.dtype(dtype)), backend=backend, batch_size=B, batch_index=i),
                )
            )
        except FloatingPointError as e:
            if on_failure == "raise":
                raise FloatingPointError(f"run {i} of the batch: {e}") from None
            result.append(e)
    return result


@aot_jit
def _batched_solve(problem, y0, ts, t_max, tols, model, cfg, p_axis):
    return batch_apply(
        lambda p, y: _solve(p, y, ts, t_max, tols, model, cfg), (p_axis, 0), (problem, y0)
    )
