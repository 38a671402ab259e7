"""rb.train / rb.train_batch (optax optimizers, GroupRMSprop, minibatches), distance_to_flow.

Oracles: rb.gradient_descent (GD through optax.sgd), an independent NumPy loop of the Arora et
al. GroupRMSprop update with hand-written deep-factorization gradients, exact expectations of
minibatch gradients, the first-order distance of GD to the flow.
"""

import textwrap
from typing import Any

import numpy as np
import optax
import pytest

import rankbias as rb
import rankbias.experiments as ex
from rankbias.dynamics import _train
from rankbias.experiments.config import ConfigError

M = rb.random_low_rank((6, 6), 2, seed=0)
PROB = rb.MatrixCompletion.uniform(M, 0.6, seed=0)
MODEL = rb.DeepFactorization((6, 6), depth=3)
P0 = MODEL.init("gaussian", scale=0.4, seed=1)
STEPS, NS = 120, 12


@pytest.fixture(scope="module")
def gd():
    return rb.gradient_descent(PROB, MODEL, P0, 0.05, STEPS, n_save=NS)


def test_optax_sgd_equals_gradient_descent(gd):
    for opt, kw in [(optax.sgd(0.05), {}), ("sgd", dict(lr=0.05)), (optax.sgd, dict(lr=0.05))]:
        tr = rb.train(PROB, MODEL, P0, opt, steps=STEPS, n_save=NS, **kw)
        np.testing.assert_array_equal(tr.steps, gd.steps)
        assert np.abs(tr.final_matrix - gd.final_matrix).max() <= 1e-12
        assert np.abs(tr.loss - gd.loss).max() <= 1e-12
        assert np.abs(tr.singular_values - gd.singular_values).max() <= 1e-12
    # the named optimizer knows its effective time: the sum of step sizes, GD's time
    assert tr.info["time_axis"] == "step"
    tr = rb.train(PROB, MODEL, P0, "sgd", lr=0.05, steps=STEPS, n_save=NS)
    assert tr.info["time_axis"] == "effective"
    np.testing.assert_allclose(tr.times, gd.times, rtol=1e-12, atol=0)


def _np_grads(Ws, mask, Mt):
    """Gradients of 1/2 ||mask * (W_L ... W_1 - M)||^2 with respect to each factor."""
    L = len(Ws)
    W = Ws[0]
    for P in Ws[1:]:
        W = P @ W
    G = mask * (W - Mt)
    out = []
    for j in range(L):  # d/dW_j = (W_L ... W_{j+1})^T G (W_{j-1} ... W_1)^T
        left = np.eye(Ws[j].shape[0])
        for P in Ws[j + 1 :]:
            left = P @ left
        right = np.eye(Mt.shape[1])
        for P in Ws[:j]:
            right = P @ right
        out.append(left.T @ G @ right.T)
    return out


def test_group_rmsprop_matches_the_arora_update():
    lr, alpha, eps, steps = 1e-2, 0.99, 1e-6, 60
    mask = PROB.mask.astype(float)
    Ws = [np.asarray(p, dtype=np.float64) for p in P0]
    v, etas = 0.0, []
    for k in range(1, steps + 1):  # the Arora et al. GroupRMSprop.step, in NumPy
        g = _np_grads(Ws, mask, M)
        v = alpha * v + (1 - alpha) * sum(float(np.sum(x * x)) for x in g)
        eta = lr / (np.sqrt(v / (1 - alpha**k)) + eps)
        Ws = [W - eta * x for W, x in zip(Ws, g, strict=True)]
        etas.append(eta)
    tr = rb.train(PROB, MODEL, P0, "group_rmsprop", lr=lr, steps=steps, n_save=5)
    for a, b in zip(tr.final_params, Ws, strict=True):
        assert np.abs(a - b).max() <= 1e-12
    assert tr.info["time_axis"] == "effective"
    assert abs(tr.times[-1] - sum(etas)) <= 1e-12 * sum(etas)
    # the transform alone, used as a plain optax transform (static hyper-parameters)
    tr2 = rb.train(
        PROB, MODEL, P0, rb.optimizers.group_rmsprop(lr, alpha, eps), steps=steps, n_save=5
    )
    assert np.abs(tr2.final_matrix - tr.final_matrix).max() <= 1e-12


def test_minibatch_gradients_are_unbiased_exactly():
    # Averaged over every item, the B = 1 minibatch gradient is the full gradient.
    A = rb.MatrixSensing.gaussian(M, 30, seed=2)
    W = np.asarray(MODEL.product(P0))
    for prob in (PROB, A, rb.MatrixEstimation(M)):
        N = _train.batch_population(prob)
        full = np.asarray(prob.loss_and_grad(W)[1])
        mean = (
            sum(
                np.asarray(_train.minibatch(prob, np.array([i])).loss_and_grad(W)[1])
                for i in range(N)
            )
            / N
        )
        np.testing.assert_allclose(mean, full, rtol=0, atol=1e-13)
    idx = np.asarray(_train.batch_indices(3, 7, 20, 20))
    assert sorted(idx) == list(range(20))  # without replacement


