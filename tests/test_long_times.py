"""Gradient flow past float64 time resolution: escapes at t ~ 1e15 and the clock restarts.

Oracle: a diagonal depth-4 flow is 2 decoupled scalar flows ``w' = (s - w^4) w^3`` (each
``W_ii = w^4``), whose plateau solves in closed form: ``1/w^2 = 1/a^2 - 2 s t`` (up to
``O(w^2/s^2)`` time units), so ``W_ii`` escapes at ``t ~ 1/(2 s a^2)`` within a few time
units, where consecutive float64 times are ~0.1-0.25 apart.
"""

import warnings
from typing import Any

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


KW: dict[str, Any] = dict(
    t_max=1e16,
    solver="hybrid",
    gtol=None,
    n_save=40,
    save_at=T_CHECK + T_AROUND,
    save_matrices=True,
    max_steps=50_000,
)


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
    for t, i, tol in (
        (0.5e15, 0, 1e-5),
        (1e15 * (1 - 1e-3), 0, 5e-3),
        (1.5e15, 1, 1e-6),
        (2e15 * (1 - 1e-3), 1, 1e-4),
    ):
        assert _diag_at(tr, t)[i] == pytest.approx(_plateau(t, S[i]), rel=tol)
    # Each escape happens within 1e-6 (relative) of its closed-form time.
    for k, t in enumerate((1e15, 2e15)):
        before, after = _diag_at(tr, t * (1 - 1e-6))[k], _diag_at(tr, t * (1 + 1e-6))[k]
        assert before < 1e-15 and after == pytest.approx(S[k], rel=1e-10)


@pytest.mark.slow
def test_flow_restarts_its_clock_through_escapes_at_1e15():
    prob, model, ps = _setup()
    with pytest.warns(rb.ResolutionWarning):
        tr = rb.gradient_flow(prob, model, ps, **KW)
    _check(tr)
    # The loss never increases, across the restarts too.
    assert np.all(np.diff(tr.loss) <= 1e-12 * tr.loss[0])


@pytest.mark.slow
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
    assert one.matrices is not None  # save_matrices=True
    np.testing.assert_allclose(trs[0].matrices, one.matrices, rtol=1e-6, atol=1e-30)
    assert trs[0].info["restarts"] == one.info["restarts"]


@pytest.mark.slow
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


def _extended_precision_grad(problem, M, params):
    """Gradient of ``1/2 sum_Omega (W - M)^2`` w.r.t. each factor, in 80-bit long double."""
    ld = np.longdouble
    P = [np.asarray(p).astype(ld) for p in params]

    def prod(ms):
        out = np.eye(P[0].shape[1], dtype=ld)
        for m in ms:
            out = m @ out
        return out

    mask = np.asarray(problem.mask).astype(ld)
    R = mask * (prod(P) - np.asarray(M).astype(ld))
    return [prod(P[i + 1 :]).T @ R @ prod(P[:i]).T for i in range(len(P))]


@pytest.mark.slow
@pytest.mark.parametrize("depth, noisy, steps", [(3, False, 1500), (4, True, 1100)])
def test_after_first_escape_the_float64_gradient_is_noise_iff_warned(depth, noisy, steps):
    # 20x20 rank 3 at alpha 1e-32: after the first escape, compare the float64 gradient with
    # an 80-bit one at the same state. Depth 4 (max|y0|^2 ~ 8e-17 < 100 eps) gets the
    # rounding-floor warning and its gradient is rounding noise (measured: 99-214% off);
    # depth 3 (max|y0| ~ 2e-11) gets only the later-escapes one (max|y0|^2 < 0.01 eps: the
    # next direction's drive is below rounding), and its gradient as a whole is accurate
    # (4e-14). The noise is why the depth-4 stretch after the first escape needs ~0.1 s Rodas
    # steps of h ~ 1e8 over ~1e16 time units.
    M = rb.random_low_rank((20, 20), 3, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=0, symmetric=True)
    model = rb.DeepFactorization((20, 20), depth=depth)
    ps = model.init("gaussian", scale=1e-32, seed=0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        tr = rb.gradient_flow(
            prob, model, ps, t_max=1e19, gtol=None, n_save=200, solver="hybrid", max_steps=steps
        )
    warned = [str(w.message) for w in rec if issubclass(w.category, rb.ResolutionWarning)]
    assert warned  # both are below the later-escapes floor
    assert any("curvature along the next directions" in m for m in warned) == noisy
    assert tr.loss[-1] < 0.5 * tr.loss[0]  # past the first escape
    if depth == 4:
        assert tr.info["restarts"] >= 1  # it comes at t ~ 8e15
    _, g, _ = model.loss_and_grad(prob, tr.final_params)  # pyright: ignore[reportArgumentType]  # NumPy factors are accepted
    exact = _extended_precision_grad(prob, M, tr.final_params)
    rel = max(
        float(np.linalg.norm(np.asarray(a) - b.astype(float)) / np.linalg.norm(b.astype(float)))
        for a, b in zip(g, exact, strict=True)
    )
    assert (rel > 0.1) if noisy else (rel < 1e-3)
