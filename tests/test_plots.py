"""Figures: one run (Trajectory.plot, plots.plot on a Trajectory), sweep statistics (median and
quantile band by default, mean on request, thin per-seed lines), GLRL and comparison figures.
The drawn line data are checked against the arrays they come from."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

import rankbias as rb  # noqa: E402
from rankbias import plots  # noqa: E402
from rankbias.plots.sweep import _figure  # noqa: E402
from rankbias.status import describe, ended_well  # noqa: E402


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
    "kind, attr, logy, title",
    [
        ("loss", "loss", "log", "Loss f(W(t))"),
        ("grad_norm", "grad_norm", "log", "Gradient norm"),
        ("effective_rank", None, "linear", "Effective rank (ratio) of W(t)"),
    ],
)
def test_trajectory_plot_draws_the_arrays_on_log_time(runs, kind, attr, logy, title):
    for tr in runs:
        ax = tr.plot(kind)
        line, *held = ax.get_lines()
        assert all(h.get_label() == plots.HELD_LABEL for h in held)  # one curve: one held
        x = tr.times if tr.steps is None else tr.steps.astype(float)
        keep = x > 0
        y = getattr(tr, attr) if attr else tr.effective_rank("ratio")
        np.testing.assert_array_equal(line.get_xdata(), x[keep])
        np.testing.assert_array_equal(line.get_ydata(), y[keep])
        assert ax.get_xscale() == "log" and ax.get_yscale() == logy
        assert ax.get_xlabel() == ("time t" if tr.steps is None else "step")
        assert (
            ax.get_ylabel() and ax.get_title() == f"{title}, {tr.info['method'].replace('_', ' ')}"
        )
        assert "status" not in ax.get_title()
        notes = [t.get_text() for t in [*ax.texts, *ax.figure.texts]]
        if ended_well(tr.status):
            assert not notes  # a run that ended well gets no note
        else:  # e.g. GD still descending at its last step: not_stationary, said on the figure
            assert notes == [f"run {tr.status}: {describe(tr.status)}"]


def test_trajectory_plot_singular_values_top_k_and_given_axes(runs):
    gf, _ = runs
    fig, ax = plt.subplots()
    out = gf.plot("singular-values", ax=ax, top_k=3)
    sigmas = [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("sigma_")]
    assert out is ax and len(sigmas) == 3
    keep = gf.times > 0
    sv = gf.singular_values[keep]
    floor = np.finfo(np.float64).eps * sv[:, :1] * 6  # eps * sigma_1 * max(m, n), 6x6
    for j, line in enumerate(sigmas):
        # values below the resolution floor are not drawn in color
        np.testing.assert_array_equal(
            line.get_ydata(), np.where(sv[:, j] >= floor[:, 0], sv[:, j], np.nan)
        )
        assert line.get_label() == f"sigma_{j + 1}"
    all_sv = gf.plot("singular_values", top_k=None).get_lines()
    assert len([ln for ln in all_sv if ln.get_label().startswith("sigma_")]) == 6
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
    fig = _figure(ds, "loss", "median")
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
    # the statistic is named in the footnote (one-line panel titles)
    (foot,) = [x.get_text() for x in fig.texts]
    assert "median" in foot and "25-75%" in foot and "5 runs" in foot
    assert ax.get_title() == "Loss f(W(t))"
    mean = _figure(ds, "loss", "mean")
    line = [ln for ln in mean.axes[0].get_lines() if ln.get_linewidth() > 1][0]
    np.testing.assert_allclose(np.asarray(line.get_ydata()), ds["loss"].values[0].mean(0)[keep])
    assert "mean" in mean.texts[0].get_text()
    with pytest.raises(ValueError, match="`stat` must be one of median, mean"):
        plots.plot(ds, "loss", "/tmp", stat="mode")


def test_many_seeds_are_not_drawn_one_by_one():
    ax = _figure(_sweep(n_seeds=12), "loss", "median").axes[0]
    assert all(ln.get_linewidth() > 1 for ln in ax.get_lines())


def test_distance_figure_median_and_glrl_variant_label():
    ds = _sweep()
    fig = _figure(ds, "distance-vs-alpha", "median")
    ax = fig.axes[0]
    line = _center_line(ax)
    order = np.argsort(ds["alpha"].values)  # drawn in increasing alpha
    np.testing.assert_array_equal(line.get_xdata(), ds["alpha"].values[order])
    np.testing.assert_allclose(line.get_ydata(), np.median(ds["glrl_distance"].values, 1)[order])
    assert np.median(ds["glrl_distance"].values, 1).max() < 1e-3  # median 1e-5, mean ~ 8
    assert "asymmetric GLRL" in ax.get_title() and "median" in fig.texts[0].get_text()
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


def _comparison(glrl_res):
    """A GLRLComparison with distances ``2 alpha^0.3`` and ``3 alpha^0.3`` (two seeds)."""
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
    return cmp


def test_comparison_plot_fit_and_prediction(glrl_res):
    cmp = _comparison(glrl_res)
    alphas, end, fit, c_true = cmp.alphas, cmp.distances["end"], cmp.fit, 0.3
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
    fig = _figure(ds, "loss", "median")
    t = ds["time"].values
    # an x where each such run stopped: its last finite point (the run not done is not one)
    assert sorted(_marks(fig.axes[0])) == sorted([(t[-1], loss[0, 2, -1]), (t[19], loss[1, 3, 19])])
    notes = [line for x in fig.texts for line in x.get_text().splitlines()]
    assert "x: a run that did not end well (2 of 9 runs: 1 max_steps, 1 t_max)" in notes
    fig = _figure(ds, "distance-vs-alpha", "median")
    d = ds["glrl_distance"].values
    assert sorted(_marks(fig.axes[0])) == sorted([(1e-2, d[0, 2]), (1e-4, d[1, 3])])
    assert any("2 of 9 runs" in x.get_text() for x in fig.texts)
    # without statuses (older datasets, one Trajectory): no marks, no footnote line on them
    fig = _figure(ds.drop_vars("status"), "loss", "median")
    assert not _marks(fig.axes[0]) and "did not end well" not in fig.texts[0].get_text()


# ---------------------------------------------------------------- slide-ready layout
def _full_sweep():
    """A dataset shaped like ``store.load``'s quick-demo: depth x alpha x seed x time (x sv),
    with statuses (one run cut short at t_max)."""
    t = np.concatenate([[0.0], np.geomspace(1e-2, 1e4, 40)])
    alphas, depths, seeds = [1e-2, 1e-4, 1e-6], [2, 3], [0, 1]
    shape = (2, 3, 2, t.size)
    logt = np.log10(np.maximum(t, 1e-3))[None, None, None, :]
    lag = np.array([0.0, 1.0, 2.0])[None, :, None, None] + np.array([0.0, 0.5])[:, None, None, None]
    a = np.asarray(alphas)[None, :, None, None]
    sv1 = np.broadcast_to(a + 1 / (1 + np.exp(-6 * (logt - lag))), shape)
    sv = np.stack([sv1 * s for s in (1.0, 0.3, 0.1, 0.01)], -1)
    loss = 1.0 / (1 + sv1**2)
    status = np.full(shape[:3], "steady_state", dtype=object)
    status[1, 2, 1] = "t_max"
    dims = ("depth", "alpha", "seed")
    return xr.Dataset(
        {
            "loss": (dims + ("time",), loss),
            "singular_values": (dims + ("time", "sv"), sv),
            "rank_ratio": (dims + ("time",), 1 + sv[..., 1] / sv[..., 0]),
            "distance_to_truth": (dims, np.exp(np.log(a[..., 0]) / 3) * np.ones(shape[:3])),
            "done": (dims, np.ones(shape[:3], bool)),
            "status": (dims, status),
        },
        coords={"depth": depths, "alpha": alphas, "seed": seeds, "time": t, "sv": [1, 2, 3, 4]},
    )


def _texts(fig) -> list:
    """Every visible, non-empty text drawn in ``fig``: figure texts, titles, axis labels,
    the tick labels drawn (inside the view), annotations, legend texts and titles."""
    fig.canvas.draw()
    arts = list(fig.texts)
    legends = list(fig.legends)
    for ax in fig.axes:
        arts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        arts += [ax.xaxis.offsetText, ax.yaxis.offsetText]
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis._update_ticks():  # only the ticks drawn
                arts += [tick.label1, tick.label2] if tick.label1.get_visible() else [tick.label2]
        arts += list(ax.texts)
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for leg in legends:
        arts += list(leg.get_texts()) + [leg.get_title()]
    return [a for a in arts if a.get_visible() and a.get_text().strip()]


def _layout_problems(fig) -> list[str]:
    """Pairs of text boxes that overlap (by more than 1 px both ways) and boxes that leave
    the figure, at the figure's default size and dpi."""
    r = fig.canvas.get_renderer()
    boxes = [(a.get_text(), a.get_window_extent(r)) for a in _texts(fig)]
    W, H = fig.bbox.width, fig.bbox.height
    bad = []
    for i, (ta, a) in enumerate(boxes):
        if a.x0 < -1 or a.y0 < -1 or a.x1 > W + 1 or a.y1 > H + 1:
            bad.append(f"{ta!r} leaves the figure")
        for tb, b in boxes[i + 1 :]:
            if min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1:
                bad.append(f"{ta!r} overlaps {tb!r}")
    return bad


