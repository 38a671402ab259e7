"""Matrix-free Rodas4 for large flows: GMRES, the spectral preconditioner and the Krylov step,
against dense linear algebra (numpy.linalg.solve, eigh, the LU-based Rodas4 step)."""

from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb
from rankbias.dynamics._krylov import dominant_eigenpairs, gmres, spectral_inverse
from rankbias.dynamics._rkc import RKC
from rankbias.dynamics._rosenbrock import rodas4_krylov_step, rodas4_step
from rankbias.dynamics.flow import solvers as _flow
from rankbias.dynamics.flow.solvers import (
    make_solver as _make_solver,
    vector_field as _vector_field,
)


def _spectrum(P=200, seed=0):
    # A Jacobian like a gradient flow's between escapes: 30 stiff stable eigenvalues, two
    # unstable ones (negative curvature), the rest tiny.
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    lam = np.concatenate(
        [-np.geomspace(1e-3, 2.0, 30), [0.013, 0.021], 1e-13 * rng.standard_normal(P - 32)]
    )
    return (Q * lam) @ Q.T, lam


def test_dominant_eigenpairs_recover_the_largest_moduli():
    J, lam = _spectrum()
    Vt, theta = dominant_eigenpairs(lambda v: jnp.asarray(J) @ v, J.shape[0], 40)
    V = Vt.T
    top = np.sort(np.abs(lam))[::-1][:32]
    got = np.sort(np.abs(np.asarray(theta)))[::-1][:32]
    np.testing.assert_allclose(got, top, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(V.T @ V), np.eye(40), atol=1e-12)
    # Ritz pairs: theta_i = v_i^T J v_i.
    np.testing.assert_allclose(np.einsum("pi,pq,qi->i", V, J, V), theta, atol=1e-12)


@pytest.mark.parametrize("hg", [1e2, 1e5, 1e9])
def test_gmres_with_spectral_preconditioner_solves_in_few_iterations(hg):
    J, _ = _spectrum()
    P = J.shape[0]
    A = np.eye(P) - hg * J  # indefinite for hg > 1/0.013
    b = np.random.default_rng(1).standard_normal(P)
    mv = lambda v: v - hg * (jnp.asarray(J) @ v)
    Vt, theta = dominant_eigenpairs(lambda v: jnp.asarray(J) @ v, P, 40)
    x, it, ok = jax.jit(lambda b: gmres(mv, b, spectral_inverse(Vt, theta, hg), 1e-12, 50))(
        jnp.asarray(b)
    )
    assert bool(ok) and int(it) <= 5  # the neglected part: h gamma 1e-13 <= 1e-4
    # Backward error (at hg = 1e9 the product A x alone rounds at eps ||A|| ||x|| ~ 1e-7).
    x = np.asarray(x)
    scale = np.linalg.norm(A, 2) * np.linalg.norm(x) + np.linalg.norm(b)
    assert np.linalg.norm(A @ x - b) <= 1e-10 * scale
    # Unpreconditioned, GMRES needs about one iteration per stiff eigenvalue (32 here).
    _, it0, ok0 = gmres(mv, jnp.asarray(b), lambda v: v, 1e-12, 50)
    assert int(it0) >= 30 or not bool(ok0)


def test_gmres_exact_on_a_small_nonsymmetric_system():
    rng = np.random.default_rng(2)
    A = np.eye(12) + 0.3 * rng.standard_normal((12, 12))
    b = rng.standard_normal(12)
    x, it, ok = gmres(lambda v: jnp.asarray(A) @ v, jnp.asarray(b), lambda v: v, 1e-13, 12)
    assert bool(ok) and int(it) <= 12
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(A, b), rtol=1e-10)


