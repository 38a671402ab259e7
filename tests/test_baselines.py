"""Baselines: hand-solvable minimum nuclear norm / trace, Soft-Impute as lam -> 0, rank-r fit."""

import numpy as np
import pytest

import rankbias as rb
from rankbias import baselines
from rankbias.counterexamples import shipped_instance


def _offdiag_problem():
    # Observed W_12 = W_21 = 1, diagonal free. PSD: W11 W22 >= 1, so min tr = 2 at W11=W22=1.
    # Nuclear norm: ||[[a,1],[1,b]]||_* >= |tr| and >= 2 (the off-diagonal part): min 2.
    M = np.array([[0.0, 1.0], [1.0, 0.0]])
    return rb.MatrixCompletion(M, np.array([[False, True], [True, False]]))


def test_min_trace_hand_solvable():
    sol = baselines.min_nuclear_norm(_offdiag_problem(), psd=True)
    assert sol.objective == pytest.approx(2.0, abs=1e-6)
    np.testing.assert_allclose(np.asarray(sol), np.ones((2, 2)), atol=1e-5)
    assert abs(sol.duality_gap) < 1e-6 and sol.constraint_residual < 1e-7
    assert sol.status == "optimal" and sol.solver == "CLARABEL"


def test_min_nuclear_norm_hand_solvable_and_scs():
    for solver in (None, "SCS"):
        sol = baselines.min_nuclear_norm(_offdiag_problem(), psd=False, solver=solver)
        assert sol.objective == pytest.approx(2.0, abs=1e-4)
        assert sol.dual_objective <= sol.objective + 1e-9


def test_soft_impute_tends_to_min_trace_as_lam_to_zero():
    prob = shipped_instance()
    sol = baselines.min_nuclear_norm(prob, psd=True)
    lams = [1e-1, 1e-2, 1e-3]
    path = baselines.soft_impute_path(prob, lams, psd=True, max_iter=200_000, tol=1e-12)
    errs = [abs(np.trace(X) - sol.objective) for X in path]
    assert errs[-1] < 1e-2 and errs[-1] < errs[0]
    fits = [float(prob.loss(X)) for X in path]
    assert fits[-1] < fits[0]


def test_best_rank_fit_is_eckart_young_on_full_observation():
    Y = rb.matrix_from_spectrum([3.0, 2.0, 0.5], (5, 5), seed=4, symmetric=True)
    X, f = baselines.best_rank_fit(rb.MatrixEstimation(Y), 2, psd=True)
    w, V = np.linalg.eigh(Y)
    np.testing.assert_allclose(X, (V[:, -2:] * w[-2:]) @ V[:, -2:].T, atol=1e-6)
    assert f == pytest.approx(0.5 * 0.25, rel=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="lam"):
        baselines.soft_impute(_offdiag_problem(), -1.0)
    with pytest.raises(ValueError, match="problem"):
        baselines.min_nuclear_norm(rb.CustomLoss(lambda W: (W ** 2).sum(), (2, 2)))
    with pytest.raises(ValueError, match="rank"):
        baselines.best_rank_fit(_offdiag_problem(), 3)
