r"""Convex and rank-constrained baselines for the implicit bias of gradient flow.

* :func:`min_nuclear_norm`: ``min ||X||_*`` (PSD: ``min tr X`` over ``X >= 0``) subject to
  exact data constraints ``A(X) = b`` (completion: ``X_ij = M_ij`` on ``Omega``; sensing:
  ``<A_k, X> = y_k``): Clarabel (cvxpy) for ``m + n <= 60``, above a first-order
  augmented Lagrangian on the factors (:mod:`rankbias._nuclear`); SCS on request. The
  answer carries the solver status and a duality gap computed here from the constraint
  multipliers, so an instance is certified by a number, not by the solver's word.
* :func:`soft_impute`, :func:`soft_impute_path`: ``min f(X) + lam ||X||_*`` (PSD:
  ``+ lam tr X`` over ``X >= 0``) by accelerated proximal gradient (restarted FISTA) with
  step ``1 / Lip(grad f)``. For
  completion with ``normalization="sum"`` the step is 1 and the iteration is exactly
  Soft-Impute (Mazumder, Hastie & Tibshirani 2010): ``X <- S_lam(P_Omega(M) + P_Omega^perp(X))``.
* :func:`best_rank_fit`: ``min f(X)`` over ``rank(X) <= r`` (PSD: ``X = U U^T``, ``U`` of
  shape ``(d, r)``), by L-BFGS on the factor from several random starts: the "rank
  minimisation" reference.
* :func:`mean_baseline`, :func:`bias_baseline`: the simple rating predictors (global, user
  or item mean; mean plus regularised user and item biases), the baselines a factorization
  must beat on real ratings.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize as sopt

from ._nuclear import (
    SVT,
    alm_min_nuclear,
    blas_threads,
    certificate,
    factored_polish,
    fista_prox_grad,
    linear_map,
)
from ._validation import check_choice, check_int, check_matrix, check_positive
from .problems import MatrixCompletion, MatrixEstimation, MatrixSensing, Problem

__all__ = [
    "ConvexSolution",
    "min_nuclear_norm",
    "soft_impute",
    "soft_impute_path",
    "best_rank_fit",
    "nuclear_norm",
    "MeanPredictor",
    "mean_baseline",
    "bias_baseline",
]


# Module-level compiled pieces (a jit of a closure made inside a call compiles again on
# every call); the problem is a traced argument, the sizes are static.
def _unpack(z, m: int, n: int, rank: int, psd: bool):
    if psd:
        U = z.reshape(m, rank)
        return U @ U.T
    return z[: m * rank].reshape(m, rank) @ z[m * rank :].reshape(n, rank).T


@eqx.filter_jit
def _factored_value_and_grad(problem, z, m, n, rank, psd):
    return jax.value_and_grad(lambda x: problem.loss(_unpack(x, m, n, rank, psd)))(z)


def nuclear_norm(W) -> float:
    """``||W||_* = sum_i sigma_i(W)`` of a real, finite ``(m, n)`` matrix ``W``.

    Raises:
        ValueError: ``W`` not 2-D (a vector has no nuclear norm), empty, complex or with
            NaN/inf entries (the SVD would fail with an unnamed ``LinAlgError``).
    """
    W = check_matrix(W, "W")
    return float(np.sum(np.linalg.svd(W, compute_uv=False)))


@dataclass
class ConvexSolution:
    """A baseline's answer: ``matrix`` plus how well it was solved.

    ``np.asarray(sol)`` gives the matrix. ``objective`` is ``||X||_*`` (``tr X`` for PSD),
    ``dual_objective`` a certified lower bound (from a dual-feasible rescaling of the
    solver's multipliers), ``duality_gap = max(0, objective - dual_objective)`` (the raw,
    possibly slightly negative difference is ``info["duality_gap_raw"]``: ``X`` fits the
    data only up to ``constraint_residual = max |A(X) - b|``).
    """

    matrix: np.ndarray
    objective: float
    status: str
    solver: str
    psd: bool
    dual_objective: float = np.nan
    duality_gap: float = np.nan
    constraint_residual: float = np.nan
    info: dict = field(default_factory=dict)

    def __array__(self, dtype=None, copy=None):
        return self.matrix if dtype is None else self.matrix.astype(dtype)

    @property
    def shape(self):
        return self.matrix.shape

    def _rows(self):
        from ._repr import num

        return [
            ("matrix", f"{self.matrix.shape}" + (" PSD" if self.psd else "")),
            ("objective", num(self.objective, 8)),
            ("dual objective", num(self.dual_objective, 8)),
            ("duality gap", num(self.duality_gap, 3)),
            ("constraint residual", num(self.constraint_residual, 3)),
        ] + [(k, num(v)) for k, v in self.info.items() if isinstance(v, (int, float, str))][:6]

    def __repr__(self) -> str:
        from ._repr import render

        return render(
            f"ConvexSolution(status={self.status!r}, solver={self.solver!r})", self._rows()
        )

    def _repr_html_(self) -> str:
        from ._repr import render_html

        return render_html(
            f"ConvexSolution(status={self.status!r}, solver={self.solver!r})", self._rows()
        )

    def summary(self) -> dict:
        return dict(
            objective=self.objective,
            dual_objective=self.dual_objective,
            duality_gap=self.duality_gap,
            constraint_residual=self.constraint_residual,
            status=self.status,
            solver=self.solver,
            psd=self.psd,
            **self.info,
        )


def _constraints(problem: Problem):
    """``(A_list_fn, b)``: the linear map as ``A(X)`` (cvxpy), its adjoint and the data."""
    if isinstance(problem, MatrixCompletion):
        rows, cols = np.asarray(problem.rows), np.asarray(problem.cols)
        b = np.asarray(problem.values, dtype=np.float64)

        def A_cvx(X):
            return X[rows, cols]

        def A_np(X):
            return X[rows, cols]

        def A_adj(y):
            out = np.zeros(problem.shape)
            np.add.at(out, (rows, cols), y)
            return out

        return A_cvx, A_np, A_adj, b
    if isinstance(problem, MatrixSensing):
        A = np.asarray(problem.A, dtype=np.float64)
        k = A.shape[0]
        Amat = A.reshape(k, -1)
        b = np.asarray(problem.y, dtype=np.float64)

        def A_vec_cvx(X):
            import cvxpy as cp

            return Amat @ cp.vec(X, order="C")

        return (
            A_vec_cvx,
            lambda X: Amat @ X.ravel(),
            lambda y: (Amat.T @ y).reshape(problem.shape),
            b,
        )
    raise ValueError(
        f"`problem` must be a MatrixCompletion or MatrixSensing (exact data "
        f"constraints), got {type(problem).__name__}"
    )


def _default_psd(problem: Problem) -> bool:
    return bool(getattr(problem, "symmetric", False))


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

    Returns:
        :class:`ConvexSolution` (``np.asarray`` gives the ``(m, n)`` matrix).

    Raises:
        ValueError: a problem without exact linear constraints, an unknown ``solver``,
            ``psd`` on a rectangular problem.
        RuntimeError: every cvxpy solver failed.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    psd = _default_psd(problem) if psd is None else bool(psd)
    m, n = problem.shape
    if psd and m != n:
        raise ValueError(f"`psd=True` needs a square problem, got shape {(m, n)}")
    name = "AUTO" if solver is None else str(solver).upper()
    if name not in ("AUTO", "ALM", "CLARABEL", "SCS"):
        raise ValueError(f"`solver` must be 'auto', 'ALM', 'CLARABEL' or 'SCS', got {solver!r}")
    tol = check_positive(tol, "tol")
    if isinstance(problem, MatrixEstimation):
        Y = np.asarray(problem.Y, dtype=np.float64)
        obj = float(np.trace(Y)) if psd else nuclear_norm(Y)
        return ConvexSolution(
            Y, obj, "closed_form", "none", psd, obj, 0.0, 0.0, info=dict(duality_gap_raw=0.0)
        )
    A_np, A_adj, b = linear_map(problem)
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
            )
            info.update(errors=errors)
            if status != "optimal" and "ALM" in tried:
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
            Xv, y, alm = alm_min_nuclear(problem, psd, tol=tol, verbose=verbose)
        status = "optimal" if alm["converged"] else "optimal_inaccurate"
        info.update(
            iterations=alm["outer"],
            gradient_evaluations=alm["evals"],
            factor_rank=alm["rank"],
            solve_time=alm["time"],
        )
        if not alm["converged"]:
            warnings.warn(
                f"min_nuclear_norm: ALM did not reach tol={tol:g} in "
                f"{alm['outer']} multiplier updates; the certificate says how "
                f"far it is",
                RuntimeWarning,
                stacklevel=2,
            )
    with blas_threads(problem.shape):
        cert = certificate(Xv, y, A_np, A_adj, b, psd)
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


def _cvxpy_solve(problem: Problem, psd: bool, tried: list[str], verbose: bool, scs_time_limit=None):
    """The SDP through cvxpy: ``(X, y, status, solver, errors)``; SCS stops after
    ``scs_time_limit`` seconds when given (then its status is not ``"optimal"``)."""
    import cvxpy as cp

    m, n = problem.shape
    A_cvx, _, _, b = _constraints(problem)
    X = cp.Variable((m, n), symmetric=psd)
    cons: list[cp.Constraint] = [A_cvx(X) == b]
    if psd:
        cons.append(X >> 0)
        obj = cp.Minimize(cp.trace(X))
    else:
        obj = cp.Minimize(cp.normNuc(X))
    prob = cp.Problem(obj, cons)
    errors = []
    for name in tried:
        try:
            kw = dict(eps=1e-9, max_iters=100_000) if name == "SCS" else {}
            with warnings.catch_warnings():
                if name == "SCS" and scs_time_limit is not None:
                    kw["time_limit_secs"] = float(scs_time_limit)
                    # The caller hands an inaccurate answer to ALM: no warning for it.
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


# ----------------------------------------------------------------------------------------
# Soft-Impute / proximal gradient


def _lipschitz(problem: Problem) -> float:
    if isinstance(problem, MatrixCompletion):
        return float(problem.weight)
    if isinstance(problem, MatrixEstimation):
        return 1.0
    if isinstance(problem, MatrixSensing):
        A = np.asarray(problem.A).reshape(problem.A.shape[0], -1)
        return float(np.linalg.norm(A, 2) ** 2 / A.shape[0])
    # Generic: power iteration on the Hessian-vector product at 0.
    g = jax.grad(problem.loss)
    v = jnp.asarray(np.random.default_rng(0).standard_normal(problem.shape))
    lam = 1.0
    for _ in range(50):
        hv = jax.jvp(g, (jnp.zeros(problem.shape),), (v,))[1]
        lam = float(jnp.linalg.norm(hv))
        v = hv / max(lam, 1e-300)
    return max(lam, 1e-12)


@eqx.filter_jit
def _jit_grad(problem: Problem, X: jax.Array) -> jax.Array:
    return problem.grad(X)


def _numpy_grad(problem: Problem):
    """``grad f`` as a NumPy function: closed form for completion (no JAX dispatch per
    iteration, which dominated small Soft-Impute runs), the compiled gradient otherwise."""
    if isinstance(problem, MatrixCompletion):
        mask = problem.mask
        Mv = np.zeros(problem.shape)
        Mv[np.asarray(problem.rows), np.asarray(problem.cols)] = np.asarray(problem.values)
        w = float(problem.weight)
        return lambda X: w * np.where(mask, X - Mv, 0.0)
    return lambda X: np.asarray(_jit_grad(problem, jnp.asarray(X)), dtype=np.float64)


def _si_setup(problem: Problem, psd: bool | None, svd: str, max_iter: int):
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    check_int(max_iter, "max_iter", minimum=1)
    check_choice(svd, "svd", ("auto", "full", "randomized"))
    psd = _default_psd(problem) if psd is None else bool(psd)
    if psd and problem.shape[0] != problem.shape[1]:
        raise ValueError(f"`psd=True` needs a square problem, got shape {problem.shape}")
    randomized = svd == "randomized" or (svd == "auto" and min(problem.shape) > _FULL_SVD_MAX)
    svt, grad = SVT(problem.shape, psd, randomized), _numpy_grad(problem)
    # The factored polish needs a quadratic loss (its value from gradients alone); None: off.
    quadratic = isinstance(problem, MatrixCompletion | MatrixSensing | MatrixEstimation)
    return svt, grad, 1.0 / _lipschitz(problem), psd if quadratic else None


# Below this size a full LAPACK SVD (about 2 ms at 100x100) beats the range finder's
# several QR factorisations per call.
_FULL_SVD_MAX = 200


def soft_impute(
    problem: Problem,
    lam: float,
    *,
    psd: bool | None = None,
    X0=None,
    max_iter: int = 20_000,
    tol: float = 1e-10,
    svd: str = "auto",
) -> np.ndarray:
    r"""``argmin_X f(X) + lam ||X||_*`` (PSD: ``f(X) + lam tr X`` over ``X >= 0``).

    Accelerated proximal gradient (FISTA with gradient restart)
    ``X <- prox_{lam t ||.||_*}(Y - t grad f(Y))``, ``t = 1/Lip``, ``Y`` the extrapolated
    point; for completion (``"sum"``) a plain step is Soft-Impute
    ``X <- S_lam(P_Omega(M) + P_Omega^perp(X))`` with ``S_lam`` the singular-value soft
    threshold, and the minimiser is the same. Stops when
    ``||X_{k+1} - Y_k||_F <= tol * max(1, ||X_{k+1}||_F)``. For quadratic losses the run
    is shortcut at ``sqrt(tol)`` by an L-BFGS polish of the factored objective
    ``f(U V^T) + lam (||U||^2 + ||V||^2) / 2`` on the iterate's rank (same stopping rule).

    Arguments:
        lam: ``>= 0``; ``X0``: warm start (default 0); ``svd``: ``"full"`` (LAPACK),
            ``"randomized"`` (range finder warm-started from the previous iterate's singular
            subspace) or ``"auto"`` (full up to ``min(m, n) = 200``).

    Returns:
        the ``(m, n)`` minimiser (warns if ``max_iter`` is reached).

    Raises:
        ValueError: a negative ``lam``, an unknown ``svd``, ``psd`` on a rectangular problem.
    """
    lam = check_positive(lam, "lam", allow_zero=True)
    svt, grad, step, polish_psd = _si_setup(problem, psd, svd, max_iter)
    X0 = np.zeros(problem.shape) if X0 is None else check_matrix(X0, "X0", shape=problem.shape)
    with blas_threads(problem.shape):
        return _soft_impute(grad, X0, lam, step, svt, tol, max_iter, polish_psd)


def _soft_impute(grad, X0, lam, step, svt, tol, max_iter, polish_psd) -> np.ndarray:
    polish = None
    if polish_psd is not None and lam > 0:
        polish = lambda X: factored_polish(
            grad, X, lam, polish_psd, gtol=0.1 * tol * max(1.0, float(np.linalg.norm(X)))
        )
    X, _, ok = fista_prox_grad(grad, X0, lam, step, svt, tol, max_iter, polish=polish)
    if not ok:
        warnings.warn(
            f"soft_impute: not converged in {max_iter} iterations at lam={lam:g}; "
            f"raise `max_iter` or use soft_impute_path for warm starts",
            RuntimeWarning,
            stacklevel=3,
        )
    return X


def soft_impute_path(
    problem: Problem,
    lams,
    *,
    psd: bool | None = None,
    max_iter: int = 20_000,
    tol: float = 1e-10,
    svd: str = "auto",
) -> list[np.ndarray]:
    """:func:`soft_impute` along ``lams`` (solved from the largest down, each warm-started
    from the previous minimiser and, with the randomized SVD, from its singular subspace);
    returned in the order of ``lams``."""
    lams = [check_positive(v, "lams", allow_zero=True) for v in np.ravel(lams)]
    if not lams:
        raise ValueError("`lams` is empty")
    svt, grad, step, polish_psd = _si_setup(problem, psd, svd, max_iter)
    order = np.argsort(lams)[::-1]
    out: dict[int, np.ndarray] = {}
    X = np.zeros(problem.shape)
    with blas_threads(problem.shape):
        for i in order:
            X = _soft_impute(grad, X, lams[i], step, svt, tol, max_iter, polish_psd)
            out[int(i)] = X
    return [out[i] for i in range(len(lams))]


# ----------------------------------------------------------------------------------------
# Best rank-r fit


def best_rank_fit(
    problem: Problem,
    rank: int,
    *,
    psd: bool | None = None,
    restarts: int = 5,
    seed: int = 0,
    gtol: float = 1e-12,
    max_iter: int = 20_000,
) -> tuple[np.ndarray, float]:
    r"""``min f(X)`` over ``rank(X) <= rank`` (PSD: ``X = U U^T``, ``U`` of shape ``(d, rank)``;
    else ``X = U V^T``), by L-BFGS on the factors from ``restarts`` random starts.

    Non-convex: the best of the restarts is returned as ``(X, f(X))``; it is a local
    minimiser, global in the benign landscapes of completion/sensing with enough data.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    rank = check_int(rank, "rank", minimum=1)
    restarts = check_int(restarts, "restarts", minimum=1)
    m, n = problem.shape
    if rank > min(m, n):
        raise ValueError(f"`rank`={rank} exceeds min(shape)={min(m, n)}")
    psd = _default_psd(problem) if psd is None else bool(psd)
    if psd and m != n:
        raise ValueError(f"`psd=True` needs a square problem, got shape {(m, n)}")

    unpack = lambda z: _unpack(z, m, n, rank, psd)

    def fun(z):
        f, g = _factored_value_and_grad(problem, jnp.asarray(z), m, n, rank, psd)
        return float(f), np.asarray(g, dtype=np.float64)

    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray | None, float] = (None, np.inf)
    size = m * rank if psd else (m + n) * rank
    for _ in range(restarts):
        z0 = rng.standard_normal(size) / np.sqrt(max(m, n))
        r = sopt.minimize(
            fun,
            z0,
            jac=True,
            method="L-BFGS-B",
            options=dict(maxiter=max_iter, gtol=gtol, ftol=0.0, maxcor=30),
        )
        if r.fun < best[1]:
            best = (np.asarray(unpack(jnp.asarray(r.x))), float(r.fun))
    if best[0] is None:
        raise RuntimeError(
            f"best_rank_fit: L-BFGS ended at a non-finite objective from all "
            f"{restarts} start(s); check the problem's scale"
        )
    return best[0], best[1]


