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
        baselines.min_nuclear_norm(rb.CustomLoss(lambda W: (W**2).sum(), (2, 2)))
    with pytest.raises(ValueError, match="rank"):
        baselines.best_rank_fit(_offdiag_problem(), 3)


# ----------------------------------------------------------------------------------------
# The first-order solvers against independent oracles


def _completion(shape, rank, k, seed, psd=False):
    M = rb.random_low_rank(shape, rank, psd=psd, seed=seed)
    rng = np.random.default_rng(seed)
    m, n = shape
    if psd:
        iu = np.triu_indices(m)
        pick = rng.choice(iu[0].size, k, replace=False)
        r, c = iu[0][pick], iu[1][pick]
        r, c = np.concatenate([r, c]), np.concatenate([c, r])
    else:
        pick = rng.choice(m * n, k, replace=False)
        r, c = pick // n, pick % n
    return rb.MatrixCompletion(M, (r, c), truth=M), M


def _check_certificate(prob, sol):
    # Recompute the certificate from the answer alone: Y = A^*(y) is not returned, so check
    # the primal side and the residual here and the dual bound against the Clarabel optimum.
    W = np.asarray(sol)
    rows, cols = np.asarray(prob.rows), np.asarray(prob.cols)
    assert sol.constraint_residual == pytest.approx(
        np.max(np.abs(W[rows, cols] - np.asarray(prob.values))), abs=1e-15
    )
    obj = np.trace(W) if sol.psd else np.linalg.svd(W, compute_uv=False).sum()
    assert sol.objective == pytest.approx(obj, rel=1e-12)
    assert sol.duality_gap >= 0.0
    assert sol.duality_gap == max(0.0, sol.info["duality_gap_raw"])
    assert sol.objective - sol.dual_objective == pytest.approx(
        sol.info["duality_gap_raw"], abs=1e-15
    )


@pytest.mark.parametrize("psd", [False, True])
def test_alm_matches_clarabel(psd):
    prob, _ = _completion((12, 12), 2, 40 if psd else 70, seed=1, psd=psd)
    ref = baselines.min_nuclear_norm(prob, psd=psd, solver="CLARABEL")
    sol = baselines.min_nuclear_norm(prob, psd=psd, solver="ALM", tol=1e-10)
    assert sol.solver == "ALM" and sol.status == "optimal"
    assert sol.objective == pytest.approx(ref.objective, rel=1e-6)
    # The dual bound is a lower bound on the Clarabel optimum (up to Clarabel's accuracy).
    assert sol.dual_objective <= ref.objective + 1e-7
    assert sol.duality_gap <= 1e-7 * sol.objective and sol.constraint_residual <= 1e-8
    np.testing.assert_allclose(np.asarray(sol), np.asarray(ref), atol=1e-4)
    _check_certificate(prob, sol)
    _check_certificate(prob, ref)


def test_auto_picks_by_size():
    small, _ = _completion((10, 10), 2, 50, seed=0)
    assert baselines.min_nuclear_norm(small).solver == "CLARABEL"
    mid, _ = _completion((40, 40), 2, 600, seed=0)
    sol = baselines.min_nuclear_norm(mid)
    assert sol.solver == "SCS" and sol.info["relative_gap"] <= 1e-6
    assert baselines.nuclear._auto_solvers(100, 100) == ["SCS", "ALM"]
    assert baselines.nuclear._auto_solvers(500, 500) == ["ALM"]


def test_alm_full_observation_returns_M_and_rank_one():
    # Every entry observed: the feasible set is {M}. Rank one, ||M||_* = sigma_1.
    u, v = np.random.default_rng(3).standard_normal((2, 30))
    M = np.outer(u, v)
    prob = rb.MatrixCompletion(M, np.ones((30, 30), bool))
    sol = baselines.min_nuclear_norm(prob, solver="ALM")
    np.testing.assert_allclose(np.asarray(sol), M, atol=1e-7)
    assert sol.objective == pytest.approx(np.linalg.norm(u) * np.linalg.norm(v), rel=1e-8)


def test_alm_rank_one_recovery_certified():
    # A rank-1 40x40 matrix from 30% of its entries: nuclear norm recovers it exactly
    # (well above the ~2n log n sample complexity), so the optimum is the truth itself.
    prob, M = _completion((40, 40), 1, 480, seed=5)
    sol = baselines.min_nuclear_norm(prob, solver="ALM")
    assert np.linalg.norm(np.asarray(sol) - M) <= 1e-6 * np.linalg.norm(M)
    assert sol.objective == pytest.approx(np.linalg.svd(M, compute_uv=False)[0], rel=1e-7)
    assert sol.info["relative_gap"] <= 1e-7
    _check_certificate(prob, sol)


def test_alm_sensing_matches_clarabel():
    M = rb.random_low_rank((6, 6), 1, seed=2)
    prob = rb.MatrixSensing.gaussian(M, 20, seed=2)
    ref = baselines.min_nuclear_norm(prob, solver="CLARABEL")
    sol = baselines.min_nuclear_norm(prob, solver="ALM")
    assert sol.objective == pytest.approx(ref.objective, rel=1e-6)
    assert sol.duality_gap <= 1e-7


