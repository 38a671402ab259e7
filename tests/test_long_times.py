"""Gradient flow past float64 time resolution: escapes at t ~ 1e15 and the clock restarts.

Oracle: a diagonal depth-4 flow is 2 decoupled scalar flows ``w' = (s - w^4) w^3`` (each
``W_ii = w^4``), whose plateau solves in closed form: ``1/w^2 = 1/a^2 - 2 s t`` (up to
``O(w^2/s^2)`` time units), so ``W_ii`` escapes at ``t ~ 1/(2 s a^2)`` within a few time
units, where consecutive float64 times are ~0.1-0.25 apart.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb

S = (1.0, 0.5)
A = float(np.sqrt(1 / (2 * S[0] * 1e15)))  # first escape at t = 1e15, second at 2e15
T_CHECK = (0.5e15, 1e15 * (1 - 1e-3), 1.5e15, 2e15 * (1 - 1e-3))
T_AROUND = (1e15 * (1 - 1e-6), 1e15 * (1 + 1e-6), 2e15 * (1 - 1e-6), 2e15 * (1 + 1e-6))


def _plateau(t, s):
    return (1 / A**2 - 2 * s * t) ** -2.0


def _setup():
    prob = rb.MatrixEstimation(np.diag(S))
    model = rb.DeepFactorization((2, 2), depth=4)
    return prob, model, tuple(jnp.eye(2) * A for _ in range(4))


KW = dict(t_max=1e16, solver="hybrid", gtol=None, n_save=40, save_at=T_CHECK + T_AROUND,
          save_matrices=True, max_steps=50_000)


def _diag_at(tr, t):
    i = int(np.argmin(np.abs(tr.times - t)))
    assert tr.times[i] == pytest.approx(t, rel=1e-15)
    return np.diag(tr.matrices[i])


def _check(tr):
    assert tr.info["status"] == "t_max" and tr.info["t_final"] == pytest.approx(1e16)
    assert tr.info["restarts"] >= 1  # on one float64 clock the escape at 1e15 stalls
    assert np.all(np.diff(tr.times) > 0)
    np.testing.assert_allclose(tr.final_matrix, np.diag(S), atol=1e-10)
    # Plateaus against the closed form, in the first segment and after a restart (rtol 1e-8:
    # the escape time is known to ~1e-7 relative, which sets the tolerance before an escape).
    for t, i, tol in ((0.5e15, 0, 1e-5), (1e15 * (1 - 1e-3), 0, 5e-3), (1.5e15, 1, 1e-6),
                      (2e15 * (1 - 1e-3), 1, 1e-4)):
        assert _diag_at(tr, t)[i] == pytest.approx(_plateau(t, S[i]), rel=tol)
    # Each escape happens within 1e-6 (relative) of its closed-form time.
    for k, t in enumerate((1e15, 2e15)):
        before, after = _diag_at(tr, t * (1 - 1e-6))[k], _diag_at(tr, t * (1 + 1e-6))[k]
        assert before < 1e-15 and after == pytest.approx(S[k], rel=1e-10)


def test_flow_restarts_its_clock_through_escapes_at_1e15():
    prob, model, ps = _setup()
    with pytest.warns(rb.ResolutionWarning):
        tr = rb.gradient_flow(prob, model, ps, **KW)
    _check(tr)
    # The loss never increases, across the restarts too.
    assert np.all(np.diff(tr.loss) <= 1e-12 * tr.loss[0])


def test_batched_flows_restart_run_by_run():
    prob, model, ps = _setup()
    ps2 = tuple(jnp.eye(2) * 0.5 for _ in range(4))  # escapes at t ~ 10: no restart
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rb.ResolutionWarning)
        trs = rb.gradient_flow_batch(prob, model, [ps, ps2], **KW)
        one = rb.gradient_flow(prob, model, ps, **KW)
    _check(trs[0])
    assert trs[1].info["restarts"] == 0 and trs[1].info["status"] == "t_max"
    np.testing.assert_allclose(trs[0].times, one.times)
    np.testing.assert_allclose(trs[0].matrices, one.matrices, rtol=1e-6, atol=1e-30)
    assert trs[0].info["restarts"] == one.info["restarts"]


def test_step_budget_counts_every_segment():
    prob, model, ps = _setup()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rb.ResolutionWarning)
        ref = rb.gradient_flow(prob, model, ps, **KW)
    n = ref.info["num_steps"] - 1  # runs out in the last segment
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rb.ResolutionWarning)
        with pytest.warns(RuntimeWarning, match="max_steps"):
            tr = rb.gradient_flow(prob, model, ps, **{**KW, "max_steps": n})
    assert tr.info["status"] == "max_steps" and tr.info["num_steps"] == n
    assert tr.info["restarts"] >= 1 and tr.info["t_final"] < 1e16
