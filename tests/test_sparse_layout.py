"""The COO layout of the sparse backend (issue 26): skewed observation patterns (rating
data) are held as entry lists with segment sums instead of padded tables. Checked against an
independent numpy oracle of the factor gradients of ``1/2 c ||P_Omega(W - M)||^2`` and
against the dense backend (GD)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rankbias as rb
from rankbias.dynamics import _sparse
from rankbias.dynamics._sparse import (
    COO_MIN_ENTRIES,
    SparseCompletion,
    loss_and_grad,
    loss_and_grad_norm,
)

M_ROWS, N_COLS = 200, 100


def _skewed(seed: int = 0, symmetric: bool = False):
    """A completion whose row counts follow a Zipf-like law ``n i^-a`` (2 to all columns)."""
    rng = np.random.default_rng(seed)
    m, n, a = (150, 150, 0.8) if symmetric else (M_ROWS, N_COLS, 0.6)
    counts = np.clip((n * np.arange(1, m + 1) ** -a).astype(int), 2, n)
    rows = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    cols = np.concatenate([rng.choice(n, c, replace=False) for c in counts])
    M = rng.standard_normal((m, n))
    if symmetric:
        key = np.unique(np.concatenate([rows * n + cols, cols * n + rows]))
        rows, cols = key // n, key % n
        M = M + M.T
    return rb.MatrixCompletion(M, (rows, cols), dense=False), M, rows, cols


def _oracle(model_kind, params, M, rows, cols):
    """numpy: residual R = P_Omega(W - M) and the factor gradients of 1/2 ||R||^2."""
    P = [np.asarray(p) for p in params]
    R = np.zeros_like(M)
    if model_kind == "sym":
        (U,) = P
        W = U @ U.T
        R[rows, cols] = (W - M)[rows, cols]
        return 0.5 * np.sum(R * R), [0.5 * (R + R.T) @ U], R
    W1, W2 = P[0], P[1]  # W = W2 W1 (depth 2, params bottom-up)
    W = W2 @ W1
    R[rows, cols] = (W - M)[rows, cols]
    return 0.5 * np.sum(R * R), [W2.T @ R, R @ W1.T], R


@pytest.mark.parametrize("layout", ["coo", "ell"])
@pytest.mark.parametrize("kind", ["deep2", "sym"])
def test_both_layouts_match_numpy_oracle(kind, layout, monkeypatch):
    """The skewed pattern in the COO layout (chosen) and in the padded tables (forced by
    an infinite COO_PADDING) against the numpy oracle."""
    if layout == "ell":
        monkeypatch.setattr(_sparse, "COO_PADDING", float("inf"))
        monkeypatch.setattr(_sparse, "_TABLES", {})
    sym = kind == "sym"
    prob, M, rows, cols = _skewed(symmetric=sym)
    m, n = M.shape
    assert rows.size >= COO_MIN_ENTRIES
    model = (
        rb.SymmetricFactorization(n, width=4)
        if sym
        else rb.DeepFactorization((m, n), depth=2, width=4)
    )
    params = model.init("gaussian", scale=0.5, seed=3)
    data = SparseCompletion.from_problems(prob, model)
    assert data.layout == layout
    assert data.row_only == sym or layout == "ell"
    f, g, res = loss_and_grad(data, model, params)
    f_ref, g_ref, R = _oracle(kind, params, M, rows, cols)
    assert res.shape == ((rows.size,) if layout == "coo" else (M.shape[0], data.ridx.shape[1]))  # pyright: ignore[reportOptionalMemberAccess]
    assert float(f) == pytest.approx(f_ref, rel=1e-12)
    for a, b in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(data.dense_grad(res)), R, atol=1e-12)
    _, gn = loss_and_grad_norm(data, model, params)
    assert float(gn) == pytest.approx(np.linalg.norm(R), rel=1e-12)


def test_uniform_pattern_keeps_the_padded_layout():
    M = rb.random_low_rank((80, 80), 2, seed=1)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=2, dense=False)
    model = rb.DeepFactorization((80, 80), depth=2, width=4)
    assert SparseCompletion.from_problems(prob, model).layout == "ell"


def test_gd_on_skewed_completion_agrees_with_dense():
    prob, M, rows, cols = _skewed(seed=1)
    model = rb.DeepFactorization(M.shape, depth=3, width=4)
    params = model.init("gaussian", scale=0.3, seed=0)
    kw: dict[str, Any] = dict(lr=0.01, steps=30, n_save=4)
    d = rb.gradient_descent(prob, model, params, backend="dense", **kw)
    s = rb.gradient_descent(prob, model, params, backend="sparse", **kw)
    np.testing.assert_allclose(np.asarray(s.loss), np.asarray(d.loss), rtol=1e-10)
    for a, b in zip(s.final_params, d.final_params, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)


def test_stacked_coo_batch_pads_entries():
    p1, M, *_ = _skewed(seed=1)
    _, M2, rows, cols = _skewed(seed=2)
    p2 = rb.MatrixCompletion(M2, (rows[:-50], cols[:-50]), dense=False)  # fewer entries
    model = rb.DeepFactorization(M.shape, depth=2, width=4)
    params = model.init("gaussian", scale=0.5, seed=1)
    batch = SparseCompletion.from_problems([p1, p2], model)
    assert batch.layout == "coo" and batch.mask is not None
    assert float(batch.mask[1].sum()) == rows.size - 50  # p2 padded by 50 masked entries
    for i, p in enumerate((p1, p2)):
        one = SparseCompletion.from_problems(p, model)
        sub = SparseCompletion(
            **{k: (None if v is None else v[i]) for k, v in _arrays(batch).items()},  # pyright: ignore
            shape=batch.shape,
            layout="coo",
            row_only=False,
        )
        f1, g1, _ = loss_and_grad(one, model, params)
        f2, g2, _ = loss_and_grad(sub, model, params)
        assert float(f2) == pytest.approx(float(f1), rel=1e-13)
        for a, b in zip(g1, g2, strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-13)


def _arrays(t):
    names = ("ridx", "rval", "rmask", "cidx", "cperm", "cmask", "weight")
    names += ("rows", "cols", "vals", "mask")
    return {k: getattr(t, k) for k in names}


def test_train_and_flow_on_skewed_completion_agree_with_dense():
    """rb.train (full-batch SGD) and rb.gradient_flow (tsit5, tight tolerances) on the COO
    layout against the dense backend (its own independent evaluation of f and grad)."""
    prob, M, *_ = _skewed(seed=3)
    model = rb.DeepFactorization(M.shape, depth=2, width=3)
    params = model.init("gaussian", scale=0.3, seed=2)
    assert SparseCompletion.from_problems(prob, model).layout == "coo"
    kw: dict[str, Any] = dict(lr=0.01, steps=20, n_save=3, save_spacing="linear")
    d = rb.train(prob, model, params, "sgd", backend="dense", **kw)
    s = rb.train(prob, model, params, "sgd", backend="sparse", **kw)
    assert s.info["backend"] == "sparse"
    np.testing.assert_allclose(np.asarray(s.loss), np.asarray(d.loss), rtol=1e-10)
    fkw: dict[str, Any] = dict(t_max=0.5, solver="tsit5", rtol=1e-10, atol=1e-12, n_save=3)
    fd = rb.gradient_flow(prob, model, params, backend="dense", **fkw)
    fs = rb.gradient_flow(prob, model, params, backend="sparse", **fkw)
    assert fs.info["backend"] == "sparse"
    np.testing.assert_allclose(np.asarray(fs.loss), np.asarray(fd.loss), rtol=1e-8)


def test_gd_batch_of_skewed_completions():
    """A vmapped batch of two COO problems (stacked entry lists; the engine batches problems
    with equal entry counts) against dense single runs."""
    p1, M, *_ = _skewed(seed=1)
    p2, *_ = _skewed(seed=2)
    model = rb.DeepFactorization(M.shape, depth=2, width=3)
    ps = [model.init("gaussian", scale=0.3, seed=s) for s in (0, 1)]
    kw: dict[str, Any] = dict(lr=0.01, steps=10, n_save=3, save_spacing="linear")
    out = rb.gradient_descent_batch([p1, p2], model, ps, strategy="vmap", backend="sparse", **kw)
    for tr, p, prm in zip(out, (p1, p2), ps, strict=True):
        ref = rb.gradient_descent(p, model, prm, backend="dense", **kw)
        np.testing.assert_allclose(np.asarray(tr.loss), np.asarray(ref.loss), rtol=1e-10)
