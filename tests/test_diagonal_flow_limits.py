"""rankbias's own exact gradient flows of diagonal networks against the alpha -> 0 limits.

The limit algorithms (``rb.saddle_to_saddle``, ``rb.diagonal_limit``) are tested on their own
against linear programs and scipy Radau flows (tests/test_diagonal_limits.py); here the flows
of ``rb.gradient_flow`` on a ``DiagonalNetwork`` must approach them: the distance to the limit
path away from the jumps decreases with alpha, the measured jump times agree with the
predicted ones within ``C / log(1/alpha)`` (depth 2) or ``C alpha`` (depth 3), and the end
point is the minimum-l1 interpolator of a linear program (scipy's HiGHS)."""

import numpy as np
import pytest
from scipy.optimize import linprog

import rankbias as rb
from rankbias.diagonal_limits import limit_path_distance, measured_jump_times


def _instance():
    """n = 4, d = 6, 2-sparse truth (seed 0): three well separated jumps at depths 2 and 3."""
    prob = rb.problems.sparse_recovery(n=4, d=6, k=2, seed=0)
    return prob, np.asarray(prob.X), np.asarray(prob.y).ravel()


def _records(limit, n: int = 120, width: float = 0.02) -> np.ndarray:
    """Rescaled record times: a uniform grid to 1.3 tau_P, denser around each jump."""
    T = float(limit.times[-1])
    grid = [np.linspace(T / n, 1.3 * T, n)]
    grid += [tj + width * T * np.linspace(-1, 1, 41) for tj in limit.times[1:]]
    return np.unique(np.concatenate(grid))


def _flow(prob, model, init, limit, h: float):
    tau = _records(limit)
    return rb.gradient_flow(
        prob, model, init, t_max=float(tau[-1] * h), n_save=2, save_at=tau * h,
        save_matrices=True, gtol=None,
    )  # fmt: skip


def _min_l1(X, y) -> np.ndarray:
    d = X.shape[1]
    res = linprog(np.ones(2 * d), A_eq=np.hstack([X, -X]), b_eq=y, bounds=(0, None))
    assert res.status == 0
    return res.x[:d] - res.x[d:]


@pytest.mark.parametrize("form", ["product", "two_branch"])
def test_depth2_flow_approaches_saddle_to_saddle(form):
    prob, X, y = _instance()
    limit = rb.saddle_to_saddle(X, y)
    assert limit.well_posed and limit.converged and len(limit.entering) == 3
    model = rb.DiagonalNetwork(X.shape[1], 2, form=form)
    two = form == "two_branch"
    dists, lags = [], []
    for alpha in (1e-4, 1e-8, 1e-16, 1e-30):
        h = rb.diagonal_time_scale(alpha, 2, two_branch=two)
        flow = _flow(prob, model, model.init(scale=alpha), limit, h)
        dists.append(limit_path_distance(limit, flow, alpha=alpha, two_branch=two))
        measured = measured_jump_times(limit, flow, alpha=alpha, two_branch=two)
        lags.append(np.max(np.abs(measured - limit.times[1:])) * np.log(1 / alpha))
    # the distance away from the jumps decreases with alpha, to a small value at 1e-30
    assert bool(np.all(np.diff(dists) < 0)), dists
    assert dists[-1] < 0.25 * dists[0], dists
    # jump times within C / log(1/alpha): product form lags by log(2)/2 ... ~0.7 / log(1/alpha)
    assert max(lags) < 1.5, lags
    # at 1.3 tau_P: the minimum-l1 interpolator (linear program), up to the coordinate that
    # left the support at the last jump, still decaying on the scale 1/log(1/alpha) (1.1e-2)
    assert np.max(np.abs(flow.final_matrix[:, 0] - _min_l1(X, y))) < 3e-2


def test_depth3_flow_approaches_zhao_limit():
    prob, X, y = _instance()
    theta = np.array([1.0, 1.0, 0.5])  # "zhao" init, smallest = 0.5: unique smallest layer
    limit = rb.diagonal_limit(X, y, 3, init=theta)
    assert limit.well_posed and limit.converged and len(limit.entering) == 3
    model = rb.DiagonalNetwork(X.shape[1], 3)
    dists, errs = [], []
    alphas = (1e-2, 1e-3, 1e-4)
    for alpha in alphas:
        h = rb.diagonal_time_scale(alpha, 3)
        assert h == pytest.approx(1 / alpha)
        flow = _flow(prob, model, model.init("zhao", scale=alpha), limit, h)
        dists.append(limit_path_distance(limit, flow, alpha=alpha))
        measured = measured_jump_times(limit, flow, alpha=alpha)
        errs.append(np.max(np.abs(measured - limit.times[1:])))
    assert bool(np.all(np.diff(dists) < 0)), dists
    assert dists[-1] < 1e-3, dists
    assert errs[-1] < 0.01 * limit.times[-1], errs
    assert errs[-1] <= errs[0], errs


@pytest.mark.slow
def test_diagonal_saddles_quick_reproduction(tmp_path):
    """The named experiment (quick size) through `rankbias run`: figures, JSON and report
    written; the limit end points solve their linear programs (independent HiGHS solves,
    here), the distances fall with alpha and every claim is reproduced."""
    from rankbias.experiments import resolve, run_reproduction
    from rankbias.reproduce.diagonal import weighted_l1_interpolator

    raw, text = resolve("diagonal-saddles")
    res = run_reproduction(raw, tmp_path / "run", quick=True, config_text=text)["results"]
    for name in ("depth2", "depth3", "distances"):
        assert (tmp_path / "run" / f"diagonal-saddles-{name}.png").is_file()
    assert (tmp_path / "run" / "report.md").read_text().count("reproduced") >= 5
    s = res["settings"]
    prob = rb.problems.sparse_recovery(s["n"], s["d"], s["k"], seed=s["seed"])
    X, y = np.asarray(prob.X), np.asarray(prob.y).ravel()
    np.testing.assert_allclose(weighted_l1_interpolator(X, y, 1.0, 1.0), _min_l1(X, y), atol=1e-8)
    assert res["limits"]["depth2"]["end_vs_lp"] < 1e-8
    assert res["limits"]["depth3"]["end_vs_lp"] < 1e-8
    for key in ("depth2", "depth3"):
        dist = [r["distance"] for r in res[key]]
        assert bool(np.all(np.diff(dist) < 0)), (key, dist)
    assert all(v["verdict"].startswith("reproduced") for v in res["verdicts"]), res["verdicts"]
