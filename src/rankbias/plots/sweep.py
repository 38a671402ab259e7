"""The figures of a sweep's dataset (:data:`FIGURES`): loss, singular values and effective rank
against time, one panel per depth and one line per alpha, and the final distance against alpha.
The conventions (statistic, fixed axes, framing, marks) are in :mod:`rankbias.plots`."""

from __future__ import annotations

import numpy as np

from ._floor import _sweep_floor_scale
from ._frame import _set_frame
from ._marks import _Marks, _run_statuses, not_ended_well
from ._panel import _draw, _time_panel
from ._stats import MAX_THIN, _fix_others, _stat_text, _summary, _take, seed_dims
from ._style import _STYLES, _floor_handle, _legend_outside, _plt, _style_time_axis

FIGURES = ("loss", "singular-values", "effective-rank", "distance-vs-alpha")


_NEEDS = {"loss": "loss", "singular-values": "singular_values", "effective-rank": "rank_ratio"}


def _time_plot(
    ds,
    var: str,
    ylabel: str,
    title: str,
    logy: bool,
    top_k: int | None = None,
    stat: str = "median",
):
    plt = _plt()
    from matplotlib.lines import Line2D  # at the first drawing, as in _style._plt

    tdim = "time" if "time" in ds.dims else "step"
    panels = list(ds["depth"].values) if "depth" in ds.dims else [None]
    fig, axs = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels) + 1.2, 3.8), squeeze=False, sharey=True
    )
    seeds = seed_dims(ds)
    note = ""
    t = np.asarray(ds[tdim].values, dtype=float)
    marks = _Marks()
    text = ""
    scale = _sweep_floor_scale(ds) if top_k is not None else None
    below = False
    for ax, depth in zip(axs[0], panels, strict=True):
        da = ds[var] if depth is None else ds[var].sel(depth=depth)
        da, note = _fix_others(da, set(seeds) | {"alpha"})
        st = None
        if "status" in ds:
            st = ds["status"] if depth is None else ds["status"].sel(depth=depth)
            st, _ = _fix_others(st, set(seeds) | {"alpha"})
        text, curves, low = _time_panel(
            ax, da, t, seeds, stat, logy, top_k, st, marks, floor_scale=scale
        )
        below = below or low
        # one-line titles: the statistic (the same in every panel) goes to the footnote, two
        # lines of neighbouring panels ran into each other
        _style_time_axis(ax, tdim, logy, title if depth is None else f"{title}, depth {depth}")
        keep_end = st is not None and bool(
            not_ended_well(np.asarray(st.values, dtype=object)).any()
        )
        _set_frame(ax, t[t > 0], curves, logy, keep_end)
    axs[0][0].set_ylabel(ylabel)
    handles, labels = axs[0][0].get_legend_handles_labels()
    if top_k is not None and "alpha" in ds[var].dims:
        # colors are alphas, line styles the singular values: a legend for both encodings
        n_sv = min(top_k, ds.sizes["sv"])
        handles = list(handles) + [
            Line2D([], [], color="0.25", lw=1.6, ls=_STYLES[j % 4]) for j in range(n_sv)
        ]
        labels = list(labels) + [f"sigma_{j + 1}" for j in range(n_sv)]
    if below:
        h, lab = _floor_handle()
        handles, labels = [*handles, h], [*labels, lab]
    if handles:
        _legend_outside(axs[0][-1], handles, labels)
    _footnote(fig, note, marks.note(), text)
    return fig


def _footnote(fig, note, marks: str = "", stat: str = ""):
    """The footnote lines under the panels: the statistic drawn, the axes fixed at their
    first value, and what the ``x`` markers of runs that did not end well stand for."""
    lines = (
        ([stat] if stat else []) + ([f"fixed: {note}"] if note else []) + ([marks] if marks else [])
    )
    if lines:
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, color="0.35", va="bottom")
    # the footnote's height as a fraction of the figure: 7 pt lines at 1.3 spacing
    h = len(lines) * 7 * 1.3 / 72 / fig.get_figheight() + (0.015 if lines else 0)
    fig.tight_layout(rect=(0, h, 1, 1))