def _deep_state():
    M = rb.random_low_rank((8, 8), 2, psd=True, seed=1)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=1, symmetric=True)
    model = rb.DeepFactorization((8, 8), depth=3)
    tr = rb.gradient_flow(
        prob, model, model.init("gaussian", scale=1e-3, seed=0), t_max=3e3, gtol=None, n_save=5
    )
    vf = _vector_field(model)
    return (lambda z: vf(0.0, z, prob)), model.flatten(tr.final_params)  # pyright: ignore[reportArgumentType]  # NumPy factors are accepted


@pytest.mark.slow
@pytest.mark.parametrize("k", [192, 60])
def test_krylov_rodas4_step_matches_the_dense_step(k):
    fun, y = _deep_state()
    f0 = fun(y)
    _, jvp = jax.linearize(fun, y)
    Vt, theta = dominant_eigenpairs(jvp, y.size, k)
    for h in (1.0, 1e3):
        y1, f1, err = rodas4_step(fun, y, f0, h)
        k1, kf1, kerr, its, ok = rodas4_krylov_step(fun, y, f0, h, Vt, theta, 1e-10, 60)
        assert bool(ok)
        assert float(jnp.linalg.norm(k1 - y1)) < 1e-9 * float(jnp.linalg.norm(y1 - y))
        # The error estimate (the small last stage) to the solves' tolerance.
        assert float(jnp.linalg.norm(kerr - err)) < 1e-6 * float(jnp.linalg.norm(y1 - y))
        if k == y.size:  # the full eigenbasis: the preconditioner is the exact inverse
            assert int(jnp.max(its)) <= 1


@pytest.mark.slow
def test_krylov_solver_crosses_the_stiff_stretch(monkeypatch):
    # The 8x8 depth-3 alpha-1e-30 case of test_rosenbrock with solver="krylov" (k = 40 of
    # P = 192): the same escape time and loss curve as "hybrid"'s dense LU steps, and the
    # truth at the end.
    M = rb.random_low_rank((8, 8), 2, psd=True, seed=1)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=1, symmetric=True)
    model = rb.DeepFactorization((8, 8), depth=3)
    ps = model.init("gaussian", scale=1e-30, seed=0)
    kw: dict[str, Any] = dict(t_max=1e12, gtol=None, n_save=60, max_steps=20_000)
    with pytest.warns(rb.ResolutionWarning):
        dense = rb.gradient_flow(prob, model, ps, solver="hybrid", **kw)
    monkeypatch.setattr(_flow, "KRYLOV_RANK", 40)
    solver = _make_solver("krylov", 192)
    assert isinstance(solver, RKC) and solver.krylov_rank == 40
    with pytest.warns(rb.ResolutionWarning):
        kry = rb.gradient_flow(prob, model, ps, solver="krylov", **kw)
    assert kry.info["status"] == "t_max"
    assert kry.info["krylov_builds"] >= 1  # the Krylov steps ran
    assert np.linalg.norm(kry.final_matrix - M) < 1e-6 * np.linalg.norm(M)
    assert np.all(np.diff(kry.loss) <= 1e-12)
    half = lambda tr: tr.times[np.argmax(tr.loss <= 0.5 * tr.loss[0])]
    assert half(kry) == half(dense)  # same record (log-spaced grid)
    np.testing.assert_allclose(kry.loss[:40], dense.loss[:40], rtol=1e-6, atol=1e-12)


@pytest.mark.slow
def test_krylov_step_signals_a_missing_basis():
    # No basis yet (theta = 0): the step returns y0 and an all -inf error, which the
    # controller turns into the segment-end signal; it never reaches the PID controller.
    solver = RKC(krylov_stages=0, krylov_rank=4)
    term = diffrax.ODETerm(lambda t, y, a: -y)
    y0 = jnp.ones(6)
    basis = (jnp.zeros((4, 6)), jnp.zeros(4))
    state = solver.init(term, 0.0, 1.0, y0, (None, basis))
    y1, err, _, _, _ = solver.step(term, 0.0, 1e6, y0, (None, basis), state, False)
    assert np.all(np.asarray(err) == -np.inf) and np.array_equal(np.asarray(y1), np.asarray(y0))
