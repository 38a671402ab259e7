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
    # ratio rank (sigma_1 + sigma_2 + sigma_3) / sigma_1 = r for 1 <= r <= 3
    sv = np.stack([np.ones_like(r), np.clip(r - 1.0, 0, 1), np.clip(r - 2.0, 0, 1)], axis=1)
    return Trajectory(
        times=t,
        loss=np.zeros_like(t),
        grad_norm=np.zeros_like(t),
        singular_values=sv,
        final_params=(),
        final_matrix=np.zeros((3, 3)),
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
    mats = np.zeros((t.size, 3, 3))
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
    # a V in log time, slope 3: every band of half-width 0.05 lasts 0.033 < min_log_duration
    tv = np.geomspace(1.0, 2.0, 400)
    with pytest.raises(ValueError, match="no effective-rank plateau"):
        early_stopping(_traj(tv, 1.0 + 3.0 * np.abs(np.log(tv) - np.log(2.0) / 2)))


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


# --------------------------------------------------------------- independence of the record grid
@pytest.mark.parametrize("sigma", [0.3, 0.1])
def test_stop_does_not_depend_on_record_density(sigma):
    """The issue's runs: n_save 200/300/400/600 chose plateaus 5/6/3/6 (errors
    0.369/0.369/0.256/0.440) at sigma = 0.3, and 0.125 against 0.084 at sigma = 0.1."""
    W, Y = _instance(sigma=sigma)
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", T.StabilityWarning)
        for n_save in (200, 300, 400, 600):
            runs[n_save] = denoise(W, Y, 3, alpha=0.1, lr=0.01, steps=30000, n_save=n_save)
    ref = runs[600]
    for res in runs.values():
        # the same stop and the same plateaus, by effective rank (tolerances: the lattice step
        # 0.005 in ln t and the records' spacing, 0.05 in ln t at n_save = 200)
        assert res.stopped == pytest.approx(ref.stopped, abs=1e-3)
        assert np.log(res.stop.time / ref.stop.time) == pytest.approx(0.0, abs=0.06)
        assert res.stop.plateau_rank == pytest.approx(ref.stop.plateau_rank, abs=0.005)
        assert res.stop.plateau.log_duration == pytest.approx(
            ref.stop.plateau.log_duration, abs=0.05
        )
        # every plateau clearly longer than min_log_duration (0.2) is found on both grids; one
        # within ~0.02 of it (sigma = 0.1: r = 1.72, 0.20-0.22) may be counted on one grid only,
        # which renumbers the later ones: plateaus are identified by rank, not by number L
        for a, b in ((res, ref), (ref, res)):
            ranks = [p.rank for p in b.stop.plateaus]
            for p in a.stop.plateaus:
                if p.log_duration >= 0.25:
                    assert min(abs(q - p.rank) for q in ranks) < 0.015
    if sigma == 0.1:
        # the rank-3 plateau r(W*_3) = 1 + 7/10 + 5/10, as good as the SVD at the true rank
        assert ref.stop.plateau_rank == pytest.approx(2.2, abs=0.02)
        assert ref.stopped <= ref.svd * 1.02


def test_plateaus_are_a_property_of_the_curve():
    """A staircase sampled on four log grids (with shifted offsets) gives the same plateaus;
    their ends are where the sigmoids leave the band of half-width tol around each level."""
    ends = []
    for n, t0 in ((250, 0.1), (333, 0.107), (480, 0.093), (900, 0.1)):
        t = np.geomspace(t0, 2000.0, n)
        r = 1.0 + sum(
            h / (1 + (t / s) ** -30.0) for s, h in ((10.0, 0.7), (20.0, 0.5), (400.0, 0.3))
        )
        ps = detect_plateaus(r + 3.0 * np.exp(-t / 0.5), t, tol=0.05)
        assert [round(p.rank, 1) for p in ps] == [1.0, 1.7, 2.2, 2.5]
        ends.append([(np.log(p.t_start), np.log(p.t_end)) for p in ps[1:3]])
    # oracle: 0.7 + 0.5 sigmoid(30 ln(t/20)) leaves [1.7 - 0.05, 1.7 + 0.05] at
    # ln t = ln 20 + ln(0.05 / 0.45) / 30, and so on
    ln_exit = np.log(20.0) + np.log(0.05 / 0.45) / 30
    ln_entry = np.log(20.0) + np.log(0.45 / 0.05) / 30
    # tolerance 0.02: the lattice step (0.005) and where in the flat optimum the longest band
    # centres (an offset of 0.015 between the two ends lengthens it by < 1e-3)
    for e in ends:
        assert e[0][1] == pytest.approx(ln_exit, abs=0.02)
        assert e[1][0] == pytest.approx(ln_entry, abs=0.02)
        np.testing.assert_allclose(e, ends[-1], atol=0.02)


def test_auto_tie_between_plateaus_of_about_equal_length_goes_to_the_earliest():
    t = np.geomspace(0.5, 5000.0, 1500)

    def stairs(t_mid):  # closed plateaus r = 1.5 on (2, t_mid) and r = 2.0 on (t_mid, 700)
        steps = ((2.0, 0.5), (t_mid, 0.5), (700.0, 0.4))
        r = 1.0 + sum(h / (1 + (t / s) ** -40.0) for s, h in steps)
        return _traj(t, r + 2.0 * np.exp(-t / 0.1))

    # r = 2.0 lasts ln(700/35) = 3.0, r = 1.5 ln(35/2) = 2.86 (95 %): a tie, the earliest wins
    tr = stairs(35.0)
    stop = early_stopping(tr)
    assert stop.plateau_rank == pytest.approx(1.5, abs=0.01) and stop.level == 2
    # the band ends where each step is 0.05 from its level: ln(0.45 / 0.05) / 40 inside
    edge = np.log(0.45 / 0.05) / 40
    assert stop.plateau.log_duration == pytest.approx(np.log(35 / 2) - 2 * edge, abs=0.01)
    # without a margin the strictly longest wins
    assert early_stopping(tr, tie_margin=0.0).plateau_rank == pytest.approx(2.0, abs=0.01)
    # ln(700/10) = 4.2 against ln(10/2) = 1.6: no tie, the longest wins
    assert early_stopping(stairs(10.0)).plateau_rank == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError, match=r"`tie_margin` must be in \[0, 1\).*got 1.0"):
        early_stopping(tr, tie_margin=1.0)


