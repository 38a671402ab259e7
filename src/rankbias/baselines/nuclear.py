r"""Minimum nuclear norm under exact data constraints: ``min ||X||_* s.t. A(X) = b`` (PSD:
``min tr X`` over ``X >= 0``), by Clarabel or SCS through cvxpy or by the augmented Lagrangian
on the factors (:mod:`rankbias._nuclear`), with a certificate computed here."""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._nuclear import alm_min_nuclear, blas_threads, certificate, linear_map
from .._validation import check_positive
from ..problems.base import Problem
from .solution import ConvexSolution, default_psd, nuclear_norm

__all__ = ["min_nuclear_norm"]


# Solver choice by the SDP block size m + n (bench_baselines.py, 2 shared cores): Clarabel
# is exact and sub-second up to 60, but did not finish 100x100 in 15 minutes; SCS (eps 1e-9)
# solved 100x100 (2,000 entries) in 18.8 s against 34 s for ALM, and did not finish 500x500
# in 200 s, which ALM solved in 130 s (relative gap 6e-13).
_CLARABEL_MAX_BLOCK = 60
_SCS_MAX_BLOCK = 200
# With "auto", SCS gets this many seconds before ALM takes over: near the recovery threshold
# SCS at eps 1e-9 crawled (one 100x100 instance ran 45 minutes under load, the typical one
# takes 4.5 s), while ALM's time does not depend on the instance's conditioning as much.
_SCS_AUTO_TIME_LIMIT = 60.0


def _auto_solvers(m: int, n: int) -> list[str]:
    """Solvers ``"auto"`` tries, in order, for an ``(m, n)`` problem."""
    if m + n <= _CLARABEL_MAX_BLOCK:
        return ["CLARABEL", "SCS"]
    if m + n <= _SCS_MAX_BLOCK:
        return ["SCS", "ALM"]
    return ["ALM"]