def _close_levels_glrl():
    # levels 6.05, 1.55, 1.5: f(W_1) and f(W_2) lie 2 % apart on the log axis
    Y = rb.matrix_from_spectrum([3.0, 0.3, -1.0, -1.0, -1.0], (5, 5), seed=0, symmetric=True)
    return rb.glrl(rb.MatrixEstimation(Y))


def _plot_kinds():
    """(name, draw) for every figure kind rankbias draws."""
    out = []
    for k in plots.TRAJECTORY_KINDS:
        out.append((f"flow-{k}", lambda runs, g, k=k: runs[0].plot(k).figure))
        out.append((f"gd-{k}", lambda runs, g, k=k: runs[1].plot(k).figure))
    out.append(
        (
            "flow-t_max",
            lambda runs, g: _with_status(runs[0], "t_max").plot("singular_values").figure,
        )
    )
    out.append(("glrl", lambda runs, g: g.plot()[0].figure))
    out.append(("glrl-close-levels", lambda runs, g: _close_levels_glrl().plot()[0].figure))
    out.append(("comparison", lambda runs, g: _comparison(g).plot().figure))
    for name in plots.FIGURES:
        out.append((f"sweep-{name}", lambda runs, g, n=name: _figure(_full_sweep(), n, "median")))
    return out


