"""Rodas4 (dense Rosenbrock) and the Tsit5/RKC/Rodas4 hybrid: closed forms and invariants."""

from typing import Any

import diffrax
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb
from rankbias.dynamics._rosenbrock import rodas4_step
from rankbias.dynamics.flow.solvers import make_solver as _make_solver


def _riccati(y0, t):
    # y' = -y^2 (a gradient flow of y^3/3): y(t) = y0 / (1 + y0 t).
    return y0 / (1 + y0 * t)


def test_rodas4_step_is_fourth_order():
    fun = lambda y: -y * y
    y0 = jnp.array([1.0, 0.5, 2.0])

    def solve(n):
        h = 1.0 / n
        y, f = y0, fun(y0)
        for _ in range(n):
            y, f, _ = rodas4_step(fun, y, f, h)
        return np.asarray(y)

    exact = _riccati(np.asarray(y0), 1.0)
    e = [np.max(np.abs(solve(n) - exact)) for n in (8, 16, 32)]
    # Global error O(h^4): halving h divides it by ~16.
    assert 12 < e[0] / e[1] < 20 and 12 < e[1] / e[2] < 20


def test_rodas4_error_estimate_tracks_local_error():
    fun = lambda y: -y * y
    y0 = jnp.array([1.0])
    for h in (0.2, 0.1, 0.05):
        y1, f1, err = rodas4_step(fun, y0, fun(y0), h)
        true = float(abs(y1[0] - _riccati(1.0, h)))
        np.testing.assert_allclose(np.asarray(f1), np.asarray(fun(y1)))
        # The embedded (order-3) estimate bounds the order-4 solution's local error.
        assert true < abs(float(err[0])) < 1e3 * max(true, 1e-16)


@pytest.mark.parametrize("name", ["rodas4", "hybrid"])
def test_stiff_linear_flow_in_few_steps(name):
    # y' = -A y, A SPD with eigenvalues 1e-6 .. 1e4: exact solution by eigendecomposition.
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    lam = np.geomspace(1e-6, 1e4, 30)
    A = (Q * lam) @ Q.T
    y0 = rng.standard_normal(30)
    T = 1e5
    term = diffrax.ODETerm(lambda t, y, a: -jnp.asarray(A) @ y)
    sol = diffrax.diffeqsolve(
        term,
        _make_solver(name, 30),
        0.0,
        T,
        None,
        jnp.asarray(y0),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-12),
        max_steps=100_000,
    )
    exact = (Q * np.exp(-lam * T)) @ (Q.T @ y0)
    assert sol.ys is not None
    np.testing.assert_allclose(np.asarray(sol.ys[0]), exact, atol=1e-7)
    # An explicit method needs T * 1e4 / 3 ~ 3e8 steps. Rodas4 takes ~100 steps per decade
    # of the 9 decades of time scales (1e-4 .. 1e5) that the decaying modes span; the hybrid
    # takes 2nd-order RKC steps (more of them) until RKC would need > DENSE_STAGES stages.
    assert int(sol.stats["num_steps"]) < (2000 if name == "rodas4" else 6000)


def test_hybrid_uses_rodas_only_below_dense_limit():
    from rankbias.dynamics.flow import solvers as _flow

    below, above = (
        _make_solver("hybrid", _flow.DENSE_LIMIT),
        _make_solver("hybrid", _flow.DENSE_LIMIT + 1),
    )
    plain = _make_solver("rkc", 10)
    assert isinstance(below, rb.RKC) and isinstance(above, rb.RKC) and isinstance(plain, rb.RKC)
    assert below.dense_stages == _flow.DENSE_STAGES
    assert above.dense_stages is None
    assert plain.dense_stages is None


def _deep_instance():
    M = rb.random_low_rank((8, 8), 2, psd=True, seed=1)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=1, symmetric=True)
    return M, prob, rb.DeepFactorization((8, 8), depth=3)


@pytest.mark.slow
def test_hybrid_crosses_depth3_stiff_stretch_at_alpha_1e_minus_30():
    # Depth 3 at alpha = 1e-30: escapes at t ~ alpha^-(1/3) ~ 1e10, and between the two
    # escapes the learned direction (curvature ~1) is stiff for ~1e10 time units.
    M, prob, model = _deep_instance()
    ps = model.init("gaussian", scale=1e-30, seed=0)
    kw: dict[str, Any] = dict(t_max=1e12, gtol=None, n_save=60, max_steps=20_000)
    with pytest.warns(rb.ResolutionWarning, match="escape times are unresolved"):
        hyb = rb.gradient_flow(prob, model, ps, solver="hybrid", **kw)
    assert hyb.info["status"] == "t_max"
    # Reaches the truth (rank 2, enough observations): the second direction did escape.
    assert np.linalg.norm(hyb.final_matrix - M) < 1e-6 * np.linalg.norm(M)
    assert np.all(np.diff(hyb.loss) <= 1e-12)  # a gradient flow never increases the loss
    # Plain RKC needs ~sqrt(1.54 h rho) ~ 1e4 stages per step there (capped at 2000): it does
    # not get past the stretch in minutes (benchmarks/bench_flow.py), so no comparison here.


@pytest.mark.slow
def test_resolution_warning_only_for_deep_tiny_inits():
    import warnings

    M, prob, model = _deep_instance()
    with warnings.catch_warnings():
        warnings.simplefilter("error", rb.ResolutionWarning)
        # Depth 3 at alpha 1e-6 (factors ~1e-2) and depth 2 at 1e-30: resolved, no warning.
        rb.gradient_flow(prob, model, model.init("gaussian", scale=1e-6, seed=0), t_max=10.0)
        deep2 = rb.DeepFactorization((8, 8), depth=2)
        rb.gradient_flow(prob, deep2, deep2.init("gaussian", scale=1e-30, seed=0), t_max=10.0)
    with pytest.warns(rb.ResolutionWarning, match="max.y0. = "):
        rb.gradient_flow_batch(
            prob,
            model,
            [model.init("gaussian", scale=a, seed=0) for a in (1e-3, 1e-30)],
            t_max=10.0,
        )


@pytest.mark.slow
def test_resolution_warning_names_the_rounding_floor():
    # Depth 4: max|y0|^2 < 100 eps at alpha 1e-32 (factors ~1e-8), not at 1e-16 (~1e-4).
    M, prob, _ = _deep_instance()
    model = rb.DeepFactorization((8, 8), depth=4)
    with pytest.warns(rb.ResolutionWarning, match="rounding level of the float64 gradient"):
        rb.gradient_flow(prob, model, model.init("gaussian", scale=1e-32, seed=0), t_max=1.0)
    import warnings

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rb.gradient_flow(prob, model, model.init("gaussian", scale=1e-16, seed=0), t_max=1.0)
    assert not any("rounding level" in str(w.message) for w in rec)
