r"""The greedy loop of GLRL: validation of the arguments, then one phase per rank until the
top eigenvalue of ``-sym(grad f)`` (singular value of ``-grad f``) falls to ``tol``."""

from __future__ import annotations

import time
import warnings

import jax.numpy as jnp
import numpy as np

from .._deprecation import renamed
from .._validation import check_bool, check_choice, check_int, check_int_seed, check_positive
from ..dynamics._interrupt import (
    ChunkReport,
    interrupts_return,
    raise_interrupts,
    report_chunk,
    warn_interrupted,
)
from ..dynamics._progress import check_progress, progress_display
from ..options import SOLVERS
from ..problems.base import Problem
from ..status import RunStatus
from ._alignment import mid_time, refine_mid
from ._directions import grad_operator, is_dense, kkt_residuals, norm2, top_direction
from ._factors import append_direction, product, zero_factors
from ._phase import run_phase
from ._replay import ESCAPE_ATOL
from ._results import GLRLPhase, GLRLResult

__all__ = ["glrl"]


#: Smallest ``tol`` relative to ``max(1, ||grad f(0)||_2)``: a few float64 roundings
#: (machine epsilon 2.2e-16), the accuracy of a computed top eigenvalue.
_TOL_FLOOR = 1e-15


def glrl(
    problem: Problem,
    eps: float = 1e-30,
    tol: float = 1e-9,
    *,
    psd: bool = True,
    max_rank: int | None = None,
    phase_gtol: float | None = None,
    max_phase_time: float | None = None,
    n_save: int | None = None,
    rtol: float | None = None,
    atol: float = 1e-14,
    solver: str = "auto",
    record_matrices: bool | None = None,
    seed: int = 0,
    polish: bool = True,
    symmetric: bool | None = None,
    progress: bool | None = None,
) -> GLRLResult:
    r"""Greedy Low-Rank Learning on ``problem`` (see the module docstring for the algorithm).

    Arguments:
        problem: a rankbias :class:`~rankbias.problems.Problem`; square for ``psd``.
        eps: squared norm of each appended column (``U <- [U, sqrt(eps) u]``), ``> 0``.
        tol: stop when the top eigenvalue of ``-sym(grad f(W))`` (asymmetric: top singular
            value of ``-grad f(W)``) is ``<= tol``; at least ``1e-15 max(1, ||grad f(0)||_2)``
            (the float64 resolution of that eigenvalue: a smaller ``tol`` is never met, so
            it is refused).
        psd: PSD GLRL on ``W = U U^T`` (default) or the singular-pair variant ``U V^T``.
        max_rank: at most this many phases (default ``min(m, n)``).
        phase_gtol: a phase has converged when ``||grad L(U)||_F <= phase_gtol`` (default
            ``1e-11 * max(1, ||grad f(0)||_2)``).
        max_phase_time: cap on each phase's flow time (default ``200 * escape time``).
        polish: for large completion problems (factor-only path: the flow's sparse backend,
            :func:`rankbias.dynamics.choose_backend`), stop each phase's flow
            within ``1e7 phase_gtol`` of stationarity (past the escape) and finish with
            Newton-CG from there (same minimiser, quadratic); ``False``: flow all the way.
        n_save: records per flow chunk (default 400 for ``d <= 200``, else 3: on the dense
            path the recorder takes a full SVD of ``W`` at each record).
        rtol: relative tolerance of each phase's flow (default ``1e-10``; ``1e-8`` on the
            factor-only path, whose phases are finished by Newton-CG: there the flow only has
            to carry each phase into its minimiser's basin).
        atol: absolute tolerance (capped at ``1e-5 sqrt(eps)`` so the new column's escape
            time is resolved to ``~1e-5 / lam``).
        solver: ``"auto"`` (default): ``"rkc"`` for dense problems; on the factor-only path
            Tsit5 unless the phase is stiff (Hessian spectral radius times phase length
            above ~1e4, measured by power iteration at the phase start), else ``"rkc"``.
            Or any of :data:`rankbias.dynamics.SOLVERS`.
        seed: non-negative integer seed of the eigensolvers' start vectors.
        progress: a live line (phases done, loss) after each phase for runs over 2 s;
            ``None``: when standard error is a terminal, not in a notebook. Ctrl-C returns the
            phases finished (``status == "interrupted"``, a ``RuntimeWarning``).
        symmetric: deprecated spelling of ``psd`` (same meaning; warns once).

    Returns:
        :class:`GLRLResult` (``phases``, ``matrix``, ``kkt``, ...).

    Raises:
        ValueError: bad arguments; ``RuntimeError``: a phase's gradient flow failed.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    eps = check_positive(eps, "eps")
    if eps >= 1:
        raise ValueError(f"`eps` must be small (0 < eps < 1), got {eps}")
    tol = check_positive(tol, "tol")
    seed = check_int_seed(seed)  # phase r uses seed + r
    if symmetric is not None:
        symmetric = check_bool(symmetric, "symmetric")
    psd = check_bool(renamed("glrl()", "symmetric", symmetric, "psd", psd, True), "psd")
    polish = check_bool(polish, "polish")
    check_progress(progress)
    m, n = problem.shape
    if psd and m != n:
        raise ValueError(f"PSD GLRL needs a square problem, got shape {(m, n)}; use psd=False")
    max_rank = min(m, n) if max_rank is None else check_int(max_rank, "max_rank", minimum=0)
    if not problem.is_convex:
        warnings.warn(
            "`problem` is not known to be convex: GLRL's stopping test (grad f PSD, "
            "grad f W = 0) certifies a first-order stationary point only, not a "
            "global minimiser",
            RuntimeWarning,
            stacklevel=2,
        )
    dense = is_dense(problem.shape)
    solver = check_choice(solver, "solver", ("auto", *SOLVERS))
    rtol = (1e-10 if dense else 1e-8) if rtol is None else check_positive(rtol, "rtol")
    record_matrices = (
        dense if record_matrices is None else check_bool(record_matrices, "record_matrices")
    )
    n_save = (400 if dense else 3) if n_save is None else check_int(n_save, "n_save", minimum=2)

    factors = zero_factors(problem.shape, psd)
    negG = grad_operator(problem, factors, psd)
    g0 = norm2(negG)
    # Below the float64 resolution of the top eigenvalue (~1e-16 ||grad f||), `tol` can
    # never be met: every later phase starts from rounding noise, lam ~ 1e-16, whose escape
    # time log(1/eps) / (2 lam) is practically endless.
    tol_floor = _TOL_FLOOR * max(1.0, g0)
    if tol < tol_floor:
        raise ValueError(
            f"`tol`={tol:g} is below the float64 resolution of the top eigenvalue, "
            f"{_TOL_FLOOR:g} * max(1, ||grad f(0)||_2) = {tol_floor:.3g}: GLRL could never "
            f"stop (it would flow through endless phases started by rounding noise); pass "
            f"tol >= {tol_floor:.3g} (default 1e-9)"
        )
    # Tight enough that the next phase's top eigenvalue is not a remnant of this phase's
    # residual gradient (a residual above `tol` starts a spurious phase of escape time
    # log(1/eps) / (2 lam) -> a practically endless flow).
    default_gtol = 1e-11 * max(1.0, g0)
    phase_gtol = default_gtol if phase_gtol is None else check_positive(phase_gtol, "phase_gtol")
    # The new column starts at sqrt(eps): an absolute tolerance near that would leave its
    # escape time uncontrolled (rankbias.glrl._replay.ESCAPE_ATOL).
    atol_r = min(atol, ESCAPE_ATOL * np.sqrt(eps))
    f_prev = float(problem.loss(jnp.zeros(problem.shape)))
    phases: list[GLRLPhase] = []
    t_start = time.perf_counter()
    status = "max_rank"
    lam = np.nan
    # What an interrupt returns: the state after the last finished phase (one store).
    done = (factors, f_prev, lam, 0)
    try:
        with (
            progress_display(progress) as display,
            raise_interrupts(),
        ):  # a phase cut short is no phase: its flow raises
            for r in range(1, max_rank + 2):
                lam, direction, gap = top_direction(negG, psd, seed=seed + r)
                if lam <= tol:
                    status = "kkt"
                    break
                if r > max_rank:
                    break
                if gap < 1e-8 * max(lam, 1e-300):
                    warnings.warn(
                        f"GLRL phase {r}: top eigenvalue {lam:.6g} is (nearly) degenerate "
                        f"(gap {gap:.3g}); the greedy direction is not unique",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                new = append_direction(factors, direction, eps, psd)
                t_escape = np.log(1.0 / eps) / (2.0 * lam)
                t_cap = (
                    200.0 * t_escape
                    if max_phase_time is None
                    else check_positive(max_phase_time, "max_phase_time")
                )
                w0 = time.perf_counter()
                try:
                    traj, factors, conv, gn = run_phase(
                        problem,
                        new,
                        psd,
                        t_escape,
                        lam,
                        phase_gtol=phase_gtol,
                        max_time=t_cap,
                        n_save=n_save,
                        rtol=rtol,
                        atol=atol_r,
                        solver=solver,
                        record_matrices=record_matrices,
                        polish=polish,
                        sparse=not dense and problem.observed_entries() is not None,
                    )
                except (FloatingPointError, RuntimeError) as e:
                    raise RuntimeError(
                        f"GLRL phase {r} (lam = {lam:.6g}): gradient flow failed: {e}"
                    ) from e
                if not conv:
                    warnings.warn(
                        f"GLRL phase {r}: flow not converged by t = {traj.times[-1]:.4g} "
                        f"(||grad L|| = {gn:.3g} > phase_gtol = {phase_gtol:.3g}); "
                        "raise `max_phase_time`",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                W = product(factors, psd) if dense else None
                f_r = float(traj.loss[-1])
                phases.append(
                    GLRLPhase(
                        rank=r,
                        lam=lam,
                        direction=direction,
                        escape_time=float(t_escape),
                        W=W if W is not None else np.asarray(traj.final_matrix),
                        loss=f_r,
                        loss_before=f_prev,
                        factors=factors,
                        trajectory=traj,
                        t_mid=(
                            refine_mid(
                                problem,
                                new,
                                psd,
                                mid_time(traj, f_prev, f_r),
                                lam,
                                f_prev,
                                f_r,
                                rtol,
                                atol_r,
                                n_save,
                                record_matrices,
                            )
                            if dense
                            else mid_time(traj, f_prev, f_r)
                        ),
                        converged=conv,
                        grad_norm=gn,
                        wall_time=time.perf_counter() - w0,
                    )
                )
                f_prev = f_r
                negG = grad_operator(problem, factors, psd)
                done = (factors, f_prev, lam, len(phases))
                report_chunk(
                    ChunkReport("glrl", len(phases), max_rank, f_prev, float("nan"), len(phases)),
                    display,
                )
    except KeyboardInterrupt:
        if not interrupts_return():
            raise
        status = RunStatus.INTERRUPTED.value
        factors, f_prev, lam, n_done = done
        phases = phases[:n_done]
        warn_interrupted("glrl", f"phase {len(phases) + 1} ({len(phases)} finished)", 2)
    if not phases:
        matrix = np.zeros(problem.shape)
    else:
        matrix = phases[-1].W
    kkt = kkt_residuals(problem, factors=factors, psd=psd)
    if status == "max_rank":
        warnings.warn(
            f"GLRL stopped at max_rank={max_rank} with top eigenvalue {lam:.3g} > "
            f"tol={tol:g}: not a KKT point",
            RuntimeWarning,
            stacklevel=2,
        )
    return GLRLResult(
        phases=phases,
        matrix=matrix,
        factors=factors,
        loss=f_prev,
        final_lambda=float(lam),
        kkt=kkt,
        status=status,
        eps=eps,
        tol=tol,
        psd=psd,
        info=dict(
            wall_time=time.perf_counter() - t_start,
            # the phases' flows: dense, or the sparse factor-form backend (large completions)
            backend="sparse" if not dense and problem.observed_entries() is not None else "dense",
            phase_gtol=phase_gtol,
            grad0_norm=g0,
            # what a replay of a phase needs (rankbias.glrl._replay): the dense path pads
            # the width and rescales these tolerances by sqrt(r / R); the factor-only path
            # chooses its solver per phase when "auto" (in each phase's trajectory info)
            replay=dict(rtol=rtol, atol=float(atol_r), padded=True, solver=solver),
        ),
    )