# ----------------------------------------------------------------------- simple predictors
@dataclass(eq=False)
class MeanPredictor:
    r"""A simple ratings predictor: ``W_ij = clip(mu + b_i + c_j)``.

    ``kind`` says which terms were fitted: ``"global"`` (``mu`` only), ``"user"`` /
    ``"item"`` (``b`` / ``c``: each user's / item's mean minus ``mu``; a user or item
    without a training rating gets ``mu``) or ``"biases"`` (``mu``, ``b`` and ``c`` jointly
    by regularised least squares, see :func:`bias_baseline`). ``clip``: ``(lo, hi)``
    predictions are clipped to, or ``None``.

    ``np.asarray(pred)`` / :attr:`matrix` is the ``(m, n)`` prediction, :meth:`predict`
    gives entries, :meth:`rmse` scores a :class:`~rankbias.problems.HeldOut` (as
    ``heldout_rmse(pred, heldout)`` does).
    """

    kind: str
    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    clip: tuple[float, float] | None
    lam: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.user_bias.size), int(self.item_bias.size))

    def predict(self, rows, cols) -> np.ndarray:
        """Predictions at entries ``(rows[k], cols[k])`` (0-based index arrays)."""
        r, c = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        out = self.mu + self.user_bias[r] + self.item_bias[c]
        return out if self.clip is None else np.clip(out, *self.clip)

    @property
    def matrix(self) -> np.ndarray:
        """The ``(m, n)`` prediction."""
        out = self.mu + self.user_bias[:, None] + self.item_bias[None, :]
        return out if self.clip is None else np.clip(out, *self.clip)

    def __array__(self, dtype=None, copy=None):
        return self.matrix if dtype is None else self.matrix.astype(dtype)

    def rmse(self, heldout) -> float:
        """Root mean squared error on held-out ratings, through the entries only (no
        ``(m, n)`` matrix is formed)."""
        if len(heldout) == 0:
            raise ValueError("`heldout` holds no entry: nothing to score")
        if tuple(heldout.shape) != self.shape:
            raise ValueError(
                f"`heldout` has shape {tuple(heldout.shape)}, the predictor {self.shape}"
            )
        r = self.predict(heldout.rows, heldout.cols) - heldout.values
        return float(np.sqrt(np.mean(r * r)))

    def __repr__(self) -> str:
        from ._repr import render

        return render(f"MeanPredictor(kind={self.kind!r})", self._rows())

    def _repr_html_(self) -> str:
        from ._repr import render_html

        return render_html(f"MeanPredictor(kind={self.kind!r})", self._rows())

    def _rows(self):
        from ._repr import num

        rows = [("shape", str(self.shape)), ("mu", num(self.mu, 6))]
        if self.kind == "biases":
            rows.append(("lam", num(self.lam)))
        rows.append(("clip", "-" if self.clip is None else f"[{self.clip[0]:g}, {self.clip[1]:g}]"))
        return rows + [(k, num(v)) for k, v in self.info.items()]


