r"""The singular values a record stores: exact when that is cheap, the top ``k`` above a size.

A record of ``W`` (``(m, n)``, ``p = min(m, n)``) stores a vector of ``p`` singular values,
descending: :meth:`rankbias.models.Model.spectrum` (the hook every record calls), by
default :func:`record_spectrum`. How they are computed (inside the compiled loop, jittable
and vmappable):

* ``p <= EXACT_SV_MAX``: all ``p``, exact (LAPACK SVD of ``W``; the sparse backend: from the
  factors, below). Every record of a problem of this size is what it was before this module.
* a factor form ``W = A B^T`` with an inner width ``w < p`` (``A`` ``(m, w)``, ``B``
  ``(n, w)``): all ``p``, exact, from the factors: ``A = Q_A R_A``, ``B = Q_B R_B`` (thin QR),
  ``W = Q_A (R_A R_B^T) Q_B^T`` so ``sigma(W) = sigma(R_A R_B^T)`` (a ``w x w`` SVD), the
  other ``p - w`` are exactly 0; symmetric ``W = P P^T``: ``sigma_i(W) = sigma_i(P)^2``. Cost
  ``O((m + n) w^2)`` instead of ``O(m n p)``.
* otherwise (``p > EXACT_SV_MAX``, full width): the top ``k = TOP_K`` by randomized subspace
  iteration (Halko, Martinsson & Tropp 2011, Alg. 4.4) on the operator ``X -> W X``,
  ``Y -> W^T Y`` (for factors, ``A (B^T X)``: no ``(m, n)`` array), with ``l = k +
  OVERSAMPLE`` columns, ``ITERS`` power iterations and a fixed seed, then Rayleigh-Ritz: the
  singular values of ``Q^T W`` (``(l, n)``). The other ``p - k`` entries are NaN (not
  computed). Each Ritz value is a lower bound, ``sigma_i(Q^T W) <= sigma_i(W)``, and its
  error falls like ``(sigma_{l+1} / sigma_i)^(2 ITERS + 1)``: at most 1e-6 relative for the
  values above the noise of a low-rank-plus-noise matrix (tests/test_records.py), a few
  percent for the tail of a flat (random-matrix) spectrum. Cost ``O(m n l (2 ITERS + 2))`` at
  matmul speed.

Effective ranks from a record with NaN entries use the ``k`` computed values: they are the
effective ranks of ``W_k``, the best rank-``k`` approximation of ``W``
(:func:`rankbias.metrics.effective_ranks_from_sv`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "EXACT_SV_MAX",
    "ITERS",
    "OVERSAMPLE",
    "TOP_K",
    "factor_singular_values",
    "record_spectrum",
    "top_k",
]

#: Up to this ``min(m, n)`` a record holds every singular value, exact.
EXACT_SV_MAX = 500
#: Above ``EXACT_SV_MAX`` (full-width models) a record holds the top ``TOP_K`` values.
TOP_K = 100
#: Extra columns of the randomized subspace (``l = TOP_K + OVERSAMPLE``).
OVERSAMPLE = 20
#: Power (subspace) iterations.
ITERS = 4


def top_k(
    matvec: Callable[[jax.Array], jax.Array],
    rmatvec: Callable[[jax.Array], jax.Array],
    shape: tuple[int, int],
    dtype,
    k: int = TOP_K,
    *,
    oversample: int = OVERSAMPLE,
    iters: int = ITERS,
) -> jax.Array:
    r"""The ``k`` largest singular values of ``W`` (``(m, n)``), descending, from products.

    ``matvec(X) = W X`` (``X`` ``(n, l)``), ``rmatvec(Y) = W^T Y`` (``Y`` ``(m, l)``).
    Randomized subspace iteration: ``Q = orth(W G)`` (``G`` ``(n, l)`` standard normal, seed
    0, ``l = min(k + oversample, m, n)``), ``iters`` times ``Q = orth(W orth(W^T Q))``, then
    ``sigma_i(Q^T W)``: lower bounds of ``sigma_i(W)`` with relative error
    ``O((sigma_{l+1} / sigma_i)^{2 iters + 1})``. Jittable; returns ``(min(k, l),)``.
    """
    m, n = shape
    l = min(k + oversample, m, n)
    G = jax.random.normal(jax.random.PRNGKey(0), (n, l), dtype)
    Q = jnp.linalg.qr(matvec(G))[0]

    def body(_, Q):
        Z = jnp.linalg.qr(rmatvec(Q))[0]
        return jnp.linalg.qr(matvec(Z))[0]

    Q = jax.lax.fori_loop(0, iters, body, Q)
    s = jnp.linalg.svd(rmatvec(Q).T, compute_uv=False)
    return s[: min(k, l)]


def factor_singular_values(A, B, shape: tuple[int, int], symmetric: bool) -> jax.Array:
    """All ``min(m, n)`` singular values of ``W = A B^T`` from the factors (``A`` ``(m, w)``,
    ``B`` ``(n, w)``; ``symmetric``: ``A = B = P``, ``W = P P^T``), descending, zeros past
    the factors' rank (module docstring)."""
    p = min(shape)
    if symmetric:  # W = P P^T: sigma_i(P)^2
        s = jnp.linalg.svd(A, compute_uv=False) ** 2
    else:
        ra = jnp.linalg.qr(A, mode="r")
        rb = jnp.linalg.qr(B, mode="r")
        s = jnp.linalg.svd(ra @ rb.T, compute_uv=False)
    s = s[:p]
    return jnp.concatenate([s, jnp.zeros((p - s.shape[0],), s.dtype)])


def _padded(s: jax.Array, p: int) -> jax.Array:
    return jnp.concatenate([s, jnp.full((p - s.shape[0],), jnp.nan, s.dtype)])


def _thin(model, params, shape) -> bool:
    """Whether ``model`` has a factor form whose inner width is below ``min(m, n)``."""
    form = model.factor_form
    if form is None or (form == "product" and getattr(model, "depth", 2) < 2):
        return False  # no factor form, or W = W_1 itself
    A, _ = model.factors(params)  # traced shapes only: XLA drops the unused product
    return A.shape[1] < min(shape)


def record_spectrum(model, params, W=None) -> jax.Array:
    """The ``(min(m, n),)`` singular values of ``W = model.product(params)`` a record stores
    (module docstring; the default of :meth:`~rankbias.models.Model.spectrum`): ``W`` the
    product when the caller has it (dense backend), ``None`` in factor form (sparse backend:
    ``model.factors``)."""
    shape = tuple(model.shape)
    p = min(shape)
    if W is not None and p <= EXACT_SV_MAX:
        return jnp.linalg.svd(W, compute_uv=False)
    symmetric = model.factor_form == "symmetric"
    if W is None or _thin(model, params, shape):
        A, B = model.factors(params)
        if p <= EXACT_SV_MAX or A.shape[1] < p:
            return factor_singular_values(A, B, shape, symmetric)
        s = top_k(lambda X: A @ (B.T @ X), lambda Y: B @ (A.T @ Y), shape, A.dtype)
        return _padded(s, p)
    s = top_k(lambda X: W @ X, lambda Y: W.T @ Y, shape, W.dtype)
    return _padded(s, p)