def test_minibatches_reproducible_and_batch_equals_one_by_one():
    kw: dict[str, Any] = dict(lr=0.05, steps=80, n_save=6, batch_size=6)
    a = rb.train(PROB, MODEL, P0, "momentum", seed=3, **kw)
    b = rb.train(PROB, MODEL, P0, "momentum", seed=3, **kw)
    c = rb.train(PROB, MODEL, P0, "momentum", seed=4, **kw)
    np.testing.assert_array_equal(a.final_matrix, b.final_matrix)
    assert np.abs(a.final_matrix - c.final_matrix).max() > 1e-6
    P1 = MODEL.init("gaussian", scale=0.3, seed=2)
    trs = rb.train_batch(PROB, MODEL, [P0, P1], "momentum", seed=[3, 4], **kw)
    d = rb.train(PROB, MODEL, P1, "momentum", seed=4, **kw)
    assert np.abs(trs[0].final_matrix - a.final_matrix).max() <= 1e-12
    assert np.abs(trs[1].final_matrix - d.final_matrix).max() <= 1e-12
    assert [t.info["seed"] for t in trs] == [3, 4]
    # a minibatch of every observed entry is the full gradient: GD
    N = PROB.num_observed
    full = rb.train(PROB, MODEL, P0, "sgd", lr=0.05, steps=STEPS, n_save=NS, batch_size=N)
    ref = rb.train(PROB, MODEL, P0, "sgd", lr=0.05, steps=STEPS, n_save=NS)
    assert np.abs(full.final_matrix - ref.final_matrix).max() <= 1e-12


def test_lr_steps_seed_do_not_recompile(monkeypatch):
    kw: dict[str, Any] = dict(n_save=6, batch_size=5)
    rb.train(PROB, MODEL, P0, "adam", lr=1e-2, steps=20, seed=0, **kw)
    calls = []
    real = _train.make_optimizer
    monkeypatch.setattr(_train, "make_optimizer", lambda *a: calls.append(1) or real(*a))
    rb.train(PROB, MODEL, P0, "adam", lr=3e-2, b1=0.8, steps=37, seed=5, **kw)
    assert calls == []  # no new trace: the optimizer is only built while tracing


@pytest.mark.parametrize(
    "args, kw, exc, words",
    [
        (("adamm",), dict(lr=1e-3), ValueError, ["'adamm'", "'group_rmsprop'"]),
        (("adam",), dict(lr=1e-3, beta=0.5), ValueError, ["'beta'", "b1, b2, eps"]),
        (("adam",), dict(lr=1e-3, b1=1.5), ValueError, ["`b1`", "[0, 1)", "1.5"]),
        (("momentum",), dict(lr=-1.0), ValueError, ["`lr`", "> 0", "-1"]),
        (("group_rmsprop",), {}, ValueError, ["needs `lr`"]),
        ((optax.adam(1e-3),), dict(lr=1e-3), ValueError, ["GradientTransformation", "lr"]),
        ((optax.adam,), {}, ValueError, ["`lr` is required"]),
        ((3,), {}, TypeError, ["`optimizer`", "int"]),
        (("sgd",), dict(lr=0.1, batch_size=10_000), ValueError, ["`batch_size`", "<= "]),
        (("sgd",), dict(lr=0.1, batch_size=0), ValueError, ["`batch_size`", ">= 1"]),
    ],
)
def test_bad_optimizer_arguments_name_them(args, kw, exc, words):
    with pytest.raises(exc) as e:
        rb.train(PROB, MODEL, P0, *args, steps=5, **kw)
    for w in words:
        assert w in str(e.value)


def test_custom_loss_has_no_minibatches():
    prob = rb.CustomLoss(lambda W: 0.5 * (W**2).sum(), (6, 6))
    with pytest.raises(ValueError, match="MatrixCompletion, MatrixSensing"):
        rb.train(prob, MODEL, P0, "sgd", lr=0.1, steps=5, batch_size=3)


def test_divergence_raises_as_gd_does():
    for opt, kw in [("sgd", dict(lr=5.0)), (optax.sgd(5.0), {})]:
        with pytest.raises(rb.DivergenceError) as e:
            rb.train(PROB, MODEL, P0, opt, steps=200, n_save=5, **kw)
        assert e.value.step > 0 and "diverged at step" in str(e.value)
    out = rb.train_batch(
        PROB, MODEL, [P0, P0], "sgd", lr=[0.05, 5.0], steps=200, n_save=5, on_failure="return"
    )
    assert isinstance(out[1], rb.DivergenceError) and out[1].index == 1
    assert isinstance(out[0], rb.Trajectory)


