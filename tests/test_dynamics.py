"""Gradient flow and gradient descent against independent oracles."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb

# Chou et al. Ex.1: symmetric target with eigenvalues (10, 7, 5, -5).
V = np.array([[0, 1, 1, 1], [1, 0, 1, -1], [1, -1, 0, 1], [1, 1, -1, 0]]) / np.sqrt(3)
LAM1 = np.array([10.0, 7.0, 5.0, -5.0])


def scalar_recursion(lam, depth, alpha, lr, steps):
    """Paper 2's decoupled recursion d <- d - eta d^(N-1) (d^N - lam), d(0) = alpha."""
    d = np.full(len(lam), alpha, dtype=np.float64)
    out = [d**depth]
    for _ in range(steps):
        d = d - lr * d ** (depth - 1) * (d**depth - lam)
        out.append(d**depth)
    return np.array(out)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_layerwise_gd_equals_scalar_recursion(depth):
    # Positive part only: with lam < 0 round-off eventually breaks the symmetry (documented pitfall).
    lam = np.array([10.0, 7.0, 5.0, 0.5])
    Y = V @ np.diag(lam) @ V.T
    prob = rb.MatrixEstimation(Y)
    model = rb.DeepFactorization((4, 4), depth=depth)
    steps = 600
    tr = rb.gradient_descent(
        prob,
        model,
        model.init("identity", scale=0.1, per_factor=True),
        lr=0.01,
        steps=steps,
        save_matrices=True,
        n_save=60,
    )
    ref = scalar_recursion(lam, depth, 0.1, 0.01, steps)
    assert tr.matrices is not None  # save_matrices=True
    comps = np.array([np.diag(V.T @ W @ V) for W in tr.matrices])
    np.testing.assert_allclose(comps, ref[tr.steps], atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "depth, expected", [(3, [99, 139, 193]), (4, [503, 717, 1002]), (2, [36, 48, 64])]
)
def test_half_times_table(depth, expected):
    # Table of deep-mf-dynamics.md: first step k with eigenvalue of W(k) >= lam/2 (layer-wise GD).
    Y = V @ np.diag(LAM1) @ V.T
    model = rb.DeepFactorization((4, 4), depth=depth)
    steps = 1100
    tr = rb.gradient_descent(
        rb.MatrixEstimation(Y),
        model,
        model.init("identity", scale=0.1, per_factor=True),
        lr=0.01,
        steps=steps,
        save_at=np.arange(steps + 1),
        save_matrices=True,
    )
    assert tr.matrices is not None  # save_matrices=True
    comps = np.array([np.diag(V.T @ W @ V) for W in tr.matrices])
    got = [int(np.argmax(comps[:, i] >= 0.5 * LAM1[i])) for i in range(3)]
    assert got == expected


def riccati_closed_form(Y, U0, t, dps=80):
    """Exact depth-2 symmetric flow dU/dt = (Y - U U^T) U on f = 1/2||W - Y||^2:
    W(t) = e^{tY} U0 (I + U0^T A_t U0)^{-1} U0^T e^{tY}, A_t = 2 int_0^t e^{2sY} ds.

    The k x k system has condition number ~e^{2 lam_1 t}; it is solved in mpmath at ``dps``
    digits so that the oracle is exact to float64.
    """
    import mpmath as mp

    with mp.workdps(dps):
        Ym = mp.matrix(Y.tolist())
        lam, Q = mp.eigsy(Ym)
        d, k = U0.shape
        e = [mp.exp(lam[i] * t) for i in range(d)]
        a = [mp.expm1(2 * lam[i] * t) / lam[i] if lam[i] != 0 else 2 * t for i in range(d)]
        Z = Q.T * mp.matrix(U0.tolist())  # U0 in the eigenbasis
        B = mp.matrix(d, k)
        AZ = mp.matrix(d, k)
        for i in range(d):
            for j in range(k):
                B[i, j] = e[i] * Z[i, j]
                AZ[i, j] = a[i] * Z[i, j]
        K = mp.eye(k) + Z.T * AZ
        Wt = B * mp.inverse(K) * B.T
        W = Q * Wt * Q.T
        return np.array(W.tolist(), dtype=np.float64)


