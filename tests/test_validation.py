"""Bad input to the dynamics and metrics fails at once, with a ValueError that names the
argument (issue 16, items 4-6 and the weak cases). Every case here fails before anything
is compiled, except the two large-scale runs at the end."""

from __future__ import annotations

import time
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb

M8 = rb.random_low_rank((8, 8), 2, psd=True, seed=0)
PROB = rb.MatrixCompletion.uniform(M8, 0.6, seed=0)
MODEL = rb.DeepFactorization((8, 8), depth=2)
P0 = MODEL.init("gaussian", 1e-2, seed=0)


def _fast(fn, match):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        fn()
    # Validation, not a run: no compile, no steps.
    assert time.perf_counter() - t0 < 10.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rtol=10.0), r"`rtol` must be < 1"),
        (dict(rtol=-1.0), r"`rtol` must be > 0"),
        (dict(atol=-1e-9), r"`atol` must be > 0"),
        (dict(gtol=-1.0), r"`gtol` must be > 0"),
        (dict(n_save=10**8), r"`n_save` must be <= 100000"),
        (dict(n_save=1e8), r"`n_save` must be an integer"),
        (dict(t_min=-1.0), r"`t_min` must be > 0"),
        (dict(t_min=200.0), r"`t_min` must be < t_max"),
        (dict(save_at=[-1.0]), r"`save_at` times must lie in \[0, t_max"),
        (dict(save_at=[200.0]), r"`save_at` times must lie in \[0, t_max"),
        (dict(save_at=[np.nan]), r"`save_at` times must lie"),
        (dict(max_steps=0), r"`max_steps` must be >= 1"),
        (dict(max_steps=2**40), r"`max_steps` must be <="),
        (dict(certificate_tol=0.0), r"`certificate_tol` must be > 0"),
    ],
)
def test_flow_settings(kwargs, match):
    _fast(lambda: rb.gradient_flow(PROB, MODEL, P0, t_max=100.0, **kwargs), match)
    _fast(lambda: rb.gradient_flow_batch(PROB, MODEL, [P0, P0], t_max=100.0, **kwargs), match)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(save_at=[1.5]), r"`save_at` must hold integer step"),
        (dict(save_at=[-1]), r"`save_at` steps must lie in \[0, steps=50\]"),
        (dict(save_at=[51]), r"`save_at` steps must lie in \[0, steps=50\]"),
        (dict(lr_schedule=lambda k: -1.0 + 0.0 * k), r"lr_schedule\(0\) = -1"),
        (dict(lr_schedule=lambda k: jnp.where(k > 9, jnp.nan, 1.0)), r"lr_schedule\(10\) = nan"),
        (dict(lr=-0.1), r"`lr` must be > 0"),
        (dict(lr=0.0), r"`lr` must be > 0"),
        (dict(divergence_factor=0.5), r"`divergence_factor` must be > 1"),
        (dict(n_save=10**8), r"`n_save` must be <= 100000"),
        (dict(steps=-1), r"`steps` must be >= 0"),
        # Before: no bound; steps=10**12 started a run that would take years.
        (dict(steps=10**12), r"`steps` must be <= 100_000_000 \(MAX_STEPS.*got 1_000_000_000_000"),
    ],
)
def test_gd_settings(kwargs, match):
    kw = dict(lr=0.1, steps=50) | kwargs
    _fast(lambda: rb.gradient_descent(PROB, MODEL, P0, **kw), match)
    _fast(lambda: rb.gradient_descent_batch(PROB, MODEL, [P0, P0], **kw), match)


def test_train_steps_bound():
    # The same bound (one constant, rb.dynamics.MAX_STEPS) for the optimizers, before compiling.
    _fast(lambda: rb.train(PROB, MODEL, P0, "adam", lr=1e-3, steps=10**12), r"`steps` must be <=")
    _fast(
        lambda: rb.train_batch(
            PROB, MODEL, [P0, P0], "sgd", lr=0.1, steps=rb.dynamics.MAX_STEPS + 1
        ),
        r"`steps` must be <= 100_000_000",
    )


def test_save_at_is_a_set_of_times():
    # Any order is accepted and sorted (the records are at sorted times either way).
    from rankbias.dynamics._flow import check_save_at
    from rankbias.dynamics._gd import check_save_steps

    np.testing.assert_array_equal(check_save_at([5.0, 1.0, 5.0], 10.0), [1.0, 5.0, 5.0])
    np.testing.assert_array_equal(check_save_steps([7, 2], 10), [2, 7])


