"""Problems: normalisations, gradients against finite differences, validation."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rankbias as rb


def fd_grad(f, W, h=1e-6):
    """Central finite differences of a scalar function of a matrix (independent of JAX AD)."""
    G = np.zeros_like(W)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            E = np.zeros_like(W)
            E[i, j] = h
            G[i, j] = (float(f(W + E)) - float(f(W - E))) / (2 * h)
    return G


shapes = st.tuples(st.integers(1, 6), st.integers(1, 6))


@settings(max_examples=15, deadline=None)
@given(
    shape=shapes,
    seed=st.integers(0, 1000),
    dense=st.booleans(),
    norm=st.sampled_from(["sum", "mean"]),
)
def test_completion_grad_fd(shape, seed, dense, norm):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal(shape)
    mask = rng.random(shape) < 0.6
    mask.flat[0] = True
    prob = rb.MatrixCompletion(M, mask, normalization=norm, dense=dense)
    W = rng.standard_normal(shape)
    np.testing.assert_allclose(
        np.asarray(prob.grad(jnp.asarray(W))), fd_grad(prob.loss, W), atol=1e-6
    )
    # Normalisation written in the docstring.
    c = 1.0 if norm == "sum" else 1.0 / mask.sum()
    assert float(prob.loss(W)) == pytest.approx(0.5 * c * np.sum(mask * (W - M) ** 2), rel=1e-12)
    f, g = prob.loss_and_grad(jnp.asarray(W))
    np.testing.assert_allclose(np.asarray(g), np.asarray(prob.grad(jnp.asarray(W))), atol=1e-14)


@settings(max_examples=10, deadline=None)
@given(shape=shapes, seed=st.integers(0, 1000), k=st.integers(1, 12))
def test_sensing_grad_fd(shape, seed, k):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal(shape)
    prob = rb.MatrixSensing.gaussian(M, k, seed=seed, noise=0.1)
    W = rng.standard_normal(shape)
    np.testing.assert_allclose(
        np.asarray(prob.grad(jnp.asarray(W))), fd_grad(prob.loss, W), atol=1e-6
    )
    A, y = np.asarray(prob.A), np.asarray(prob.y)
    expected = 0.5 * np.mean((np.einsum("kij,ij->k", A, W) - y) ** 2)
    assert float(prob.loss(W)) == pytest.approx(expected, rel=1e-12)


def test_sensing_is_isometric_on_average():
    # E f(W) = 1/2 ||W - W*||^2 for Gaussian A and no noise: check with many measurements.
    M = rb.random_low_rank((5, 5), 2, seed=1)
    prob = rb.MatrixSensing.gaussian(M, 20000, seed=0)
    W = np.random.default_rng(3).standard_normal((5, 5))
    assert float(prob.loss(W)) == pytest.approx(0.5 * np.sum((W - M) ** 2), rel=0.05)
    sym = rb.MatrixSensing.gaussian(M @ M.T, 10, seed=0, symmetric=True)
    A = np.asarray(sym.A)
    np.testing.assert_array_equal(A, np.swapaxes(A, 1, 2))


@settings(max_examples=10, deadline=None)
@given(shape=shapes, seed=st.integers(0, 1000))
def test_estimation_and_custom_grad_fd(shape, seed):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal(shape)
    W = rng.standard_normal(shape)
    est = rb.MatrixEstimation(Y)
    np.testing.assert_allclose(
        np.asarray(est.grad(jnp.asarray(W))), fd_grad(est.loss, W), atol=1e-6
    )
    assert float(est.loss(W)) == pytest.approx(0.5 * np.sum((W - Y) ** 2))
    cust = rb.CustomLoss(lambda X: jnp.sum(jnp.cosh(X - Y)), shape)
    np.testing.assert_allclose(np.asarray(cust.grad(jnp.asarray(W))), np.sinh(W - Y), atol=1e-12)


def test_completion_index_lists_and_uniform():
    M = rb.random_low_rank((30, 30), 3, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.3, seed=2, symmetric=True)
    mask = prob.mask
    np.testing.assert_array_equal(mask, mask.T)
    assert prob.num_observed == mask.sum()
    assert prob.rows.shape == (mask.sum(),)
    assert prob.symmetric
    np.testing.assert_array_equal(np.asarray(prob.target), M)
    # Index-list construction equals mask construction.
    r, c = np.nonzero(mask)
    p2 = rb.MatrixCompletion(M, (r, c), dense=False)
    W = np.random.default_rng(0).standard_normal((30, 30))
    assert float(p2.loss(W)) == pytest.approx(float(prob.loss(W)), rel=1e-12)
    np.testing.assert_allclose(
        np.asarray(p2.grad(jnp.asarray(W))), np.asarray(prob.grad(jnp.asarray(W))), atol=1e-13
    )


def test_generators():
    W = rb.random_low_rank((8, 6), 3, seed=0)
    s = np.linalg.svd(W, compute_uv=False)
    assert np.sum(s > 1e-10) == 3
    assert np.linalg.norm(W) == pytest.approx(np.sqrt(3))
    P = rb.random_low_rank((7, 7), 2, psd=True, seed=0)
    ev = np.linalg.eigvalsh(P)
    assert ev.min() > -1e-12 and np.sum(ev > 1e-10) == 2
    S = rb.matrix_from_spectrum([10, 7, 5, -5], seed=0, symmetric=True)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(S)), [-5, 5, 7, 10], atol=1e-12)
    R = rb.random_low_rank((9, 5), 2, spectrum=[3.0, 1.0], seed=4)
    np.testing.assert_allclose(np.linalg.svd(R, compute_uv=False)[:3], [3, 1, 0], atol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rb.MatrixCompletion(np.ones((3, 3)), np.zeros((3, 3), bool)), "observes no entry"),
        (
            lambda: rb.MatrixCompletion(np.ones((3, 3)), np.ones((3, 4), bool)),
            "`mask` must have the shape",
        ),
        (
            lambda: rb.MatrixCompletion(np.array([[np.nan, 1], [1, 1]]), np.ones((2, 2), bool)),
            "`M` contains non-finite",
        ),
        (lambda: rb.MatrixEstimation(np.ones(3)), "`Y` must be a 2-D"),
        (lambda: rb.MatrixSensing(np.ones((2, 3, 3)), np.ones(3)), "`y` must have shape"),
        (lambda: rb.MatrixSensing.gaussian(np.ones((3, 3)), 0), "`num_measurements` must be >= 1"),
        (lambda: rb.MatrixCompletion.uniform(np.ones((3, 3)), 1.5), "`fraction` must be in"),
        (lambda: rb.CustomLoss(lambda W: W, (2, 2)), "must return a scalar"),
        (lambda: rb.random_low_rank((3, 4), 2, psd=True), "PSD matrix must be square"),
        (lambda: rb.random_low_rank((3, 3), 5), "`rank`=5 exceeds"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------------------
# Triplets, rating files, held-out RMSE, the psd/symmetric alias


def test_from_triplets_matches_mask_constructor():
    M = rb.random_low_rank((6, 5), 2, seed=1)
    rows, cols = np.array([0, 3, 5, 2]), np.array([4, 0, 1, 2])
    prob = rb.MatrixCompletion.from_triplets(rows, cols, M[rows, cols], (6, 5))
    ref = rb.MatrixCompletion(M, (rows, cols))
    np.testing.assert_array_equal(prob.mask, ref.mask)
    W = np.random.default_rng(0).standard_normal((6, 5))
    assert float(prob.loss(W)) == pytest.approx(0.5 * np.sum((W - M)[rows, cols] ** 2))


def test_from_triplets_duplicates_and_validation():
    P = rb.MatrixCompletion.from_triplets
    with pytest.raises(ValueError, match=r"entry \(1, 2\) is given 2 times"):
        P([1, 1], [2, 2], [1.0, 3.0], (3, 3))
    mean = P([1, 1, 0], [2, 2, 0], [1.0, 3.0, 5.0], (3, 3), duplicates="mean")
    last = P([1, 1, 0], [2, 2, 0], [1.0, 3.0, 5.0], (3, 3), duplicates="last")
    assert dict(
        zip(
            zip(np.asarray(mean.rows), np.asarray(mean.cols), strict=True),
            np.asarray(mean.values),
            strict=True,
        )
    ) == {(0, 0): 5.0, (1, 2): 2.0}
    assert float(np.asarray(last.values)[1]) == 3.0
    for call, match in [
        (lambda: P([0, 3], [0, 0], [1.0, 1.0], (3, 3)), r"`rows` must lie in \[0, 2\]"),
        (lambda: P([0.5], [0], [1.0], (3, 3)), "`rows` must hold integer"),
        (lambda: P([0], [0, 1], [1.0], (3, 3)), "same length"),
        (lambda: P([0], [0], [np.nan], (3, 3)), "`values` contains non-finite"),
        (lambda: P([0], [0], [1.0], (3, 3), duplicates="sum"), "duplicates"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()


def _write_ratings(path, rng, users=12, items=9, k=60, timestamp=True):
    pick = rng.choice(users * items, k, replace=False)
    u, i = pick // items + 1, pick % items + 1
    r = rng.integers(1, 6, k)
    with open(path, "w") as fh:
        fh.write("# user item rating timestamp\n")
        for a, b, c in zip(u, i, r, strict=True):
            fh.write(f"{a}\t{b}\t{c}\t{881250949 + a}\n" if timestamp else f"{a} {b} {c}\n")
    return u - 1, i - 1, r.astype(float)


def test_load_ratings_split_and_rmse(tmp_path):
    rng = np.random.default_rng(0)
    u, i, r = _write_ratings(tmp_path / "u.data", rng)
    train, held = rb.problems.load_ratings(tmp_path / "u.data", test_fraction=0.25, seed=3)
    assert train.shape == (u.max() + 1, i.max() + 1)
    assert len(held) == 15 and train.num_observed == 45
    truth = {(a, b): c for a, b, c in zip(u, i, r, strict=True)}
    got = {
        (a, b): c
        for a, b, c in zip(
            np.asarray(train.rows), np.asarray(train.cols), np.asarray(train.values), strict=True
        )
    }
    got.update({(a, b): c for a, b, c in zip(held.rows, held.cols, held.values, strict=True)})
    assert got == truth  # a partition of the file, values kept
    assert not set(zip(held.rows, held.cols, strict=True)) & set(
        zip(np.asarray(train.rows), np.asarray(train.cols), strict=True)
    )
    again = rb.problems.load_ratings(tmp_path / "u.data", test_fraction=0.25, seed=3)[1]
    np.testing.assert_array_equal(again.rows, held.rows)  # seeded
    W = np.full(train.shape, 3.0)
    assert held.rmse(W) == pytest.approx(np.sqrt(np.mean((held.values - 3.0) ** 2)))
    traj = type("T", (), {"final_matrix": W})()
    assert rb.problems.heldout_rmse(traj, held) == held.rmse(W)
    with pytest.raises(ValueError, match="`W` must have shape"):
        held.rmse(np.zeros((2, 2)))


def test_load_ratings_three_columns_and_errors(tmp_path):
    rng = np.random.default_rng(1)
    _write_ratings(tmp_path / "r.txt", rng, timestamp=False)
    train, held = rb.problems.load_ratings(tmp_path / "r.txt", test_fraction=0.0, shape=(20, 20))
    assert train.shape == (20, 20) and len(held) == 0 and train.num_observed == 60
    (tmp_path / "bad.txt").write_text("1 2 3\n1 x 4\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: user and item must be integers"):
        rb.problems.load_ratings(tmp_path / "bad.txt")
    (tmp_path / "zero.txt").write_text("0 1 3\n")
    with pytest.raises(ValueError, match="ids must be >= 1"):
        rb.problems.load_ratings(tmp_path / "zero.txt")
    with pytest.raises(ValueError, match="test_fraction"):
        rb.problems.load_ratings(tmp_path / "r.txt", test_fraction=1.0)


def test_uniform_accepts_psd_alias():
    M = rb.random_low_rank((8, 8), 2, psd=True, seed=0)
    a = rb.MatrixCompletion.uniform(M, 0.5, seed=1, psd=True)
    b = rb.MatrixCompletion.uniform(M, 0.5, seed=1, symmetric=True)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.symmetric and np.array_equal(a.mask, a.mask.T)
    with pytest.raises(ValueError, match="disagree"):
        rb.MatrixCompletion.uniform(M, 0.5, symmetric=True, psd=False)


# ---- the optional methods engines ask a problem through ---------------------------------


def _three_problems():
    M = rb.random_low_rank((5, 4), 2, seed=7)
    return (
        rb.MatrixCompletion.uniform(M, 0.6, seed=7, normalization="mean"),
        rb.MatrixSensing.gaussian(M, 12, seed=7),
        rb.MatrixEstimation(M + 0.1),
    )


def test_linear_map_is_the_loss_and_its_adjoint_is_the_adjoint():
    # f(W) = c/2 ||A(W) - b||^2 with c = weight (completion) or 1/k (sensing); <A X, y> =
    # <X, A^* y>; measure (traced) and apply (NumPy) are the same map.
    rng = np.random.default_rng(0)
    mc, ms, _ = _three_problems()
    for prob, c in ((mc, float(mc.weight)), (ms, 1 / 12)):
        lm = prob.linear_map()
        X, y = rng.standard_normal(prob.shape), rng.standard_normal(lm.b.size)
        np.testing.assert_allclose(np.asarray(prob.measure(jnp.asarray(X))), lm.apply(X))
        r = lm.apply(X) - lm.b
        assert float(prob.loss(X)) == pytest.approx(0.5 * c * r @ r, rel=1e-12)
        assert lm.apply(X) @ y == pytest.approx(np.sum(X * lm.adjoint(y)), rel=1e-12)
    assert _three_problems()[2].linear_map() is None


def test_closed_form_lipschitz_and_host_grad_match_the_generic_defaults():
    # The closed forms against the base class's power iteration and compiled gradient.
    X = np.random.default_rng(1).standard_normal((5, 4))
    for prob in _three_problems():
        assert prob.is_quadratic
        assert prob.lipschitz() == pytest.approx(rb.Problem.lipschitz(prob), rel=1e-6)
        np.testing.assert_allclose(prob.host_grad()(X), rb.Problem.host_grad(prob)(X), atol=1e-13)


def test_a_minibatch_of_every_term_is_the_full_loss():
    W = jnp.asarray(np.random.default_rng(2).standard_normal((5, 4)))
    for prob in _three_problems():
        batch = prob.minibatch(jnp.arange(prob.num_terms))
        f, g = batch.loss_and_grad(W)
        f0, g0 = prob.loss_and_grad(W)
        assert float(f) == pytest.approx(float(f0), rel=1e-12)
        np.testing.assert_allclose(g, g0, atol=1e-12)


def test_a_problem_of_your_own_gets_clear_refusals():
    class Quartic(rb.Problem):
        def __init__(self):
            self.shape = (3, 3)

        def loss(self, W):
            return jnp.sum(W**4)

    prob = Quartic()
    assert prob.observed_entries() is None and prob.linear_map() is None
    assert prob.interpolant() is None and prob.num_terms is None and not prob.is_quadratic
    with pytest.raises(NotImplementedError, match="Quartic defines no minibatch"):
        prob.minibatch(jnp.arange(2))
    with pytest.raises(NotImplementedError, match="Quartic defines no linear measurement"):
        prob.measure(jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="exact data constraints"):
        rb.baselines.min_nuclear_norm(prob)
