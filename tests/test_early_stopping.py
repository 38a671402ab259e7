"""Effective-rank early stopping: synthetic staircases and a noisy low-rank denoising instance."""

import warnings

import numpy as np
import pytest

import rankbias as rb
from rankbias import theory as T
from rankbias.early_stopping import denoise, detect_plateaus, early_stopping
from rankbias.trajectory import Trajectory


def _staircase(steps_at=(10.0, 20.0, 400.0), heights=(0.7, 0.5, 0.3), T_end=2000.0):
    """r(t) = 1 + sum_j h_j sigmoid(30 ln(t / t_j)) after an initial drop from 4."""
    t = np.geomspace(0.1, T_end, 600)
    r = 1.0 + sum(h / (1 + (t / s) ** -30.0) for s, h in zip(steps_at, heights, strict=True))
    r = r + 3.0 * np.exp(-t / 0.5)
    return t, r


def _traj(t, r, matrices=None):
    sv = np.stack([np.ones_like(r), r - 1.0], axis=1)  # ratio rank = 1 + sigma_2/sigma_1 = r
    return Trajectory(
        times=t,
        loss=np.zeros_like(t),
        grad_norm=np.zeros_like(t),
        singular_values=sv,
        final_params=(),
        final_matrix=np.zeros((2, 2)),
        steps=None,
        matrices=matrices,
    )


def test_detect_plateaus_on_staircase():
    t, r = _staircase()
    ps = detect_plateaus(r, t, tol=0.05)
    levels = [round(p.level, 1) for p in ps]
    assert levels == [1.0, 1.7, 2.2, 2.5]
    assert ps[-1].open and not any(p.open for p in ps[:-1])
    assert ps[2].t_start > 20 and ps[2].t_end < 400


def test_auto_picks_longest_closed_plateau_and_level_rule():
    t, r = _staircase()
    mats = np.zeros((t.size, 2, 2))
    mats[:, 0, 0] = np.arange(t.size)
    stop = early_stopping(_traj(t, r, mats), rule="auto")
    assert stop.level == 3 and 20 < stop.time < 400 and stop.step is None
    assert (
        stop.matrix is not None and stop.matrix[0, 0] == stop.index
    )  # the saved matrix at the chosen record
    stop2 = early_stopping(_traj(t, r), rule="plateau", level=2)
    assert stop2.level == 2 and 10 < stop2.time < 20 and stop2.matrix is None
    # geometric middle of the plateau's time interval
    p = stop.plateau
    assert stop.time == pytest.approx(np.sqrt(p.t_start * p.t_end), rel=0.05)


def test_bad_arguments():
    t, r = _staircase()
    tr = _traj(t, r)
    with pytest.raises(ValueError, match="rule"):
        early_stopping(tr, rule="nope")
    with pytest.raises(ValueError, match="level"):
        early_stopping(tr, rule="plateau")
    with pytest.raises(ValueError, match="level"):
        early_stopping(tr, rule="plateau", level=9)
    with pytest.raises(ValueError, match="trajectory"):
        early_stopping(np.zeros(3))
    with pytest.raises(ValueError, match="no effective-rank plateau"):
        early_stopping(_traj(t, np.linspace(4, 1, t.size) + np.linspace(0, 3, t.size) ** 2))


def _instance(n=20, rank=3, sigma=0.1, seed=0):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    W = (Q[:, :rank] * np.array([10.0, 7.0, 5.0])) @ Q[:, :rank].T
    G = rng.standard_normal((n, n))
    return W, W + sigma * (G + G.T) / np.sqrt(2)


def test_denoising_early_stopping_beats_final_iterate_inside_predicted_plateau():
    W, Y = _instance()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", T.StabilityWarning)
        res = denoise(W, Y, 3, alpha=0.1, lr=0.01, steps=30000)
        # Y is symmetric and the init is alpha I, so the decoupled recursion on eig(Y) is exact.
        pred = T.identical_init(np.linalg.eigvalsh(Y)[::-1], 3, 0.1, 0.01, 30000).plateaus(0.05)
    plateau3 = next(p for p in pred if p.L == 3)
    assert res.stop.step in plateau3
    assert res.stopped < 0.6 * res.final
    assert res.stopped <= res.svd * 1.02 and res.oracle <= res.stopped
    np.testing.assert_allclose(np.linalg.norm(res.stop.matrix - W) / np.linalg.norm(W), res.stopped)
    # the stop is the rank-3 estimate: three learned eigen-components
    assert res.stop.matrix is not None
    ev = np.linalg.eigvalsh(res.stop.matrix)[::-1]
    assert ev[2] > 4.0 and ev[3] < 0.2


def test_gradient_flow_trajectory_is_accepted():
    V = T.paper_basis()
    model = rb.DeepFactorization((4, 4), depth=3)
    tr = rb.gradient_flow(
        rb.MatrixEstimation((V * np.array([10.0, 6.0, 1.5, 0.0])) @ V.T),
        model,
        model.init("identity", scale=0.1, per_factor=True),
        t_max=25.0,
        n_save=200,
        save_matrices=True,
        gtol=None,
        rtol=1e-6,
    )
    stop = early_stopping(tr, rule="auto")
    assert stop.step is None and isinstance(stop.interval[0], float)
    assert stop.level == 2 and stop.rank == pytest.approx(1.6, abs=0.05)
    assert stop.matrix is not None
    assert 1.5 < stop.interval[0] < stop.time < stop.interval[1] < 7.0 and stop.matrix.shape == (
        4,
        4,
    )
