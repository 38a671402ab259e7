"""The deep symmetric factorization ``W = P P^T``, ``P = U_L ... U_1``, against oracles.

The oracles are independent of the new code path: the asymmetric ``DeepFactorization`` of the
same depth from the mirrored factors (its flow is the same in time), central finite
differences, a hand-written NumPy gradient-descent loop, and a verbatim copy of the depth-2
model as it was before ``depth`` existed (the default depth must give the same bits).
"""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb
from rankbias.models import Model, _haar

D = 6
# A PSD rank-2 truth, 70% observed through a symmetric mask: grad f(W) = mask * (W - M) is
# symmetric at every symmetric W, the setting where the two flows below coincide.
M = rb.matrix_from_spectrum([3.0, 1.0], (D, D), symmetric=True, seed=0)
PROB = rb.MatrixCompletion.uniform(M, fraction=0.7, seed=0, symmetric=True)
MASK = np.asarray(PROB.mask, dtype=np.float64)
FLOW: dict[str, Any] = dict(t_max=60.0, rtol=1e-10, atol=1e-15, gtol=None, n_save=20)


def numpy_loss(W):
    """``f(W) = 1/2 sum_Omega (W_ij - M_ij)^2`` (the library's default normalisation)."""
    return 0.5 * np.sum(MASK * (W - M) ** 2)


def chain(Us):
    """``P = U_L ... U_1``."""
    P = Us[0]
    for U in Us[1:]:
        P = U @ P
    return P


# Depth 4 proves the mirror identity in the default suite; depth 6 (two more programs) is slow.
@pytest.mark.parametrize("depth", [4, pytest.param(6, marks=pytest.mark.slow)])
def test_flow_is_the_deep_flow_from_the_mirrored_factors(depth):
    # W = U_L..U_1 U_1^T..U_L^T is DeepFactorization's W_2L...W_1 with (W_1, ..., W_2L) =
    # (U_L^T, ..., U_1^T, U_1, ..., U_L). For symmetric G = grad f(W) the deep flow keeps the
    # mirror (the gradient of the copy W_{L+i} = U_i is the transpose of that of W_{L+1-i} =
    # U_i^T), and grad_{U_i} of 1/2 f(P P^T) is 1/2 (the two copies' gradients, one
    # transposed) = the gradient of one copy: dU_i/dt is the same ODE, in the same time.
    sym = rb.SymmetricFactorization(D, depth=depth)
    deep = rb.DeepFactorization((D, D), depth=depth)
    Us = sym.init("gaussian", scale=0.1, seed=1)
    mirrored = tuple(U.T for U in Us[::-1]) + tuple(Us)
    np.testing.assert_allclose(deep.product(mirrored), sym.product(Us), rtol=0, atol=1e-15)
    ours = rb.gradient_flow(PROB, sym, Us, **FLOW)
    ref = rb.gradient_flow(PROB, deep, mirrored, **FLOW)
    np.testing.assert_array_equal(ours.times, ref.times)
    assert ref.loss[-1] < 1e-3 * ref.loss[0]  # the flow has escaped and fitted: a real path
    np.testing.assert_allclose(ours.singular_values, ref.singular_values, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.final_matrix, ref.final_matrix, rtol=0, atol=1e-8)


@pytest.mark.parametrize("depth, width", [(4, 3), (4, 7), (6, 4)])
def test_gradient_is_the_finite_difference_gradient(depth, width):
    model = rb.SymmetricFactorization(D, width=width, depth=depth)
    rng = np.random.default_rng(depth + width)
    Us = [0.7 * rng.standard_normal(s) for s in model.param_shapes]
    objective = lambda Us: 0.5 * numpy_loss(chain(Us) @ chain(Us).T)
    assert float(model.objective(PROB, tuple(map(jnp.asarray, Us)))) == pytest.approx(
        objective(Us), rel=1e-13
    )
    grads = model.grad(PROB, tuple(map(jnp.asarray, Us)))
    h = 1e-6
    for j, g in enumerate(grads):
        fd = np.zeros_like(Us[j])
        for idx in np.ndindex(*Us[j].shape):
            E = np.zeros_like(Us[j])
            E[idx] = h
            plus, minus = list(Us), list(Us)
            plus[j], minus[j] = Us[j] + E, Us[j] - E
            fd[idx] = (objective(plus) - objective(minus)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=0, atol=1e-7 * max(1.0, np.abs(fd).max()))