def min_nuclear_norm(
    problem: Problem,
    *,
    psd: bool | None = None,
    solver: str | None = None,
    tol: float = 1e-9,
    verbose: bool = False,
    time_budget: float | None = None,
) -> ConvexSolution:
    r"""Minimum nuclear norm (PSD: minimum trace) matrix that fits the data exactly.

    ``min ||X||_*  s.t. A(X) = b``, or with ``psd``: ``min tr X  s.t. A(X) = b, X >= 0``
    (completion: ``A(X) = X_Omega``, sensing: ``A(X)_k = <A_k, X>``).

    Solvers (``solver``):

    * ``"auto"``/``None`` (default): ``"CLARABEL"`` when ``m + n <= 60`` (then SCS if it
      fails), ``"SCS"`` when ``m + n <= 200`` (then ALM if it fails, returns an inaccurate answer
      or takes more than 60 s), else ``"ALM"``.
    * ``"ALM"``: augmented Lagrangian on the factors ``X = U V^T`` (PSD ``U U^T``) with rank
      escapes (see :mod:`rankbias._nuclear`); first-order, O(|Omega| r) per gradient.
      Stops at residual ``<= tol * max|b|`` and dual norm ``<= 1 + tol``.
    * ``"CLARABEL"`` (interior point) or ``"SCS"`` (first-order conic, eps 1e-9) on the
      SDP through cvxpy. With ``"auto"`` on a small problem, SCS is tried when Clarabel fails.

    Whatever the solver, the answer carries a certificate computed here from the matrix
    ``W`` and the constraint multipliers ``y`` (dual matrix ``Y = A^*(y)``): the dual
    ``max <y, b> s.t. ||Y||_2 <= 1`` (PSD: ``lambda_max(sym Y) <= 1``) at ``y`` rescaled to
    feasibility is a lower bound on the optimum (``dual_objective``), ``objective`` is
    ``||W||_*`` (``tr W``), ``constraint_residual = max |A(W) - b|``. ``duality_gap`` is
    ``max(0, objective - dual_objective)``: the raw difference (``info["duality_gap_raw"]``)
    can be slightly negative, by at most about ``||Y||_2`` times the residual, because ``W``
    fits the data only up to the residual.

    Arguments:
        problem: :class:`MatrixCompletion` or :class:`MatrixSensing`
            (:class:`MatrixEstimation`: the answer is ``Y``).
        psd: PSD variant; default: ``problem.symmetric`` (symmetric completion).
        solver: ``"auto"``, ``"ALM"``, ``"CLARABEL"`` or ``"SCS"``.
        tol: ALM stopping tolerance (relative residual and dual infeasibility).
        time_budget: seconds (``> 0``; default none). When the solve passes it, the solver
            stops and returns its current point with the certificate above (objective,
            dual bound, gap, residual) and ``status="time_budget"``, without a warning.
            ALM looks at the clock between its multiplier updates and every 200 L-BFGS
            steps; SCS and Clarabel get the remaining time as their time limit.

    Returns:
        :class:`ConvexSolution` (``np.asarray`` gives the ``(m, n)`` matrix).

    Raises:
        ValueError: a problem without exact linear constraints, an unknown ``solver``,
            ``psd`` on a rectangular problem, a ``time_budget`` that is not positive.
        RuntimeError: every cvxpy solver failed.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    psd = default_psd(problem) if psd is None else bool(psd)
    m, n = problem.shape
    if psd and m != n:
        raise ValueError(f"`psd=True` needs a square problem, got shape {(m, n)}")
    name = "AUTO" if solver is None else str(solver).upper()
    if name not in ("AUTO", "ALM", "CLARABEL", "SCS"):
        raise ValueError(f"`solver` must be 'auto', 'ALM', 'CLARABEL' or 'SCS', got {solver!r}")
    tol = check_positive(tol, "tol")
    deadline = None
    if time_budget is not None:
        deadline = time.perf_counter() + check_positive(time_budget, "time_budget")
    Y = problem.interpolant()
    if Y is not None:  # the data determine the matrix (full observation)
        obj = float(np.trace(Y)) if psd else nuclear_norm(Y)
        return ConvexSolution(
            Y, obj, "closed_form", "none", psd, obj, 0.0, 0.0, info=dict(duality_gap_raw=0.0)
        )
    lm = linear_map(problem)  # raises for a problem without exact constraints
    tried = _auto_solvers(m, n) if name == "AUTO" else [name]
    info: dict = {}
    if tried[0] != "ALM":
        try:
            Xv, y, status, name, errors = _cvxpy_solve(
                problem,
                psd,
                [s for s in tried if s != "ALM"],
                verbose,
                scs_time_limit=_SCS_AUTO_TIME_LIMIT if "ALM" in tried else None,
                deadline=deadline,
            )
            info.update(errors=errors)
            if status != "optimal" and _past(deadline):
                status, tried = "time_budget", [name]
            elif status != "optimal" and "ALM" in tried:
                # An inaccurate or time-limited conic answer: the factor solver certifies.
                info["errors"] = [*errors, f"{name}: status {status}, handed to ALM"]
                tried = ["ALM"]
            elif status != "optimal":
                warnings.warn(
                    f"min_nuclear_norm: solver {name} returned status {status}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        except RuntimeError as e:
            if "ALM" not in tried:
                raise
            info.update(errors=[str(e)])
            tried = ["ALM"]
    if tried[0] == "ALM":
        name = "ALM"
        with blas_threads(problem.shape):
            Xv, y, alm = alm_min_nuclear(problem, psd, tol=tol, verbose=verbose, deadline=deadline)
        status = "optimal" if alm["converged"] else "optimal_inaccurate"
        if alm["out_of_time"]:
            status = "time_budget"
        info.update(
            iterations=alm["outer"],
            gradient_evaluations=alm["evals"],
            factor_rank=alm["rank"],
            solve_time=alm["time"],
        )
        if status == "optimal_inaccurate":
            warnings.warn(
                f"min_nuclear_norm: ALM did not reach tol={tol:g} in "
                f"{alm['outer']} multiplier updates; the certificate says how "
                f"far it is",
                RuntimeWarning,
                stacklevel=2,
            )
    with blas_threads(problem.shape):
        cert = certificate(Xv, y, lm.apply, lm.adjoint, lm.b, psd)
    gap_raw = cert["gap_raw"]
    info.update(
        duality_gap_raw=gap_raw,
        dual_norm=cert["dual_norm"],
        relative_gap=max(gap_raw, 0.0) / max(abs(cert["primal"]), 1e-300),
        min_eigenvalue=float(np.linalg.eigvalsh(0.5 * (Xv + Xv.T))[0]) if psd else None,
    )
    return ConvexSolution(
        Xv,
        cert["primal"],
        status,
        name,
        psd,
        cert["dual"],
        max(gap_raw, 0.0),
        cert["residual"],
        info=info,
    )


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


def _cvxpy_solve(
    problem: Problem,
    psd: bool,
    tried: list[str],
    verbose: bool,
    scs_time_limit=None,
    deadline: float | None = None,
):
    """The SDP through cvxpy: ``(X, y, status, solver, errors)``; SCS stops after
    ``scs_time_limit`` seconds when given (then its status is not ``"optimal"``), SCS and
    Clarabel at ``deadline`` (a ``time.perf_counter()`` value) when given."""
    import cvxpy as cp  # optional and slow to import: only when a conic solver runs

    m, n = problem.shape
    lm = linear_map(problem)
    X = cp.Variable((m, n), symmetric=psd)
    if lm.rows is not None:  # an entry selection
        AX = X[lm.rows, lm.cols]
    else:
        assert lm.matrix is not None  # the other form of a LinearMap
        AX = lm.matrix @ cp.vec(X, order="C")
    cons: list[cp.Constraint] = [AX == lm.b]
    if psd:
        cons.append(X >> 0)
        obj = cp.Minimize(cp.trace(X))
    else:
        obj = cp.Minimize(cp.normNuc(X))
    prob = cp.Problem(obj, cons)
    errors = []
    for name in tried:
        try:
            kw: dict = dict(eps=1e-9, max_iters=100_000) if name == "SCS" else {}
            left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
            with warnings.catch_warnings():
                if name == "SCS" and (scs_time_limit is not None or left is not None):
                    kw["time_limit_secs"] = float(min(scs_time_limit or np.inf, left or np.inf))
                    # The caller hands an inaccurate answer to ALM: no warning for it.
                    warnings.filterwarnings("ignore", "Solution may be inaccurate")
                if name == "CLARABEL" and left is not None:
                    kw["time_limit"] = float(left)
                    warnings.filterwarnings("ignore", "Solution may be inaccurate")
                prob.solve(solver=name, verbose=verbose, **kw)
        except (cp.SolverError, ValueError) as e:
            errors.append(f"{name}: {e}")
            continue
        if prob.status in ("optimal", "optimal_inaccurate") and X.value is not None:
            break
        errors.append(f"{name}: status {prob.status}")
    else:
        raise RuntimeError(
            "min_nuclear_norm: every solver failed ("
            + "; ".join(errors)
            + "). Install clarabel/scs, or check that the constraints are feasible "
            "(noisy sensing with more measurements than unknowns is not)"
        )
    y = np.asarray(cons[0].dual_value, dtype=np.float64).ravel()
    return np.asarray(X.value, dtype=np.float64), y, prob.status, name, errors
