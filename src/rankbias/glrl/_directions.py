r"""The gradient ``-grad f(W)`` of a GLRL iterate, its top eigen/singular direction and the
KKT residuals of a limit.

Small problems use dense LAPACK; large ones never form a dense ``d x d`` operator when the
problem allows it (completion: the gradient lives on the observed entries) and use Lanczos
(``eigsh`` / ``svds``), which only needs products with ``-grad f``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._deprecation import renamed
from ..problems.base import Problem
from ._factors import product

__all__ = ["DENSE_MAX_SIDE", "is_dense", "grad_operator", "top_direction", "kkt_residuals"]

#: Largest side ``max(m, n)`` that GLRL handles densely: LAPACK eigensolvers on the ``d x d``
#: gradient, phases on the dense flow with the recorder's full SVD of ``W`` at every record.
#: Those are ``O(d^3)`` per call, small next to a phase's flow at this size; above it
#: completion problems take the factor-only path (Lanczos on the observed entries, the
#: flow's sparse backend, Newton-CG polish), whose cost grows with the observed entries.
#: Not the flow's ``DENSE_LIMIT`` (a parameter count, in ``rankbias.dynamics._flow``).
DENSE_MAX_SIDE = 200


def is_dense(shape) -> bool:
    """Whether a problem of ``shape`` takes GLRL's dense path (``max(m, n) <= DENSE_MAX_SIDE``;
    read at call time so that a test can lower it)."""
    return max(shape) <= DENSE_MAX_SIDE


def grad_operator(problem: Problem, factors, psd: bool):
    """``-grad f(W)`` as a dense array, or as a scipy sparse matrix for completion.

    For completion the gradient is supported on the observed entries, so for large ``d`` we
    never form ``W``: ``W_ij = <U_i, U_j>`` only at the observed ``(i, j)``.
    """
    d = max(problem.shape)
    entries = problem.observed_entries()
    if entries is not None and d > DENSE_MAX_SIDE:
        rows = np.asarray(entries.rows)
        cols = np.asarray(entries.cols)
        vals = np.asarray(entries.values)
        w = float(entries.weight)
        if psd:
            (U,) = factors
            Wo = np.einsum("ij,ij->i", U[rows], U[cols]) if U.shape[1] else np.zeros(rows.size)
        else:
            V1, U2 = factors  # W = U2 @ V1
            Wo = (
                np.einsum("ij,ji->i", U2[rows], V1[:, cols]) if U2.shape[1] else np.zeros(rows.size)
            )
        return sp.csr_matrix((-w * (Wo - vals), (rows, cols)), shape=problem.shape)
    W = product(factors, psd)
    return -np.asarray(problem.grad(jnp.asarray(W)), dtype=np.float64)


def top_direction(
    negG, psd: bool = True, *, seed: int = 0, symmetric: bool | None = None
) -> tuple[float, Any, float]:
    r"""Top eigenpair of ``sym(negG)`` (``psd``) or top singular triple of ``negG``.

    ``negG`` is a dense ``(m, n)`` array or a scipy sparse matrix (``-grad f``). Dense
    matrices up to 200 use LAPACK; larger ones Lanczos (``eigsh`` / ``svds``), which only
    needs products with ``negG``.

    Returns ``(lam, u, gap)`` or ``(sigma, (u, v), gap)``; ``gap = lam_1 - lam_2`` (a tie makes
    the greedy step ambiguous). ``symmetric``: deprecated spelling of ``psd`` (warns once).
    """
    psd = renamed("top_direction()", "symmetric", symmetric, "psd", psd, True)
    m, n = negG.shape
    if psd:
        if sp.issparse(negG) or m > DENSE_MAX_SIDE:
            S = (negG + negG.T) * 0.5
            v0 = np.random.default_rng(seed).standard_normal(m)
            w, V = spla.eigsh(S, k=2, which="LA", v0=v0, tol=1e-12, maxiter=20 * m)  # pyright: ignore[reportArgumentType]  # scipy stub: tol is a float
            order = np.argsort(w)[::-1]
            return float(w[order[0]]), V[:, order[0]], float(w[order[0]] - w[order[1]])
        S = 0.5 * (negG + negG.T)
        w, V = np.linalg.eigh(S)
        gap = float(w[-1] - w[-2]) if m > 1 else np.inf
        return float(w[-1]), V[:, -1], gap
    if sp.issparse(negG) or max(m, n) > DENSE_MAX_SIDE:
        v0 = np.random.default_rng(seed).standard_normal(min(m, n))
        k = 2 if min(m, n) > 2 else 1
        Uu, s, Vt = spla.svds(negG, k=k, v0=v0, tol=1e-12, maxiter=20 * max(m, n))  # pyright: ignore[reportArgumentType]  # scipy stub: tol is a float
        assert Uu is not None and Vt is not None  # return_singular_vectors=True
        order = np.argsort(s)[::-1]
        gap = float(s[order[0]] - s[order[1]]) if k > 1 else np.inf
        return float(s[order[0]]), (Uu[:, order[0]], Vt[order[0]]), gap
    Uu, s, Vt = np.linalg.svd(negG)
    gap = float(s[0] - s[1]) if s.size > 1 else np.inf
    return float(s[0]), (Uu[:, 0], Vt[0]), gap


def kkt_residuals(
    problem: Problem, W=None, *, factors=None, psd: bool = True, symmetric: bool | None = None
) -> dict:
    r"""First-order optimality residuals of ``W`` (or of the product of ``factors``).

    PSD (``psd=True``, ``min_{W PSD} f``): ``psd = max(0, -lambda_min(sym grad f))``,
    ``complementarity = ||sym(grad f) W||_F``, ``feasibility = max(0, -lambda_min(W))``.
    Asymmetric (``min_W f``): ``stationarity = ||grad f(W)||_2``. Relative versions divide by
    ``||grad f(0)||_2`` (and ``||W||_F``). ``symmetric``: deprecated spelling of ``psd``
    (warns once).
    """
    psd = renamed("kkt_residuals()", "symmetric", symmetric, "psd", psd, True)
    if W is None and factors is None:
        raise ValueError("give `W` or `factors`")
    if factors is not None:
        factors = tuple(np.asarray(f, dtype=np.float64) for f in factors)
    zero = (
        (np.zeros((problem.shape[0], 0)),)
        if psd
        else (np.zeros((0, problem.shape[1])), np.zeros((problem.shape[0], 0)))
    )
    g0 = norm2(grad_operator(problem, zero, psd))
    scale = max(g0, 1e-300)
    if factors is not None:
        negG = grad_operator(problem, factors, psd)
    else:
        W = np.asarray(W, dtype=np.float64)
        negG = -np.asarray(problem.grad(jnp.asarray(W)), dtype=np.float64)
    if not psd:
        st = norm2(negG)
        return dict(stationarity=st, stationarity_rel=st / scale, grad0_norm=g0)
    lam = top_direction(negG, True)[0]
    S = (negG + negG.T) * 0.5
    if factors is not None:
        (U,) = factors
        comp = float(np.linalg.norm((S @ U) @ U.T)) if U.shape[1] else 0.0
        feas = 0.0
        wn = float(np.linalg.norm(U.T @ U))
    else:
        assert W is not None  # given when factors is None (checked on entry)
        comp = float(np.linalg.norm(np.asarray(S @ W)))
        Ws = 0.5 * (W + W.T)
        feas = max(0.0, -float(np.linalg.eigvalsh(Ws)[0]))
        wn = float(np.linalg.norm(W))
    return dict(
        psd=max(0.0, lam),
        psd_rel=max(0.0, lam) / scale,
        complementarity=comp,
        complementarity_rel=comp / (scale * max(wn, 1e-300)),
        feasibility=feas,
        grad0_norm=g0,
    )


def norm2(A) -> float:
    if sp.issparse(A):
        if min(A.shape) <= 2:
            return float(np.linalg.norm(A.toarray(), 2))
        return float(spla.svds(A, k=1, return_singular_vectors=False, tol=1e-10)[0])  # pyright: ignore[reportArgumentType]  # scipy stub: tol is a float
    return float(np.linalg.norm(A, 2)) if A.size else 0.0
