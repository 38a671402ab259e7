"""The sparse backend of the flow/GD engines (issue 18): factor-form evaluation of a matrix
completion, checked against the dense backend and against independent oracles (jax.grad of
the problem's own loss on the dense product, numpy SVDs of the product)."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_compile import count_compiles

import rankbias as rb
from rankbias.dynamics import choose_backend
from rankbias.dynamics._sparse import (
    SPARSE_MIN_ENTRIES,
    SPARSE_RATIO,
    SparseCompletion,
    loss_and_grad,
    loss_and_grad_norm,
    record,
)

D = 10

MODELS = {
    "sym": rb.SymmetricFactorization(D, width=3),
    "deep2": rb.DeepFactorization((D, D), depth=2, width=3),
    "deep3": rb.DeepFactorization((D, D), depth=3, width=[3, 4]),
}


def _problem(sym_mask: bool, seed: int = 1, rank: int = 2):
    M = rb.random_low_rank((D, D), rank, psd=True, seed=seed)
    return rb.MatrixCompletion.uniform(M, 0.6, seed=seed + 1, symmetric=sym_mask, dense=False)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("sym_mask", [True, False])
def test_factor_form_matches_autodiff_of_the_dense_loss(name, sym_mask):
    # Oracle: jax.grad of L(params) = w f(product(params)) through the problem's own loss on
    # the dense product; the singular values from the factors against numpy's SVD of W.
    model, prob = MODELS[name], _problem(sym_mask)
    M = np.random.default_rng(0).standard_normal((D, D))  # non-symmetric values too
    prob = rb.MatrixCompletion(M, (np.asarray(prob.rows), np.asarray(prob.cols)), dense=False)
    params = model.init("gaussian", scale=0.7, seed=5)
    data = SparseCompletion.from_problems(prob, model)
    f, g, res = loss_and_grad(data, model, params)
    ref = jax.grad(lambda ps: model.objective(prob, ps))(params)
    W = np.asarray(model.product(params))
    assert float(f) == pytest.approx(float(prob.loss(jnp.asarray(W))), rel=1e-13)
    for a, b in zip(g, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(data.dense_grad(res), prob.grad(jnp.asarray(W)), atol=1e-14)
    f0, gn = loss_and_grad_norm(data, model, params)
    assert float(gn) == pytest.approx(float(jnp.linalg.norm(prob.grad(jnp.asarray(W)))), rel=1e-13)
    rec = record(data, model, params, True)
    np.testing.assert_allclose(rec["sv"], np.linalg.svd(W, compute_uv=False), atol=1e-14)
    np.testing.assert_allclose(rec["W"], W, atol=1e-15)


def test_symmetric_pattern_uses_the_row_tables_only():
    sym, asym = _problem(True), _problem(False)
    model = MODELS["sym"]
    assert SparseCompletion.from_problems(sym, model).cidx is None
    assert SparseCompletion.from_problems(asym, model).cidx is not None
    # deep models need G^T A: column tables even for a symmetric pattern
    assert SparseCompletion.from_problems(sym, MODELS["deep2"]).cidx is not None
    # the table width is rounded up to a multiple of 8 (fewer compilations)
    assert SparseCompletion.from_problems(sym, model).ridx.shape[1] % 8 == 0  # pyright: ignore[reportOptionalMemberAccess]


def test_vector_field_matches_finite_differences_of_the_loss():
    # Independent of autodiff: central differences of f along a random direction.
    model, prob = MODELS["deep3"], _problem(False)
    data = SparseCompletion.from_problems(prob, model)
    params = model.init("gaussian", scale=0.5, seed=2)
    y = model.flatten(params)
    v = jnp.asarray(np.random.default_rng(3).standard_normal(y.size))
    Lf = lambda z: float(loss_and_grad(data, model, model.unflatten(z))[0])
    h = 1e-5
    fd = (Lf(y + h * v) - Lf(y - h * v)) / (2 * h)
    g = model.flatten(loss_and_grad(data, model, params)[1])
    assert float(jnp.dot(g, v)) == pytest.approx(fd, rel=1e-7)


# ---- the engines: dense and sparse backends agree ---------------------------------------


@pytest.fixture(scope="module")
def flows():
    # width = rank: the flow converges linearly, so both backends certify a steady state.
    prob = _problem(True, rank=2)
    model = rb.SymmetricFactorization(D, width=2)
    params = model.init("gaussian", scale=1e-3, seed=3)
    kw: dict[str, Any] = dict(t_max=2e3, n_save=12)
    out = {b: rb.gradient_flow(prob, model, params, backend=b, **kw) for b in ("dense", "sparse")}
    return prob, model, params, kw, out


def test_flow_backends_agree_and_reach_the_steady_state(flows):
    prob, model, params, kw, out = flows
    d, s = out["dense"], out["sparse"]
    assert d.info["backend"] == "dense" and s.info["backend"] == "sparse"
    assert d.status == s.status == "steady_state"
    np.testing.assert_allclose(s.final_matrix, d.final_matrix, atol=1e-8)
    assert s.times[-1] == pytest.approx(d.times[-1], rel=1e-3)
    n = min(len(s), len(d)) - 1  # the records at the save times
    np.testing.assert_allclose(s.singular_values[:n], d.singular_values[:n], atol=1e-9)
    np.testing.assert_allclose(s.loss[:n], d.loss[:n], rtol=1e-6, atol=1e-14)
    # the truth (rank 2, 60% observed) is found
    assert np.linalg.norm(s.final_matrix - prob.truth) <= 1e-6 * np.linalg.norm(prob.truth)


def test_sparse_flow_does_not_recompile_for_new_values(flows):
    prob, model, params, kw, out = flows
    M2 = rb.random_low_rank((D, D), 2, psd=True, seed=7)
    prob2 = rb.MatrixCompletion(
        M2, (np.asarray(prob.rows), np.asarray(prob.cols)), dense=False, symmetric=True
    )
    with count_compiles() as ev:
        tr = rb.gradient_flow(
            prob2,
            model,
            model.init("gaussian", scale=3e-3, seed=4),
            t_max=1e3,
            n_save=12,
            rtol=1e-7,
            gtol=1e-9,
            backend="sparse",
        )
    assert tr.info["backend"] == "sparse"
    assert not [e for e in ev if "solve" in e], ev


@pytest.mark.slow
def test_flow_batch_on_the_sparse_backend_equals_single_runs(flows):
    prob, model, params, kw, out = flows
    p2 = model.init("gaussian", scale=2e-3, seed=8)
    batch = rb.gradient_flow_batch(prob, model, [params, p2], backend="sparse", **kw)
    assert all(b.info["backend"] == "sparse" for b in batch)
    single2 = rb.gradient_flow(prob, model, p2, backend="sparse", **kw)  # compiled: cached
    for b, single in zip(batch, (out["sparse"], single2), strict=True):
        assert b.status == single.status
        np.testing.assert_allclose(b.final_matrix, single.final_matrix, atol=1e-9)


@pytest.mark.parametrize("name", ["sym", pytest.param("deep3", marks=pytest.mark.slow)])
def test_gd_backends_agree(name):
    model, prob = MODELS[name], _problem(False)
    params = model.init("gaussian", scale=1e-2, seed=1)
    d = rb.gradient_descent(prob, model, params, lr=0.05, steps=200, n_save=10, backend="dense")
    s = rb.gradient_descent(prob, model, params, lr=0.05, steps=200, n_save=10, backend="sparse")
    assert s.info["backend"] == "sparse"
    np.testing.assert_allclose(s.final_matrix, d.final_matrix, atol=1e-12)
    np.testing.assert_allclose(s.loss, d.loss, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(s.singular_values, d.singular_values, atol=1e-12)
    p2 = model.init("gaussian", scale=1e-2, seed=2)
    probs = [prob, _problem(False, seed=1)]
    bs = rb.gradient_descent_batch(
        probs, model, [params, p2], 0.05, 200, n_save=10, backend="sparse"
    )
    np.testing.assert_allclose(bs[0].final_matrix, s.final_matrix, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deep2", "deep3"])
def test_deep_flow_backends_agree_single_and_batch(name):
    model = MODELS[name]
    prob = _problem(False)
    params = model.init("gaussian", scale=1e-3, seed=3)
    kw: dict[str, Any] = dict(t_max=300.0, n_save=12)
    d = rb.gradient_flow(prob, model, params, backend="dense", **kw)
    s = rb.gradient_flow(prob, model, params, backend="sparse", **kw)
    assert d.status == s.status
    np.testing.assert_allclose(s.final_matrix, d.final_matrix, atol=1e-7)
    np.testing.assert_allclose(s.loss, d.loss, rtol=1e-6, atol=1e-14)
    p2 = model.init("gaussian", scale=1e-3, seed=4)
    bd = rb.gradient_flow_batch(prob, model, [params, p2], backend="dense", **kw)
    bs = rb.gradient_flow_batch(prob, model, [params, p2], backend="sparse", **kw)
    for a, b in zip(bd, bs, strict=True):
        np.testing.assert_allclose(b.final_matrix, a.final_matrix, atol=1e-7)
    np.testing.assert_allclose(bs[0].final_matrix, s.final_matrix, atol=1e-9)


# ---- choice and errors -----------------------------------------------------------------


def test_auto_chooses_as_documented():
    d = 200
    M = rb.random_low_rank((d, d), 2, psd=True, seed=0)
    sparse_obs = rb.MatrixCompletion.uniform(M, 0.05, seed=0, symmetric=True)
    dense_obs = rb.MatrixCompletion.uniform(M, 0.5, seed=0, symmetric=True)
    assert d * d >= SPARSE_RATIO * sparse_obs.num_observed and d * d >= SPARSE_MIN_ENTRIES
    narrow = rb.SymmetricFactorization(d, width=5)
    assert choose_backend("auto", sparse_obs, narrow) == "sparse"
    assert choose_backend("auto", sparse_obs, rb.DeepFactorization((d, d), 3, width=5)) == "sparse"
    assert choose_backend("auto", dense_obs, narrow) == "dense"  # m n < SPARSE_RATIO |Omega|
    assert choose_backend("auto", sparse_obs, rb.SymmetricFactorization(d)) == "dense"  # full
    assert choose_backend("auto", sparse_obs, rb.DeepFactorization((d, d), 1)) == "dense"
    sensing = rb.MatrixSensing.gaussian(M, 20, seed=0)
    assert choose_backend("auto", sensing, narrow) == "dense"
    small = _problem(False)  # 10 x 10 < SPARSE_MIN_ENTRIES
    assert choose_backend("auto", small, MODELS["sym"]) == "dense"
    assert choose_backend("sparse", small, MODELS["sym"]) == "sparse"
    assert choose_backend("dense", sparse_obs, narrow) == "dense"


def test_backend_errors_name_the_argument():
    prob = _problem(False)
    model = MODELS["sym"]
    params = model.init(scale=1e-2)
    with pytest.raises(ValueError, match="unknown `backend` 'fast'"):
        rb.gradient_flow(prob, model, params, backend="fast")
    with pytest.raises(ValueError, match="`backend`='sparse'.*depth-1"):
        deep1 = rb.DeepFactorization((D, D), 1)
        rb.gradient_descent(prob, deep1, deep1.init(scale=1e-2), 0.1, 5, backend="sparse")
    M = rb.random_low_rank((D, D), 2, psd=True, seed=0)
    sensing = rb.MatrixSensing.gaussian(M, 20, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="`backend`='sparse'.*MatrixCompletion"):
            rb.gradient_flow_batch(sensing, model, [params], backend="sparse")
        with pytest.raises(ValueError, match="`backend`='sparse'.*MatrixCompletion"):
            rb.gradient_descent_batch(sensing, model, [params], 0.1, 5, backend="sparse")