@pytest.mark.parametrize("solver", ["rkc", "tsit5"])
def test_depth2_symmetric_flow_matches_closed_form(solver):
    Y = rb.matrix_from_spectrum([3.0, 1.5, 0.7, -1.0, 0.2], seed=3, symmetric=True)
    prob = rb.MatrixEstimation(Y)
    model = rb.SymmetricFactorization(5)
    U0 = np.asarray(model.init("gaussian", scale=1e-6, seed=0)[0])
    ts = np.array([1.0, 3.0, 6.0, 10.0, 20.0])
    tr = rb.gradient_flow(
        prob,
        model,
        (U0,),
        t_max=20.0,
        rtol=1e-10,
        atol=1e-14,
        gtol=None,
        save_at=ts,
        save_matrices=True,
        solver=solver,
    )
    assert tr.matrices is not None  # save_matrices=True
    for t in ts:
        W = tr.matrices[np.flatnonzero(tr.times == t)[0]]
        np.testing.assert_allclose(W, riccati_closed_form(Y, U0, t), atol=1e-7)
    # The flow only learns the PSD part (Li et al.): W(inf) = Y_+ (the 0.2 direction needs
    # t ~ ln(1e6)/0.4 ~ 35 to escape).
    long = rb.gradient_flow(prob, model, (U0,), t_max=1e4, solver=solver)
    # Tsit5 steps at its stability limit there, and its round-off keeps ||grad|| above gtol.
    assert long.status == ("steady_state" if solver == "rkc" else "t_max")
    lam, Q = np.linalg.eigh(Y)
    np.testing.assert_allclose(long.final_matrix, (Q * np.maximum(lam, 0)) @ Q.T, atol=1e-6)


def test_balancedness_is_conserved():
    M = rb.random_low_rank((6, 5), 2, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.7, seed=1)
    model = rb.DeepFactorization((6, 5), depth=3, width=[4, 7])
    ps = model.init("gaussian", scale=0.5, seed=2)
    tr = rb.gradient_flow(prob, model, ps, t_max=50.0, rtol=1e-10, atol=1e-13, gtol=None)
    before = [
        np.asarray(ps[j + 1]).T @ np.asarray(ps[j + 1]) - np.asarray(ps[j]) @ np.asarray(ps[j]).T
        for j in range(2)
    ]
    after = [
        tr.final_params[j + 1].T @ tr.final_params[j + 1]
        - tr.final_params[j] @ tr.final_params[j].T
        for j in range(2)
    ]
    moved = np.linalg.norm(tr.final_params[0] - np.asarray(ps[0]))
    assert moved > 0.5  # the factors did change a lot
    for b, a in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-7)


def test_gd_converges_to_flow_first_order():
    M = rb.random_low_rank((6, 6), 2, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=0, symmetric=True)
    model = rb.DeepFactorization((6, 6), depth=3)
    ps = model.init("gaussian", scale=1e-2, seed=0)
    T = 20.0
    flow = rb.gradient_flow(prob, model, ps, t_max=T, rtol=1e-11, atol=1e-14, gtol=None)
    errs = []
    for lr in [0.02, 0.01, 0.005]:
        gd = rb.gradient_descent(prob, model, ps, lr=lr, steps=int(round(T / lr)))
        assert gd.times[-1] == pytest.approx(T)
        errs.append(np.linalg.norm(gd.final_matrix - flow.final_matrix))
    assert errs[0] > errs[1] > errs[2]
    # Euler's global error is O(lr): halving the step halves it.
    assert errs[0] / errs[1] == pytest.approx(2.0, rel=0.15)
    assert errs[1] / errs[2] == pytest.approx(2.0, rel=0.15)


