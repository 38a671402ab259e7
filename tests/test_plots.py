"""Figures: one run (Trajectory.plot, plots.plot on a Trajectory), sweep statistics (median and
quantile band by default, mean on request, thin per-seed lines), GLRL and comparison figures.
The drawn line data are checked against the arrays they come from."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import rankbias as rb  # noqa: E402
from rankbias import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def runs():
    M = rb.random_low_rank((6, 6), 2, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=0, symmetric=True)
    model = rb.DeepFactorization((6, 6), 2)
    p0 = model.init("gaussian", scale=1e-3, seed=0)
    gd = rb.gradient_descent(prob, model, p0, 0.1, 300, n_save=60)
    gf = rb.gradient_flow(prob, model, p0, t_max=1e4)
    return gf, gd


def _center_line(ax):
    """The summary line: the thickest one."""
    return max(ax.get_lines(), key=lambda ln: ln.get_linewidth())


# ---------------------------------------------------------------- one run
@pytest.mark.parametrize(
    "kind, attr, logy",
    [
        ("loss", "loss", "log"),
        ("grad_norm", "grad_norm", "log"),
        ("effective_rank", None, "linear"),
    ],
)
def test_trajectory_plot_draws_the_arrays_on_log_time(runs, kind, attr, logy):
    for tr in runs:
        ax = tr.plot(kind)
        (line,) = ax.get_lines()
        x = tr.times if tr.steps is None else tr.steps.astype(float)
        keep = x > 0
        y = getattr(tr, attr) if attr else tr.effective_rank("ratio")
        np.testing.assert_array_equal(line.get_xdata(), x[keep])
        np.testing.assert_array_equal(line.get_ydata(), y[keep])
        assert ax.get_xscale() == "log" and ax.get_yscale() == logy
        assert ax.get_xlabel() == ("time t" if tr.steps is None else "step")
        assert ax.get_ylabel() and tr.status in ax.get_title()


def test_trajectory_plot_singular_values_top_k_and_given_axes(runs):
    gf, _ = runs
    fig, ax = plt.subplots()
    out = gf.plot("singular-values", ax=ax, top_k=3)
    assert out is ax and len(ax.get_lines()) == 3
    keep = gf.times > 0
    for j, line in enumerate(ax.get_lines()):
        np.testing.assert_array_equal(line.get_ydata(), gf.singular_values[keep, j])
        assert line.get_label() == f"sigma_{j + 1}"
    assert len(gf.plot("singular_values", top_k=None).get_lines()) == 6
    ax = gf.plot("effective_rank", rank_kind="entropy")
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), gf.effective_rank("entropy")[keep])
    assert "entropy" in ax.get_ylabel()


def test_trajectory_plot_rejects_bad_arguments(runs):
    gf, _ = runs
    with pytest.raises(ValueError, match="unknown `kind` 'sv'"):
        gf.plot("sv")
    with pytest.raises(ValueError, match="top_k"):
        gf.plot("singular_values", top_k=0)


def test_plots_plot_accepts_a_trajectory(runs, tmp_path):
    gf, gd = runs
    paths = plots.plot(gf, "loss", tmp_path)
    assert [p.name for p in paths] == ["loss.png", "loss.svg"] and all(
        p.stat().st_size for p in paths
    )
    assert sorted(plots.plot_all(gd, tmp_path)) == sorted(plots.TRAJECTORY_KINDS)
    with pytest.raises(ValueError, match="not drawn for one Trajectory"):
        plots.plot(gf, "distance-vs-alpha", tmp_path)
    with pytest.raises(TypeError, match="xarray Dataset .* or a rankbias Trajectory, got list"):
        plots.plot([gf], "loss", tmp_path)


# ---------------------------------------------------------------- sweep statistics
def _sweep(n_seeds=5):
    """A dataset shaped like ``store.load``'s: alpha x seed x time, two seeds far off."""
    rng = np.random.default_rng(0)
    t = np.concatenate([[0.0], np.geomspace(1e-2, 1e3, 30)])
    alphas = [1e-2, 1e-4]
    base = np.exp(-t / 100)[None, None, :] * np.array([1.0, 0.5])[:, None, None]
    noise = np.exp(rng.normal(0, 0.1, (2, n_seeds, t.size)))
    loss = base * noise
    loss[:, :2] *= 1e4  # heavy tail: the mean follows the outliers, the median does not
    dist = np.exp(rng.normal(0, 0.2, (2, n_seeds))) * 1e-5
    dist[:, :2] = [[11.0, 30.0], [9.0, 25.0]]
    return xr.Dataset(
        {
            "loss": (("alpha", "seed", "time"), loss),
            "glrl_distance": (("alpha", "seed"), dist),
            "glrl_symmetric": (("alpha", "seed"), np.zeros((2, n_seeds))),
            "done": (("alpha", "seed"), np.ones((2, n_seeds), bool)),
        },
        coords={"alpha": alphas, "seed": list(range(n_seeds)), "time": t},
    )