def _train_triplets(train) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    if not isinstance(train, MatrixCompletion):
        raise TypeError(
            f"`train` must be a rankbias.MatrixCompletion (e.g. from load_ratings or a "
            f"split), got {type(train).__name__}"
        )
    return (
        np.asarray(train.rows, np.int64),
        np.asarray(train.cols, np.int64),
        np.asarray(train.values, np.float64),
        (int(train.shape[0]), int(train.shape[1])),
    )


def _check_clip(clip, v: np.ndarray) -> tuple[float, float] | None:
    if clip is None or clip is False:
        return None
    if clip is True:
        return float(v.min()), float(v.max())
    try:
        lo, hi = (float(x) for x in clip)
    except (TypeError, ValueError):
        raise ValueError(
            f"`clip` must be None, True (the training ratings' range) or a pair (lo, hi), "
            f"got {clip!r}"
        ) from None
    if not lo <= hi:
        raise ValueError(f"`clip` must have lo <= hi, got ({lo}, {hi})")
    return lo, hi


def mean_baseline(train, kind: str = "global", *, clip=None) -> MeanPredictor:
    r"""The global, user or item mean of the training ratings as a prediction.

    * ``"global"``: ``W_ij = mu = mean_{Omega} M``; its held-out RMSE is
      ``sqrt(mean_test (R - mu)^2)``.
    * ``"user"``: ``W_ij = mean_{j': (i, j') in Omega} M_ij'`` (``mu`` for a user with no
      training rating); ``"item"`` likewise over each column.

    Arguments:
        train: a :class:`~rankbias.MatrixCompletion` (the training ratings).
        kind: ``"global"``, ``"user"`` or ``"item"``.
        clip: ``None``, ``True`` (the training ratings' range) or ``(lo, hi)``.
    """
    r, c, v, (m, n) = _train_triplets(train)
    check_choice(kind, "kind", ("global", "user", "item"))
    clip = _check_clip(clip, v)
    mu = float(v.mean())
    b, d = np.zeros(m), np.zeros(n)
    if kind != "global":
        idx, size = (r, m) if kind == "user" else (c, n)
        cnt = np.bincount(idx, minlength=size)
        s = np.bincount(idx, weights=v - mu, minlength=size)
        dev = np.divide(s, cnt, out=np.zeros(size), where=cnt > 0)
        if kind == "user":
            b = dev
        else:
            d = dev
    return MeanPredictor(kind, mu, b, d, clip, info={"num_train": int(v.size)})


