r"""The rank-constrained reference: ``min f(X)`` over ``rank(X) <= r`` by L-BFGS on the
factors from several random starts."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize as sopt

from .._validation import check_int
from ..problems.base import Problem
from .solution import default_psd

__all__ = ["best_rank_fit"]


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
    psd = default_psd(problem) if psd is None else bool(psd)
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
