"""Decoupled theory (Chou et al.): recursions vs layer-wise GD, paper table, flow limits, bounds."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rankbias as rb
from rankbias import theory as T

EX1, EX2 = T.EXAMPLE_1, T.EXAMPLE_2


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", T.StabilityWarning)
        return fn(*a, **k)


# --------------------------------------------------------------------------- layer-wise GD
def _layerwise_components(lam, depth, alpha, lr, steps, beta=None, every=10):
    """Independent oracle: the core engine on V diag(lam) V^T, read in the eigenbasis."""
    V = T.paper_basis()
    model = rb.DeepFactorization((4, 4), depth=depth)
    if beta is None:
        params = model.init("identity", scale=alpha, per_factor=True)
    else:
        params = model.init("perturbed_identity", scale=alpha, per_factor=True, beta=beta)
    rec = np.arange(0, steps + 1, every)
    tr = rb.gradient_descent(
        rb.MatrixEstimation((V * np.array(lam)) @ V.T),
        model,
        params,
        lr,
        steps,
        n_save=2,
        save_at=rec,
        save_matrices=True,
    )
    assert tr.matrices is not None  # save_matrices=True
    M = np.einsum("ij,tjk,kl->til", V.T, tr.matrices, V)
    return np.asarray(tr.steps), M


@pytest.mark.parametrize("depth,steps", [(2, 300), (3, 400), (4, 1100)])
def test_identical_recursion_equals_layerwise_gd(depth, steps):
    th = quiet(T.identical_init, EX1, depth, 0.1, 0.01, steps)
    k, M = _layerwise_components(EX1, depth, 0.1, 0.01, steps)
    diag = np.diagonal(M, axis1=1, axis2=2)
    np.testing.assert_allclose(diag, th.product_eigenvalues[k], rtol=0, atol=1e-10)
    off = M - np.einsum("ti,ij->tij", diag, np.eye(4))
    assert np.max(np.abs(off)) < 1e-10


@pytest.mark.parametrize("lam", [EX1, EX2])
def test_perturbed_recursion_equals_layerwise_gd(lam):
    th = quiet(T.perturbed_init, lam, 3, 0.1, 0.05, 0.01, 600)
    k, M = _layerwise_components(lam, 3, 0.1, 0.01, 600, beta=0.05)
    np.testing.assert_allclose(
        np.diagonal(M, axis1=1, axis2=2), th.product_eigenvalues[k], rtol=0, atol=1e-10
    )


def test_layerwise_check_agrees_on_ex1_and_reports_no_drift():
    th = quiet(T.identical_init, EX1, 3, 0.1, 0.01, 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.DriftWarning)
        rep = T.layerwise_check(th, every=25)
    assert not rep.drifted and rep.deviation.max() < 1e-10 and rep.off_diagonal.max() < 1e-10


def test_layerwise_check_reports_drift_explicitly():
    # A theory curve that is wrong from step 200 on must be flagged at the first record >= 200.
    th = quiet(T.identical_init, EX1, 3, 0.1, 0.01, 400)
    th.product_eigenvalues[200:, 0] += 1e-3
    with pytest.warns(T.DriftWarning, match="left the decoupled path at step 200"):
        rep = T.layerwise_check(th, every=50)
    assert rep.drift_step == 200 and rep.max_deviation_before_drift < 1e-10


def test_ex2_round_off_drift_is_reported():
    # deep-mf-dynamics.md pitfall: Ex.2, N=3, eta=0.01 leaves the decoupled path (near k = 1300).
    th = quiet(T.identical_init, EX2, 3, 0.1, 0.01, 2500)
    with pytest.warns(T.DriftWarning):
        rep = T.layerwise_check(th, every=20)
    assert rep.drift_step is not None and 500 <= rep.drift_step <= 2500
    assert rep.max_deviation_before_drift <= 1e-6


# --------------------------------------------------------------------------- paper numbers
@pytest.mark.parametrize(
    "depth,steps,expected",
    [(3, 400, [99, 139, 193]), (4, 1100, [503, 717, 1002]), (2, 200, [36, 48, 64])],
)
def test_fifty_percent_times_match_table(depth, steps, expected):
    es = quiet(T.identical_init, EX1, depth, 0.1, 0.01, steps).escape_steps(0.5)
    assert es.simulated[:3].tolist() == expected
    assert es.simulated[3] == -1  # lam < 0 is never learned from identical init


def test_plateaus_match_table():
    p3 = quiet(T.identical_init, EX1, 3, 0.1, 0.01, 2000).plateaus(tol=0.05)
    assert [p.as_tuple() for p in p3] == [(102, 127), (145, 178), (202, None)]
    p4 = quiet(T.identical_init, EX1, 4, 0.1, 0.01, 1500).plateaus(tol=0.05)
    assert [p.as_tuple() for p in p4] == [(505, 708), (720, 990), (1007, None)]
    th2 = quiet(T.identical_init, EX1, 2, 0.1, 0.01, 2000)
    assert all(p.L != 1 for p in th2.plateaus(0.05))
    assert round(float(th2.effective_rank().min()), 3) == 1.277


def test_perturbed_99_percent_times_match_table():
    th = quiet(T.perturbed_init, EX1, 3, 0.1, 0.05, 0.01, 4000)
    assert th.escape_steps(0.99).simulated.tolist() == [126, 180, 252, 495]
    np.testing.assert_allclose(th.product_eigenvalues[-1], EX1, atol=1e-6)  # incl. lam < 0


def test_plateau_levels():
    np.testing.assert_allclose(T.plateau_levels(EX1), [1.0, 1.7, 2.2, 2.7])


@pytest.mark.parametrize("depth,steps", [(2, 300), (3, 400), (4, 1100)])
def test_flow_escape_prediction_within_5_percent(depth, steps):
    es = quiet(T.identical_init, EX1, depth, 0.1, 0.01, steps).escape_steps(0.5)
    assert np.all(es.relative_error("flow")[:3] < 0.05)
    assert np.all(es.relative_error("asymptotic")[:3] < 0.05)


# --------------------------------------------------------------------------- flow limits
def test_identical_flow_depth2_logistic_closed_form():
    lam = np.array([3.0, 0.5, -2.0])
    t = np.linspace(0, 4, 81)
    fl = T.identical_flow(lam, 2, 0.2, t)
    u0 = 0.04  # u = d^2 solves u' = -2u(u - lam): logistic
    u = lam / (1 + (lam / u0 - 1) * np.exp(-2 * lam[None] * t[:, None]))
    np.testing.assert_allclose(fl.product_eigenvalues, u, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("depth", [3, 4])
def test_identical_flow_zero_eigenvalue_closed_form(depth):
    t = np.linspace(0, 50, 11)
    fl = T.identical_flow([0.0], depth, 0.5, t)
    d = (0.5 ** -(2 * depth - 2) + (2 * depth - 2) * t) ** (-1 / (2 * depth - 2))
    np.testing.assert_allclose(fl.factors[:, 0], d, rtol=1e-9)


def test_flow_escape_time_equals_flow_solution():
    es = quiet(T.identical_init, EX1, 3, 0.1, 0.01, 0).escape_steps(0.5)
    for lam, t in zip(EX1[:3], es.flow[:3] * 0.01, strict=True):
        p = T.identical_flow([lam], 3, 0.1, np.array([0.0, t])).product_eigenvalues[-1, 0]
        assert p == pytest.approx(0.5 * lam, rel=1e-7)


def test_perturbed_flow_conserves_balancedness():
    # Gradient flow conserves W_1 W_1^T - W_2^T W_2, i.e. c^2 - e^2, per component.
    t = np.linspace(0, 8, 401)
    fl = T.perturbed_flow(EX1, 3, 0.1, 0.05, t)
    c, e = fl.factors[:, 0], fl.factors[:, 1]
    np.testing.assert_allclose(c**2 - e**2, 0.05**2 - 0.1**2, atol=1e-9)
    assert fl.product_eigenvalues[-1, 3] == pytest.approx(-5.0, abs=1e-3)


def test_gd_converges_to_flow_first_order():
    errs = []
    for lr in (0.004, 0.002):
        th = quiet(T.identical_init, EX1, 3, 0.1, lr, int(round(1.2 / lr)))
        errs.append(np.max(np.abs(th.product_eigenvalues[-1] - th.flow().product_eigenvalues[-1])))
    assert 1.7 < errs[0] / errs[1] < 2.3


def test_perturbed_flow_escape_close_to_simulation():
    es = quiet(T.perturbed_init, EX1, 3, 0.1, 0.05, 0.01, 4000).escape_steps(0.99)
    assert np.all(es.relative_error("flow") < 0.05)


# --------------------------------------------------------------------------- ranks, bounds, input
def test_effective_ranks_match_matrix_metrics():
    th = quiet(T.identical_init, EX1, 3, 0.1, 0.01, 300)
    V = T.paper_basis()
    for k in (0, 50, 120, 300):
        W = (V * th.product_eigenvalues[k]) @ V.T
        for kind in ("ratio", "entropy", "stable"):
            assert th.effective_rank(kind)[k] == pytest.approx(
                rb.effective_rank(W, kind), rel=1e-10
            )


def test_distance_to_target_is_frobenius():
    th = quiet(T.identical_init, EX1, 3, 0.1, 0.01, 3000)
    assert th.distance_to_target()[-1] == pytest.approx(
        5.0, abs=1e-6
    )  # only the PSD part is learned


def test_max_stable_lr_formula():
    # N=3, lam=10: M = 10^(1/3); eta < 1/(2N M^(2N-2)); lam=-5: 1/((3N-2) 5^(4/3)).
    b_pos = 1 / (6 * 10 ** (4 / 3))
    b_neg = 1 / (7 * 5 ** (4 / 3))
    assert T.max_stable_lr([10.0], 3, 0.1) == pytest.approx(b_pos)
    assert T.max_stable_lr([-5.0], 3, 0.1) == pytest.approx(b_neg)
    assert T.max_stable_lr(EX1, 3, 0.1) == pytest.approx(min(b_pos, b_neg))
    assert T.max_stable_lr([0.001], 2, 2.0) == pytest.approx(1 / (4 * 2.0**2))  # M = alpha


@settings(max_examples=25, deadline=None)
@given(
    lam=st.lists(st.floats(-8, 8).filter(lambda x: abs(x) > 0.5), min_size=1, max_size=4),
    depth=st.integers(2, 4),
    alpha=st.floats(0.5, 1.5),
    frac=st.floats(0.3, 0.95),
)
def test_steps_below_bound_converge(lam, depth, alpha, frac):
    lr = frac * T.max_stable_lr(lam, depth, alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.StabilityWarning)
        th = T.perturbed_init(lam, depth, alpha, alpha / 2, lr, 4000)
    assert th.diverged_at is None
    assert np.all(np.isfinite(th.product_eigenvalues))
    assert np.max(np.abs(th.factors)) < 10 * max(alpha, max(abs(x) for x in lam))


def test_large_step_warns_with_bound():
    bound = T.max_stable_lr(EX1, 3, 0.1)
    with pytest.warns(T.StabilityWarning, match=f"{bound:.6g}"):
        T.identical_init(EX1, 3, 0.1, 0.01, 10)
    with pytest.warns(T.StabilityWarning) as rec:
        th = T.identical_init(EX1, 3, 0.1, 0.2, 50)
    assert any("diverged at step" in str(w.message) for w in rec) and th.diverged_at is not None


def test_nonsymmetric_target_is_rejected():
    A = np.array([[1.0, 2.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="symmetric"):
        T.identical_init(A, 3, 0.1, 0.001, 10)


def test_symmetric_target_matrix_is_accepted():
    V = T.paper_basis()
    th = quiet(T.identical_init, (V * np.array(EX1)) @ V.T, 3, 0.1, 0.01, 5)
    np.testing.assert_allclose(np.sort(th.eigenvalues), np.sort(EX1), atol=1e-12)
    assert abs(th.eigenvalues[0]) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(depth=0), "depth"),
        (dict(alpha=-1.0), "alpha"),
        (dict(lr=0.0), "lr"),
        (dict(steps=1.5), "steps"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(eigenvalues=EX1, depth=3, alpha=0.1, lr=0.001, steps=10) | kwargs
    with pytest.raises(ValueError, match=match):
        T.identical_init(**args)


def test_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        T.perturbed_init(EX1, 3, 0.1, 0.2, 0.001, 10)
    with pytest.raises(ValueError, match="depth"):
        T.perturbed_init(EX1, 1, 0.1, 0.05, 0.001, 10)


def test_escape_fraction_validated():
    th = quiet(T.identical_init, EX1, 3, 0.1, 0.01, 10)
    with pytest.raises(ValueError, match="fraction"):
        th.escape_steps(1.0)


def test_find_plateaus_synthetic():
    r = np.array([4, 3, 1.5, 1.0, 1.01, 1.02, 1.3, 1.69, 1.7, 1.71, 2.0, 2.2, 2.21])
    ps = T.find_plateaus(r, [1.0, 1.7, 2.2], tol=0.05)
    assert [(p.L, p.start, p.end, p.open) for p in ps] == [
        (1, 3, 5, False),
        (2, 7, 9, False),
        (3, 11, 12, True),
    ]
    assert math.isclose(ps[1].level, 1.7)


@pytest.mark.slow
def test_paper2_reproductions(tmp_path):
    from rankbias.reproduce import paper2

    out = paper2.examples(tmp_path, quick=True)
    assert out["all_match"], out["matches"]
    assert (tmp_path / "paper2_examples_components.png").exists()
    sweep = paper2.depth_sweep(tmp_path, quick=True)
    assert sweep["depths"]["N=3"]["t50_lam7"] == 139