@pytest.mark.slow
def test_rkc_matches_tight_reference_on_long_plateau():
    # Depth 3 from a tiny scale: the plateau is ~alpha^-(1/3) long and stiff after learning.
    M = rb.random_low_rank((8, 8), 2, psd=True, seed=1)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=1, symmetric=True)
    model = rb.DeepFactorization((8, 8), depth=3)
    ps = model.init("gaussian", scale=1e-6, seed=0)
    fast = rb.gradient_flow(prob, model, ps, t_max=1e6, rtol=1e-8)
    tight = rb.gradient_flow(prob, model, ps, t_max=1e6, rtol=1e-11, atol=1e-15)
    assert fast.loss[-1] < 1e-11 and fast.times[-1] == 1e6
    assert np.linalg.norm(fast.final_matrix - tight.final_matrix) < 1e-6
    assert fast.info["num_steps"] < 5000  # crosses a ~1e2-long plateau then 1e6 of stiff tail
    # An independent explicit solver (diffrax Tsit5) agrees where it is affordable.
    ts = np.array([50.0, 200.0, 400.0])
    ref = rb.gradient_flow(
        prob,
        model,
        ps,
        t_max=400.0,
        rtol=1e-10,
        atol=1e-14,
        solver="tsit5",
        gtol=None,
        save_at=ts,
        save_matrices=True,
    )
    ours = rb.gradient_flow(
        prob,
        model,
        ps,
        t_max=400.0,
        rtol=1e-10,
        atol=1e-14,
        gtol=None,
        save_at=ts,
        save_matrices=True,
    )
    assert ours.matrices is not None and ref.matrices is not None  # save_matrices=True
    for t in ts:
        i, j = np.flatnonzero(ref.times == t)[0], np.flatnonzero(ours.times == t)[0]
        np.testing.assert_allclose(ours.matrices[j], ref.matrices[i], atol=1e-6)


def test_steady_state_not_fooled_by_high_order_saddle():
    # Depth 3: after the first direction is learned the flow sits at a saddle where the
    # parameter gradient is ~0 and the Hessian ~0 in the remaining directions.
    M = rb.random_low_rank((10, 10), 3, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=0, symmetric=True)
    model = rb.DeepFactorization((10, 10), depth=3)
    tr = rb.gradient_flow(prob, model, model.init("gaussian", scale=1e-12, seed=0), t_max=1e9)
    assert tr.status == "steady_state"
    assert tr.loss[-1] < 1e-12
    assert np.sum(tr.singular_values[-1] > 1e-3) == 3


def test_batched_equals_single():
    M = rb.random_low_rank((6, 6), 2, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=0, symmetric=True)
    model = rb.DeepFactorization((6, 6), depth=3)
    inits = [model.init("gaussian", scale=a, seed=s) for a in (1e-2, 1e-4) for s in (0, 1)]
    singles = [rb.gradient_descent(prob, model, p, lr=0.05, steps=400) for p in inits]
    batch = rb.gradient_descent_batch(prob, model, inits, lr=0.05, steps=400)
    for a, b in zip(singles, batch, strict=True):
        np.testing.assert_allclose(b.final_matrix, a.final_matrix, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b.loss, a.loss, rtol=1e-12, atol=1e-300)
    fs = [rb.gradient_flow(prob, model, p, t_max=1e4) for p in inits[:2]]
    fb = rb.gradient_flow_batch(prob, model, inits[:2], t_max=1e4)
    for a, b in zip(fs, fb, strict=True):
        # Batched matmuls round differently in the last bit, which can flip an accept/reject
        # decision: adaptive runs agree to the solver tolerance, not bitwise.
        np.testing.assert_allclose(b.final_matrix, a.final_matrix, atol=1e-8)
        np.testing.assert_allclose(b.times[:50], a.times[:50])
    # One problem per run, and one lr per run.
    probs = [rb.MatrixEstimation(rb.random_low_rank((6, 6), 2, seed=s)) for s in range(2)]
    out = rb.gradient_descent_batch(probs, model, inits[:2], lr=[0.05, 0.02], steps=50)
    ref = rb.gradient_descent(probs[1], model, inits[1], lr=0.02, steps=50)
    np.testing.assert_allclose(out[1].final_matrix, ref.final_matrix, rtol=1e-12, atol=1e-15)