def test_sweep_figures_default_to_the_median_with_a_quantile_band():
    ds = _sweep()
    fig = plots._figure(ds, "loss", "median")
    ax = fig.axes[0]
    keep = ds["time"].values > 0
    centers = [ln for ln in ax.get_lines() if ln.get_linewidth() > 1]
    thin = [ln for ln in ax.get_lines() if ln.get_linewidth() < 1]
    assert len(centers) == 2 and len(thin) == 2 * 5  # every seed drawn (5 <= MAX_THIN)
    for i, line in enumerate(centers):
        np.testing.assert_allclose(
            np.asarray(line.get_ydata()), np.median(ds["loss"].values[i], 0)[keep]
        )
    band = np.asarray(ax.collections[0].get_paths()[0].vertices)[:, 1]
    q25, q75 = np.quantile(ds["loss"].values[0], [0.25, 0.75], axis=0)
    assert np.allclose(band.min(), q25[keep].min()) and np.allclose(band.max(), q75[keep].max())
    assert "median" in ax.get_title() and "25-75%" in ax.get_title() and "5 runs" in ax.get_title()
    mean = plots._figure(ds, "loss", "mean").axes[0]
    line = [ln for ln in mean.get_lines() if ln.get_linewidth() > 1][0]
    np.testing.assert_allclose(np.asarray(line.get_ydata()), ds["loss"].values[0].mean(0)[keep])
    assert "mean" in mean.get_title()
    with pytest.raises(ValueError, match="`stat` must be one of median, mean"):
        plots.plot(ds, "loss", "/tmp", stat="mode")


def test_many_seeds_are_not_drawn_one_by_one():
    ax = plots._figure(_sweep(n_seeds=12), "loss", "median").axes[0]
    assert all(ln.get_linewidth() > 1 for ln in ax.get_lines())


def test_distance_figure_median_and_glrl_variant_label():
    ds = _sweep()
    ax = plots._figure(ds, "distance-vs-alpha", "median").axes[0]
    line = _center_line(ax)
    order = np.argsort(ds["alpha"].values)  # drawn in increasing alpha
    np.testing.assert_array_equal(line.get_xdata(), ds["alpha"].values[order])
    np.testing.assert_allclose(line.get_ydata(), np.median(ds["glrl_distance"].values, 1)[order])
    assert np.median(ds["glrl_distance"].values, 1).max() < 1e-3  # median 1e-5, mean ~ 8
    assert "asymmetric GLRL" in ax.get_title() and "median" in ax.get_title()
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert (
        plots.glrl_variant_label(ds.assign(glrl_symmetric=ds["glrl_symmetric"] + 1)) == "PSD GLRL"
    )
    assert "not recorded" in plots.glrl_variant_label(ds.drop_vars("glrl_symmetric"))


def test_cli_plot_stat(monkeypatch, tmp_path, capsys):
    from rankbias import cli, store

    seen = []
    monkeypatch.setattr(store, "load", lambda d: _sweep())
    real = plots.plot

    def spy(ds, name, out, *, stat="median"):
        seen.append(stat)
        return real(ds, name, out, stat=stat)

    monkeypatch.setattr(plots, "plot", spy)
    assert cli.main(["plot", str(tmp_path), "--figure", "loss", "--stat", "mean"]) == 0
    assert cli.main(["plot", str(tmp_path), "--figure", "loss"]) == 0
    assert seen == ["mean", "median"]
    assert (tmp_path / "figures" / "loss.png").exists()
    with pytest.raises(SystemExit) as e:
        cli.main(["plot", str(tmp_path), "--stat", "mode"])
    assert e.value.code == 2


# ---------------------------------------------------------------- GLRL figures
@pytest.fixture(scope="module")
def glrl_res():
    Y = rb.matrix_from_spectrum([3.0, 2.0, -1.0], (3, 3), seed=1, symmetric=True)
    return rb.glrl(rb.MatrixEstimation(Y))


def test_glrl_plot_staircase_and_levels(glrl_res):
    ax_l, ax_s = glrl_res.plot()
    loss = [ln for ln in ax_l.get_lines() if ln.get_linestyle() == "-"]
    assert len(loss) == glrl_res.rank
    t0 = 0.0
    for line, p in zip(loss, glrl_res.phases, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), p.trajectory.times + t0)
        np.testing.assert_array_equal(line.get_ydata(), p.trajectory.loss)
        t0 = float(p.trajectory.times[-1] + t0)
    levels = sorted(ln.get_ydata()[0] for ln in ax_l.get_lines() if ln.get_linestyle() == "--")
    np.testing.assert_allclose(levels, sorted(glrl_res.levels))
    assert ax_l.get_yscale() == "log" and "staircase" in ax_l.get_title()
    assert {ln.get_label() for ln in ax_s.get_lines()} >= {"sigma_1", "sigma_2"}


