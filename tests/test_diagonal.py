"""Diagonal linear networks on linear regression, checked against independent oracles.

Oracles: the closed form of the one-coordinate flow (derived below), the minimiser of
Woodworth et al.'s ``Q_alpha`` (a convex dual solved by Newton's method in NumPy), central
finite differences and a NumPy gradient-descent loop.
"""

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import rankbias as rb
from rankbias.problems import sparse_recovery

# -- the one-coordinate closed form -------------------------------------------------------
#
# With X = I the coordinates decouple: f = 1/2 (beta - y)^2 per coordinate. Two-branch depth 2
# (beta = u^2 - v^2, u(0) = v(0) = alpha): du/dt = -2 u r, dv/dt = 2 v r (r = beta - y), so
# u v = alpha^2 is conserved and (u^2 + v^2)^2 = beta^2 + 4 alpha^4: dbeta/dt = -4 r
# sqrt(beta^2 + c^2) with c = 2 alpha^2. Product depth 2 (beta = u v, u(0) = sqrt(2) alpha,
# v(0) = 0): u^2 - v^2 = 2 alpha^2 is conserved and dbeta/dt = -(u^2 + v^2) r = -2 r
# sqrt(beta^2 + c^2) with c = alpha^2. Both are dbeta/dt = k (y - beta) sqrt(beta^2 + c^2),
# beta(0) = 0, whose solution satisfies (with R = sqrt(y^2 + c^2), S = sqrt(beta^2 + c^2))
#   k R t = ln((y beta + c^2 + R S) / |y - beta|) - ln((c^2 + R c) / |y|).


def _time_to(beta: float, y: float, k: float, c: float) -> float:
    R, S = np.hypot(y, c), np.hypot(beta, c)
    with np.errstate(divide="ignore"):  # t(y) = inf: brentq's end point
        return (
            np.log((y * beta + c * c + R * S) / abs(y - beta)) - np.log((c * c + R * c) / abs(y))
        ) / (k * R)


def _closed_form(t: float, y: float, k: float, c: float) -> float:
    """beta(t) of the one-coordinate flow (invert the monotone t(beta) on (0, y))."""
    if t == 0.0:
        return 0.0
    lo, hi = sorted((0.0, y))
    return brentq(lambda b: _time_to(b, y, k, c) - t, lo, hi, xtol=1e-300, rtol=1e-15, maxiter=500)  # pyright: ignore


def test_closed_form_is_the_ode():
    # the closed form itself against a direct quadrature of dt = dbeta / (k (y - b) S(b))
    from scipy.integrate import quad

    y, k, c = -0.7, 4.0, 0.02
    b = -0.5
    t_quad = quad(lambda s: 1.0 / (k * (y - s) * np.hypot(s, c)), 0.0, b, epsabs=0, epsrel=1e-12)[0]
    assert _time_to(b, y, k, c) == pytest.approx(t_quad, rel=1e-10)


@pytest.mark.parametrize(
    ("form", "k", "alpha"), [("two_branch", 4.0, 1e-30), ("product", 2.0, 1e-30)]
)
def test_flow_is_the_one_coordinate_closed_form(form, k, alpha):
    y = np.array([1.5, -0.8, 0.4])
    prob = rb.LinearRegression(np.eye(3), y)
    model = rb.DiagonalNetwork(3, 2, form=form)
    c = 2 * alpha**2 if form == "two_branch" else alpha**2
    # the escapes: t(y / 2) per coordinate, ~ln(1 / alpha^2) / (k |y|), up to 70
    t_max = 1.5 * max(_time_to(yi / 2, yi, k, c) for yi in y)
    flow = rb.gradient_flow(
        prob,
        model,
        model.init(scale=alpha),
        t_max=t_max,
        n_save=40,
        gtol=None,
        rtol=1e-10,
        save_matrices=True,
    )
    assert flow.matrices is not None
    betas = flow.matrices[:, :, 0]
    ref = np.array([[_closed_form(t, yi, k, c) for yi in y] for t in flow.times])
    assert np.abs(ref[-1] - y).max() < 1e-3  # the run covers the escapes of all three
    # measured 9e-11 (two-branch) and 4e-11 (product) at rtol 1e-10 through the plateau
    np.testing.assert_allclose(betas, ref, rtol=0, atol=1e-8)