def _numpy_gd(U1, U2, lr, steps):
    """GD on ``1/2 f(P P^T)``, ``P = U_2 U_1``, by hand: ``grad_P = S P`` with ``S =
    sym(grad f(W))``, then ``grad_{U_2} = grad_P U_1^T`` and ``grad_{U_1} = U_2^T grad_P``."""
    Ws = [(U2 @ U1) @ (U2 @ U1).T]
    for _ in range(steps):
        P = U2 @ U1
        G = MASK * (P @ P.T - M)
        gP = 0.5 * (G + G.T) @ P
        U1, U2 = U1 - lr * U2.T @ gP, U2 - lr * gP @ U1.T
        Ws.append((U2 @ U1) @ (U2 @ U1).T)
    return np.array(Ws)


def test_gradient_descent_is_the_numpy_loop():
    steps, lr = 6, 0.05
    model = rb.SymmetricFactorization(D, width=4, depth=4)
    p0 = model.init("gaussian", scale=1.0, seed=3)  # large enough that each step moves W
    gd = rb.gradient_descent(
        PROB, model, p0, lr=lr, steps=steps, n_save=2, save_at=range(steps + 1), save_matrices=True
    )
    U1, U2 = (np.asarray(p) for p in p0)
    ref = _numpy_gd(U1, U2, lr, steps)
    assert gd.matrices is not None
    assert np.abs(ref[-1] - ref[0]).max() > 0.1  # the steps are not negligible
    np.testing.assert_allclose(gd.matrices, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gd.loss, [numpy_loss(W) for W in ref], rtol=1e-12)


class _Before(Model):
    """``SymmetricFactorization`` verbatim as it was before ``depth`` (the oracle of depth 2)."""

    width: int = eqx.field(static=True)

    def __init__(self, size, width=None):
        self.shape = (size, size)
        self.width = size if width is None else width

    @property
    def depth(self):
        return 2

    @property
    def param_shapes(self):
        return ((self.shape[0], self.width),)

    def product(self, params):
        (U,) = params
        return U @ U.T

    def objective_weight(self):
        return 0.5

    def optimality_gap(self, G):
        if self.width < self.shape[0]:
            return None
        S = 0.5 * (G + G.T)
        return jnp.maximum(0.0, -jnp.linalg.eigvalsh(S)[0])

    def _init_factors(self, name, s, per_factor, beta, rng):
        a = s if per_factor else float(np.sqrt(s))
        d, k = self.shape[0], self.width
        if name == "gaussian":
            U = a * rng.standard_normal((d, k)) / np.sqrt(k)
        elif name == "identity":
            U = a * np.eye(d, k)
        else:
            U = a * _haar(rng, d, k)
        return [U]


@pytest.mark.parametrize("width", [None, 4, 8])
def test_depth_two_is_the_model_before_depth(width):
    new, old = rb.SymmetricFactorization(D, width=width), _Before(D, width=width)
    assert new == rb.SymmetricFactorization(D, width=width, depth=2)
    assert repr(new) == f"SymmetricFactorization(shape=({D}, {D}), width={width or D})"
    assert new.depth == 2 and new.param_shapes == old.param_shapes
    for name in ("gaussian", "identity", "orthogonal", "balanced"):
        for per_factor in (False, True):
            a = new.init(name, 0.3, seed=5, per_factor=per_factor)
            b = old.init(name, 0.3, seed=5, per_factor=per_factor)
            np.testing.assert_array_equal(a[0], b[0])
    p0 = new.init("gaussian", 1e-3, seed=2)
    ours = rb.gradient_flow(PROB, new, p0, t_max=200.0, n_save=20)
    ref = rb.gradient_flow(PROB, old, p0, t_max=200.0, n_save=20)
    assert ours.status == ref.status
    for key in ("times", "loss", "singular_values"):
        np.testing.assert_array_equal(getattr(ours, key), getattr(ref, key))
    np.testing.assert_array_equal(ours.final_matrix, ref.final_matrix)