def test_batch_strategies_give_the_same_runs():
    M = rb.random_low_rank((6, 6), 2, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=0, symmetric=True)
    model = rb.DeepFactorization((6, 6), depth=3)
    inits = [model.init("gaussian", scale=a, seed=s) for a in (1e-2, 1e-4) for s in (0, 1)]
    singles = [rb.gradient_descent(prob, model, p, lr=0.05, steps=400) for p in inits]
    loop = rb.gradient_descent_batch(prob, model, inits, lr=0.05, steps=400, strategy="loop")
    vmap = rb.gradient_descent_batch(prob, model, inits, lr=0.05, steps=400, strategy="vmap")
    auto = rb.gradient_descent_batch(prob, model, inits, lr=0.05, steps=400)
    assert {t.info["batch_strategy"] for t in loop} == {"loop"}
    assert {t.info["batch_strategy"] for t in vmap} == {"vmap"}
    assert auto[0].info["batch_strategy"] == rb.dynamics.batch_strategy(model, len(inits))
    for a, lp, v in zip(singles, loop, vmap, strict=True):
        # "loop" calls the single run's compiled program: bit for bit
        np.testing.assert_array_equal(lp.final_matrix, a.final_matrix)
        np.testing.assert_array_equal(lp.loss, a.loss)
        # vmap: batched matrix products may round differently in the last bits
        np.testing.assert_allclose(v.final_matrix, a.final_matrix, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(v.loss, a.loss, rtol=1e-12, atol=1e-300)
    with pytest.raises(ValueError, match="strategy"):
        rb.gradient_descent_batch(prob, model, inits, lr=0.05, steps=4, strategy="pmap")


def test_batch_strategy_size_rule():
    from rankbias.dynamics.descent.batching import VMAP_MAX_DIM

    pick = rb.dynamics.batch_strategy
    assert pick(rb.DeepFactorization((6, 6), depth=3), 1) == "loop"
    if jax.default_backend() == "cpu":
        assert pick(rb.DeepFactorization((100, 100), depth=3), 16) == "vmap"
        assert pick(rb.DeepFactorization((VMAP_MAX_DIM + 1, 50), depth=2), 16) == "loop"
        assert pick(rb.SymmetricFactorization(50, width=VMAP_MAX_DIM + 1), 4) == "loop"


def test_save_load_round_trip(tmp_path):
    M = rb.random_low_rank((5, 4), 2, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.7, seed=0)
    model = rb.DeepFactorization((5, 4), depth=2)
    tr = rb.gradient_flow(
        prob, model, model.init("gaussian", 1e-3), t_max=100.0, save_matrices=True
    )
    path = tr.save(tmp_path / "run")
    back = rb.Trajectory.load(path)
    for k, v in tr.to_arrays().items():
        np.testing.assert_array_equal(back.to_arrays()[k], v)
    assert back.info == tr.info
    assert [p.shape for p in back.final_params] == [p.shape for p in tr.final_params]
    assert not list(tmp_path.glob("*.tmp"))


def test_divergence_error_names_step_loss_and_hint():
    M = rb.random_low_rank((6, 6), 2, psd=True, seed=0)
    prob = rb.MatrixEstimation(10 * M)
    model = rb.DeepFactorization((6, 6), depth=2)
    with pytest.raises(
        rb.DivergenceError, match=r"diverged at step \d+: loss = .* lr = 1.*lr <= "
    ) as e:
        rb.gradient_descent(prob, model, model.init("gaussian", 1e-3), lr=1.0, steps=1000)
    assert e.value.lr_hint is not None and e.value.lr_hint < 1.0
    # The hint is a step size that works.
    rb.gradient_descent(
        prob, model, model.init("gaussian", 1e-3), lr=0.5 * e.value.lr_hint, steps=50
    )
    out = rb.gradient_descent_batch(
        prob,
        model,
        [model.init("gaussian", 1e-3)] * 2,
        lr=[1.0, 0.01],
        steps=200,
        on_failure="return",
    )
    assert isinstance(out[0], rb.DivergenceError) and isinstance(out[1], rb.Trajectory)


def test_float32_on_request_with_warning():
    M = rb.random_low_rank((5, 5), 2, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.7, seed=0, symmetric=True)
    model = rb.DeepFactorization((5, 5), depth=2)
    with pytest.warns(rb.PrecisionWarning, match="underflow"):
        rb.gradient_descent(
            prob, model, model.init("gaussian", 1e-80), lr=0.1, steps=5, dtype="float32"
        )
    with pytest.warns(rb.PrecisionWarning, match="epsilon"):
        rb.gradient_descent(
            prob, model, model.init("gaussian", 1e-12), lr=0.1, steps=5, dtype="float32"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = rb.gradient_descent(
            prob, model, model.init("gaussian", 1e-2), lr=0.1, steps=500, dtype="float32"
        )
    assert tr.loss[-1] < 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(t_max=-1.0), "`t_max` must be > 0"),
        (dict(solver="euler"), "unknown `solver`"),
        (dict(rtol=0.0), "`rtol` must be > 0"),
        (dict(dtype="float16"), "`dtype` must be float64 or float32"),
    ],
)
def test_flow_bad_input(kwargs, match):
    prob = rb.MatrixEstimation(np.eye(3))
    model = rb.DeepFactorization((3, 3), depth=2)
    with pytest.raises(ValueError, match=match):
        rb.gradient_flow(prob, model, model.init("identity", 1e-3), **kwargs)


