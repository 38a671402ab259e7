"""The `movielens` named experiment (issue 26) on a synthetic ratings file of MovieLens' format,
and the conventions table of the Real data guide against NumPy oracles of the reference code's
updates (roosephu/deep_matrix_factorization: main.py's MSE loss, torch SGD, opt.py's
GroupRMSprop, init_model)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb
from rankbias.cli import main
from rankbias.optimizers import group_rmsprop
from rankbias.reproduce.movielens import movielens_study


def _ratings_file(path, users=60, items=80, fraction=0.3, seed=0):
    """A MovieLens-format ``u.data`` (``user \\t item \\t rating \\t time``), rank 2 + noise."""
    rng = np.random.default_rng(seed)
    S = rng.normal(size=(users, 2)) @ rng.normal(size=(2, items))
    S = np.clip(np.round(3 + S + 0.3 * rng.normal(size=(users, items))), 1, 5)
    lines = [
        f"{u + 1}\t{i + 1}\t{S[u, i]:g}\t{881250949 + 7 * k}"
        for k, (u, i) in enumerate(
            (u, i) for u in range(users) for i in range(items) if rng.random() < fraction
        )
    ]
    rng.shuffle(lines)  # file order is not row order, as in u.data
    path.write_text("\n".join(lines) + "\n")
    return path


def _study(tmp_path, f, **kw):
    """The study on ``f`` (900 ratings train), float64, no Soft-Impute; its json."""
    out = tmp_path / "o"
    movielens_study(out, path=str(f), n_train=900, lams=(), dtype="float64", **kw)
    return json.loads((out / "movielens.json").read_text())


def test_study_curves_match_numpy_gradient_descent(tmp_path):
    """The study's recorded RMSEs against NumPy: depth 1 in closed form (f = 1/(2N)
    sum_Omega (W - M)^2: observed entries follow W_k = M + (1 - lr/N)^k (W_0 - M), the others
    stay at W_0), depth 2 by W_j <- W_j - lr dL/dW_j, dL/dW_1 = W_2^T G, dL/dW_2 = G W_1^T,
    G = (1/N) P_Omega(W - M)."""
    f = _ratings_file(tmp_path / "u.data")
    lr, steps, every, width = 10.0, 25, 10, 7  # steps rounds up to 30
    res = _study(tmp_path, f, depths=(1, 2), width=width, init="gaussian", scale=0.5,
                 lr=lr, steps=steps, eval_every=every)  # fmt: skip
    train, held = rb.splits.file_order_split(rb.ratings.read_ratings(f), 900, normalization="mean")
    ent = train.observed_entries()
    r, cc, v = np.asarray(ent.rows), np.asarray(ent.cols), np.asarray(ent.values)
    N = r.size
    (W0,) = (np.asarray(a) for a in rb.DeepFactorization(train.shape, 1, width).init(
        "gaussian", 0.5, 0))  # fmt: skip
    c1 = res["curves"]["depth 1"]
    assert c1["steps"] == [0, 10, 20, 30]
    for k, tr_rmse, te_rmse in zip(c1["steps"], c1["train_rmse"], c1["test_rmse"], strict=True):
        Wk = v + (1 - lr / N) ** k * (W0[r, cc] - v)
        assert tr_rmse == pytest.approx(np.sqrt(np.mean((Wk - v) ** 2)), rel=1e-10)
        assert te_rmse == pytest.approx(held.rmse(W0), rel=1e-12)
    W1, W2 = (np.asarray(a) for a in rb.DeepFactorization(train.shape, 2, width).init(
        "gaussian", 0.5, 0))  # fmt: skip
    c2 = res["curves"]["depth 2"]
    for k in range(31):
        if k % every == 0:
            i = k // every
            W = W2 @ W1
            assert c2["test_rmse"][i] == pytest.approx(held.rmse(W), rel=1e-10)
            assert c2["train_rmse"][i] == pytest.approx(np.sqrt(np.mean((W[r, cc] - v) ** 2)),
                                                        rel=1e-10)  # fmt: skip
        G = np.zeros(train.shape)
        G[r, cc] = ((W2 @ W1)[r, cc] - v) / N
        W1, W2 = W1 - lr * W2.T @ G, W2 - lr * G @ W1.T
    assert res["table"]["depth 2"]["final_test_rmse"] == c2["test_rmse"][-1]


def test_bad_arguments_are_named(tmp_path):
    f = _ratings_file(tmp_path / "u.data")
    with pytest.raises(ValueError, match="`lr`"):
        _study(tmp_path, f, depths=(1,), lr=-1.0, steps=5, eval_every=1)
    with pytest.raises(ValueError, match="`eval_every`"):
        _study(tmp_path, f, depths=(1,), steps=5, eval_every=0)


def test_named_experiment_runs_on_a_file(tmp_path, capsys):
    data = _ratings_file(tmp_path / "u.data")
    out = tmp_path / "out"
    args = ["run", "movielens", "--data", str(data), "--out", str(out), "--quick"]
    rc = main([*args, "--set", "params.n_train=1000", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    res = json.loads((out / "movielens.json").read_text())
    assert set(res["table"]) == {"depth 1", "depth 2"}
    assert res["settings"]["split_info"]["n_train"] == 1000
    # the baselines are those of rankbias.baselines on the same split
    R = rb.ratings.read_ratings(data)
    train, held = rb.splits.file_order_split(R, 1000)
    mean = rb.baselines.mean_baseline(train).rmse(held)
    assert res["baselines"]["global mean"]["test_rmse"] == pytest.approx(mean, rel=1e-12)
    assert (out / "movielens.png").stat().st_size > 0 and (out / "movielens.md").exists()
    curve = res["curves"]["depth 2"]
    assert curve["steps"][0] == 0 and curve["steps"][-1] == 60


def test_named_experiment_without_a_file_says_what_to_pass(tmp_path, capsys):
    rc = main(["run", "movielens", "--out", str(tmp_path / "o"), "--quick", "--no-progress"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "--data" in err and "grouplens.org" in err


# -- the conventions table (docs/guides/real-data.md) against the reference's updates -------


def _reference_problem(rng, items=7, users=5, n=20):
    """Their orientation: W is items x users, entries (us, vs), loss mean((W[us,vs] - ys)^2)."""
    flat = rng.choice(items * users, n, replace=False)
    us, vs = flat // users, flat % users
    ys = rng.integers(1, 6, n).astype(float)
    return us, vs, ys


def _reference_grads(A1, A2, us, vs, ys):
    """Depth 2 of the reference: e2e = A1^T A2^T (fc1.weight (h1, h0), fc2.weight (h2, h1));
    loss = mean((e2e[us, vs] - ys)^2); returns (loss, dA1, dA2)."""
    E = A1.T @ A2.T
    R = np.zeros_like(E)
    np.add.at(R, (us, vs), 2 * (E[us, vs] - ys) / ys.size)
    return np.mean((E[us, vs] - ys) ** 2), A2.T @ R.T, R.T @ A1.T


def _rankbias(us, vs, ys, items, users, normalization):
    # rankbias's matrix is users x items: W = W_2 W_1 = (A1^T A2^T)^T = A2 A1
    return rb.MatrixCompletion.from_triplets(
        vs, us, ys, (users, items), normalization=normalization
    )


@pytest.mark.parametrize("normalization", ["mean", "sum"])
def test_reference_sgd_step_is_rankbias_gd_at_twice_the_step(normalization):
    rng = np.random.default_rng(0)
    items, users, h = 7, 5, 5
    us, vs, ys = _reference_problem(rng, items, users)
    A1, A2 = rng.normal(size=(h, items)), rng.normal(size=(users, h))
    eta = 0.01
    _, d1, d2 = _reference_grads(A1, A2, us, vs, ys)
    ref = (A1 - eta * d1, A2 - eta * d2)
    prob = _rankbias(us, vs, ys, items, users, normalization)
    model = rb.DeepFactorization(prob.shape, depth=2, width=h)
    lr = 2 * eta if normalization == "mean" else 2 * eta / ys.size
    traj = rb.gradient_descent(prob, model, (A1, A2), lr, 1, n_save=2)
    for got, want in zip(traj.final_params, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_reference_group_rmsprop_is_rankbias_group_rmsprop_at_half_eps():
    rng = np.random.default_rng(1)
    items, users, h = 6, 4, 4
    us, vs, ys = _reference_problem(rng, items, users, n=12)
    A = [rng.normal(size=(h, items)), rng.normal(size=(users, h))]
    lr, eps, alpha = 1e-3, 1e-4, 0.99  # main.py: GroupRMSprop(params, lr, eps=1e-4)
    # the reference's opt.py, in NumPy
    ref, sq = [a.copy() for a in A], 0.0
    for k in range(1, 4):
        _, d1, d2 = _reference_grads(*ref, us, vs, ys)  # pyright: ignore[reportCallIssue]
        sq = alpha * sq + (1 - alpha) * (np.sum(d1**2) + np.sum(d2**2))
        step = lr / (np.sqrt(sq / (1 - alpha**k)) + eps)
        ref = [ref[0] - step * d1, ref[1] - step * d2]
    prob = _rankbias(us, vs, ys, items, users, "mean")
    model = rb.DeepFactorization(prob.shape, depth=2, width=h)
    opt = group_rmsprop(lr, alpha=alpha, eps=eps / 2)
    p = tuple(jnp.asarray(a) for a in A)
    state = opt.init(p)
    for _ in range(3):
        g = model.grad(prob, p)
        upd, state = opt.update(g, state, p)
        p = jax.tree_util.tree_map(lambda a, b: a + b, p, upd)
    for got, want in zip(p, ref, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10)


def test_reference_inits_are_rankbias_inits():
    """identity: each factor init_scale^(1/depth) I, so e2e = init_scale I (rankbias "identity"
    at scale = init_scale); orthogonal: each factor (init_scale sqrt(h0))^(1/depth) Q, so
    e2e has singular values init_scale sqrt(h0) (rankbias "orthogonal" at that scale);
    gaussian (square only): entries of std init_scale^(1/depth) / sqrt(n) (rankbias
    "gaussian" at scale = init_scale: N(0, scale^(2/L) / fan_in))."""
    items, users, depth, s = 9, 6, 3, 1e-3
    model = rb.DeepFactorization((users, items), depth=depth)  # widths min = 6: [h0] + [h1]*depth
    W = np.asarray(model.product(model.init("identity", s)))
    np.testing.assert_allclose(W.T, s * np.eye(items, users), atol=1e-18)  # their e2e
    scale = s * np.sqrt(items)  # their hidden_sizes[0] = shape[0] = items
    W = np.asarray(model.product(model.init("orthogonal", scale, seed=0)))
    sv = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(sv, scale, rtol=1e-10)
    n = 300
    sq = rb.DeepFactorization((n, n), depth=2)
    ps = sq.init("gaussian", s, seed=0)
    for P in ps:
        assert np.std(np.asarray(P)) == pytest.approx(s ** (1 / 2) / np.sqrt(n), rel=0.02)