# Above this many items (or users, whichever is fewer) the Schur complement would be a
# dense matrix of more than 8000^2 floats (0.5 GB): conjugate gradients instead.
_BIAS_DENSE_MAX = 8000


def _bias_normal(r, c, v, m, n, lam):
    """The normal equations' operator and right-hand side in ``z = (mu, b, c)``."""
    cu = np.bincount(r, minlength=m).astype(float)
    ci = np.bincount(c, minlength=n).astype(float)

    def apply(z):
        mu, b, d = z[0], z[1 : 1 + m], z[1 + m :]
        pred = mu + b[r] + d[c]
        return np.concatenate(
            [
                [pred.sum()],
                np.bincount(r, weights=pred, minlength=m) + lam * b,
                np.bincount(c, weights=pred, minlength=n) + lam * d,
            ]
        )

    rhs = np.concatenate(
        [[v.sum()], np.bincount(r, weights=v, minlength=m), np.bincount(c, weights=v, minlength=n)]
    )
    return apply, rhs, cu, ci


def _bias_schur(r, c, v, m, n, lam, cu, ci):
    """Exact solve, eliminating the ``m`` row biases: a dense ``(n + 1)`` SPD system."""
    import scipy.linalg
    import scipy.sparse as sp

    C = sp.csr_matrix((np.ones(v.size), (r, c)), shape=(m, n))  # train holds no repeats
    w = 1.0 / (cu + lam)
    gb = np.bincount(r, weights=v, minlength=m)
    S = np.empty((n + 1, n + 1))
    S[1:, 1:] = np.diag(ci + lam) - (C.T @ sp.diags(w) @ C).toarray()
    S[0, 0] = v.size - np.sum(cu * cu * w)
    S[0, 1:] = S[1:, 0] = ci - C.T @ (cu * w)
    rhs = np.concatenate([[v.sum() - np.sum(cu * w * gb)], np.bincount(c, weights=v, minlength=n)
                          - C.T @ (w * gb)])  # fmt: skip
    z = scipy.linalg.solve(S, rhs, assume_a="pos")
    mu, d = float(z[0]), z[1:]
    b = w * (gb - cu * mu - C @ d)
    return mu, b, d


