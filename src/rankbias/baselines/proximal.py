r"""Soft-Impute: ``min f(X) + lam ||X||_*`` (PSD: ``+ lam tr X`` over ``X >= 0``) by
accelerated proximal gradient, one ``lam`` or a warm-started path of them."""

from __future__ import annotations

import warnings

import numpy as np

from .._nuclear import SVT, blas_threads, factored_polish, fista_prox_grad
from .._validation import check_choice, check_int, check_matrix, check_positive
from ..problems.base import Problem
from .solution import default_psd

__all__ = ["soft_impute", "soft_impute_path"]


def _si_setup(problem: Problem, psd: bool | None, svd: str, max_iter: int):
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    check_int(max_iter, "max_iter", minimum=1)
    check_choice(svd, "svd", ("auto", "full", "randomized"))
    psd = default_psd(problem) if psd is None else bool(psd)
    if psd and problem.shape[0] != problem.shape[1]:
        raise ValueError(f"`psd=True` needs a square problem, got shape {problem.shape}")
    randomized = svd == "randomized" or (svd == "auto" and min(problem.shape) > _FULL_SVD_MAX)
    svt, grad = SVT(problem.shape, psd, randomized), problem.host_grad()
    # The factored polish needs a quadratic loss (its value from gradients alone); None: off.
    return svt, grad, 1.0 / problem.lipschitz(), psd if problem.is_quadratic else None


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