def glrl_variant_label(ds) -> str:
    """Which GLRL the ``glrl_distance`` of a dataset is measured against (from the
    ``glrl_symmetric`` variable that :func:`rankbias.compare.glrl_distance_metric` records)."""
    if "glrl_symmetric" not in ds:
        return "GLRL (variant not recorded)"
    v = np.asarray(ds["glrl_symmetric"].values, dtype=float)
    vals = set(np.unique(v[np.isfinite(v)]).tolist())
    if vals == {1.0}:
        return "PSD GLRL"
    if vals == {0.0}:
        return "asymmetric GLRL"
    return "GLRL (PSD for symmetric, asymmetric for deep models)"


def _distance_plot(ds, stat: str = "median"):
    plt = _plt()
    var = "glrl_distance" if "glrl_distance" in ds else "distance_to_truth"
    if var not in ds:
        raise ValueError(
            "figure 'distance-vs-alpha' needs runs that record 'distance_to_truth' "
            "(record.metrics) or a custom 'glrl_distance' metric"
        )
    if "alpha" not in ds.dims:
        raise ValueError("figure 'distance-vs-alpha' needs a sweep over alpha (init.scale)")
    seeds = seed_dims(ds)
    da, note = _fix_others(ds[var], set(seeds) | {"alpha", "depth"})
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    depths = list(da["depth"].values) if "depth" in da.dims else [None]
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(depths)))
    x = np.asarray(da["alpha"].values, dtype=float)
    order = np.argsort(x)
    text = ""
    marks = _Marks()
    status = None
    if "status" in ds:
        status, _ = _fix_others(ds["status"], set(seeds) | {"alpha", "depth"})
    for c, d in zip(colors, depths, strict=True):
        sub = (da if d is None else da.sel(depth=d)).transpose(..., "alpha")
        m, lo, hi, runs = _summary(sub, seeds, stat)
        if status is not None:
            st = (status if d is None else status.sel(depth=d)).transpose(..., "alpha")
            st = _run_statuses(st, seeds)[:, order]
            vals = (m[None] if runs is None else runs)[:, order]
            with np.errstate(invalid="ignore"):
                bad = not_ended_well(st) & (vals > 0)  # log axes: NaN and <= 0 have no place
            if bad.any():
                ax.plot(
                    x[order][np.nonzero(bad)[1]],
                    vals[bad],
                    ls="none",
                    marker="x",
                    ms=7,
                    mew=1.5,
                    color=c,
                    zorder=5,
                )
            marks.count(st)
        _draw(
            ax,
            x[order],
            m[order],
            _take(lo, order),
            _take(hi, order),
            _take(runs, order),
            c,
            None if d is None else f"depth {d}",
            True,
            marker="o",
        )
        if runs is not None:
            text = _stat_text(seeds, runs.shape[0], stat, runs.shape[0] <= MAX_THIN)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("initialization scale alpha")
    target = glrl_variant_label(ds) if var == "glrl_distance" else "the ground truth"
    ax.set_ylabel(
        f"||W(t_final) - W_GLRL||_F ({target})"
        if var == "glrl_distance"
        else "||W(t_final) - W*||_F / ||W*||_F",
        fontsize=8,
    )
    ax.set_title(f"Final distance to {target}", fontsize=9)
    ax.grid(alpha=0.3, which="both", lw=0.4)
    if depths[0] is not None:
        _legend_outside(ax)
    _footnote(fig, note, marks.note(), text)
    return fig


def _figure(ds, name: str, stat: str):
    if name == "loss":
        return _time_plot(ds, "loss", "loss f(W(t))", "Loss f(W(t))", logy=True, stat=stat)
    if name == "singular-values":
        return _time_plot(
            ds,
            "singular_values",
            "singular values of W(t)",
            "Top singular values of W(t)",
            logy=True,
            top_k=3,
            stat=stat,
        )
    if name == "effective-rank":
        return _time_plot(
            ds,
            "rank_ratio",
            "effective rank (ratio)",
            "Effective rank of W(t)",
            logy=False,
            stat=stat,
        )
    return _distance_plot(ds, stat)
