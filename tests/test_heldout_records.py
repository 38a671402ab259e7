"""Held-out RMSE recorded during runs (issue 26): ``heldout=`` on the flow, GD and ``train``.

Oracle: ``HeldOut.rmse`` (numpy) of the matrices the same run saved (``save_matrices=True``);
the factor-form backend gathers rows of its factors and must give the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rankbias as rb
from rankbias.problems.heldout import HeldOut

M = rb.random_low_rank(shape=(10, 8), rank=2, seed=0)
PROB = rb.MatrixCompletion.uniform(M, fraction=0.6, seed=0)


def _heldout() -> HeldOut:
    observed = np.asarray(PROB.mask, dtype=bool)
    rows, cols = np.nonzero(~observed)
    return HeldOut(rows, cols, M[rows, cols], M.shape)


HELD = _heldout()


def _check(tr):
    got = tr.metrics["heldout_rmse"]
    want = np.array([HELD.rmse(W) for W in tr.matrices])
    assert got.shape == (len(tr),)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    assert got[-1] < got[0]  # the held-out entries are being learned (low rank)
    ds = tr.to_xarray()
    np.testing.assert_array_equal(ds["heldout_rmse"].values, got)


def test_flow_records_heldout_rmse_dense():
    model = rb.DeepFactorization(shape=(10, 8), depth=2)
    p0 = model.init("gaussian", scale=1e-3, seed=0)
    tr = rb.gradient_flow(PROB, model, p0, t_max=1e3, n_save=30, save_matrices=True, heldout=HELD)
    _check(tr)


def test_flow_and_gd_record_heldout_rmse_sparse_backend(tmp_path):
    model = rb.DeepFactorization(shape=(10, 8), depth=2, width=3)
    p0 = model.init("gaussian", scale=1e-2, seed=0)
    kw: dict[str, Any] = dict(save_matrices=True, heldout=HELD, backend="sparse")
    tr = rb.gradient_flow(PROB, model, p0, t_max=1e3, n_save=30, **kw)
    assert tr.info["backend"] == "sparse"
    _check(tr)
    gd = rb.gradient_descent(PROB, model, p0, lr=0.5, steps=2000, n_save=30, **kw)
    _check(gd)
    back = rb.Trajectory.load(gd.save(tmp_path / "gd"))
    assert back == gd and "heldout_rmse" in back.metrics


def test_train_records_heldout_rmse_and_plots_it():
    model = rb.DeepFactorization(shape=(10, 8), depth=2)
    p0 = model.init("gaussian", scale=1e-2, seed=0)
    tr = rb.train(
        PROB, model, p0, "adam", lr=0.01, steps=1500, n_save=20, save_matrices=True, heldout=HELD
    )
    _check(tr)
    ax = tr.plot("heldout_rmse")
    assert ax.get_ylabel() == "held-out RMSE"
    plain = rb.train(PROB, model, p0, "adam", lr=0.01, steps=10, n_save=5)
    assert plain.metrics == {}
    with pytest.raises(ValueError, match="heldout="):
        plain.plot("heldout_rmse")


def test_bad_heldout_is_named():
    model = rb.DeepFactorization(shape=(10, 8), depth=2)
    p0 = model.init("gaussian", scale=1e-3, seed=0)
    with pytest.raises(TypeError, match="`heldout`"):
        rb.gradient_descent(PROB, model, p0, lr=0.1, steps=5, heldout=M)
    wrong = HeldOut(np.array([0]), np.array([0]), np.array([1.0]), (8, 10))
    with pytest.raises(ValueError, match="`heldout`"):
        rb.gradient_flow(PROB, model, p0, heldout=wrong)
    outside = HeldOut(np.array([10]), np.array([0]), np.array([1.0]), (10, 8))
    with pytest.raises(ValueError, match="outside"):
        rb.gradient_descent(PROB, model, p0, lr=0.1, steps=5, heldout=outside)