def _with_status(tr, status):
    import dataclasses

    return dataclasses.replace(tr, info={**tr.info, "status": status})


@pytest.mark.parametrize("name, draw", _plot_kinds(), ids=[n for n, _ in _plot_kinds()])
def test_every_figure_has_no_colliding_or_cut_text(runs, glrl_res, name, draw):
    fig = draw(runs, glrl_res)
    assert _texts(fig), "no text collected"
    assert _layout_problems(fig) == []


def _arriving(status: str, t_end: float = 300.0):
    """A synthetic flow on a 4x4 W: sigma_1, sigma_2 rise from 1e-3 to 1 around t = 10 and
    t = 100 (sigmoids in log t), sigma_3 = 1e-20 is below the float resolution floor."""
    t = np.concatenate([[0.0], np.geomspace(1e-2, t_end, 60)])
    u = np.log10(np.maximum(t, 1e-9))
    rise = [1e-3 + 1 / (1 + np.exp(-8 * (u - c))) for c in (1.0, 2.0)]
    sv = np.stack([rise[0], rise[1] * 0.5, np.full(t.size, 1e-20), np.zeros(t.size)], 1)
    info = dict(method="gradient_flow", status=status, dtype="float64")
    return rb.Trajectory(
        times=t,
        loss=1 / (1 + sv[:, 0]),
        grad_norm=np.ones(t.size),
        singular_values=sv,
        final_params=(np.eye(4),),
        final_matrix=np.eye(4),
        info=info,
    )


def test_trajectory_plot_frames_the_dynamics_and_holds_the_final_plateau():
    tr = _arriving("steady_state")
    ax = tr.plot("singular_values", top_k=3)
    assert ax.get_title() == "Singular values of W(t), gradient flow"  # no status: ended well
    left, right = ax.get_xlim()
    t, sv = tr.times, tr.singular_values[:, :2]
    span = np.ptp(np.log10(sv[t > 0]))
    moved = np.abs(np.log10(sv) - np.log10(sv[1])).max(1) > 0.01 * span
    # nothing visible is cut on the left, and the flat start (1e-2 .. 0.3) is
    assert not moved[(t > 0) & (t < left)].any() and left > 0.1
    assert moved[(t >= left) & (t <= left * 10**0.5)].any()
    # the flow stopped as sigma_2 arrived: its last values are held, dotted, up to `right`
    held = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert [ln.get_label() for ln in held][0] == plots.HELD_LABEL and len(held) == 2
    for ln, y in zip(held, sv[-1], strict=True):
        np.testing.assert_array_equal(ln.get_xdata(), [t[-1], right])
        np.testing.assert_array_equal(ln.get_ydata(), [y, y])
    assert right >= t[-1] * 10**0.2
    # sigma_3 = 1e-20 < eps * sigma_1 * max(m, n): grey, not in color, and the legend says so
    (s3,) = [ln for ln in ax.get_lines() if ln.get_label() == "sigma_3"]
    assert np.isnan(s3.get_ydata()).all()
    leg = ax.get_legend()
    assert leg is not None
    texts = [x.get_text() for x in leg.get_texts()]
    assert "below float resolution: eps*sigma_1*max(m,n)" in texts and plots.HELD_LABEL in texts


