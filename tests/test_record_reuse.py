"""Records reuse the step (issue 26): a gradient-descent or full-batch ``rb.train`` record
takes its loss and gradient norm from the evaluation the next step uses.

Oracles: the loss and the gradient of ``f(W) = 1/2 sum_Omega (W - M)^2`` at ``W = W_2 W_1``
written out in NumPy (``grad_{W_1} = W_2^T G``, ``grad_{W_2} = G W_1^T``, ``G = P_Omega(W -
M)``) at the matrices and final factors the runs return; and the count of loss-and-gradient
evaluations in the traced loop (one per step, none per record with a full-batch rule)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb
from rankbias.dynamics import _train
from rankbias.dynamics.descent import loop, rules as gd_rules
from rankbias.dynamics.descent.rules import GDRule
from rankbias.optimizers import check_hyperparams

M_, N_ = 8, 7


def _problem():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((M_, 2)) @ rng.standard_normal((2, N_)) / 2
    mask = rng.random((M_, N_)) < 0.6
    return rb.MatrixCompletion(M, mask), M, mask


def _numpy_loss_and_grad_norm(M, mask, W1, W2):
    G = np.where(mask, W2 @ W1 - M, 0.0)
    g = np.sqrt(np.sum((W2.T @ G) ** 2) + np.sum((G @ W1.T) ** 2))
    return 0.5 * np.sum(G**2), g


@pytest.mark.parametrize("how", ["gd", "train", "train-minibatch"])
def test_records_equal_the_closed_form_at_the_recorded_matrices(how):
    prob, M, mask = _problem()
    model = rb.DeepFactorization((M_, N_), depth=2)
    p0 = model.init(scale=0.3, seed=1)
    if how == "gd":
        tr = rb.gradient_descent(prob, model, p0, lr=0.05, steps=40, n_save=9, save_matrices=True)
    elif how == "train":
        tr = rb.train(prob, model, p0, "adam", lr=0.01, steps=40, n_save=9, save_matrices=True)
    else:
        tr = rb.train(
            prob, model, p0, "sgd", lr=0.02, batch_size=10, steps=40, n_save=9, save_matrices=True
        )
    assert tr.matrices is not None
    for W, f in zip(tr.matrices, tr.loss, strict=True):
        want = 0.5 * np.sum(np.where(mask, W - M, 0.0) ** 2)
        np.testing.assert_allclose(f, want, rtol=1e-12)
    W1, W2 = tr.final_params
    f, g = _numpy_loss_and_grad_norm(M, mask, W1, W2)
    np.testing.assert_allclose(tr.loss[-1], f, rtol=1e-12)
    np.testing.assert_allclose(tr.grad_norm[-1], g, rtol=1e-12)
    assert tr.loss[-1] < tr.loss[0]


def _count_evaluations(monkeypatch, rule):
    """Loss-and-gradient evaluations traced in one step and in one record of the loop."""
    prob, _, _ = _problem()
    model = rb.DeepFactorization((M_, N_), depth=2)
    params = model.init(scale=0.3, seed=1)
    calls = []
    real = loop.loss_and_grad

    def counted(*a):
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(loop, "loss_and_grad", counted)
    monkeypatch.setattr(_train, "loss_and_grad", counted)
    monkeypatch.setattr(gd_rules, "loss_and_grad", counted)
    cfg = loop.LoopConfig(False, rule)
    name = getattr(rule, "name", None) or "sgd"
    hyper = {k: jnp.asarray(v) for k, v in check_hyperparams(name, 0.05, {}).items()}
    hyper["seed"] = jnp.asarray(0)
    last = jnp.asarray(10)
    init, limit, half, rise_tol = loop._start(prob, params, last, hyper, 1e8, model, cfg)
    advance, rec = loop._parts(prob, hyper, limit, half, rise_tol, model, cfg)
    calls.clear()
    jax.eval_shape(rec, init)
    per_record = len(calls)
    calls.clear()
    jax.eval_shape(lambda c: advance(c, jnp.asarray(1)), init)
    # advance traces one step twice: the chunk's body (a scan, unrolled when lowered) and
    # the single-step loop
    per_step = len(calls) / 2
    return per_record, per_step


@pytest.mark.parametrize("batch", [None, 10])
def test_a_record_evaluates_nothing_when_the_step_has_its_gradient(monkeypatch, batch):
    if batch is None:
        rules = [GDRule(None), _train._OptaxRule("adam", None, None, None, None)]
    else:
        rules = [_train._OptaxRule("sgd", None, None, batch, 40)]
    for rule in rules:
        per_record, per_step = _count_evaluations(monkeypatch, rule)
        assert per_step == 1
        assert per_record == (0 if batch is None else 1)