def test_params_validation():
    prob = rb.MatrixEstimation(np.eye(3))
    model = rb.DeepFactorization((3, 3), depth=2)
    with pytest.raises(ValueError, match=r"`params\[1\]` must have shape \(3, 3\)"):
        rb.gradient_descent(prob, model, (jnp.eye(3), jnp.eye(2)), lr=0.1, steps=2)
    with pytest.raises(ValueError, match="non-finite"):
        rb.gradient_descent(prob, model, (jnp.eye(3), jnp.eye(3) * np.nan), lr=0.1, steps=2)
    with pytest.raises(ValueError, match="`model` has shape"):
        rb.gradient_descent(
            prob, rb.DeepFactorization((3, 4), 2), (jnp.eye(3, 4), jnp.eye(3)), lr=0.1, steps=2
        )
    with pytest.raises(ValueError, match="`lr` must be > 0"):
        rb.gradient_descent(prob, model, model.init("identity", 1e-3), lr=-0.1, steps=2)


# ---- float32 gradient flow (issue 15, point 2) and the step hints (point 4) ----


@pytest.fixture(scope="module")
def issue15_problem():
    M = rb.random_low_rank((15, 15), 2, psd=True, seed=3)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=3, symmetric=True)
    model = rb.DeepFactorization(shape=(15, 15), depth=3, width=15)
    return prob, model, model.init("gaussian", scale=1e-3, seed=0)