def test_records_too_sparse_warn_and_consecutive_steps_pass():
    from rankbias.early_stopping import SparseRecordsWarning

    t, r = _staircase()
    keep = np.arange(0, t.size, 12)  # ln-gap 0.2 > min_log_duration / min_records = 0.0667
    with pytest.warns(SparseRecordsWarning, match=r"too sparse.*min_log_duration.*n_save >= \d+"):
        coarse = early_stopping(_traj(t[keep], r[keep]))
    # still a stop, on the same plateau as the dense records (the staircase's are long)
    assert coarse.plateau_rank == pytest.approx(early_stopping(_traj(t, r)).plateau_rank, abs=0.05)
    with pytest.warns(SparseRecordsWarning, match="too sparse"):
        detect_plateaus(r[keep], t[keep])
    # a lower resolution claim passes on the same records, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert detect_plateaus(r[keep], t[keep], min_log_duration=0.7)
        # GD records of consecutive steps are the solver's own steps: never too sparse
        steps = np.arange(0, 41)
        rr = np.where(steps < 10, 1.0, 1.5)
        ranks = [p.rank for p in detect_plateaus(rr, 0.1 * steps, steps=steps)]
        assert ranks == pytest.approx([1.0, 1.5], abs=0.01)
    with pytest.warns(SparseRecordsWarning, match="too sparse"):
        detect_plateaus(rr, 0.1 * steps)


def test_a_record_at_t0_is_not_judged_for_density():
    # a flow whose r rises from its first record (argmin at record 0, t = 0): the gap from
    # t = 0 (standing at t_1 / 2, ln 2 = 0.69) is no record density
    t = np.concatenate([[0.0], np.geomspace(1e-2, 1e6, 4000)])
    u = np.log(np.maximum(t, 5e-3))
    r = 1.0 + 1.0 / (1.0 + np.exp(-(u - 5.0) * 12.0))  # a sharp 1 -> 2 around ln t = 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ranks = [p.rank for p in detect_plateaus(r, t)]
    assert ranks == pytest.approx([1.0, 2.0], abs=0.06)


def test_plateaus_are_reported_by_effective_rank():
    t, r = _staircase()
    stop = early_stopping(_traj(t, r))
    assert stop.plateau.rank == stop.plateau.level == stop.plateau_rank
    assert stop.plateau_rank == pytest.approx(2.2, abs=0.01)  # the plateau between t = 20 and 400
    text = repr(stop)
    assert "plateau r = 2.200" in text and "L = 3 at r = 2.2" in text
    assert "at r = [1.0" in text


def test_band_ends_match_a_direct_scan():
    from rankbias.early_stopping import _band_ends

    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 17, 64, 257):
        r = np.cumsum(rng.standard_normal(n)) * 0.05
        direct = []
        for k in range(n):
            j = k
            while j + 1 < n and abs(r[j + 1] - r[k]) <= 0.1:
                j += 1
            direct.append(j)
        np.testing.assert_array_equal(_band_ends(r, 0.1), direct)


def test_detect_plateaus_rejects_bad_records_with_the_value():
    t, r = _staircase()
    with pytest.raises(ValueError, match=r"`times` must be non-decreasing.*record 5.*sorted"):
        detect_plateaus(r, np.concatenate([t[:6], t[:5] / 10, t[11:]]))
    r_nan = r.copy()
    r_nan[300:] = np.nan
    with pytest.raises(ValueError, match=r"`r` must be finite.*got nan at record 300.*300 non"):
        detect_plateaus(r_nan, t)
    with pytest.raises(ValueError, match=r"`steps` must have the shape of `r` \(600,\).*\(3,\)"):
        detect_plateaus(r, t, steps=np.arange(3))
    with pytest.raises(ValueError, match="`min_records` must be >= 1, got 0"):
        detect_plateaus(r, t, min_records=0)