def test_depth_two_from_1e_minus_100_matches_the_closed_form():
    # weights at 1e-100: beta(0) = 0 and the plateau lasts ln(1/alpha^2) / (4 |y|) ~ 115 / |y|
    alpha, y = 1e-100, np.array([1.0, -2.0])
    model = rb.DiagonalNetwork(2, 2, form="two_branch")
    prob = rb.LinearRegression(np.eye(2), y)
    flow = rb.gradient_flow(prob, model, model.init(scale=alpha), t_max=150.0, n_save=30, gtol=None)
    c = 2 * alpha**2
    t_half = _time_to(0.5, 1.0, 4.0, c)
    assert 114 < t_half < 116
    ref = np.array([[_closed_form(t, yi, 4.0, c) for yi in y] for t in flow.times])
    beta = np.array(flow.singular_values)  # sorted |beta|: coordinate 1 (|y| = 2) escapes first
    # measured 1.1e-10 at the default rtol 1e-8
    np.testing.assert_allclose(beta, np.abs(ref)[:, ::-1], rtol=0, atol=1e-8)
    assert flow.status == "t_max"


# -- Woodworth et al.: the depth-2 limit minimises Q_alpha ------------------------------------


def _q_alpha_minimiser(X: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """argmin sum_i alpha^2 q(beta_i / alpha^2) s.t. X beta = y, q(z) = 2 - sqrt(4 + z^2) +
    z arcsinh(z / 2), by its dual: phi^*(s) = 2 alpha^2 (cosh s - 1), so minimise
    G(nu) = sum 2 alpha^2 (cosh (X^T nu)_i - 1) - nu^T y; beta = 2 alpha^2 sinh(X^T nu)
    (damped Newton, in NumPy)."""
    a2 = alpha**2
    nu = np.zeros(X.shape[0])

    def G(v):
        return np.sum(2 * a2 * (np.cosh(X.T @ v) - 1)) - v @ y

    for _ in range(500):
        s = X.T @ nu
        g = X @ (2 * a2 * np.sinh(s)) - y
        if np.linalg.norm(g) < 1e-14:
            break
        H = (X * (2 * a2 * np.cosh(s))) @ X.T
        step = np.linalg.solve(H, g)
        step /= max(1.0, np.abs(X.T @ step).max())  # cosh grows by <= e per step (trust region)
        t = 1.0
        with np.errstate(over="ignore", invalid="ignore"):  # overlong trial steps: cosh = inf
            while not G(nu - t * step) <= G(nu) - 0.25 * t * (g @ step) and t > 1e-12:
                t /= 2
        nu = nu - t * step
    beta = 2 * a2 * np.sinh(X.T @ nu)
    assert np.linalg.norm(X @ beta - y) < 1e-12
    return beta


def test_q_alpha_tends_to_min_l1():
    # sanity of the oracle: as alpha -> 0 the Q_alpha minimiser tends to the min-l1
    # interpolator (a linear program, scipy's linprog), slowly: measured distances 1.8e-2,
    # 1.0e-2, 3.2e-3, 2.6e-6 at alpha = 1e-2, 1e-4, 1e-8, 1e-30
    from scipy.optimize import linprog

    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((2, 4)), rng.standard_normal(2)
    lp = linprog(np.ones(8), A_eq=np.hstack([X, -X]), b_eq=y, bounds=(0, None))
    l1 = lp.x[:4] - lp.x[4:]
    dist = [np.abs(_q_alpha_minimiser(X, y, a) - l1).max() for a in (1e-2, 1e-4, 1e-8, 1e-30)]
    assert all(a > b for a, b in zip(dist, dist[1:], strict=False))
    assert dist[0] > 1e-2 and dist[-1] < 1e-5


@pytest.mark.parametrize("alpha", [1e-2, 1e-4])
def test_two_branch_flow_ends_at_the_q_alpha_minimiser(alpha):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((2, 4)), rng.standard_normal(2)
    prob = rb.LinearRegression(X, y)
    model = rb.DiagonalNetwork(4, 2, form="two_branch")
    flow = rb.gradient_flow(prob, model, model.init(scale=alpha), t_max=1e5, n_save=10, rtol=1e-10)
    assert flow.status == "steady_state"
    ref = _q_alpha_minimiser(X, y, alpha)
    # measured 5.7e-10 (1e-2) and 5.4e-10 (1e-4)
    np.testing.assert_allclose(flow.final_matrix[:, 0], ref, rtol=0, atol=1e-8)


# -- gradients, gradient descent, records -----------------------------------------------------


def _np_beta(form: str, L: int, ps):
    if form == "two_branch":
        return ps[0] ** L - ps[1] ** L
    return np.prod(ps, axis=0)


@pytest.mark.parametrize(("form", "L"), [("product", 3), ("two_branch", 3)])
def test_gradient_is_the_finite_difference_gradient(form, L):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((3, 5)), rng.standard_normal(3)
    prob = rb.LinearRegression(X, y, normalization="mean")
    model = rb.DiagonalNetwork(5, L, form=form)
    ps = [0.8 * rng.standard_normal(5) for _ in model.param_shapes]

    def obj(qs):
        r = X @ _np_beta(form, L, qs) - y
        return 0.5 * np.mean(r * r)

    g = model.grad(prob, tuple(jnp.asarray(p[:, None]) for p in ps))
    h = 1e-6
    for j in range(len(ps)):
        fd = np.zeros(5)
        for i in range(5):
            up = [q.copy() for q in ps]
            dn = [q.copy() for q in ps]
            up[j][i] += h
            dn[j][i] -= h
            fd[i] = (obj(up) - obj(dn)) / (2 * h)
        np.testing.assert_allclose(np.asarray(g[j])[:, 0], fd, rtol=0, atol=1e-8)


def test_gradient_descent_is_the_numpy_loop():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((3, 4)), rng.standard_normal(3)
    prob = rb.LinearRegression(X, y)
    model = rb.DiagonalNetwork(4, 2, form="two_branch")
    p0 = model.init("gaussian", scale=0.7, seed=4)
    lr, steps = 0.05, 6
    gd = rb.gradient_descent(
        prob, model, p0, lr=lr, steps=steps, n_save=2, save_at=range(steps + 1), save_matrices=True
    )
    u, v = (np.asarray(p)[:, 0] for p in p0)
    ref = [u * u - v * v]
    for _ in range(steps):
        g = X.T @ (X @ (u * u - v * v) - y)
        u, v = u - lr * 2 * u * g, v + lr * 2 * v * g
        ref.append(u * u - v * v)
    assert gd.matrices is not None
    assert np.abs(ref[-1] - ref[0]).max() > 0.05
    np.testing.assert_allclose(gd.matrices[:, :, 0], np.array(ref), rtol=0, atol=1e-12)
    sgd = rb.train(prob, model, p0, "sgd", lr=lr, steps=steps, n_save=2, save_at=range(steps + 1))
    np.testing.assert_allclose(sgd.loss, gd.loss, rtol=1e-12)


def test_records_are_the_sorted_absolute_coordinates():
    prob = rb.LinearRegression(np.eye(4), np.array([0.0, -3.0, 1.0, 0.0]))
    model = rb.DiagonalNetwork(4, 2, form="two_branch")
    flow = rb.gradient_flow(prob, model, model.init(scale=1e-2), t_max=30.0, n_save=5, gtol=None)
    sv = flow.singular_values
    assert sv.shape == (5, 4)
    np.testing.assert_allclose(sv[-1], [3.0, 1.0, 0.0, 0.0], atol=1e-6)
    # the singular values of diag(beta)
    np.testing.assert_allclose(
        sv[-1], np.linalg.svd(np.diag(flow.final_matrix[:, 0]), compute_uv=False), atol=1e-12
    )
    assert flow.effective_rank("numerical")[-1] == 2  # the sparsity of beta
    ds = flow.to_xarray()
    assert ds["singular_values"].shape == (5, 4)
    import matplotlib

    matplotlib.use("Agg")
    assert flow.plot("singular_values") is not None


# -- conventions ------------------------------------------------------------------------------


def test_scale_is_per_weight():
    a = 1e-3
    tb = rb.DiagonalNetwork(3, 2, form="two_branch").init(scale=a)
    assert all(np.all(np.asarray(p) == a) for p in tb)
    u, v = rb.DiagonalNetwork(3, 2).init(scale=a)
    np.testing.assert_allclose(np.asarray(u), np.sqrt(2) * a)
    assert np.all(np.asarray(v) == 0)
    deep = rb.DiagonalNetwork(3, 3).init(scale=a)
    assert all(np.all(np.asarray(p) == a) for p in deep)
    np.testing.assert_allclose(rb.DiagonalNetwork(3, 3).product(deep), a**3)  # beta(0) = a^L
    z = rb.DiagonalNetwork(3, 3).init("zhao", scale=a, smallest=0.25)
    assert [float(p[0, 0]) for p in z] == [a, a, 0.25 * a]
    z2 = rb.DiagonalNetwork(2, 3).init(
        "zhao", scale=a, direction=[[1.0, 2.0], [-1.5, 0.5], [0.5, 1.0]]
    )
    np.testing.assert_allclose(np.asarray(z2[1])[:, 0], [-1.5 * a, 0.5 * a])
    g = rb.DiagonalNetwork(20000, 1).init("gaussian", scale=a, seed=0)[0]
    assert abs(float(jnp.std(g)) / a - 1) < 0.02


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="form"):
        rb.DiagonalNetwork(3, 2, form="diag")
    with pytest.raises(ValueError, match="kind"):
        rb.DiagonalNetwork(3, 2).init("pesme")
    with pytest.raises(ValueError, match="zhao"):
        rb.DiagonalNetwork(3, 2, form="two_branch").init("zhao")
    with pytest.raises(ValueError, match="unique"):
        rb.DiagonalNetwork(2, 3).init("zhao", direction=[1.0, 0.5, -0.5])
    with pytest.raises(ValueError, match="smallest"):
        rb.DiagonalNetwork(2, 3).init("zhao", smallest=1.0)
    with pytest.raises(ValueError, match="`y`"):
        rb.LinearRegression(np.eye(3), np.ones(2))
    with pytest.raises(ValueError, match="`k`"):
        sparse_recovery(5, 4, 5)