def bias_baseline(train, lam: float = 1.0, *, clip=None, rtol: float = 1e-10) -> MeanPredictor:
    r"""Mean plus user and item biases: ``W_ij = mu + b_i + c_j`` minimising

    .. math::
        \sum_{(i,j)\in\Omega} (M_{ij} - \mu - b_i - c_j)^2 + \lambda\,(\|b\|^2 + \|c\|^2)

    (``mu`` not penalised). ``lam`` (default 1) shrinks a bias fitted on few ratings toward 0,
    as ``lam`` extra ratings at the mean would; it must be ``> 0`` (at ``lam = 0`` the
    biases are defined up to a constant). Solved exactly: the user (or item, whichever are
    more) biases are eliminated in closed form and the remaining ``min(m, n) + 1`` normal
    equations are solved by Cholesky (above 8000 of them, by conjugate gradients to
    ``rtol``). The answer is checked: ``info["residual"]`` is the normal equations'
    relative residual (tested against a dense least-squares solve to 1e-8).

    Raises:
        ValueError: ``lam <= 0``. ``RuntimeError``: a residual above ``rtol`` (never a
            silent, unsolved answer).
    """
    r, c, v, (m, n) = _train_triplets(train)
    lam = check_positive(lam, "lam")
    rtol = check_positive(rtol, "rtol")
    clip = _check_clip(clip, v)
    apply, rhs, cu, ci = _bias_normal(r, c, v, m, n, lam)
    method = "cholesky"
    if min(m, n) <= _BIAS_DENSE_MAX:
        if n <= m:
            mu, b, d = _bias_schur(r, c, v, m, n, lam, cu, ci)
        else:
            mu, d, b = _bias_schur(c, r, v, n, m, lam, ci, cu)
    else:
        import scipy.sparse.linalg as spla

        method = "cg"
        diag = np.concatenate([[v.size], cu + lam, ci + lam])
        size = 1 + m + n
        linop: Any = spla.LinearOperator  # scipy's stubs miss its `matvec` keyword
        op = linop(shape=(size, size), matvec=apply, dtype=float)
        pre = linop(shape=(size, size), matvec=lambda x: x / diag, dtype=float)
        z, _ = spla.cg(op, rhs, rtol=rtol / 10, maxiter=10 * (1 + m + n), M=pre)
        mu, b, d = float(z[0]), z[1 : 1 + m], z[1 + m :]
    res = float(np.linalg.norm(apply(np.concatenate([[mu], b, d])) - rhs) / np.linalg.norm(rhs))
    if not res <= rtol:
        raise RuntimeError(
            f"bias_baseline: the normal equations' relative residual is {res:.3g} "
            f"(> rtol={rtol:g}) after {method}; the problem may be too ill-conditioned "
            f"(raise `lam`)"
        )
    return MeanPredictor(
        "biases", mu, b, d, clip, lam,
        {"method": method, "residual": res, "num_train": int(v.size)},
    )  # fmt: skip