def test_soft_impute_full_observation_is_svt():
    # f = 1/2 ||X - Y||^2: the minimiser of f + lam ||X||_* is the soft threshold of Y.
    Y = rb.matrix_from_spectrum([3.0, 2.0, 0.5, 0.1], (8, 6), seed=1)
    U, s, Vt = np.linalg.svd(Y, full_matrices=False)
    want = (U * np.maximum(s - 0.3, 0)) @ Vt
    X = baselines.soft_impute(rb.MatrixEstimation(Y), 0.3)
    np.testing.assert_allclose(X, want, atol=1e-8)


def test_soft_impute_optimality_and_randomized_svd():
    # Subgradient optimality at lam: P_Omega(M - X) = lam (U V^T + R), ||R||_2 <= 1, so
    # ||P_Omega(M - X)||_2 <= lam (1 + tol) and <P_Omega(M - X), X> = lam ||X||_*.
    prob, M = _completion((60, 50), 3, 1200, seed=2)
    lam = 0.05
    full = baselines.soft_impute(prob, lam, svd="full", tol=1e-12)
    rnd = baselines.soft_impute(prob, lam, svd="randomized", tol=1e-12)
    np.testing.assert_allclose(rnd, full, atol=1e-7)
    G = np.where(prob.mask, M - full, 0.0)
    assert np.linalg.norm(G, 2) <= lam * (1 + 1e-6)
    assert np.vdot(G, full) == pytest.approx(lam * baselines.nuclear_norm(full), rel=1e-6)


def test_bad_solver_names_argument():
    with pytest.raises(ValueError, match="solver"):
        baselines.min_nuclear_norm(_offdiag_problem(), solver="MOSEK")
    with pytest.raises(ValueError, match="svd"):
        baselines.soft_impute(_offdiag_problem(), 0.1, svd="lanczos")


def test_lbfgs_solves_a_quadratic():
    # min 1/2 z^T A z - b^T z has the closed-form minimiser A^{-1} b.
    from rankbias._nuclear import lbfgs

    rng = np.random.default_rng(0)
    Q = rng.standard_normal((40, 40))
    A = Q @ Q.T + 0.1 * np.eye(40)
    b = rng.standard_normal(40)
    z = lbfgs(lambda z: (0.5 * z @ A @ z - b @ z, A @ z - b), np.zeros(40), 1e-12, 5_000)
    np.testing.assert_allclose(z, np.linalg.solve(A, b), atol=1e-9)


@pytest.mark.parametrize("psd", [False, True])
def test_soft_impute_polish_lands_on_the_plain_fista_minimiser(psd):
    # The factored polish only shortcuts the iteration: the same minimiser as FISTA alone
    # (the oracle), at a small lam where FISTA needs the most iterations.
    from rankbias._nuclear import SVT, blas_threads, fista_prox_grad

    M = rb.random_low_rank((30, 30), 3, psd=psd, seed=4)
    prob = rb.MatrixCompletion.uniform(M, 0.4, seed=4, symmetric=psd)
    lam = 1e-3 * float(np.linalg.norm(np.where(prob.mask, M, 0.0), 2))
    X = baselines.soft_impute(prob, lam, psd=psd, tol=1e-12)
    grad = prob.host_grad()
    with blas_threads(M.shape):
        ref, _, ok = fista_prox_grad(
            grad,
            np.zeros(M.shape),
            lam,
            1 / float(prob.weight),
            SVT(M.shape, psd, False),
            1e-12,
            10**5,
        )
    assert ok
    np.testing.assert_allclose(X, ref, atol=1e-8 * float(np.linalg.norm(ref)))


@pytest.mark.parametrize("psd", [False, True])
def test_top_pairs_partial_matches_full_factorisation(psd):
    # ARPACK's top pairs (used above 200 on a side) against LAPACK's full factorisation.
    from rankbias._nuclear import _top_pairs

    Y = np.random.default_rng(3).standard_normal((240, 240))
    s, U, V = _top_pairs(Y, psd, 6)
    if psd:
        w = np.linalg.eigh(0.5 * (Y + Y.T))[0][::-1][:6]
        np.testing.assert_allclose(s, w, rtol=1e-10)
        np.testing.assert_allclose(0.5 * (Y + Y.T) @ U, U * s, atol=1e-9)
    else:
        np.testing.assert_allclose(s, np.linalg.svd(Y, compute_uv=False)[:6], rtol=1e-10)
        np.testing.assert_allclose(Y @ V, U * s, atol=1e-9)