def test_sparse_recovery_instance():
    prob = sparse_recovery(200, 50, 5, seed=1)
    beta = np.asarray(prob.target)[:, 0]
    assert np.sum(beta != 0) == 5 and set(np.abs(beta[beta != 0])) == {1.0}
    X = np.asarray(prob.X)
    assert abs(np.mean(np.sum(X * X, axis=0)) - 1) < 0.05  # N(0, 1/n) entries: unit columns
    assert float(prob.loss(jnp.asarray(beta[:, None]))) == 0.0
    mean = sparse_recovery(200, 50, 5, seed=1, normalization="mean")
    W = np.ones((50, 1))
    assert float(mean.loss(W)) == pytest.approx(float(prob.loss(W)) / 200, rel=1e-13)


def test_minibatch_is_unbiased_and_exact_on_all_rows():
    from itertools import combinations

    prob = sparse_recovery(6, 4, 2, noise=0.1, seed=0)
    W = jnp.asarray(np.random.default_rng(0).standard_normal((4, 1)))
    f0, g0 = prob.loss_and_grad(W)
    f, g = prob.minibatch(jnp.arange(6)).loss_and_grad(W)
    assert float(f) == pytest.approx(float(f0), rel=1e-13)
    np.testing.assert_allclose(g, g0, rtol=1e-13)
    # unbiased: the mean over every batch of 2 rows is the full loss and gradient
    parts = [prob.minibatch(jnp.asarray(b)).loss_and_grad(W) for b in combinations(range(6), 2)]
    assert np.mean([float(p[0]) for p in parts]) == pytest.approx(float(f0), rel=1e-12)
    np.testing.assert_allclose(np.mean([np.asarray(p[1]) for p in parts], axis=0), g0, rtol=1e-12)
    model = rb.DiagonalNetwork(4, 2, form="two_branch")
    sgd = rb.train(prob, model, model.init(scale=0.3), "sgd", lr=0.05, steps=300, batch_size=3)
    assert sgd.loss[-1] < 0.2 * sgd.loss[0]