def test_comparison_plot_fit_and_prediction(glrl_res):
    from rankbias.compare import GLRLComparison, fit_power_law

    alphas = [1e-2, 1e-4, 1e-6, 1e-8]
    c_true = 0.3
    end = np.array([[2 * a**c_true, 3 * a**c_true] for a in alphas])
    mid = end[:, :, None] * 0.5
    fit = fit_power_law(alphas, np.median(end, 1))
    fit.update(prediction=0.25, phase1_at_mid=fit_power_law(alphas, np.median(mid[:, :, 0], 1)))
    status = np.full(end.shape, "steady_state", dtype=object)
    status[0, 1] = "t_max"
    cmp = GLRLComparison(
        alphas=alphas,
        seeds=[0, 1],
        glrl=glrl_res,
        trajectories={},
        distances=dict(end=end, phase=mid, phase_at_mid=mid),
        shifts=mid * 0,
        fit=fit,
        info=dict(depth=2, glrl_variant="asymmetric"),
        status=status,
        t_final=np.ones(end.shape),
    )
    assert fit["c"] == pytest.approx(c_true)
    ax = cmp.plot()
    labels = {ln.get_label(): ln for ln in ax.get_lines()}
    fitline = labels[f"fit end: alpha^{fit['c']:.3f}"]
    x, y = np.asarray(fitline.get_xdata()), np.asarray(fitline.get_ydata())
    assert np.log(y[-1] / y[0]) / np.log(x[-1] / x[0]) == pytest.approx(c_true)
    pred = labels["predicted slope (1-lam2/lam1)/2 = 0.250"]
    x, y = np.asarray(pred.get_xdata()), np.asarray(pred.get_ydata())
    assert np.log(y[-1] / y[0]) / np.log(x[-1] / x[0]) == pytest.approx(0.25)
    np.testing.assert_allclose(
        np.asarray(labels["end, median over seeds"].get_ydata()),
        np.median(end, 1)[np.argsort(alphas)],
    )
    nc = labels["end (NOT certified)"]
    assert list(np.asarray(nc.get_xdata())) == [1e-2] and list(np.asarray(nc.get_ydata())) == [
        end[0, 1]
    ]
    assert "asymmetric GLRL" in ax.get_title()
    text = repr(cmp)
    assert len(text.splitlines()) <= 15 and "7/8 runs" in text and "asymmetric" in text
    assert cmp.table[0]["status"] == ["steady_state", "t_max"] and cmp.table[0]["certified"] == 1
    assert len(cmp.runs) == 8 and cmp.runs[1]["certified"] is False


def _marks(ax) -> list[tuple[float, float]]:
    """The points drawn with an ``x`` marker."""
    return [
        (float(x), float(y))
        for ln in ax.get_lines()
        if ln.get_marker() == "x"
        for x, y in zip(ln.get_xdata(), ln.get_ydata(), strict=True)
    ]


def test_runs_that_did_not_end_well_are_marked_and_counted():
    ds = _sweep()
    loss = ds["loss"].values.copy()
    loss[1, 3, 20:] = np.nan  # cut short by max_steps: NaN after its last save
    status = np.full((2, 5), "steady_state", dtype=object)
    status[0, 2], status[1, 3], status[1, 4] = "t_max", "max_steps", ""  # "": not done
    ds = ds.assign(loss=(("alpha", "seed", "time"), loss), status=(("alpha", "seed"), status))
    fig = plots._figure(ds, "loss", "median")
    t = ds["time"].values
    # an x where each such run stopped: its last finite point (the run not done is not one)
    assert sorted(_marks(fig.axes[0])) == sorted([(t[-1], loss[0, 2, -1]), (t[19], loss[1, 3, 19])])
    notes = [x.get_text() for x in fig.texts]
    assert "x: a run that did not end well (2 of 9 runs: 1 max_steps, 1 t_max)" in notes
    fig = plots._figure(ds, "distance-vs-alpha", "median")
    d = ds["glrl_distance"].values
    assert sorted(_marks(fig.axes[0])) == sorted([(1e-2, d[0, 2]), (1e-4, d[1, 3])])
    assert any("2 of 9 runs" in x.get_text() for x in fig.texts)
    # without statuses (older datasets, one Trajectory): no marks, no footnote
    fig = plots._figure(ds.drop_vars("status"), "loss", "median")
    assert not _marks(fig.axes[0]) and not fig.texts
