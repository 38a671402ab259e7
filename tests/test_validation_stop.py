"""Validation early stopping (issue 26): ``early_stopping=rb.EarlyStopping(...)`` with
``heldout=`` on gradient descent and ``train``.

Oracle: a plain numpy scan of the held-out curve of the uninterrupted run (same config)
gives the stopping record; the stopped run's records are that run's first records, and with
``restore_best`` its final factors are those of the best record (``save_matrices`` of the
full run: ``W`` at that record)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rankbias as rb
from rankbias.dynamics.descent import loop
from rankbias.problems.heldout import HeldOut

# A noisy completion: the held-out error falls while the signal is learned, then rises as
# the noise is fitted (the overfitting that early stopping is for).
rng = np.random.default_rng(0)
M = 10 * rb.random_low_rank(shape=(12, 10), rank=2, seed=0)
Y = M + rng.standard_normal(M.shape)
MASK = rng.random(M.shape) < 0.6
PROB = rb.MatrixCompletion(Y, MASK)
rows, cols = np.nonzero(~MASK)
HELD = HeldOut(rows, cols, M[rows, cols], M.shape)
MODEL = rb.DeepFactorization(shape=(12, 10), depth=2)
P0 = MODEL.init("gaussian", scale=1e-2, seed=0)
# Records every 25 steps (162 of them): the held-out RMSE is least near record 19.
KW: dict[str, Any] = dict(
    lr=0.002, steps=4000, n_save=2, save_at=np.arange(0, 4001, 25), heldout=HELD
)


def _oracle(v: np.ndarray, patience: int, min_delta: float):
    """(stop record, best record) of the rule, by a plain scan; (None, best) if it never
    triggers."""
    best, b = v[0], 0
    for i in range(1, len(v)):
        if v[i] < best - min_delta:
            best, b = v[i], i
        elif i - b >= patience:
            return i, b
    return None, b


@pytest.mark.parametrize(("patience", "min_delta"), [(5, 0.0), (20, 1e-3)])
def test_gd_stops_where_a_scan_of_the_full_curve_says(monkeypatch, patience, min_delta):
    monkeypatch.setattr(loop, "CHUNK_RECORDS", 16)  # the stop falls inside a later chunk
    full = rb.gradient_descent(PROB, MODEL, P0, save_matrices=True, **KW)
    v = full.metrics["heldout_rmse"]
    j, b = _oracle(v, patience, min_delta)
    assert j is not None and j > 16  # the curve has a minimum, then rises
    rule = rb.EarlyStopping(patience=patience, min_delta=min_delta)
    tr = rb.gradient_descent(PROB, MODEL, P0, early_stopping=rule, **KW)
    assert tr.status == rb.RunStatus.VALIDATION_STOP and rb.status.ended_well(tr.status)
    es = tr.info["early_stopping"]
    assert (es["stop_record"], es["best_record"]) == (j, b)
    assert es["best_step"] == full.steps[b] and es["stop_step"] == full.steps[j]  # pyright: ignore[reportOptionalSubscript]
    assert len(tr) == j + 1
    np.testing.assert_array_equal(tr.steps, full.steps[: j + 1])  # pyright: ignore[reportOptionalSubscript]
    np.testing.assert_allclose(tr.metrics["heldout_rmse"], v[: j + 1], rtol=1e-12)
    np.testing.assert_allclose(tr.final_matrix, full.matrices[b], rtol=0, atol=1e-12)  # pyright: ignore[reportOptionalSubscript]
    assert HELD.rmse(tr.final_matrix) == pytest.approx(v[b], rel=1e-10)

    last = rb.gradient_descent(
        PROB, MODEL, P0, early_stopping=rb.EarlyStopping(patience, min_delta, False), **KW
    )
    np.testing.assert_allclose(last.final_matrix, full.matrices[j], rtol=0, atol=1e-12)  # pyright: ignore[reportOptionalSubscript]


def test_train_stops_and_restores_the_best_record():
    kw: dict[str, Any] = dict(KW, lr=0.02)
    full = rb.train(PROB, MODEL, P0, "adam", save_matrices=True, **kw)
    j, b = _oracle(full.metrics["heldout_rmse"], 10, 0.0)
    assert j is not None
    tr = rb.train(PROB, MODEL, P0, "adam", early_stopping=rb.EarlyStopping(10), **kw)
    assert tr.status == "validation_stop" and tr.info["early_stopping"]["stop_record"] == j
    np.testing.assert_allclose(tr.final_matrix, full.matrices[b], rtol=0, atol=1e-12)  # pyright: ignore[reportOptionalSubscript]


def test_bad_early_stopping_is_named():
    with pytest.raises(ValueError, match="`patience`"):
        rb.EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="`min_delta`"):
        rb.EarlyStopping(patience=3, min_delta=-1.0)
    with pytest.raises(TypeError, match="`restore_best`"):
        rb.EarlyStopping(patience=3, restore_best="yes")  # pyright: ignore
    with pytest.raises(ValueError, match="heldout="):
        rb.gradient_descent(PROB, MODEL, P0, lr=0.1, steps=5, early_stopping=rb.EarlyStopping(3))
    with pytest.raises(TypeError, match="`early_stopping`"):
        rb.gradient_descent(PROB, MODEL, P0, lr=0.1, steps=5, heldout=HELD, early_stopping=3)


def test_flow_stops_after_the_chunk_where_a_scan_of_the_full_curve_says(monkeypatch):
    """A flow checks the rule after each chunk (here 50 steps) and stops at that chunk's end:
    the stopping record is the scan's, the records are the full flow's first ones."""
    from rankbias.dynamics.flow import api as flow_api

    save = np.linspace(0, 400, 161)[1:]
    kw: dict[str, Any] = dict(t_max=400.0, n_save=2, save_at=save, gtol=None, heldout=HELD)
    full = rb.gradient_flow(PROB, MODEL, P0, **kw)
    v = full.metrics["heldout_rmse"]
    j, b = _oracle(v, 10, 0.0)
    assert j is not None
    monkeypatch.setattr(flow_api, "CHUNK_STEPS", 50)
    rule = rb.EarlyStopping(patience=10, restore_best=False)
    tr = rb.gradient_flow(PROB, MODEL, P0, early_stopping=rule, **kw)
    assert tr.status == rb.RunStatus.VALIDATION_STOP
    es = tr.info["early_stopping"]
    assert (es["stop_record"], es["best_record"]) == (j, b)
    assert tr.times[j] == full.times[j] <= tr.times[-1] < full.times[-1]
    n = len(tr) - 1  # the save times reached, then the chunk's end point
    np.testing.assert_allclose(tr.metrics["heldout_rmse"][:n], v[:n], rtol=1e-10)
    with pytest.raises(ValueError, match="restore_best=False"):
        rb.gradient_flow(PROB, MODEL, P0, early_stopping=rb.EarlyStopping(10), **kw)
