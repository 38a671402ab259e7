"""How a gradient-descent or optimizer run ended: ``completed`` only near a stationary point
(``not_stationary`` with the quantities in ``info["stationarity"]`` otherwise), a warning for
a step size that oscillates, and divergence hints that hold for the whole run (the issue
"Honest results and a hardened surface", section 2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import rankbias as rb
from rankbias.dynamics.descent.stationarity import GRAD_RTOL

# The gradient-descent guide's example (docs/guides/gradient-descent.md).
M = rb.random_low_rank(shape=(8, 8), rank=2, psd=True, seed=0)
PROB = rb.MatrixCompletion.uniform(M, fraction=0.7, seed=0, symmetric=True)
MODEL = rb.DeepFactorization(shape=(8, 8), depth=3)
P0 = MODEL.init("gaussian", scale=1e-3, seed=0)
STEPS = 3000
# 2 / sharpness at the end of the gradient flow from P0 (0.505): lr = 0.757 = 1.5x it.
LR_OSC = 0.757


def _rel_error(tr) -> float:
    return float(np.linalg.norm(tr.final_matrix - M) / np.linalg.norm(M))


def test_converged_run_is_completed_with_its_quantities():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tr = rb.gradient_descent(PROB, MODEL, P0, lr=0.5, steps=STEPS, n_save=20)
    st = tr.info["stationarity"]
    assert tr.status == rb.RunStatus.COMPLETED and st["verdict"] == "near_stationary"
    # The quantities are those of the records: the oracle is the trajectory itself.
    assert st["grad_ratio"] == pytest.approx(tr.grad_norm[-1] / tr.grad_norm.max())
    assert st["grad_ratio"] <= GRAD_RTOL and st["tail_rise_fraction"] == 0.0
    assert _rel_error(tr) < 1e-2


def test_oscillating_step_is_not_stationary_and_warns_with_a_stable_lr():
    # Before: status "completed" (loss 3.8e-2, relative error 1.06), no warning.
    with pytest.warns(RuntimeWarning, match=r"far from a stationary point") as rec:
        tr = rb.gradient_descent(PROB, MODEL, P0, lr=LR_OSC, steps=STEPS, n_save=20)
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert tr.status == rb.RunStatus.NOT_STATIONARY
    st = tr.info["stationarity"]
    assert st["verdict"] == "oscillating" and st["tail_rise_fraction"] > 0.3
    assert _rel_error(tr) > 0.1  # indeed far from the solution
    assert f"take lr <= {st['lr_hint']:.3g}" in str(rec[0].message) and st["lr_verified"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        good = rb.gradient_descent(PROB, MODEL, P0, lr=st["lr_hint"], steps=STEPS, n_save=20)
    assert good.status == "completed" and _rel_error(good) < 1e-2


def test_descending_run_is_not_stationary_without_a_warning():
    # Too few steps for this lr: the loss still falls steadily at the end.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tr = rb.gradient_descent(PROB, MODEL, P0, lr=0.01, steps=STEPS, n_save=20)
    st = tr.info["stationarity"]
    assert tr.status == "not_stationary" and st["verdict"] == "descending"
    assert tr.steps is not None
    assert np.all(np.diff(tr.loss[tr.steps >= STEPS // 2]) < 0)


def test_saddle_plateau_is_completed():
    # From a tiny init the run sits on the plateau of the saddle at 0: the loss does not move.
    p = MODEL.init("gaussian", scale=1e-12, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tr = rb.gradient_descent(PROB, MODEL, p, lr=0.1, steps=200, n_save=20)
    assert tr.status == "completed" and tr.info["stationarity"]["verdict"] == "plateau"
    assert abs(tr.loss[-1] - tr.loss[0]) < 1e-12 * tr.loss[0]


def test_a_run_that_barely_moved_is_not_called_completed():
    # A large init with a tiny lr: the gradient (O(1)) never used, the loss unchanged to 1e-5.
    p = MODEL.init("gaussian", scale=0.5, seed=0)
    tr = rb.gradient_descent(PROB, MODEL, p, lr=1e-7, steps=100, n_save=10)
    st = tr.info["stationarity"]
    assert abs(tr.loss[-1] - tr.loss[0]) < 1e-3 * tr.loss[0]  # the oracle: it did not move
    assert tr.grad_norm[-1] > 0.5 * tr.grad_norm.max()  # ... at a gradient not small
    assert tr.status == "not_stationary" and st["verdict"] == "stalled"


def test_minibatch_noise_floor_is_not_called_oscillating():
    # Minibatch SGD at its noise floor: the loss fluctuates between records but does not rise
    # over the last half; not a step too large, so no warning and no reruns.
    Mr = rb.random_low_rank(shape=(10, 10), rank=3, seed=1)
    prob = rb.MatrixCompletion.uniform(Mr, fraction=0.6, seed=1)
    model = rb.DeepFactorization(shape=(10, 10), depth=2, width=1)
    p = model.init("gaussian", scale=1e-2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tr = rb.train(prob, model, p, "sgd", lr=0.01, steps=20_000, batch_size=5, n_save=40)
    half = tr.loss[len(tr.loss) // 2 :]
    assert half[-1] <= half[0] * (1 + 1e-3)  # the oracle: no net rise over the tail
    assert tr.info["stationarity"]["verdict"] != "oscillating"


def test_batch_statuses_per_run_and_one_warning():
    with pytest.warns(RuntimeWarning, match=r"run 1: the loss rose") as rec:
        runs = rb.gradient_descent_batch(
            PROB, MODEL, [P0] * 3, lr=[0.5, LR_OSC, 0.01], steps=STEPS, n_save=20
        )
    assert len([w for w in rec if "stationary" in str(w.message)]) == 1
    assert [r.status for r in runs] == ["completed", "not_stationary", "not_stationary"]
    assert [r.info["stationarity"]["verdict"] for r in runs] == [
        "near_stationary",
        "oscillating",
        "descending",
    ]


def test_train_status_and_warning():
    # sgd is GD: the same verdicts through the optimizer loop, per run in a batch.
    with pytest.warns(RuntimeWarning, match=r"training with sgd ended far"):
        tr = rb.train(PROB, MODEL, P0, "sgd", lr=LR_OSC, steps=STEPS, n_save=20)
    assert tr.status == "not_stationary" and tr.info["stationarity"]["lr_verified"]
    with pytest.warns(RuntimeWarning, match=r"run 0: "):
        runs = rb.train_batch(PROB, MODEL, [P0, P0], "sgd", lr=[LR_OSC, 0.5], steps=STEPS)
    assert [r.status for r in runs] == ["not_stationary", "completed"]


@pytest.mark.parametrize("lr", [100.0, 2.4])
def test_divergence_hint_holds_for_the_whole_run(lr):
    # Before: lr = 100 hinted lr < 0.724 and lr = 2.4 hinted lr < 0.809 (2 / sharpness before
    # the blow-up); at either GD oscillated for all 3000 steps and ended "completed" with
    # relative errors 1.05 and 0.96.
    with pytest.raises(rb.DivergenceError, match=r"take lr <= .*ran all 3000 steps") as e:
        rb.gradient_descent(PROB, MODEL, P0, lr=lr, steps=STEPS, n_save=20)
    hint = e.value.lr_hint
    assert hint is not None and hint < 0.505  # below 2 / sharpness at the solution
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        tr = rb.gradient_descent(PROB, MODEL, P0, lr=hint, steps=STEPS, n_save=20)
    assert (
        tr.steps is not None
        and tr.steps[-1] == STEPS
        and tr.status == "completed"
        and _rel_error(tr) < 1e-2
    )


def test_divergence_hint_on_a_second_completion():
    # Before: "take lr < 20" (2 / sharpness at the start); lr = 20 diverged at step 3.
    M2 = rb.random_low_rank(shape=(10, 10), rank=2, seed=1)
    prob = rb.MatrixCompletion.uniform(M2, fraction=0.6, seed=1)
    model = rb.DeepFactorization(shape=(10, 10), depth=2)
    p0 = model.init("gaussian", scale=1e-3, seed=1)
    with pytest.raises(rb.DivergenceError) as e:
        rb.gradient_descent(prob, model, p0, lr=100.0, steps=2000, n_save=20)
    hint = e.value.lr_hint
    assert hint is not None
    tr = rb.gradient_descent(prob, model, p0, lr=hint, steps=2000, n_save=20)
    assert tr.status == "completed" and tr.loss[-1] < 1e-6 * tr.loss[0]