@pytest.mark.parametrize("k", [3, 6, 8])
@pytest.mark.parametrize("name", ["gaussian", "identity", "orthogonal", "balanced"])
def test_init_scale_is_that_of_the_product(name, k):
    # per factor a = scale^(1/depth); identity, orthogonal and balanced give ||W(0)||_2 = scale
    model = rb.SymmetricFactorization(D, width=k, depth=6)
    Us = [np.asarray(U) for U in model.init(name, 1e-2, seed=1)]
    assert [U.shape for U in Us] == [(k, k), (k, k), (D, k)]
    W = chain(Us) @ chain(Us).T
    if name != "gaussian":
        assert np.linalg.norm(W, 2) == pytest.approx(1e-2, rel=1e-12)
    else:  # entries N(0, a^2 / k): the Arora et al. fan-in convention
        assert np.std(Us[0]) * np.sqrt(k) == pytest.approx(1e-2 ** (1 / 6), rel=0.5)
    if name == "balanced" or (name in ("identity", "orthogonal") and k <= D):
        for lo, hi in zip(Us, Us[1:], strict=False):
            np.testing.assert_allclose(hi.T @ hi, lo @ lo.T, rtol=0, atol=1e-14)
    per = [np.asarray(U) for U in model.init(name, 0.5, seed=1, per_factor=True)]
    if name == "identity":
        np.testing.assert_array_equal(per[0], 0.5 * np.eye(k))


def test_factor_form_and_the_certificate():
    model = rb.SymmetricFactorization(D, width=4, depth=4)
    Us = model.init("gaussian", scale=1.0, seed=3)
    assert model.factor_form == "symmetric" and model.max_rank == 4
    assert rb.compare.glrl_variant_for(model) is True  # PSD GLRL, as at depth 2
    P, P2 = model.factors(Us)
    np.testing.assert_array_equal(P, P2)
    np.testing.assert_allclose(P @ P.T, model.product(Us), atol=1e-14)
    assert model.optimality_gap(jnp.eye(D)) is None  # width 4 < 6: rank constrained
    full = rb.SymmetricFactorization(D, depth=4)
    assert float(full.optimality_gap(-jnp.eye(D))) == 1.0  # type: ignore[arg-type]


def test_chain_rule_of_the_factor_form():
    # back(G P, G^T P) is the dense gradient (the sparse backend's path), for symmetric and
    # general G.
    model = rb.SymmetricFactorization(D, width=4, depth=6)
    Us = model.init("gaussian", scale=1.0, seed=3)
    A, B, back = model.factors_vjp(Us)
    prob = rb.MatrixEstimation(np.random.default_rng(4).standard_normal((D, D)))
    for problem in (prob, PROB):
        G = problem.grad(model.product(Us))
        for g, want in zip(back(G @ B, G.T @ A), model.grad(problem, Us), strict=True):
            np.testing.assert_allclose(g, want, atol=1e-12)
    G = PROB.grad(model.product(Us))  # symmetric: G P serves both
    for g, want in zip(back(G @ B, None), model.grad(PROB, Us), strict=True):
        np.testing.assert_allclose(g, want, atol=1e-12)