FLOW: dict[str, Any] = dict(gtol=None, n_save=5)


def test_deep_flow_from_tiny_scale_warns_about_resolution():
    prob = rb.LinearRegression(np.eye(2), np.array([1.0, -0.5]))
    model = rb.DiagonalNetwork(2, 3)
    with pytest.warns(rb.ResolutionWarning):
        rb.gradient_flow(prob, model, model.init("zhao", scale=1e-20), t_max=1.0, **FLOW)


# -- sweeps from TOML -------------------------------------------------------------------------

SWEEP = """
name = "diag-tiny"
kind = "sweep"
[problem]
type = "regression"
shape = [12, 1]
rank = 2
measurements = 8
seed = 3
[model]
type = "diagonal"
depth = 2
form = "two_branch"
[init]
name = "uniform"
[dynamics]
method = "flow"
t_max = 1e3
n_save = 6
[sweep]
grid = { alpha = [1e-3, 1e-40] }
"""


def test_sweep_from_toml_runs_the_same_flows(tmp_path):
    import rankbias.experiments as ex

    sw = ex.expand(ex.parse_config(SWEEP))
    cfg = sw.runs[0].config
    assert cfg["model"] == {"type": "diagonal", "depth": 2, "form": "two_branch"}
    assert "per_factor" not in cfg["init"] and "psd" not in cfg["problem"]
    st = ex.run_sweep(sw, tmp_path, progress=False)
    assert st["done"] == 2 and st["failed"] == 0
    ds = ex.load(tmp_path, lazy=False)
    assert ds.sizes["sv"] == 12  # d values: the sorted |beta_i|
    prob = sparse_recovery(8, 12, 2, seed=3)
    model = rb.DiagonalNetwork(12, 2, form="two_branch")
    for j, alpha in enumerate((1e-3, 1e-40)):
        one = rb.gradient_flow(prob, model, model.init(scale=alpha), t_max=1e3, n_save=6)
        sv = ds["singular_values"].isel(alpha=j).values
        # the batched run against a single run (each of a batch has its own steps)
        np.testing.assert_allclose(sv[-1], one.singular_values[-1], rtol=0, atol=1e-8)


