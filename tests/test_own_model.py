"""A model defined outside the package runs through every engine, checked against oracles.

``PlusMinus`` is the symmetric, indefinite factorization ``W = U U^T - V V^T`` of the guide
"Your own model or loss" (``docs/guides/own-model.md``), written here as a user would: a
subclass of the documented base :class:`rankbias.models.Model` that touches nothing else of
rankbias. The oracles are independent of the engines: the built-in
``SymmetricFactorization`` (the same flow when ``V = 0``), central finite differences, a
NumPy gradient-descent loop and the GLRL limit.
"""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb
from rankbias.models import Model


class PlusMinus(Model):
    """``W = U U^T - V V^T`` with ``U, V`` of shape ``(d, k)``; ``L(U, V) = 1/2 f(W)``."""

    width: int = eqx.field(static=True)

    def __init__(self, size: int, width: int | None = None):
        self.shape = (size, size)
        self.width = size if width is None else width

    @property
    def depth(self) -> int:
        return 2

    @property
    def param_shapes(self):
        return ((self.shape[0], self.width),) * 2

    def product(self, params):
        U, V = params
        return U @ U.T - V @ V.T

    def objective_weight(self) -> float:
        return 0.5

    def optimality_gap(self, G):
        # Full width: every symmetric W is reachable, and sym(grad f) = 0 is optimality.
        if self.width < self.shape[0]:
            return None
        return jnp.linalg.norm(0.5 * (G + G.T))

    def init(self, scale: float = 1e-3, seed: int = 0):
        rng = np.random.default_rng(seed)
        d, k = self.param_shapes[0]
        a = np.sqrt(scale) / np.sqrt(k)
        return tuple(jnp.asarray(a * rng.standard_normal((d, k))) for _ in range(2))


# A symmetric completion of an indefinite rank-2 matrix (eigenvalues 2 and -1), 70% observed
# (symmetric mask), so grad f(W) is symmetric at every symmetric W.
M = rb.matrix_from_spectrum([2.0, -1.0], (8, 8), symmetric=True, seed=0)
PROB = rb.MatrixCompletion.uniform(M, fraction=0.7, seed=0, symmetric=True)
MASK = np.asarray(PROB.mask, dtype=np.float64)
MODEL = PlusMinus(8)
# Fixed-horizon flows share one compiled solve (the number of records and `gtol is None`
# are part of the compile key).
FLOW: dict[str, Any] = dict(gtol=None, n_save=20)


def numpy_loss(W):
    """The completion loss with the library's default normalisation (docs: Concepts):
    ``f(W) = 1/2 sum_Omega (W_ij - M_ij)^2``."""
    return 0.5 * np.sum(MASK * (W - M) ** 2)


def numpy_objective(U, V):
    return 0.5 * numpy_loss(U @ U.T - V @ V.T)


def test_v_zero_is_the_symmetric_factorization_flow():
    # V = 0 is invariant (dV/dt = sym(G) V), and then L(U, 0) = 1/2 f(U U^T), the objective
    # of SymmetricFactorization: the same ODE for U, solved with a state twice as long.
    sym = rb.SymmetricFactorization(8)
    (U0,) = sym.init("gaussian", scale=1e-3, seed=1)
    kw: dict[str, Any] = dict(t_max=200.0, rtol=1e-10, atol=1e-15, **FLOW)
    ours = rb.gradient_flow(PROB, MODEL, (U0, jnp.zeros_like(U0)), **kw)
    ref = rb.gradient_flow(PROB, sym, (U0,), **kw)
    np.testing.assert_array_equal(ours.times, ref.times)
    assert np.all(ours.final_params[1] == 0.0)
    assert ref.singular_values[-1][1] > 0.5  # the flow has left the origin: a real trajectory
    # measured 3e-11 (the error controls see the longer state, so the steps differ)
    np.testing.assert_allclose(ours.singular_values, ref.singular_values, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.final_matrix, ref.final_matrix, rtol=0, atol=1e-8)


def test_gradient_is_the_finite_difference_gradient():
    rng = np.random.default_rng(2)
    U, V = 0.5 * rng.standard_normal((8, 8)), 0.5 * rng.standard_normal((8, 8))
    # The objective the engines minimise is objective_weight * problem.loss(product).
    assert float(MODEL.objective(PROB, (jnp.asarray(U), jnp.asarray(V)))) == pytest.approx(
        numpy_objective(U, V), rel=1e-13
    )
    gU, gV = (np.asarray(g) for g in MODEL.grad(PROB, (jnp.asarray(U), jnp.asarray(V))))
    h = 1e-6
    for X, g, which in ((U, gU, 0), (V, gV, 1)):
        fd = np.zeros_like(X)
        for idx in np.ndindex(*X.shape):
            E = np.zeros_like(X)
            E[idx] = h
            args_p = (U + E, V) if which == 0 else (U, V + E)
            args_m = (U - E, V) if which == 0 else (U, V - E)
            fd[idx] = (numpy_objective(*args_p) - numpy_objective(*args_m)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=0, atol=1e-8 * max(1.0, np.abs(fd).max()))


