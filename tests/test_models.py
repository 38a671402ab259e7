"""Models: product order, init-scale conventions, balancedness, gradients by finite differences."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rankbias as rb


def test_product_order_is_last_factor_leftmost():
    model = rb.DeepFactorization((2, 3), depth=3, width=[4, 5])
    assert model.param_shapes == ((4, 3), (5, 4), (2, 5))
    rng = np.random.default_rng(0)
    W1, W2, W3 = (rng.standard_normal(s) for s in model.param_shapes)
    np.testing.assert_allclose(np.asarray(model.product((W1, W2, W3))), W3 @ W2 @ W1, atol=1e-14)  # pyright: ignore[reportArgumentType]  # NumPy factors are accepted
    sym = rb.SymmetricFactorization(4, width=2)
    U = rng.standard_normal((4, 2))
    np.testing.assert_allclose(np.asarray(sym.product((U,))), U @ U.T, atol=1e-14)  # pyright: ignore[reportArgumentType]  # NumPy factors are accepted


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_identity_scale_is_end_to_end(depth):
    model = rb.DeepFactorization((4, 4), depth=depth)
    W = np.asarray(model.product(model.init("identity", scale=1e-6)))
    np.testing.assert_allclose(W, 1e-6 * np.eye(4), rtol=1e-12)
    Wp = np.asarray(model.product(model.init("identity", scale=0.1, per_factor=True)))
    np.testing.assert_allclose(Wp, 0.1**depth * np.eye(4), rtol=1e-12)


def test_tiny_scales_do_not_underflow():
    model = rb.DeepFactorization((3, 3), depth=5)
    ps = model.init("identity", scale=1e-300)
    assert float(ps[0][0, 0]) == pytest.approx(1e-60, rel=1e-12)
    assert np.all(np.isfinite(np.asarray(model.product(ps))))


def test_perturbed_identity():
    model = rb.DeepFactorization((4, 4), depth=3)
    ps = model.init("perturbed_identity", scale=0.1, beta=0.05, per_factor=True)
    np.testing.assert_allclose(np.asarray(ps[0]), 0.05 * np.eye(4))
    np.testing.assert_allclose(np.asarray(ps[1]), 0.1 * np.eye(4))
    with pytest.raises(ValueError, match="`beta` must be smaller"):
        model.init("perturbed_identity", scale=0.1, beta=0.2, per_factor=True)
    with pytest.raises(ValueError, match="`beta` is required"):
        model.init("perturbed_identity", scale=0.1)


@pytest.mark.parametrize("shape, widths", [((5, 5), [5, 5]), ((4, 6), [7, 5, 4]), ((6, 3), [3])])
def test_balanced_init(shape, widths):
    model = rb.DeepFactorization(shape, depth=len(widths) + 1, width=widths)
    ps = [np.asarray(p) for p in model.init("balanced", scale=1e-3, seed=1)]
    for j in range(len(ps) - 1):
        np.testing.assert_allclose(ps[j + 1].T @ ps[j + 1], ps[j] @ ps[j].T, atol=1e-15)
    W = np.asarray(model.product(tuple(jnp.asarray(p) for p in ps)))
    assert np.linalg.norm(W, 2) == pytest.approx(1e-3, rel=1e-10)


def test_orthogonal_and_gaussian_scales():
    model = rb.DeepFactorization((30, 30), depth=3)
    W = np.asarray(model.product(model.init("orthogonal", scale=1e-4, seed=0)))
    np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), 1e-4, rtol=1e-10)
    ps = model.init("gaussian", scale=1e-6, seed=0)
    # Entries N(0, scale^(2/L) / fan_in) (Arora et al.).
    assert np.std(np.asarray(ps[1])) == pytest.approx(1e-2 / np.sqrt(30), rel=0.1)
    sym = rb.SymmetricFactorization(30)
    U = np.asarray(sym.init("orthogonal", scale=1e-4)[0])
    np.testing.assert_allclose(U @ U.T, 1e-4 * np.eye(30), atol=1e-16)


def fd(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@settings(max_examples=12, deadline=None)
@given(
    m=st.integers(1, 4),
    n=st.integers(1, 4),
    depth=st.integers(1, 4),
    width=st.integers(1, 4),
    seed=st.integers(0, 100),
)
def test_deep_grad_fd(m, n, depth, width, seed):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((m, n))
    mask = rng.random((m, n)) < 0.7
    mask.flat[rng.integers(m * n)] = True  # a completion problem must observe something
    prob = rb.MatrixCompletion(M, mask)
    model = rb.DeepFactorization((m, n), depth=depth, width=width)
    ps = [rng.standard_normal(s) for s in model.param_shapes]
    _, g, _ = model.loss_and_grad(prob, tuple(jnp.asarray(p) for p in ps))
    for j in range(depth):

        def fj(x, j=j):
            q = list(ps)
            q[j] = x
            return float(prob.loss(np.asarray(model.product(tuple(jnp.asarray(p) for p in q)))))

        np.testing.assert_allclose(np.asarray(g[j]), fd(fj, ps[j]), atol=1e-6)


@settings(max_examples=8, deadline=None)
@given(d=st.integers(1, 5), k=st.integers(1, 5), seed=st.integers(0, 100))
def test_symmetric_grad_fd_and_half_convention(d, k, seed):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((d, d))
    Y = Y + Y.T
    prob = rb.MatrixEstimation(Y)
    model = rb.SymmetricFactorization(d, width=k)
    U = rng.standard_normal((d, k))
    _, (g,), W = model.loss_and_grad(prob, (jnp.asarray(U),))
    f = lambda X: 0.5 * float(prob.loss(X @ X.T))
    np.testing.assert_allclose(np.asarray(g), fd(f, U), atol=1e-6)
    # L(U) = 1/2 f(U U^T)  =>  grad_U L = grad f(W) U for symmetric grad f.
    np.testing.assert_allclose(np.asarray(g), (U @ U.T - Y) @ U, atol=1e-10)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rb.DeepFactorization((3, 3), depth=0), "`depth` must be >= 1"),
        (lambda: rb.DeepFactorization((3, 3), depth=3, width=[2]), "2 hidden widths"),
        (lambda: rb.DeepFactorization((3, 0), depth=2), "`shape` must be a pair"),
        (
            lambda: rb.DeepFactorization((3, 3), depth=2).init("gaussian", scale=-1.0),
            "`scale` must be > 0",
        ),
        (
            lambda: rb.DeepFactorization((3, 3), depth=2).init("gaussian", scale=0.0),
            "`scale` must be > 0",
        ),
        (lambda: rb.DeepFactorization((3, 3), depth=2).init("xavier", scale=1.0), "unknown `init`"),
        (lambda: rb.DeepFactorization((3, 3), depth=2, width=2).init("balanced"), "width >= min"),
        (lambda: rb.SymmetricFactorization(3).init("perturbed_identity"), "DeepFactorization only"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "model",
    [rb.SymmetricFactorization(5, width=3), rb.DeepFactorization((5, 4), depth=3, width=[3, 2])],
)
def test_factor_form_gives_the_product_and_the_parameter_gradient(model):
    # W = A B^T, and back(G B, G^T A) is the gradient of objective_weight * f(W) that the
    # dense path gets from autodiff (any G: here that of an asymmetric estimation problem).
    params = model.init("gaussian", scale=1.0, seed=3)
    A, B, back = model.factors_vjp(params)
    np.testing.assert_allclose(A @ B.T, model.product(params), atol=1e-12)
    for a, b in zip(model.factors(params), (A, B), strict=True):
        np.testing.assert_array_equal(a, b)
    prob = rb.MatrixEstimation(np.random.default_rng(4).standard_normal(model.shape))
    G = prob.grad(model.product(params))
    for g, want in zip(back(G @ B, G.T @ A), model.grad(prob, params), strict=True):
        np.testing.assert_allclose(g, want, atol=1e-12)
    assert model.max_rank == (3 if model.factor_form == "symmetric" else 2)


def test_a_model_of_your_own_has_no_factor_form_and_no_init():
    class Square(rb.models.Model):
        def __init__(self):
            self.shape = (2, 2)

        @property
        def depth(self):
            return 1

        @property
        def param_shapes(self):
            return ((2, 2),)

        def product(self, params):
            return params[0] @ params[0]

    model = Square()
    assert model.factor_form is None and model.max_rank == 2
    with pytest.raises(NotImplementedError, match="Square has no factor form"):
        model.factors_vjp((jnp.eye(2),))
    with pytest.raises(NotImplementedError, match="pass the factors as a tuple"):
        model.init()


class _SquaredSpectrum(rb.DeepFactorization):
    """Records ``sigma_i(W)^2``: a value no default record produces."""

    def __init__(self, shape, depth):
        super().__init__(shape, depth)

    def spectrum(self, params, W=None):
        W = self.product(params) if W is None else W
        return jnp.linalg.svd(W, compute_uv=False) ** 2


def test_every_record_asks_the_models_spectrum_on_either_backend():
    M = rb.random_low_rank((6, 5), 2, seed=0)
    rows, cols = np.nonzero(np.random.default_rng(1).random((6, 5)) < 0.7)
    prob = rb.MatrixCompletion(M, (rows, cols))
    base = rb.DeepFactorization((6, 5), 2)
    params = base.init("gaussian", scale=0.3, seed=2)
    # the default: the singular values of W, whether the caller has W or only the factors
    W = np.asarray(base.product(params))
    oracle = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(base.spectrum(params, jnp.asarray(W)), oracle, rtol=1e-12)
    np.testing.assert_allclose(base.spectrum(params), oracle, rtol=1e-12)
    model = _SquaredSpectrum((6, 5), 2)
    for backend in ("dense", "sparse"):
        tr = rb.gradient_descent(
            prob, model, params, lr=0.1, steps=4, n_save=3, save_matrices=True, backend=backend
        )
        assert tr.info["backend"] == backend and tr.matrices is not None
        want = np.linalg.svd(tr.matrices, compute_uv=False) ** 2
        np.testing.assert_allclose(tr.singular_values, want, rtol=1e-10, atol=1e-14)
