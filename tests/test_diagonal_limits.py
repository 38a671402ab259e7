"""The alpha -> 0 limits of diagonal networks (rankbias.diagonal_limits) against independent
oracles: linear programs for the end points (scipy's HiGHS), hand-derived jump times on two
coordinates, closed-form threshold integrals, and stiff integrations of the flows written here
in numpy (scipy's solve_ivp), independent of rankbias's engines."""

import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from scipy.optimize import linprog  # noqa: E402
from scipy.special import gamma  # noqa: E402

import rankbias as rb  # noqa: E402
from rankbias.diagonal_limits import default_init, growth_thresholds  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _instance(seed: int, n: int = 6, d: int = 14, k: int = 3):
    """Gaussian design, k-sparse truth: X beta = y is consistent and underdetermined."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta = np.zeros(d)
    beta[rng.choice(d, k, replace=False)] = rng.standard_normal(k) * 2
    return X, X @ beta


def _weighted_l1_lp(X, y, wp, wm):
    """min sum wp_i b_i^+ + wm_i b_i^- s.t. X b = y, as an LP in (b^+, b^-) >= 0 (HiGHS)."""
    n, d = X.shape
    res = linprog(
        np.concatenate([wp, wm]),
        A_eq=np.hstack([X, -X]),
        b_eq=y,
        bounds=[(0, None)] * (2 * d),
        method="highs",
    )
    assert res.status == 0
    return res.fun, res.x[:d] - res.x[d:]


# --- end points against linear programs --------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_saddle_to_saddle_ends_at_the_min_l1_interpolator(seed):
    X, y = _instance(seed)
    res = rb.saddle_to_saddle(X, y)
    assert res.converged and res.well_posed
    fun, b_lp = _weighted_l1_lp(X, y, np.ones(X.shape[1]), np.ones(X.shape[1]))
    assert np.linalg.norm(X @ res.limit - y) <= 1e-9 * np.linalg.norm(y)
    assert res.objective() == pytest.approx(fun, rel=1e-9)
    assert np.abs(res.limit).sum() == pytest.approx(fun, rel=1e-9)
    # generic data: the LP's solution is unique, so the points agree too
    np.testing.assert_allclose(res.limit, b_lp, atol=1e-7)
    # the times increase and every saddle is a sign-constrained least-squares point:
    # the correlation vanishes on its support
    assert np.all(np.diff(res.times) > 0)
    for b in res.betas[1:]:
        u = X.T @ (y - X @ b)
        assert np.max(np.abs(u[b != 0])) <= 1e-9 * np.max(np.abs(X.T @ y))


@pytest.mark.parametrize("seed", range(4))
def test_deep_limit_ends_at_the_weighted_l1_minimiser(seed):
    X, y = _instance(seed + 10)
    rng = np.random.default_rng(seed)
    init = rng.uniform(0.3, 1.5, (3, X.shape[1])) * rng.choice([-1, 1], (3, X.shape[1]))
    res = rb.diagonal_limit(X, y, 3, init=init)
    assert res.converged
    assert not np.allclose(res.t_plus, res.t_minus)  # a genuinely weighted problem
    fun, b_lp = _weighted_l1_lp(X, y, res.t_plus, res.t_minus)
    assert np.linalg.norm(X @ res.limit - y) <= 1e-9 * np.linalg.norm(y)
    assert res.objective() == pytest.approx(fun, rel=1e-9)
    np.testing.assert_allclose(res.limit, b_lp, atol=1e-7)


def test_overdetermined_data_end_at_the_least_squares_solution():
    # n > d, full column rank: no interpolator; the recursion stops at grad L = 0 (Pesme &
    # Flammarion's criterion), i.e. at numpy's least-squares solution
    rng = np.random.default_rng(5)
    X = rng.standard_normal((9, 4))
    y = rng.standard_normal(9)
    res = rb.saddle_to_saddle(X, y)
    assert res.converged
    np.testing.assert_allclose(res.limit, np.linalg.lstsq(X, y, rcond=None)[0], atol=1e-10)


def test_a_sign_with_infinite_threshold_never_activates():
    # every layer at 1 (outside the paper's unique-smallest-layer assumption): k = c^3 never
    # changes sign, t^- = inf; the limit is the min sum t^+ k over k >= 0, X k = y
    X, y = _instance(3, n=4, d=12)
    y = X @ np.abs(np.linalg.lstsq(X, y, rcond=None)[0])  # a nonnegative solution exists
    res = rb.diagonal_limit(X, y, 3, init=np.ones(3))
    assert np.all(np.isinf(res.t_minus))
    np.testing.assert_allclose(res.t_plus, 1.0)  # int_1^inf x^-2 dx
    assert np.all(res.betas >= 0)
    fun, _ = _weighted_l1_lp(X, y, res.t_plus, np.full(12, 1e6))
    assert res.objective() == pytest.approx(fun, rel=1e-8)


# --- thresholds: closed forms of the quadrature ------------------------------------------------


@pytest.mark.parametrize("a, c", [(1.0, 0.3), (2.0, -0.5), (0.7, 0.0), (1.5, 1.2)])
def test_depth3_thresholds_match_the_arctan_closed_form(a, c):
    # a_1 = a_2 = a, a_3 = c: mu_1 = mu_2 = mu, int_{c0}^inf dx/(x^2+mu^2) = (pi/2 - atan(c0/mu))/mu
    mu = math.sqrt(a * a - c * c)
    for sign in (1.0, -1.0):
        tp, tm = growth_thresholds(np.array([[a], [sign * a], [c]]))
        c0 = sign * c  # the sign of the product times |c|, up to c's own sign
        assert tp[0] == pytest.approx((math.pi / 2 - math.atan(c0 / mu)) / mu, rel=1e-10)
        assert tm[0] == pytest.approx((math.pi / 2 + math.atan(c0 / mu)) / mu, rel=1e-10)


@pytest.mark.parametrize("depth", [3, 4, 5, 7])
def test_default_thresholds_match_the_beta_function(depth):
    # layers 1..L-1 at 1, layer L at 0: int_0^inf (1+x^2)^{-(L-1)/2} = sqrt(pi)/2 G((L-2)/2)/G((L-1)/2)
    tp, tm = growth_thresholds(default_init(depth, 3))
    want = math.sqrt(math.pi) / 2 * gamma((depth - 2) / 2) / gamma((depth - 1) / 2)
    np.testing.assert_allclose(tp, want, rtol=1e-10)
    np.testing.assert_allclose(tm, want, rtol=1e-10)


def test_depth2_thresholds_are_one_and_degenerate_directions_are_refused():
    tp, tm = growth_thresholds(np.array([[1.3, -0.2], [0.1, 2.0]]))
    np.testing.assert_array_equal(tp, 1.0)
    np.testing.assert_array_equal(tm, 1.0)
    with pytest.raises(ValueError, match="init"):
        rb.diagonal_limit(np.eye(2), np.ones(2), 2, init=np.ones(2))


# --- reductions -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_unit_thresholds_reduce_to_pesme_flammarion(seed):
    X, y = _instance(seed + 20)
    ref = rb.saddle_to_saddle(X, y)
    # depth 3 from a_1 = a_2 = pi/2, a_3 = 0: t^+- = int_0^inf dx / (x^2 + pi^2/4) = 1
    deep = rb.diagonal_limit(X, y, 3, init=np.array([math.pi / 2, math.pi / 2, 0.0]))
    np.testing.assert_allclose(deep.t_plus, 1.0, rtol=1e-10)
    np.testing.assert_allclose(deep.times, ref.times, rtol=1e-8)
    np.testing.assert_allclose(deep.betas, ref.betas, atol=1e-9)
    np.testing.assert_array_equal(deep.entering, ref.entering)
    # equal thresholds c: the same saddles, every time multiplied by c
    scaled = rb.diagonal_limit(X, y, 4, thresholds=(2.5, 2.5))
    np.testing.assert_allclose(scaled.times, 2.5 * ref.times, rtol=1e-8)
    np.testing.assert_allclose(scaled.betas, ref.betas, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_scaling_y_and_permuting_columns_act_as_the_flow_says(seed):
    # y -> c y scales every correlation by c: the saddles scale by c, the jump times by 1/c;
    # a permutation of the columns permutes the coordinates and leaves the times
    X, y = _instance(seed + 30)
    ref = rb.saddle_to_saddle(X, y)
    sc = rb.saddle_to_saddle(X, 3.0 * y)
    np.testing.assert_allclose(sc.times, ref.times / 3.0, rtol=1e-9)
    np.testing.assert_allclose(sc.betas, 3.0 * ref.betas, atol=1e-9)
    perm = np.random.default_rng(seed).permutation(X.shape[1])
    pm = rb.saddle_to_saddle(X[:, perm], y)
    np.testing.assert_allclose(pm.times, ref.times, rtol=1e-9)
    np.testing.assert_allclose(pm.betas, ref.betas[:, perm], atol=1e-9)
    np.testing.assert_array_equal(perm[pm.entering], ref.entering)


# --- exact jump times on two coordinates -------------------------------------------------------


def test_orthogonal_columns_jump_at_one_over_the_correlation():
    # x_1 = (2, 0), x_2 = (0, 1), y = (3, -2): correlations c = (6, -2), unaffected by each
    # other's activation (orthogonal columns): jumps at tau = 1/6 to beta_1 = 6/4, then at
    # tau = 1/2 to beta_2 = -2
    X = np.array([[2.0, 0.0], [0.0, 1.0]])
    y = np.array([3.0, -2.0])
    res = rb.saddle_to_saddle(X, y)
    np.testing.assert_allclose(res.times, [0.0, 1 / 6, 1 / 2], rtol=1e-14)
    np.testing.assert_allclose(res.betas, [[0, 0], [1.5, 0], [1.5, -2.0]], atol=1e-14)
    assert res.entering.tolist() == [0, 1]
    assert res.active_sets == [(), (0,), (0, 1)]
    np.testing.assert_array_equal(res.signs[-1], [1, -1])


def test_correlated_columns_follow_the_hand_derived_times():
    # unit columns x_1, x_2 with x_1 . x_2 = rho; c = X^T y with c_1 > |c_2|. Jump 1 at
    # tau_1 = 1/c_1 to beta = (c_1, 0); then s = (1, c_2/c_1), u_2 = c_2 - rho c_1 and jump 2 at
    # tau_2 = tau_1 + (1 - s_2) / u_2 (u_2 > 0) or tau_1 + (1 + s_2) / |u_2| (u_2 < 0), to the
    # interpolator X^{-1} y (its signs agree with (+, sign u_2) on this instance).
    rho = 0.6
    X = np.array([[1.0, rho], [0.0, math.sqrt(1 - rho * rho)]])
    for beta_true in ([2.0, 0.5], [2.0, -0.7]):
        y = X @ np.array(beta_true)
        c = X.T @ y
        assert c[0] > abs(c[1])
        t1 = 1 / c[0]
        s2 = c[1] / c[0]
        u2 = c[1] - rho * c[0]
        t2 = t1 + ((1 - s2) / u2 if u2 > 0 else (1 + s2) / -u2)
        res = rb.saddle_to_saddle(X, y)
        np.testing.assert_allclose(res.times, [0.0, t1, t2], rtol=1e-12)
        np.testing.assert_allclose(res.betas[1], [c[0], 0.0], atol=1e-12)
        np.testing.assert_allclose(res.limit, beta_true, atol=1e-12)


DEACT = (np.array([[-0.4, 0.3, 0.6], [-1.0, 0.8, 0.3]]), np.array([0.8, 0.3]))


def test_deactivation_then_reactivation_with_the_other_sign():
    # c = X^T y = (-0.62, 0.48, 0.57): coordinate 0 enters first, negative, at tau = 1/0.62 with
    # beta_0 = c_0 / ||x_0||^2; coordinate 2 enters and pushes it out of the support; it comes
    # back positive at the end (the min-l1 interpolator)
    X, y = DEACT
    res = rb.saddle_to_saddle(X, y)
    assert res.entering.tolist() == [0, 2, 0]
    np.testing.assert_allclose(res.times[1], 1 / 0.62, rtol=1e-12)
    np.testing.assert_allclose(res.betas[1], [-0.62 / 1.16, 0, 0], atol=1e-12)
    assert res.signs[1, 0] == -1 and res.signs[2, 0] == 0 and res.signs[3, 0] == 1
    assert res.deactivations[1] == (0,)
    fun, b_lp = _weighted_l1_lp(X, y, np.ones(3), np.ones(3))
    assert res.objective() == pytest.approx(fun, rel=1e-12)
    np.testing.assert_allclose(res.limit, b_lp, atol=1e-9)


def test_beta_at_is_right_continuous_and_vectorised():
    X = np.array([[2.0, 0.0], [0.0, 1.0]])
    res = rb.saddle_to_saddle(X, np.array([3.0, -2.0]))
    np.testing.assert_array_equal(res.beta_at(0.1), [0, 0])
    np.testing.assert_array_equal(res.beta_at(1 / 6), [1.5, 0])
    out = res.beta_at(np.array([0.0, 0.3, 0.5, 10.0]))
    assert out.shape == (4, 2)
    np.testing.assert_array_equal(out[-1], [1.5, -2.0])


# --- the flows, integrated here -----------------------------------------------------------------


def _depth2_flow(X, y, alpha, tau):
    """beta = u v, u(0) = sqrt(2) alpha, v(0) = 0, loss 1/2 ||X beta - y||^2, at rescaled times
    tau (t = tau log(1/alpha)). u^2 - v^2 = 2 alpha^2 is conserved and u + v, u - v stay
    positive, so u +- v = sqrt(2) alpha exp(+-S) with S' = r = X^T (y - X beta) and
    beta = alpha^2 sinh(2 S): we integrate S (Radau, with the exact Jacobian
    -X^T X diag(2 alpha^2 cosh 2S)), on which beta changes sign freely and no tolerance floor
    sits at alpha = 1e-12."""
    la = math.log(alpha)
    XtX, Xty = X.T @ X, X.T @ y

    def beta(S):
        return 0.5 * (
            np.exp(np.minimum(2 * S + 2 * la, 700)) - np.exp(np.minimum(-2 * S + 2 * la, 700))
        )

    def dbeta(S):
        return np.exp(np.minimum(2 * S + 2 * la, 700)) + np.exp(np.minimum(-2 * S + 2 * la, 700))

    def rhs(_t, S):
        return Xty - XtX @ beta(S)

    def jac(_t, S):
        return -XtX * dbeta(S)[None, :]

    h = -la
    with np.errstate(over="ignore"):  # Radau's error norm of a rejected trial step
        sol = solve_ivp(rhs, (0, tau[-1] * h), np.zeros(X.shape[1]), method="Radau", jac=jac,
                        t_eval=tau * h, rtol=1e-10, atol=1e-10)  # fmt: skip
    assert sol.success
    return sol.t, np.array([beta(S) for S in sol.y.T])


@pytest.fixture(scope="module")
def small():
    # d = 3, n = 2: three jumps on this instance
    X = np.array([[1.0, 0.4, -0.3], [0.2, -1.0, 0.8]])
    y = np.array([1.0, -0.6])
    return X, y, rb.saddle_to_saddle(X, y)


def test_depth2_flow_approaches_the_saddle_path_as_alpha_shrinks(small):
    X, y, lim = small
    assert len(lim.entering) >= 2
    tau = np.linspace(1e-3, 1.6 * lim.times[-1], 600)
    dists, errs = [], []
    alphas = [1e-6, 1e-9, 1e-12]
    for a in alphas:
        t, b = _depth2_flow(X, y, a, tau)
        dists.append(rb.limit_path_distance(lim, t, b, alpha=a, depth=2, margin=0.06))
        meas = rb.measured_jump_times(lim, (t, b), alpha=a, depth=2)
        errs.append(np.max(np.abs(meas - lim.times[1:])))
        pred, got = rb.activation_order(lim, t, b)
        assert got == pred
    assert dists[0] > dists[1] > dists[2]
    assert errs[0] > errs[1] > errs[2]
    assert dists[-1] < 0.15 * max(np.abs(lim.betas).max(), 1.0)
    assert errs[-1] < 0.05 * lim.times[-1]
    fit = rb.fit_distance_rate(alphas, dists)  # distance ~ (1/log(1/alpha))^slope
    assert fit.slope > 0.5


def test_depth2_flow_leaves_and_reenters_where_the_algorithm_says():
    X, y = DEACT
    lim = rb.saddle_to_saddle(X, y)
    alpha = 1e-12
    tau = np.linspace(1e-3, 1.3 * lim.times[-1], 3000)
    t, b = _depth2_flow(X, y, alpha, tau)
    meas = rb.measured_jump_times(lim, t, b, alpha=alpha, depth=2)
    # the jump windows shrink like 1/log(1/alpha): within a few percent at alpha = 1e-12
    np.testing.assert_allclose(meas, lim.times[1:], rtol=0.05)
    # between the second and the third jump the flow's beta_0 sits near 0 (deactivated)
    gap = lim.times[3] - lim.times[2]
    mid = (tau > lim.times[2] + 0.1 * gap) & (tau < lim.times[3] - 0.1 * gap)
    assert np.max(np.abs(b[mid, 0])) < 0.05
    assert np.max(np.abs(b[mid] - lim.betas[2])) < 0.05


def _depth3_flow(X, y, alpha, init, tau):
    """k = a b c, theta(0) = alpha init (3, d), loss 1/2 ||X k - y||^2, at t = tau alpha^-1
    (Radau: the plateaus are stiff in the raw layers)."""
    d = X.shape[1]

    def rhs(_t, z):
        a, b, c = z[:d], z[d : 2 * d], z[2 * d :]
        r = X.T @ (y - X @ (a * b * c))
        return np.concatenate([b * c * r, a * c * r, a * b * r])

    sol = solve_ivp(rhs, (0, tau[-1] / alpha), alpha * init.ravel(), method="Radau",
                    t_eval=tau / alpha, rtol=1e-10, atol=1e-14 * alpha)  # fmt: skip
    assert sol.success
    z = sol.y.T
    return sol.t, z[:, :d] * z[:, d : 2 * d] * z[:, 2 * d :]


def test_depth3_flow_approaches_zhao_algorithm_path():
    # a generic direction (signs mixed, smallest layer unique, last): weighted thresholds,
    # jumps on the clock t alpha (h = 1/alpha at depth 3)
    X = np.array([[1.0, 0.4, -0.3], [0.2, -1.0, 0.8]])
    y = np.array([1.0, -0.6])
    init = np.array([[1.0, -1.2, 0.9], [0.8, 1.0, -1.1], [0.3, -0.2, 0.1]])
    lim = rb.diagonal_limit(X, y, 3, init=init)
    assert len(lim.entering) == 2
    tau = np.linspace(1e-3, 1.6 * lim.times[-1], 400)
    dists = []
    alphas = (1e-2, 1e-3, 1e-4)
    for a in alphas:
        t, k = _depth3_flow(X, y, a, init, tau)
        dists.append(rb.limit_path_distance(lim, t, k, alpha=a, margin=0.06))
        assert rb.activation_order(lim, t, k)[1] == [1, 0]
    assert dists[0] > dists[1] > dists[2]
    assert dists[-1] < 1e-6
    assert rb.fit_distance_rate(alphas, dists, against="alpha").slope > 1.0
    # measured to the record spacing (0.007 here): the jumps are O(alpha) wide on this clock
    meas = rb.measured_jump_times(lim, t, k, alpha=alphas[-1])
    np.testing.assert_allclose(meas, lim.times[1:], atol=0.01)


# --- comparisons on arrays ----------------------------------------------------------------------


def test_comparisons_read_arrays_and_trajectory_like_objects():
    X = np.array([[2.0, 0.0], [0.0, 1.0]])
    lim = rb.saddle_to_saddle(X, np.array([3.0, -2.0]))  # jumps 1/6 -> (1.5, 0), 1/2 -> -2
    alpha = 1e-4
    h = math.log(1 / alpha)
    tau = np.linspace(0, 1, 1001)
    # a synthetic flow: logistic steps centred at 0.2 and 0.55 (in rescaled time)
    b = np.stack([1.5 / (1 + np.exp(-(tau - 0.2) * 200)), -2 / (1 + np.exp(-(tau - 0.55) * 200))],
                 axis=1)  # fmt: skip
    tr = SimpleNamespace(times=tau * h, matrices=b[:, :, None])
    meas = rb.measured_jump_times(lim, tr, alpha=alpha)
    np.testing.assert_allclose(meas, [0.2, 0.55], atol=1e-3)
    d_arrays = rb.limit_path_distance(lim, tau * h, b, alpha=alpha, margin=0.1)
    d_traj = rb.limit_path_distance(lim, tr, alpha=alpha, margin=0.1)
    assert d_arrays == d_traj
    # by hand: the limit is 1.5 [tau >= 1/6], -2 [tau >= 1/2]; margin 0.1 * tau_P = 0.05
    keep = (np.abs(tau - 1 / 6) > 0.05) & (np.abs(tau - 0.5) > 0.05)
    path = np.stack([1.5 * (tau >= 1 / 6), -2.0 * (tau >= 0.5)], axis=1)
    assert d_arrays == pytest.approx(np.max(np.abs(b - path)[keep]), rel=1e-12)
    assert rb.activation_order(lim, tr) == ([0, 1], [0, 1])
    swapped = SimpleNamespace(times=tr.times, matrices=b[:, ::-1][:, :, None] * [[-1.33], [-0.75]])
    assert rb.activation_order(lim, swapped)[1] == [1, 0]
    # two-branch time scale: half of log(1/alpha) at depth 2
    assert rb.diagonal_time_scale(alpha, 2, two_branch=True) == pytest.approx(h / 2)
    assert rb.diagonal_time_scale(0.1, 4) == pytest.approx(100.0)
    assert rb.diagonal_time_scale(0.1, 3, two_branch=True) == pytest.approx(10 / 3)


def test_fit_distance_rate_recovers_exact_power_laws():
    alphas = np.array([1e-3, 1e-6, 1e-12, 1e-24])
    fit = rb.fit_distance_rate(alphas, 3.0 / np.log(1 / alphas) ** 1.5)
    assert fit.slope == pytest.approx(1.5, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    np.testing.assert_allclose(fit.predict(1e-9), 3.0 / np.log(1e9) ** 1.5, rtol=1e-10)
    fit = rb.fit_distance_rate(alphas, 0.2 * alphas**0.5, against="alpha")
    assert fit.slope == pytest.approx(0.5, rel=1e-12)


# --- result object, figure, input errors ----------------------------------------------------------


def test_result_repr_xarray_and_plot(small):
    X, y, lim = small
    text = repr(lim)
    assert text.startswith("DiagonalLimit(saddle_to_saddle, depth=2")
    assert len(text.splitlines()) <= 10
    ds = lim.to_xarray()
    np.testing.assert_array_equal(ds["beta"].values, lim.betas)
    np.testing.assert_array_equal(ds["time"].values, lim.times)
    assert ds["entering"].values[0] == -1
    ax = lim.plot()
    # one step line per nonzero coordinate, its y data the saddles
    steps = [ln for ln in ax.get_lines() if ln.get_label().startswith("beta_")]
    assert len(steps) == np.count_nonzero(np.abs(lim.betas).max(axis=0))


def _layout_problems(fig):
    from test_plots import _layout_problems as problems  # the shared text-overlap check

    return problems(fig)


def test_plots_have_no_colliding_or_cut_text(small):
    X, y, lim = small
    alpha = 1e-6
    tau = np.linspace(1e-3, 1.6 * lim.times[-1], 200)
    t, b = _depth2_flow(X, y, alpha, tau)
    assert _layout_problems(lim.plot().figure) == []
    assert _layout_problems(lim.plot(flow=(t, b), alpha=alpha).figure) == []
    X2, y2 = _instance(1, n=8, d=30, k=6)  # more coordinates than legend entries
    assert _layout_problems(rb.saddle_to_saddle(X2, y2).plot().figure) == []


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rb.saddle_to_saddle(np.ones(3), np.ones(3)), "X"),
        (lambda: rb.saddle_to_saddle(np.ones((3, 2)), np.ones(2)), "y"),
        (lambda: rb.saddle_to_saddle(np.ones((2, 2)), np.ones(2), tol=-1.0), "tol"),
        (lambda: rb.diagonal_limit(np.eye(2), np.ones(2), 1), "depth"),
        (lambda: rb.diagonal_limit(np.eye(2), np.ones(2), 3, init=np.ones((2, 2))), "init"),
        (lambda: rb.diagonal_limit(np.eye(2), np.ones(2), 3, thresholds=(1.0, -1.0)), "thresh"),
        (lambda: rb.diagonal_time_scale(2.0, 2), "alpha"),
        (lambda: rb.fit_distance_rate([0.1], [1.0]), "distances"),
        (lambda: rb.fit_distance_rate([0.1, 0.01], [1.0, 0.5], against="x"), "against"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_flow_of_the_wrong_width_or_type_is_refused(small):
    X, y, lim = small
    with pytest.raises(ValueError, match="flow"):
        rb.limit_path_distance(lim, np.arange(3.0), np.zeros((3, 5)), alpha=0.1)
    with pytest.raises(TypeError, match="flow"):
        rb.measured_jump_times(lim, "run.npz", alpha=0.1)
    with pytest.raises(ValueError, match="alpha"):
        lim.plot(flow=(np.arange(3.0), np.zeros((3, 3))))
