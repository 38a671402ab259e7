r"""Convex and rank-constrained baselines for the implicit bias of gradient flow.

* :func:`min_nuclear_norm`: ``min ||X||_*`` (PSD: ``min tr X`` over ``X >= 0``) subject to
  exact data constraints ``A(X) = b`` (completion: ``X_ij = M_ij`` on ``Omega``; sensing:
  ``<A_k, X> = y_k``), by cvxpy with Clarabel (SCS as fallback). The answer carries the
  solver status and a duality gap computed here from the constraint duals, so an
  instance is certified by a number, not by the solver's word.
* :func:`soft_impute`, :func:`soft_impute_path`: ``min f(X) + lam ||X||_*`` (PSD:
  ``+ lam tr X`` over ``X >= 0``) by proximal gradient with step ``1 / Lip(grad f)``. For
  completion with ``normalization="sum"`` the step is 1 and the iteration is exactly
  Soft-Impute (Mazumder, Hastie & Tibshirani 2010): ``X <- S_lam(P_Omega(M) + P_Omega^perp(X))``.
* :func:`best_rank_fit`: ``min f(X)`` over ``rank(X) <= r`` (PSD: ``X = U U^T``, ``U`` of
  shape ``(d, r)``), by L-BFGS on the factor from several random starts: the "rank
  minimisation" reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize as sopt

from ._validation import check_int, check_positive
from .problems import MatrixCompletion, MatrixEstimation, MatrixSensing, Problem

__all__ = ["ConvexSolution", "min_nuclear_norm", "soft_impute", "soft_impute_path",
           "best_rank_fit", "nuclear_norm"]


# Module-level compiled pieces (a jit of a closure made inside a call compiles again on
# every call); the problem is a traced argument, the sizes are static.
@eqx.filter_jit
def _grad(problem, X):
    return problem.grad(X)


def _unpack(z, m: int, n: int, rank: int, psd: bool):
    if psd:
        U = z.reshape(m, rank)
        return U @ U.T
    return z[:m * rank].reshape(m, rank) @ z[m * rank:].reshape(n, rank).T


@eqx.filter_jit
def _factored_value_and_grad(problem, z, m, n, rank, psd):
    return jax.value_and_grad(lambda x: problem.loss(_unpack(x, m, n, rank, psd)))(z)


def nuclear_norm(W) -> float:
    """``||W||_* = sum_i sigma_i(W)``."""
    return float(np.sum(np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False)))


@dataclass
class ConvexSolution:
    """A baseline's answer: ``matrix`` plus how well it was solved.

    ``np.asarray(sol)`` gives the matrix. ``objective`` is ``||X||_*`` (``tr X`` for PSD),
    ``dual_objective`` a certified lower bound (from a dual-feasible rescaling of the
    solver's multipliers), ``duality_gap = objective - dual_objective``; ``constraint_residual``
    is ``max |A(X) - b|``.
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

    def summary(self) -> dict:
        return dict(objective=self.objective, dual_objective=self.dual_objective,
                    duality_gap=self.duality_gap, constraint_residual=self.constraint_residual,
                    status=self.status, solver=self.solver, psd=self.psd, **self.info)


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

        def A_cvx(X):
            import cvxpy as cp
            return Amat @ cp.vec(X, order="C")

        return A_cvx, lambda X: Amat @ X.ravel(), lambda y: (Amat.T @ y).reshape(problem.shape), b
    raise ValueError(f"`problem` must be a MatrixCompletion or MatrixSensing (exact data "
                     f"constraints), got {type(problem).__name__}")


def _default_psd(problem: Problem) -> bool:
    return bool(getattr(problem, "symmetric", False))


def min_nuclear_norm(problem: Problem, *, psd: bool | None = None, solver: str | None = None,
                     verbose: bool = False) -> ConvexSolution:
    r"""Minimum nuclear norm (PSD: minimum trace) matrix that fits the data exactly.

    ``min ||X||_*  s.t. A(X) = b``, or with ``psd``: ``min tr X  s.t. A(X) = b, X >= 0``.
    The dual ``max <y, b>  s.t. ||A^*(y)||_2 <= 1`` (PSD: ``I - sym A^*(y) >= 0``) is
    evaluated at the solver's multipliers rescaled to feasibility: a lower bound, so
    ``duality_gap`` certifies optimality independently of the solver's status.

    Arguments:
        problem: :class:`MatrixCompletion` or :class:`MatrixSensing`
            (:class:`MatrixEstimation`: the answer is ``Y``).
        psd: PSD variant; default: ``problem.symmetric`` (symmetric completion).
        solver: ``"CLARABEL"`` (default) or ``"SCS"``; with the default, SCS is tried when
            Clarabel fails.

    Returns:
        :class:`ConvexSolution` (``np.asarray`` gives the ``(m, n)`` matrix).
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    psd = _default_psd(problem) if psd is None else bool(psd)
    m, n = problem.shape
    if psd and m != n:
        raise ValueError(f"`psd=True` needs a square problem, got shape {(m, n)}")
    if isinstance(problem, MatrixEstimation):
        Y = np.asarray(problem.Y, dtype=np.float64)
        obj = float(np.trace(Y)) if psd else nuclear_norm(Y)
        return ConvexSolution(Y, obj, "closed_form", "none", psd, obj, 0.0, 0.0)
    import cvxpy as cp

    A_cvx, A_np, A_adj, b = _constraints(problem)
    if solver is not None and solver.upper() not in ("CLARABEL", "SCS"):
        raise ValueError(f"`solver` must be 'CLARABEL' or 'SCS', got {solver!r}")
    X = cp.Variable((m, n), symmetric=psd)
    cons = [A_cvx(X) == b]
    if psd:
        cons.append(X >> 0)
        obj = cp.Minimize(cp.trace(X))
    else:
        obj = cp.Minimize(cp.normNuc(X))
    prob = cp.Problem(obj, cons)
    tried = [solver.upper()] if solver else ["CLARABEL", "SCS"]
    errors = []
    for name in tried:
        try:
            kw = dict(eps=1e-9, max_iters=100_000) if name == "SCS" else {}
            prob.solve(solver=name, verbose=verbose, **kw)
        except (cp.error.SolverError, ValueError) as e:
            errors.append(f"{name}: {e}")
            continue
        if prob.status in ("optimal", "optimal_inaccurate") and X.value is not None:
            break
        errors.append(f"{name}: status {prob.status}")
    else:
        raise RuntimeError("min_nuclear_norm: every solver failed (" + "; ".join(errors) +
                           "). Install clarabel/scs, or check that the constraints are feasible "
                           "(noisy sensing with more measurements than unknowns is not)")
    Xv = np.asarray(X.value, dtype=np.float64)
    primal = float(np.trace(Xv)) if psd else nuclear_norm(Xv)
    y = np.asarray(cons[0].dual_value, dtype=np.float64).ravel()
    dual = _dual_bound(y, A_adj, b, psd)
    res = float(np.max(np.abs(A_np(Xv) - b))) if b.size else 0.0
    if prob.status != "optimal":
        warnings.warn(f"min_nuclear_norm: solver {name} returned status {prob.status}",
                      RuntimeWarning, stacklevel=2)
    return ConvexSolution(Xv, primal, prob.status, name, psd, dual, primal - dual, res,
                          info=dict(solver_objective=float(prob.value), errors=errors,
                                    min_eigenvalue=float(np.linalg.eigvalsh(Xv)[0]) if psd else None))


def _dual_bound(y, A_adj, b, psd: bool) -> float:
    """Best lower bound ``t <s y, b>`` over the sign ``s`` and scale ``t`` making ``t s y`` feasible."""
    best = -np.inf
    for s in (1.0, -1.0):
        Z = A_adj(s * y)
        if psd:
            top = float(np.linalg.eigvalsh(0.5 * (Z + Z.T))[-1])
        else:
            top = float(np.linalg.norm(Z, 2))
        t = 1.0 if top <= 1.0 else 1.0 / top
        best = max(best, t * float(np.dot(s * y, b)))
    return best


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


def _prox(Z: np.ndarray, thr: float, psd: bool) -> np.ndarray:
    if psd:
        w, V = np.linalg.eigh(0.5 * (Z + Z.T))
        w = np.maximum(w - thr, 0.0)
        return (V * w) @ V.T
    U, s, Vt = np.linalg.svd(Z, full_matrices=False)
    s = np.maximum(s - thr, 0.0)
    return (U * s) @ Vt


def soft_impute(problem: Problem, lam: float, *, psd: bool | None = None, X0=None,
                max_iter: int = 20_000, tol: float = 1e-10) -> np.ndarray:
    r"""``argmin_X f(X) + lam ||X||_*`` (PSD: ``f(X) + lam tr X`` over ``X >= 0``).

    Proximal gradient ``X <- prox_{lam t ||.||_*}(X - t grad f(X))`` with ``t = 1/Lip``;
    for completion (``"sum"``) this is Soft-Impute ``X <- S_lam(P_Omega(M) + P_Omega^perp(X))``
    with ``S_lam`` the singular-value soft threshold. Stops when
    ``||X_{k+1} - X_k||_F <= tol * max(1, ||X_k||_F)``.

    Returns the ``(m, n)`` minimiser (warns if ``max_iter`` is reached).
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    lam = check_positive(lam, "lam", allow_zero=True)
    check_int(max_iter, "max_iter", minimum=1)
    psd = _default_psd(problem) if psd is None else bool(psd)
    if psd and problem.shape[0] != problem.shape[1]:
        raise ValueError(f"`psd=True` needs a square problem, got shape {problem.shape}")
    t = 1.0 / _lipschitz(problem)
    X = np.zeros(problem.shape) if X0 is None else np.array(X0, dtype=np.float64)
    grad = lambda X: _grad(problem, X)
    # Nesterov-free on purpose: plain Soft-Impute is monotone and its fixed point is exact;
    # warm starts along a path of lam give the speed.
    for it in range(max_iter):
        Xn = _prox(X - t * np.asarray(grad(jnp.asarray(X))), t * lam, psd)
        delta = float(np.linalg.norm(Xn - X))
        X = Xn
        if delta <= tol * max(1.0, float(np.linalg.norm(X))):
            break
    else:
        warnings.warn(f"soft_impute: not converged in {max_iter} iterations (last change "
                      f"{delta:.3g}); raise `max_iter` or use soft_impute_path for warm starts",
                      RuntimeWarning, stacklevel=2)
    return X


def soft_impute_path(problem: Problem, lams, *, psd: bool | None = None, max_iter: int = 20_000,
                     tol: float = 1e-10) -> list[np.ndarray]:
    """:func:`soft_impute` along ``lams`` (solved from the largest down, warm-started);
    returned in the order of ``lams``."""
    lams = [check_positive(v, "lams", allow_zero=True) for v in np.ravel(lams)]
    if not lams:
        raise ValueError("`lams` is empty")
    order = np.argsort(lams)[::-1]
    out: dict[int, np.ndarray] = {}
    X = None
    for i in order:
        X = soft_impute(problem, lams[i], psd=psd, X0=X, max_iter=max_iter, tol=tol)
        out[int(i)] = X
    return [out[i] for i in range(len(lams))]


# ----------------------------------------------------------------------------------------
# Best rank-r fit


def best_rank_fit(problem: Problem, rank: int, *, psd: bool | None = None, restarts: int = 5,
                  seed: int = 0, gtol: float = 1e-12, max_iter: int = 20_000) -> tuple[np.ndarray, float]:
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
    best = (None, np.inf)
    size = m * rank if psd else (m + n) * rank
    for _ in range(restarts):
        z0 = rng.standard_normal(size) / np.sqrt(max(m, n))
        r = sopt.minimize(fun, z0, jac=True, method="L-BFGS-B",
                          options=dict(maxiter=max_iter, gtol=gtol, ftol=0.0, maxcor=30))
        if r.fun < best[1]:
            best = (np.asarray(unpack(jnp.asarray(r.x))), float(r.fun))
    return best