def test_distance_to_flow_is_first_order_in_lr():
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=0)
    model = rb.DeepFactorization((6, 6), depth=2)
    p = model.init("gaussian", scale=0.3, seed=1)
    ds = []
    for lr in (0.04, 0.02):
        tr = rb.train(
            prob, model, p, "sgd", lr=lr, steps=int(4 / lr), n_save=10, save_matrices=True
        )
        flow = rb.gradient_flow(
            prob, model, p, t_max=4.0, save_at=tr.times, save_matrices=True, gtol=None, rtol=1e-10
        )
        d = rb.distance_to_flow(tr, flow)
        assert d.exact == d.times.size == tr.times.size
        ds.append(d.max)
    assert 1.7 < ds[0] / ds[1] < 2.3  # GD is a first-order method
    adam = rb.train(prob, model, p, "adam", lr=0.02, steps=50, n_save=5, save_matrices=True)
    with pytest.raises(ValueError, match="time_scale"):
        rb.distance_to_flow(adam, flow)
    assert rb.distance_to_flow(adam, flow, time_scale=0.02).times.size == 5
    with pytest.raises(ValueError, match="save_matrices"):
        rb.distance_to_flow(rb.train(prob, model, p, "sgd", lr=0.1, steps=3), flow)


SWEEP = textwrap.dedent("""
    name = "tiny-optax"
    kind = "sweep"
    [problem]
    type = "completion"
    shape = [6, 6]
    rank = 1
    fraction = 0.7
    [dynamics]
    method = "optax"
    optimizer = "momentum"
    momentum = 0.5
    lr = 0.05
    steps = 60
    n_save = 6
    batch_size = 8
    [sweep]
    grid = { lr = [0.05, 0.1], batch_seed = [0, 1] }
""")


def test_toml_sweep_with_optax_runs_and_stores(tmp_path):
    raw = ex.parse_config(SWEEP)
    sw = ex.expand(raw)
    assert len(sw.runs) == 4
    d = sw.runs[0].config["dynamics"]
    assert d["optimizer"] == "momentum" and "b1" not in d and "t_max" not in d
    st = ex.run_sweep(sw, tmp_path, progress=False)
    assert st["done"] == 4 and st["failed"] == 0
    ds = ex.load(tmp_path).load()
    assert dict(ds.sizes)["step"] == 6 and bool(ds["done"].all())
    # the stored run is the direct rb.train run
    from rankbias.experiments.runner import build_init, build_model, build_problem

    cfg = sw.runs[-1].config
    model = build_model(cfg)
    tr = rb.train(
        build_problem(cfg),
        model,
        build_init(model, cfg),
        "momentum",
        lr=0.1,
        momentum=0.5,
        steps=60,
        n_save=6,
        batch_size=8,
        seed=1,
    )
    stored = ds["loss"].sel(lr=0.1, batch_seed=1).values
    np.testing.assert_allclose(stored, tr.loss, rtol=1e-10, atol=1e-14)
    # an optimizer axis; gd/flow run configs carry no optax keys (their run keys are unchanged)
    sw2 = ex.expand(
        ex.apply_overrides(
            raw, ["dynamics.momentum=0.5", "sweep.grid.optimizer=['momentum','nesterov']"]
        )
    )
    assert {r.config["dynamics"]["optimizer"] for r in sw2.runs} == {"momentum", "nesterov"}
    # (the optax keys themselves are refused under method = "gd": leave them out)
    keep = {k: v for k, v in raw["dynamics"].items() if k in ("lr", "steps", "n_save")}
    gd_raw = {**raw, "dynamics": {**keep, "method": "gd"}, "sweep": {"grid": {"lr": [0.05]}}}
    gd = ex.expand(gd_raw)
    assert not {"optimizer", "batch_size", "momentum"} & set(gd.runs[0].config["dynamics"])


@pytest.mark.parametrize(
    "line, words",
    [
        ('optimizer = "adam"\nb1 = 1.0', ["dynamics", "`b1`", "[0, 1)"]),
        ('optimizer = "sgd"\nb1 = 0.5', ["dynamics.b1", "'sgd'"]),
        ('optimizer = "adamw"', ["dynamics.optimizer", "'adamw'"]),
    ],
)
def test_bad_optax_config_names_the_key(line, words):
    text = SWEEP.replace('optimizer = "momentum"\nmomentum = 0.5', line)
    with pytest.raises(ConfigError) as e:
        ex.expand(ex.parse_config(text))
    for w in words:
        assert w in str(e.value)


@pytest.mark.slow
def test_optimizers_vs_flow_quick(tmp_path):
    from rankbias.reproduce.optimizers import optimizers_vs_flow

    out = optimizers_vs_flow(tmp_path, quick=True)
    rows = {(r["scale"], r["optimizer"]): r for r in out["rows"]}
    for a in (1e-3, 1e-6):
        # GD lands closer to the flow's end point than momentum and Adam, and all fit the data
        assert rows[(a, "GD")]["to_flow"] < rows[(a, "momentum 0.9")]["to_flow"]
        assert rows[(a, "GD")]["to_flow"] < rows[(a, "Adam")]["to_flow"]
        assert all(r["loss"] < 1e-5 for r in out["rows"] if r["scale"] == a)
    assert (tmp_path / "optimizers-vs-flow.png").exists()