def test_gd_sweep_is_gradient_descent(tmp_path):
    # method = "gd" through the sweep machinery (batched GD): the stored loss is that of
    # rb.gradient_descent on the same problem and init
    import rankbias.experiments as ex

    raw = SWEEP.replace('method = "flow"\nt_max = 1e3', 'method = "gd"\nlr = 0.1\nsteps = 200')
    raw = raw.replace("alpha = [1e-3, 1e-40]", "alpha = [1e-2, 1e-3]")
    sw = ex.expand(ex.parse_config(raw))
    ex.run_sweep(sw, tmp_path, progress=False)
    ds = ex.load(tmp_path, lazy=False)
    prob = sparse_recovery(8, 12, 2, seed=3)
    model = rb.DiagonalNetwork(12, 2, form="two_branch")
    for j, alpha in enumerate((1e-2, 1e-3)):
        one = rb.gradient_descent(prob, model, model.init(scale=alpha), lr=0.1, steps=200, n_save=6)
        np.testing.assert_allclose(ds["loss"].isel(alpha=j).values, one.loss, rtol=1e-10)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('type = "regression"', 'type = "completion"', "go together"),
        ("shape = [12, 1]", "shape = [12, 2]", r"\[d, 1\]"),
        ("rank = 2", "rank = 13", "exceeds d"),
        ('name = "uniform"', 'name = "identity"', "not an init"),
        ('name = "uniform"', 'name = "zhao"', "form = 'product'"),
    ],
)
def test_sweep_config_errors_name_the_key(old, new, message):
    import rankbias.experiments as ex
    from rankbias.experiments.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        ex.expand(ex.parse_config(SWEEP.replace(old, new)))


def test_depth_three_flow_is_the_one_coordinate_quadrature():
    # beta = a^3 with every layer a (balanced, product form, "uniform"): da/dt = -a^2 (beta - y),
    # so with s = a: dt = ds / (s^2 (y - s^3)); the plateau lasts ~ 1 / (alpha y) (not a log)
    from scipy.integrate import quad

    alpha, y = 1e-4, 1.0
    model = rb.DiagonalNetwork(1, 3)
    prob = rb.LinearRegression(np.eye(1), np.array([y]))
    flow = rb.gradient_flow(
        prob,
        model,
        model.init(scale=alpha),
        t_max=2e4,
        n_save=30,
        gtol=None,
        rtol=1e-10,
        save_matrices=True,
    )
    assert flow.matrices is not None
    beta = flow.matrices[:, 0, 0]
    assert beta[-1] > 0.999  # escaped
    checked = 0
    for t, b in zip(flow.times[1:], beta[1:], strict=True):
        if not 2 * alpha**3 < b < 0.99:
            continue
        s_end = np.cbrt(b)
        t_ref = quad(
            lambda s: 1.0 / (s * s * (y - s**3)), alpha, s_end, epsabs=0, epsrel=1e-12, limit=200
        )[0]
        assert t == pytest.approx(t_ref, rel=1e-6)
        checked += 1
    assert checked >= 3