def test_trajectory_plot_of_a_run_cut_short_shows_its_stop_and_status():
    tr = _arriving("t_max")
    ax = tr.plot("singular_values", top_k=2)
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]  # nothing held
    assert tr.times[-1] <= ax.get_xlim()[1] <= tr.times[-1] * 10**0.05 * (1 + 1e-12)
    note = "run t_max: stopped at t_max without a steady state"
    assert [x.get_text() for x in ax.figure.texts] == [note]  # under the axes
    fig, own = plt.subplots()
    tr.plot("loss", ax=own)  # a given Axes: the note goes into it
    assert [x.get_text() for x in own.texts] == [note] and not fig.texts
    assert "status" not in ax.get_title()


def test_sweep_singular_values_legend_names_colors_and_line_styles():
    fig = _figure(_full_sweep(), "singular-values", "median")
    leg = fig.axes[-1].get_legend()
    assert leg is not None
    labels = [x.get_text() for x in leg.get_texts()]
    assert labels == ["alpha=1e-02", "alpha=1e-04", "alpha=1e-06", "sigma_1", "sigma_2", "sigma_3"]
    centers = [ln for ln in fig.axes[0].get_lines() if ln.get_linewidth() > 1.5]
    styles = [h.get_linestyle() for h in leg.legend_handles[3:] if isinstance(h, Line2D)]
    assert styles == [ln.get_linestyle() for ln in centers[:3]]  # alpha 1e-2: sigma_1..3
    assert len(set(styles)) == 3
    assert [ax.get_title() for ax in fig.axes] == [
        "Top singular values of W(t), depth 2",
        "Top singular values of W(t), depth 3",
    ]


def test_glrl_plot_draws_no_rounding_noise(glrl_res):
    _, ax_s = glrl_res.plot()
    colored = [
        ln for ln in ax_s.get_lines() if ln.get_linestyle() == "-" and ln.get_linewidth() > 1
    ]
    # phase r draws sigma_1..sigma_r only (the others are zero by construction)
    assert len(colored) == sum(p.rank for p in glrl_res.phases)
    eps = np.finfo(np.float64).eps
    i = 0
    for p in glrl_res.phases:
        sv = p.trajectory.singular_values
        floor = eps * sv[:, 0] * max(p.W.shape)
        for j in range(p.rank):
            y = np.asarray(colored[i].get_ydata())
            assert np.all(np.isnan(y) | (y >= floor)) and np.isfinite(y).any()
            np.testing.assert_array_equal(np.isnan(y), ~(sv[:, j] >= floor))
            i += 1


def test_sweep_singular_values_below_the_resolution_floor_are_grey():
    import json

    ds = _full_sweep()
    sv = ds["singular_values"].values.copy()
    sv[..., 2] = 1e-15 * sv[..., 0]  # eps * 4 = 8.9e-16 < 1e-15 < eps * 10 = 2.2e-15
    ds = ds.assign(singular_values=(ds["singular_values"].dims, sv))

    def sigma3_grey(attrs) -> bool:
        fig = _figure(ds.assign_attrs(attrs), "singular-values", "median")
        ax = fig.axes[0]
        dotted = [
            ln for ln in ax.get_lines() if ln.get_linestyle() == ":" and ln.get_linewidth() > 1.5
        ]
        leg = fig.axes[-1].get_legend()
        assert leg is not None
        labels = [x.get_text() for x in leg.get_texts()]
        grey = "below float resolution: eps*sigma_1*max(m,n)" in labels
        assert grey == all(np.isnan(ln.get_ydata()).all() for ln in dotted)  # sigma_3 lines
        return grey

    cfg = {"problem": {"shape": [10, 10]}, "sweep": {"grid": {"alpha": [1e-2]}}}
    assert sigma3_grey({"config": json.dumps(cfg)})  # max(m, n) = 10 from the config
    # no config, or a sweep over the shape: the floor uses the 4 recorded values (min(m, n),
    # a lower bound), and 1e-15 sigma_1 is above it
    assert not sigma3_grey({})
    cfg["sweep"]["grid"]["problem.shape"] = [[10, 10], [4, 4]]
    assert not sigma3_grey({"config": json.dumps(cfg)})