@pytest.mark.parametrize("frac", [0.02, 0.3])  # segment-sum and dense adjoints
def test_pair_products_adjoint_matches_autodiff(frac):
    import jax
    import jax.numpy as jnp

    from rankbias._nuclear import _entry_orders, _pair_products

    M = rb.random_low_rank((40, 30), 2, seed=5)
    prob = rb.MatrixCompletion.uniform(M, frac, seed=5)
    orders = _entry_orders(prob)
    assert orders[2] == (frac > 0.05)
    rng = np.random.default_rng(0)
    U, V = jnp.asarray(rng.standard_normal((40, 4))), jnp.asarray(rng.standard_normal((30, 4)))
    w = jnp.asarray(rng.standard_normal(len(prob.rows)))
    plain = lambda U, V: jnp.dot(w, jnp.sum(U[prob.rows] * V[prob.cols], axis=1))
    fast = lambda U, V: jnp.dot(w, _pair_products(U, V, prob.rows, prob.cols, *orders))
    for a, b in zip(jax.grad(fast, (0, 1))(U, V), jax.grad(plain, (0, 1))(U, V), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_auto_hands_a_time_limited_scs_answer_to_alm(monkeypatch):
    # m + n = 80: "auto" tries SCS first; with no time to converge its answer is not
    # optimal, and the factor solver must take over and certify the optimum.
    monkeypatch.setattr(baselines.nuclear, "_SCS_AUTO_TIME_LIMIT", 1e-6)
    M = rb.random_low_rank((40, 40), 2, seed=6)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=6)
    sol = baselines.min_nuclear_norm(prob, psd=False)
    assert sol.solver == "ALM" and sol.status == "optimal"
    assert any("handed to ALM" in e for e in sol.info["errors"])
    assert sol.duality_gap <= 1e-7 * sol.objective and sol.constraint_residual <= 1e-8


# -- real-data size (issue 26): sparse Soft-Impute, path callbacks, time budget -------------


@pytest.mark.parametrize("normalization", ["sum", "mean"])
def test_sparse_soft_impute_path_equals_dense_and_meets_kkt(normalization):
    # The factored sparse-plus-low-rank iteration has the dense one's fixed point, and it is
    # the minimiser: ||P_Omega(M - X)||_2 <= lam / c with equality (on X's support) as
    # <P_Omega(M - X), X> = lam / c ||X||_* (c = 1 for "sum", 1/|Omega| for "mean").
    _, M = _completion((60, 50), 3, 1200, seed=2)
    base, _ = _completion((60, 50), 3, 1200, seed=2)
    prob = rb.MatrixCompletion(M, (base.rows, base.cols), normalization=normalization)
    c = prob.lipschitz()
    lmax = c * np.linalg.norm(np.where(prob.mask, M, 0.0), 2)
    lams = lmax * np.array([0.3, 0.05, 0.01])
    dense = baselines.soft_impute_path(prob, lams, svd="full", tol=1e-12)
    sparse = baselines.soft_impute_path(prob, lams, svd="sparse", tol=1e-12)
    for lam, Xd, Xs in zip(lams, dense, sparse, strict=True):
        np.testing.assert_allclose(Xs, Xd, atol=1e-8)
        G = np.where(prob.mask, M - Xs, 0.0)
        assert np.linalg.norm(G, 2) <= lam / c * (1 + 1e-6)
        assert np.vdot(G, Xs) == pytest.approx(lam / c * baselines.nuclear_norm(Xs), rel=1e-6)


def test_sparse_svd_needs_observed_entries():
    with pytest.raises(ValueError, match="sparse"):
        baselines.soft_impute(rb.MatrixEstimation(np.eye(3)), 0.1, svd="sparse")


def test_path_delivers_each_lambda_and_stops_on_interrupt(capsys):
    prob, M = _completion((30, 30), 2, 500, seed=4)
    lams = [0.5, 2.0, 0.1, 1.0]
    seen = []

    def stop_after_two(lam, X):
        seen.append((lam, X.shape))
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="2 of 4"):
        out = baselines.soft_impute_path(prob, lams, on_result=stop_after_two, progress=True)
    assert [lam for lam, _ in seen] == [2.0, 1.0]  # largest first
    full = baselines.soft_impute_path(prob, [2.0, 1.0])
    assert len(out) == 2
    np.testing.assert_allclose(out[0], full[0], atol=1e-8)  # lams order: 2.0, then 1.0
    np.testing.assert_allclose(out[1], full[1], atol=1e-8)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "lam 2" in lines[0] and "rank" in lines[0] and " s" in lines[0]
    assert "train RMSE" in lines[0]
    assert capsys.readouterr().out == ""  # progress off by default (the path above)


def test_min_nuclear_norm_time_budget_returns_certified_point():
    # The rank-one recovery instance above: the optimum is sigma_1(M). Stopped after the
    # first multiplier update, the point is not optimal but the dual bound is still valid.
    prob, M = _completion((40, 40), 1, 480, seed=5)
    sol = baselines.min_nuclear_norm(prob, solver="ALM", time_budget=1e-6)
    assert sol.status == "time_budget"
    vals = [sol.objective, sol.dual_objective, sol.duality_gap, sol.constraint_residual]
    assert np.all(np.isfinite(vals))
    assert sol.dual_objective <= np.linalg.svd(M, compute_uv=False)[0] * (1 + 1e-9)
    assert sol.duality_gap == max(0.0, sol.objective - sol.dual_objective)
    assert sol.info["iterations"] == 1
    with pytest.raises(ValueError, match="time_budget"):
        baselines.min_nuclear_norm(prob, time_budget=0.0)