def test_complex_params_are_refused():
    bad = (P0[0] * (1 + 1j), P0[1])
    for fn in (
        lambda: rb.gradient_flow(PROB, MODEL, bad, t_max=1.0),
        lambda: rb.gradient_descent(PROB, MODEL, bad, lr=0.1, steps=5),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no NumPy ComplexWarning on the way
            _fast(fn, r"`params\[0\]` must be real, got a complex array")


def test_nan_custom_loss_fails_at_the_start():
    # Before: 34-60 s of rejected steps, then "lower rtol/atol".
    prob = rb.CustomLoss(lambda W: jnp.sum(W * W) * jnp.nan, (8, 8))
    _fast(lambda: rb.gradient_flow(prob, MODEL, P0, t_max=10.0), r"f\(W\(0\)\) = nan")
    _fast(lambda: rb.gradient_descent(prob, MODEL, P0, lr=0.1, steps=5), r"f\(W\(0\)\) = nan")
    sq = rb.CustomLoss(lambda W: jnp.sum(jnp.sqrt(W - 1.0)), (8, 8))  # NaN gradient, NaN loss
    _fast(lambda: rb.gradient_flow(sq, MODEL, P0, t_max=10.0), r"not finite")


@pytest.mark.parametrize(
    "scale, match",
    [
        (1e300, r"too large for float64 \(init scale max\|params\| = "),
        (1e10, r"init scale max\|params\| = 8.22e\+04 is too large to integrate"),
    ],
)
def test_huge_init_scale_fails_fast(scale, match):
    p = MODEL.init("gaussian", scale)
    _fast(lambda: rb.gradient_flow(PROB, MODEL, p, t_max=1e2), match)
    _fast(
        lambda: rb.gradient_flow_batch(PROB, MODEL, [P0, p], t_max=1e2, on_failure="return"),
        match.replace("params", r"params_list\[1\]"),
    )


def test_float32_huge_init_fails_fast():
    _fast(
        lambda: rb.gradient_flow(
            PROB, MODEL, MODEL.init("gaussian", 1e20), t_max=1.0, dtype="float32"
        ),
        r"too large for float32",
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda s: MODEL.init("gaussian", 1e-3, seed=s),
        lambda s: rb.SymmetricFactorization(8).init("gaussian", 1e-3, seed=s),
        lambda s: rb.MatrixCompletion.uniform(M8, 0.5, seed=s),
        lambda s: rb.random_low_rank((4, 4), 2, seed=s),
        lambda s: rb.MatrixSensing.gaussian(M8, 10, seed=s),
    ],
)
@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed_names_seed(call, seed):
    with pytest.raises(ValueError, match=r"`seed` must be a non-negative integer"):
        call(seed)


@pytest.mark.parametrize(
    "W, kw, match",
    [
        (np.full((3, 3), np.inf), {}, r"`W` contains non-finite values \(0 NaN, 9 inf\)"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), {}, r"`W` contains non-finite values \(1 NaN"),
        (1j * np.eye(3), {}, r"`W` must be real"),
        (np.zeros((0, 3)), {}, r"`W` must not be empty"),
        ([np.nan, 1.0], dict(from_singular_values=True), r"`sv` contains non-finite"),
        ([1j, 1.0], dict(from_singular_values=True), r"`sv` must be real"),
        (np.eye(3), dict(kind="numerical", tol=-1.0), r"`tol` must be > 0"),
    ],
)
def test_effective_rank_refuses_non_finite_input(W, kw, match):
    with pytest.raises(ValueError, match=match):
        rb.effective_rank(W, **kw)


def test_sharpness_at_nan_params():
    bad = (
        P0[0].at[0, 0].set(np.nan)
        if hasattr(P0[0], "at")
        else np.where(np.arange(P0[0].size).reshape(P0[0].shape) == 0, np.nan, P0[0]),
        P0[1],
    )
    with pytest.raises(ValueError, match=r"`params\[0\]` contains non-finite values"):
        rb.sharpness(PROB, MODEL, bad)


def test_large_init_scale_runs_correctly():
    # Before: IndexError (an overflowed error estimate was read as a Krylov rebuild request).
    p = MODEL.init("gaussian", 1e6)
    tr = rb.gradient_flow(PROB, MODEL, p, t_max=1e2, n_save=10)
    assert tr.info["status"] in ("t_max", "steady_state")
    assert np.all(np.isfinite(tr.loss)) and tr.loss[-1] < 1e-6 * tr.loss[0]


@pytest.mark.slow
def test_large_init_scale_batch_runs():
    p = MODEL.init("gaussian", 1e6)
    out = rb.gradient_flow_batch(PROB, MODEL, [p, P0], t_max=1e2, n_save=10, on_failure="return")
    assert all(isinstance(t, rb.Trajectory) for t in out)
    assert out[0].loss[-1] < 1e-6 * out[0].loss[0]
