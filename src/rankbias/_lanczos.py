"""Matrix-free extreme eigenvalues of a symmetric operator (jittable, vmappable)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def lanczos_extremes(
    matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, k: int = 24
) -> tuple[jax.Array, jax.Array]:
    """Smallest and largest Ritz values of ``k`` Lanczos steps on a symmetric operator.

    Full re-orthogonalisation (k is small) keeps the Ritz values inside the spectrum's hull:
    ``lambda_min <= min_ritz`` and ``max_ritz <= lambda_max``; they converge to the extreme
    eigenvalues at a rate set by their gap to the rest of the spectrum.
    """
    n = v0.shape[0]
    k = int(min(k, n))
    q0 = v0 / jnp.linalg.norm(v0)
    Q = jnp.zeros((k, n), v0.dtype).at[0].set(q0)
    alphas = jnp.zeros(k, v0.dtype)
    betas = jnp.zeros(k, v0.dtype)

    def body(j, c):
        Q, alphas, betas = c
        q = Q[j]
        w = matvec(q)
        a = jnp.dot(q, w)
        # Two passes of classical Gram-Schmidt against all previous vectors (rows > j are 0).
        w = w - Q.T @ (Q @ w)
        w = w - Q.T @ (Q @ w)
        b = jnp.linalg.norm(w)
        ok = b > 1e-14 * (jnp.abs(a) + 1e-300)
        qn = jnp.where(ok, w / jnp.where(ok, b, 1.0), 0.0)
        Q = jnp.where(j + 1 < k, Q.at[jnp.minimum(j + 1, k - 1)].set(qn), Q)
        return Q, alphas.at[j].set(a), betas.at[j].set(jnp.where(ok, b, 0.0))

    Q, alphas, betas = jax.lax.fori_loop(0, k, body, (Q, alphas, betas))
    T = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    ev = jnp.linalg.eigvalsh(T)
    return ev[0], ev[-1]