def _numpy_gd(U, V, lr, steps):
    """Gradient descent on L(U, V) = 1/2 f(U U^T - V V^T): with S = sym(grad f(W)),
    grad_U L = S U and grad_V L = -S V (the Arora-style factor update, written by hand)."""
    Ws = [U @ U.T - V @ V.T]
    for _ in range(steps):
        W = U @ U.T - V @ V.T
        G = MASK * (W - M)
        S = 0.5 * (G + G.T)
        U, V = U - lr * S @ U, V + lr * S @ V
        Ws.append(U @ U.T - V @ V.T)
    return np.array(Ws)


STEPS, LR = 6, 0.1
P0 = MODEL.init(scale=0.5, seed=3)  # large enough that every step moves W visibly


def test_gradient_descent_is_the_numpy_loop():
    gd = rb.gradient_descent(
        PROB, MODEL, P0, lr=LR, steps=STEPS, n_save=2, save_at=range(STEPS + 1), save_matrices=True
    )
    U0, V0 = (np.asarray(p) for p in P0)
    ref = _numpy_gd(U0, V0, LR, STEPS)
    assert gd.steps is not None and gd.matrices is not None
    np.testing.assert_array_equal(gd.steps, np.arange(STEPS + 1))
    np.testing.assert_allclose(gd.times, LR * np.arange(STEPS + 1), rtol=1e-15)
    assert np.abs(ref[-1] - ref[0]).max() > 0.1  # the steps are not negligible
    np.testing.assert_allclose(gd.matrices, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gd.loss, [numpy_loss(W) for W in ref], rtol=1e-12)
    assert gd.info["backend"] == "dense"


def test_full_batch_sgd_is_gradient_descent():
    kw: dict[str, Any] = dict(n_save=2, save_at=range(STEPS + 1), save_matrices=True)
    gd = rb.gradient_descent(PROB, MODEL, P0, lr=LR, steps=STEPS, **kw)
    tr = rb.train(PROB, MODEL, P0, "sgd", lr=LR, steps=STEPS, **kw)
    assert tr.matrices is not None and gd.matrices is not None
    np.testing.assert_array_equal(tr.steps, gd.steps)
    np.testing.assert_allclose(tr.matrices, gd.matrices, rtol=0, atol=1e-13)
    np.testing.assert_allclose(tr.loss, gd.loss, rtol=1e-12)


def test_batch_flow_is_two_single_flows():
    inits = [MODEL.init(scale=1e-3, seed=s) for s in (4, 5)]
    kw: dict[str, Any] = dict(t_max=100.0, rtol=1e-10, atol=1e-15, **FLOW)
    batch = rb.gradient_flow_batch(PROB, MODEL, inits, **kw)
    assert len(batch) == 2
    for run, p0 in zip(batch, inits, strict=True):
        one = rb.gradient_flow(PROB, MODEL, p0, **kw)
        np.testing.assert_array_equal(run.times, one.times)
        # measured identical; each run of a batch has its own steps
        np.testing.assert_allclose(run.singular_values, one.singular_values, rtol=0, atol=1e-10)
        np.testing.assert_allclose(run.final_matrix, one.final_matrix, rtol=0, atol=1e-10)


def test_flow_from_small_scales_tends_to_the_glrl_limit():
    # For symmetric grad f the asymmetric GLRL keeps B = A diag(+-1): its phases are the
    # phases of U U^T - V V^T (a new column joins U or V by the sign of the top eigenvalue).
    limit = rb.glrl(PROB, psd=False)
    W = limit.matrix
    assert np.abs(W - W.T).max() < 1e-12
    dist = {}
    for scale in (1e-4, 1e-8):
        flow = rb.gradient_flow(PROB, MODEL, MODEL.init(scale=scale, seed=0), t_max=1e4, n_save=20)
        dist[scale] = np.linalg.norm(flow.final_matrix - W) / np.linalg.norm(W)
    assert dist[1e-8] < 1e-3  # measured 2e-4 (and 2e-2 from 1e-4)
    assert dist[1e-8] < 0.05 * dist[1e-4]


def test_outside_model_has_no_sparse_backend_but_auto_runs_dense():
    flow = rb.gradient_flow(PROB, MODEL, P0, t_max=1.0, **FLOW)
    assert flow.info["backend"] == "dense"
    with pytest.raises(ValueError, match="sparse"):
        rb.gradient_flow(PROB, MODEL, P0, t_max=1.0, backend="sparse", **FLOW)


def test_the_certificate_stops_the_flow_at_a_steady_state():
    # With optimality_gap the flow stops once ||grad L|| <= gtol and ||sym grad f(W)|| is
    # small relative to its start: a certified minimum (f convex, every symmetric W reachable).
    flow = rb.gradient_flow(PROB, MODEL, MODEL.init(scale=1e-4, seed=0), t_max=1e6, n_save=20)
    assert flow.status == "steady_state" and flow.times[-1] < 1e6
    assert flow.loss[-1] < 1e-15