def test_float32_flow_reaches_the_float64_steady_state(issue15_problem):
    # Before: 1,000,000 steps (203 s), stopped at t = 1.45e5 with status max_steps.
    prob, model, p0 = issue15_problem
    tr64 = rb.gradient_flow(prob, model, p0, t_max=1e6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the float32 defaults draw no warning
        tr32 = rb.gradient_flow(prob, model, p0, t_max=1e6, dtype="float32")
    assert tr64.info["status"] == tr32.info["status"] == "steady_state"
    assert tr32.info["rtol"] == rb.dynamics.flow_defaults("float32")["rtol"] == 1e-5
    assert tr32.info["num_steps"] < 20_000
    rel = np.linalg.norm(tr32.final_matrix - tr64.final_matrix) / np.linalg.norm(tr64.final_matrix)
    assert rel < 1e-3
    # The end point is a minimiser of the completion loss (residual on Omega ~ float32).
    assert tr32.loss[-1] < 1e-8


def test_float32_tolerances_below_resolution_warn(issue15_problem):
    prob, model, p0 = issue15_problem
    with pytest.warns(rb.PrecisionWarning, match="`rtol` = 1e-08 is below what float32 resolves"):
        rb.gradient_flow(prob, model, p0, t_max=1.0, rtol=1e-8, dtype="float32", n_save=5)
    with pytest.warns(rb.PrecisionWarning, match="`atol`"):
        rb.gradient_flow(prob, model, p0, t_max=1.0, atol=1e-14, dtype="float32", n_save=5)


def test_atol_large_against_the_init_warns(issue15_problem):
    # Before: atol above the factors' entries was taken silently (it moved the end point of
    # a completion by 1.3%); only an atol below their rounding warned.
    prob, model, p0 = issue15_problem
    small = model.init("gaussian", scale=1e-9, seed=0)
    top = max(float(np.abs(p).max()) for p in small)
    assert 1e-4 < top < 1e-2  # entries of ~1e-3, atol = 1e-2 above them
    words = (
        rf"`atol` = 0.01 is large .*\(max\|params\| = {top:.2g}\).*take atol <= {1e-3 * top:.2g}"
    )
    with pytest.warns(rb.PrecisionWarning, match=words):
        rb.gradient_flow(prob, model, small, t_max=1.0, atol=1e-2, n_save=5)
    # A batch is judged by its smallest init.
    with pytest.warns(rb.PrecisionWarning, match=words):
        rb.gradient_flow_batch(prob, model, [p0, small], t_max=1.0, atol=1e-2, n_save=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", rb.PrecisionWarning)
        rb.gradient_flow(prob, model, small, t_max=1.0, atol=0.9e-3 * top, n_save=5)
        # The default atol of every default init (scale 1e-3) stays below the bound.
        from rankbias.dynamics.flow.precision import default_atol, warn_atol as _warn_atol

        for name in ("gaussian", "identity", "balanced", "orthogonal"):
            y0 = np.concatenate([np.ravel(p) for p in model.init(name, seed=0)])
            _warn_atol(default_atol(1e-8, y0), y0, 1e-8)
        y0 = np.concatenate([np.ravel(p) for p in p0])
        rb.gradient_flow(prob, model, p0, t_max=1.0, atol=default_atol(1e-8, y0), n_save=5)


def test_max_steps_warning_does_not_advise_the_solver_in_use(issue15_problem):
    prob, model, p0 = issue15_problem
    with pytest.warns(RuntimeWarning, match="max_steps=5") as rec:
        tr = rb.gradient_flow(prob, model, p0, t_max=1e4, max_steps=5)
    msg = str(rec[0].message)
    assert "use solver='rkc'" not in msg and "hybrid" in msg
    assert tr.info["status"] == "max_steps"


def test_divergence_hint_is_measured_before_the_blow_up():
    # Issue 15: lr = 5 from gaussian scale 1 named "lr < 3.66e-26" (the blown-up state's).
    M = rb.random_low_rank((10, 10), 2, psd=True, seed=3)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=3, symmetric=True)
    model = rb.DeepFactorization((10, 10), depth=3)
    p0 = model.init("gaussian", 1.0, seed=0)
    stable = 2.0 / rb.sharpness(prob, model, p0)
    assert 5.0 > stable
    with pytest.raises(rb.DivergenceError, match=r"rb\.sharpness") as e:
        rb.gradient_descent(prob, model, p0, lr=5.0, steps=100)
    assert e.value.lr_hint is not None
    assert e.value.lr_hint == pytest.approx(0.95 * stable, rel=1e-6)
    tr = rb.gradient_descent(prob, model, p0, lr=0.5 * e.value.lr_hint, steps=100)
    assert tr.loss[-1] < tr.loss[0]