def test_sparse_backend_matches_the_dense_one_for_a_deep_symmetric_model():
    """The factor-form backend (W = P P^T at the observed entries only) integrates the same
    flow as the dense one: same records to the flow's tolerance."""
    model = rb.SymmetricFactorization(D, width=2, depth=4)
    p0 = model.init("gaussian", scale=0.1, seed=0)
    dense, sparse = (
        rb.gradient_flow(PROB, model, p0, 5.0, n_save=6, rtol=1e-10, atol=1e-12, backend=b)
        for b in ("dense", "sparse")
    )
    assert sparse.info["backend"] == "sparse" and dense.info["backend"] == "dense"
    np.testing.assert_allclose(sparse.times, dense.times)
    np.testing.assert_allclose(sparse.singular_values, dense.singular_values, atol=1e-8)
    np.testing.assert_allclose(sparse.final_matrix, dense.final_matrix, atol=1e-8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=3), "must be even.*DeepFactorization\\(\\(6, 6\\), depth=3\\)"),
        (dict(depth=1), "`depth` must be >= 2"),
        (dict(depth=4.0), "`depth` must be an integer"),
        (dict(width=0, depth=4), "`width` must be >= 1"),
        (dict(width=2.5, depth=4), "`width` must be an integer"),
        (dict(width=[3, 3], depth=4), "`width` must be an integer"),
    ],
)
def test_bad_depth_and_width(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rb.SymmetricFactorization(D, **kwargs)


def test_perturbed_identity_and_beta_are_refused_at_any_depth():
    model = rb.SymmetricFactorization(D, depth=4)
    with pytest.raises(ValueError, match="DeepFactorization only"):
        model.init("perturbed_identity", beta=0.1)
    with pytest.raises(ValueError, match="`beta` is not used"):
        model.init("identity", beta=0.1)


# ----------------------------------------------------------------------------- in a sweep

SWEEP = """
name = "sym"
kind = "sweep"
[problem]
type = "completion"
shape = [6, 6]
rank = 1
psd = true
fraction = 0.7
[model]
type = "symmetric"
{depth}
[dynamics]
method = "gd"
lr = 0.2
steps = 5
n_save = 3
[sweep]
grid = {{ alpha = [1e-2], seed = [0] }}
"""


def test_a_sweep_builds_the_symmetric_model_of_its_depth():
    from rankbias.experiments import expand, parse_config
    from rankbias.experiments.runner import build_model

    unset, two, four = (
        expand(parse_config(SWEEP.format(depth=d))).runs[0] for d in ("", "depth = 2", "depth = 4")
    )
    # depth 2 is today's model (depth was ignored for symmetric): its run key is unchanged
    assert "depth" not in unset.config["model"] and unset.key == two.key
    assert four.key != two.key and four.config["model"]["depth"] == 4
    assert build_model(two.config) == rb.SymmetricFactorization(D)
    assert build_model(four.config) == rb.SymmetricFactorization(D, depth=4)


def test_a_deep_symmetric_sweep_runs(tmp_path):
    from rankbias.experiments import expand, load, parse_config, run_sweep
    from rankbias.experiments.runner import build_problem

    sweep = expand(parse_config(SWEEP.format(depth="depth = 4")))
    st = run_sweep(sweep, tmp_path, progress=False)
    assert st["done"] == 1 and st["failed"] == 0
    # the stored losses are those of the depth-4 model's GD from the run's init
    cfg = sweep.runs[0].config
    model = rb.SymmetricFactorization(D, depth=4)
    p0 = model.init("gaussian", cfg["init"]["scale"], seed=cfg["init"]["seed"])
    gd = rb.gradient_descent(build_problem(cfg), model, p0, lr=0.2, steps=5)
    ds = load(tmp_path)
    assert np.isfinite(gd.loss[-1]) and gd.loss[-1] > 0
    np.testing.assert_allclose(ds["loss"].values.ravel()[-1], gd.loss[-1], rtol=1e-12)


def test_a_sweep_refuses_an_odd_symmetric_depth():
    from rankbias.experiments import expand, parse_config
    from rankbias.experiments.errors import ConfigError

    with pytest.raises(ConfigError, match="model.depth = 3 is odd.*model.type = 'deep'"):
        expand(parse_config(SWEEP.format(depth="depth = 3")))
