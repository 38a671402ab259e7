"""Records that scale (issue 26): the singular values a record stores above a size, against
NumPy's full SVD (the oracle), and the effective ranks of a top-k record against those of the
best rank-k approximation built explicitly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb
from rankbias._spectrum import EXACT_SV_MAX, ITERS, OVERSAMPLE, TOP_K, top_k
from rankbias.metrics import EFFECTIVE_RANKS, effective_ranks_from_sv

M_BIG, N_BIG = EXACT_SV_MAX + 10, EXACT_SV_MAX + 30  # just above the exact-SVD size


def _low_rank_plus_noise(rng, m, n, r, noise):
    return rng.standard_normal((m, r)) @ rng.standard_normal((r, n)) + noise * rng.standard_normal(
        (m, n)
    )


@pytest.mark.parametrize("noise", [1e-3, 0.1, 1.0])
def test_top_k_matches_full_svd_on_low_rank_plus_noise(noise):
    rng = np.random.default_rng(0)
    m, n, r, k = 240, 180, 12, 30
    W = _low_rank_plus_noise(rng, m, n, r, noise)
    s0 = np.linalg.svd(W, compute_uv=False)
    Wj = jnp.asarray(W)
    s = np.asarray(top_k(lambda X: Wj @ X, lambda Y: Wj.T @ Y, (m, n), Wj.dtype, k))
    assert s.shape == (k,)
    # Rayleigh-Ritz values are lower bounds of the singular values
    assert np.all(s <= s0[:k] * (1 + 1e-12))
    # the signal (r values well above the noise) to rounding; the noise tail to a few percent
    np.testing.assert_allclose(s[:r], s0[:r], rtol=1e-10)
    np.testing.assert_allclose(s[r:], s0[r:k], rtol=0.05)


def test_top_k_through_factors_equals_dense_operator():
    rng = np.random.default_rng(1)
    A, B = jnp.asarray(rng.standard_normal((90, 70))), jnp.asarray(rng.standard_normal((60, 70)))
    s0 = np.linalg.svd(np.asarray(A @ B.T), compute_uv=False)
    s = top_k(lambda X: A @ (B.T @ X), lambda Y: B @ (A.T @ Y), (90, 60), A.dtype, 10)
    assert np.all(np.asarray(s) <= s0[:10] * (1 + 1e-12))
    np.testing.assert_allclose(s, s0[:10], rtol=0.05)


def test_record_above_the_size_keeps_top_k_and_nan():
    rng = np.random.default_rng(2)
    model = rb.DeepFactorization((M_BIG, N_BIG), depth=1)
    W = _low_rank_plus_noise(rng, M_BIG, N_BIG, 8, 0.01)
    s0 = np.linalg.svd(W, compute_uv=False)
    s = np.asarray(jax.jit(lambda W: model.spectrum((W,), W))(jnp.asarray(W)))
    assert s.shape == (min(M_BIG, N_BIG),)
    assert np.all(np.isnan(s[TOP_K:])) and not np.any(np.isnan(s[:TOP_K]))
    np.testing.assert_allclose(s[:8], s0[:8], rtol=1e-10)
    np.testing.assert_allclose(s[8:TOP_K], s0[8:TOP_K], rtol=0.05)
    assert OVERSAMPLE > 0 and ITERS > 0


@pytest.mark.parametrize("sym", [False, True])
def test_record_from_thin_factors_is_exact(sym):
    d = M_BIG
    if sym:
        model = rb.SymmetricFactorization(d, width=7)
        shape = (d, d)
    else:
        model = rb.DeepFactorization((M_BIG, N_BIG), depth=3, width=9)
        shape = (M_BIG, N_BIG)
    params = model.init(scale=0.5, seed=3)
    W = np.asarray(model.product(params))
    s0 = np.linalg.svd(W, compute_uv=False)
    for dense in (True, False):

        def rec(p, dense=dense):
            return model.spectrum(p, model.product(p) if dense else None)

        s = np.asarray(jax.jit(rec)(params))
        assert s.shape == (min(shape),) and not np.any(np.isnan(s))
        np.testing.assert_allclose(s, s0, rtol=0, atol=1e-10 * s0[0])


@pytest.mark.slow
def test_gd_trajectory_records_top_k_of_its_matrices():
    """A full-width GD run above the size: its records against NumPy SVDs of the matrices it
    saved (save_matrices=True)."""
    rng = np.random.default_rng(4)
    m, n = M_BIG, N_BIG
    M = _low_rank_plus_noise(rng, m, n, 3, 0.0) / np.sqrt(3)
    pick = rng.choice(m * n, m * n // 3, replace=False)
    prob = rb.MatrixCompletion(M, (pick // n, pick % n))
    model = rb.DeepFactorization((m, n), depth=2, width=min(m, n))
    tr = rb.gradient_descent(
        prob, model, model.init(scale=0.05), lr=0.003, steps=4, n_save=3, save_matrices=True
    )
    assert tr.matrices is not None
    for W, s in zip(tr.matrices, tr.singular_values, strict=True):
        s0 = np.linalg.svd(W, compute_uv=False)
        assert np.all(np.isnan(s[TOP_K:]))
        assert np.all(s[:TOP_K] <= s0[:TOP_K] * (1 + 1e-10))
        np.testing.assert_allclose(s[:TOP_K], s0[:TOP_K], rtol=0.05)
        np.testing.assert_allclose(s[0], s0[0], rtol=1e-5)  # flat spectrum at the start
    # effective ranks are those of the best rank-k approximation, finite
    assert np.all(np.isfinite(tr.effective_rank("ratio")))


@pytest.mark.parametrize("kind", EFFECTIVE_RANKS)
def test_effective_rank_of_top_k_is_that_of_best_rank_k_approximation(kind):
    rng = np.random.default_rng(5)
    W = _low_rank_plus_noise(rng, 40, 30, 4, 0.3)
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    k = 9
    Wk = (U[:, :k] * s[:k]) @ Vt[:k]  # the best rank-k approximation (Eckart-Young)
    want = rb.effective_rank(Wk, kind)
    rec = np.where(np.arange(s.size) < k, s, np.nan)
    got = effective_ranks_from_sv(rec, kind)
    np.testing.assert_allclose(got, want, rtol=1e-8)
    assert np.isnan(effective_ranks_from_sv(np.full(5, np.nan), kind))
    with pytest.raises(ValueError, match="inf"):
        effective_ranks_from_sv(np.array([1.0, np.inf]), kind)
