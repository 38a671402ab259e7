r"""Figures of a sweep's dataset, of one run, of GLRL and of a GLRL comparison (matplotlib, Agg).

Sweep figures are saved as PNG and SVG. Conventions: the ``depth`` axis (if swept) gives one
panel per value, the ``alpha`` axis (if swept) one line per value, and every axis whose name
mentions ``seed`` or is ``problem`` is summarised (see *Statistic*). Any other swept axis is
fixed at its first value (named in the footnote). Time axes are logarithmic and frame the
dynamics: from just before the first visible change of a drawn line (:data:`VISIBLE_CHANGE`
of the panel's value span) to just after the last one, or to the last record when a run did
not end well. Titles are one line and say what is shown; the statistic and the fixed axes
are in the footnote; the legend (right of the panels) names every encoding: colors (alpha)
and, on ``singular-values``, line styles (``sigma_1``, ``sigma_2``, ``sigma_3``). There the
center line is grey below the float resolution floor ``eps * sigma_1 * max(m, n)``.

==========================  ====================================================================
figure                      content
==========================  ====================================================================
``loss``                    ``f(W(t))`` against ``t``
``singular-values``         the top singular values of ``W(t)`` against ``t``
``effective-rank``          the effective rank (``rank_ratio``, see :mod:`rankbias.metrics`)
``distance-vs-alpha``       final distance to GLRL (variable ``glrl_distance``; the variant,
                            PSD or asymmetric, from ``glrl_symmetric``) when the runs record
                            it, else the relative distance to the ground truth, against
                            ``alpha``, one line per depth
==========================  ====================================================================

**Runs that did not end well** (the dataset's ``status``, :func:`rankbias.status.ended_well`:
a flow stopped at ``t_max`` or by ``max_steps`` without a steady state, a diverged run, ...)
are drawn with an ``x`` at their last point, where they stopped, and the footnote counts
them by status ("x: a run that did not end well (2 of 6 runs: 1 max_steps, 1 t_max)").

**Statistic** (``stat``). ``"median"`` (default): the line is the median over the seed axes
and the band the 25-75% quantiles; ``"mean"``: mean and a band of one standard deviation.
When at most :data:`MAX_THIN` runs are summarised, each run is also drawn as a thin line.
The median is the default because the spread over seeds can be heavy-tailed on log axes:
on the ``glrl-depth`` sweep (depth 4, ``alpha = 1e-8``) two of five seeds end at large-norm
interpolants and the mean distance is 11 while the median is ``2.4e-5``; the mean line
there says the opposite of what three of five runs do. The statistic is named in the footnote.

One run: :func:`plot_trajectory` (also ``Trajectory.plot``) draws through the same panel code
as the sweep figures (the run becomes a one-run dataset, :meth:`Trajectory.to_xarray`), and
:func:`plot` accepts a :class:`~rankbias.Trajectory` in place of a dataset.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "FIGURES",
    "TRAJECTORY_KINDS",
    "STATS",
    "plot",
    "plot_all",
    "plot_trajectory",
    "plot_glrl",
    "plot_comparison",
]

FIGURES = ("loss", "singular-values", "effective-rank", "distance-vs-alpha")
#: What one :class:`~rankbias.Trajectory` can show (``Trajectory.plot(kind)``).
TRAJECTORY_KINDS = ("loss", "singular_values", "effective_rank", "grad_norm")
STATS = ("median", "mean")
#: Runs drawn one by one (thin lines) when a line summarises at most this many.
MAX_THIN = 10
_QUANTILES = (0.25, 0.75)
_STYLES = ["-", "--", ":", "-."]
#: A change of a drawn curve is visible when it exceeds this fraction of the panel's value
#: span (log values on a log axis): the time axis starts at the first such change.
VISIBLE_CHANGE = 0.01
#: Log-time margins of the framed window, as fractions of its span (at least so many
#: decades): a little before the first change, more after the last one, so that the final
#: plateau takes a visible part of the axis.
_PAD_LEFT, _MIN_PAD_LEFT = 0.08, 0.2
_PAD_RIGHT, _MIN_PAD_RIGHT = 0.2, 0.4
HELD_LABEL = "held after the steady-state stop"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _seed_dims(ds) -> list[str]:
    return [d for d in _axes(ds) if "seed" in d or d == "problem"]


def _axes(ds) -> list[str]:
    return [d for d in ds["done"].dims] if "done" in ds else []


def _fix_others(da, keep: set[str]):
    """Fix every sweep axis not in ``keep`` at its first value; returns (array, note)."""
    notes = []
    for d in list(da.dims):
        if d in keep or d in ("time", "step", "sv"):
            continue
        if d in _axes_of(da) and da.sizes[d] > 1:
            notes.append(f"{d}={da[d].values[0]}")
        da = da.isel({d: 0})
    return da, ", ".join(notes)


def _axes_of(da) -> list[str]:
    return [d for d in da.dims if d not in ("time", "step", "sv")]


def _check_stat(stat: str) -> str:
    if stat not in STATS:
        raise ValueError(f"`stat` must be one of {', '.join(STATS)}, got {stat!r}")
    return stat


def _summary(da, seeds: list[str], stat: str):
    """``(center, lo, hi, runs)`` of ``da`` over the seed axes (NumPy, last axis kept).

    ``runs`` is ``(n_runs, ...)`` (``None`` without seed axes); the band is the 25-75%
    quantiles (median) or one standard deviation (mean); NaN runs are skipped."""
    seeds = [s for s in seeds if s in da.dims]
    if not seeds:
        v = np.asarray(da.values, dtype=float)
        return v, None, None, None
    runs = da.stack(_run=seeds).transpose("_run", ...)
    r = np.asarray(runs.values, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN
        if stat == "median":
            c = np.nanmedian(r, axis=0)
            lo, hi = np.nanquantile(r, _QUANTILES, axis=0)
        else:
            c = np.nanmean(r, axis=0)
            s = np.nanstd(r, axis=0)
            lo, hi = c - s, c + s
    return c, lo, hi, r


def _take(v, idx):
    """``v[..., idx]``, or ``None``."""
    return None if v is None else v[..., idx]


def _stat_text(seeds: list[str], n: int, stat: str, thin: bool) -> str:
    if not seeds or n <= 1:
        return ""
    what = "median, band 25-75% quantiles" if stat == "median" else "mean, band one std"
    return f"{what} over {n} runs ({', '.join(seeds)})" + ("; thin: each run" if thin else "")


def _run_statuses(st, seeds: list[str]) -> np.ndarray:
    """The ``status`` strings of ``st`` in the run order of :func:`_summary` (``(n_runs,
    ...)``; one run without seed axes)."""
    seeds = [s for s in seeds if s in st.dims]
    if not seeds:
        return np.asarray(st.values, dtype=object)[None]
    return np.asarray(st.stack(_run=seeds).transpose("_run", ...).values, dtype=object)


def _not_well(statuses: np.ndarray) -> np.ndarray:
    """Which entries are runs that are done ("" is a run not done) and did not end well."""
    from .status import ended_well

    flat = [bool(s) and not ended_well(str(s)) for s in np.ravel(statuses)]
    return np.asarray(flat, dtype=bool).reshape(np.shape(statuses))


class _Marks:
    """Counts of the runs a figure marks (did not end well) and of the done runs it shows."""

    def __init__(self):
        self.bad: dict[str, int] = {}
        self.shown = 0

    def count(self, statuses: np.ndarray) -> None:
        for s in np.ravel(statuses):
            if s:
                self.shown += 1
        for s in np.ravel(statuses)[np.ravel(_not_well(statuses))]:
            self.bad[str(s)] = self.bad.get(str(s), 0) + 1

    def note(self) -> str:
        if not self.bad:
            return ""
        k = sum(self.bad.values())
        what = ", ".join(f"{n} {s}" for s, n in sorted(self.bad.items()))
        return f"x: a run that did not end well ({k} of {self.shown} runs: {what})"


def _mark_ends(ax, x, vals: np.ndarray, statuses: np.ndarray, color, logy: bool) -> None:
    """An ``x`` at the last finite point of each run (row of ``vals``) that did not end well:
    where a run cut short by ``max_steps``/``t_max`` or gone wrong stopped."""
    for y, bad in zip(vals, _not_well(statuses), strict=True):
        ok = np.isfinite(y) & ((y > 0) if logy else True)
        if bad and ok.any():
            i = np.flatnonzero(ok)[-1]
            ax.plot(x[i], y[i], ls="none", marker="x", ms=7, mew=1.5, color=color, zorder=5)


def _change_window(curves: list[np.ndarray], logy: bool) -> tuple[int, int]:
    """``(first, last)``: the first record where any curve differs visibly from its first
    value, and the first record from which every curve stays visibly at its last value
    (visibly: by more than :data:`VISIBLE_CHANGE` of the span of all curves, in log values on
    a log axis). ``(0, T - 1)`` when nothing changes."""
    Y = np.array(curves, dtype=float, ndmin=2)
    n = Y.shape[1]
    if logy:
        with np.errstate(divide="ignore", invalid="ignore"):
            Y = np.log10(np.where(Y > 0, Y, np.nan))
    fin = np.isfinite(Y)
    if not fin.any():
        return 0, n - 1
    span = float(np.nanmax(Y) - np.nanmin(Y))
    if not span > 0:
        return 0, n - 1
    thr = VISIBLE_CHANGE * span
    first, last = n - 1, 0
    for y, ok in zip(Y, fin, strict=True):
        if not ok.any():
            continue
        idx = np.flatnonzero(ok)
        with np.errstate(invalid="ignore"):
            moved = np.abs(y - y[idx[0]]) > thr  # NaN compares False
            unsettled = np.abs(y - y[idx[-1]]) > thr
        if moved.any():
            first = min(first, int(np.argmax(moved)))
        if unsettled.any():
            last = max(last, int(np.flatnonzero(unsettled)[-1]) + 1)
    if first > last:  # nothing moved visibly
        return 0, n - 1
    return first, min(last, n - 1)


def _frame(x: np.ndarray, curves: list[np.ndarray], logy: bool) -> tuple[float, float]:
    """The log-time window ``(left, right)`` (in ``x`` units) that frames the dynamics: from a
    margin before the first visible change to a margin after the last one (the final
    plateau). ``left`` is never before ``x[0]``; ``right`` may pass ``x[-1]`` (the caller
    clips it, or holds the last values of a run that stopped at a steady state)."""
    lx = np.log10(x)
    if x.size < 2:
        return float(x[0]) / 2, float(x[0]) * 2
    i0, i1 = _change_window(curves, logy)
    lo, hi = lx[i0], lx[i1]
    left = max(lo - max(_PAD_LEFT * (hi - lo), _MIN_PAD_LEFT), lx[0])
    right = hi + max(_PAD_RIGHT * (hi - lo), _MIN_PAD_RIGHT)
    # at least a decade where the data allow: on a shorter log axis matplotlib labels minor
    # ticks (3x10^1, 4x10^1, ...), which collide at the default size
    left = max(min(left, right - 1.0), lx[0])
    right = max(right, min(left + 1.0, lx[-1]))
    return float(10**left), float(10**right)


def _floor_scale(shape, dtype) -> float:
    """``eps * max(m, n)``: singular values of ``W`` (``(m, n)``) below this times ``sigma_1``
    are not resolved in ``dtype`` (the error of an SVD, and of forming ``W`` as a product of
    factors, is ``~ eps ||W||_2`` per entry)."""
    return float(np.finfo(np.dtype(dtype)).eps) * max(int(v) for v in shape)


def _resolution_floor(sv: np.ndarray, shape, dtype) -> np.ndarray:
    """Per record, the smallest singular value of ``W`` that its float type resolves:
    ``eps * sigma_1 * max(m, n)``. ``sv``: ``(T, k)``, descending."""
    return _floor_scale(shape, dtype) * np.asarray(sv, dtype=float)[:, 0]


def _sweep_floor_scale(ds) -> float:
    """:func:`_floor_scale` of a sweep: ``max(m, n)`` from the config's ``problem.shape``
    when no sweep axis changes it, else the number of recorded singular values
    (``min(m, n)``, a lower bound: no resolved value is greyed); ``dtype`` float64, the
    sweeps' precision."""
    import json

    k = int(ds.sizes["sv"])
    try:
        cfg = json.loads(ds.attrs.get("config", ""))
    except (TypeError, ValueError):
        return _floor_scale((k,), "float64")
    sweep = cfg.get("sweep") or {}
    zips = sweep.get("zip") or []
    keys = list(sweep.get("grid") or {}) + [
        key for z in ([zips] if isinstance(zips, dict) else zips) for key in z
    ]
    shape = (cfg.get("problem") or {}).get("shape")
    if not shape or any("shape" in str(key) for key in keys):
        return _floor_scale((k,), "float64")
    return _floor_scale((k, *shape), "float64")


def _draw(ax, x, c, lo, hi, runs, color, label, logy: bool, ls: str = "-", marker=None):
    """One summarised line: thin per-run lines (few runs), the band, the center line."""
    if runs is not None and runs.shape[0] <= MAX_THIN:
        for y in runs:
            ax.plot(x, y, color=color, lw=0.6, alpha=0.35, ls=ls)
    if lo is not None:
        if logy:
            lo = np.where(lo > 0, lo, np.nan)
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
    return ax.plot(x, c, color=color, lw=1.6, ls=ls, label=label, marker=marker)[0]


def _style_time_axis(ax, tdim: str, logy: bool, title: str, ylabel: str | None = None):
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("time t" if tdim == "time" else "step")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both", lw=0.4)


def _time_panel(
    ax,
    da,
    t,
    seeds: list[str],
    stat: str,
    logy: bool,
    top_k: int | None,
    status=None,
    marks: _Marks | None = None,
    floor_scale: float | None = None,
    center: list | None = None,
):
    """Draw ``da`` (``[alpha,] seeds..., time[, sv]``) against ``t`` into ``ax``; with
    ``status`` (the runs' ``status``, same axes but time) mark the runs that did not end
    well at their last point and count them into ``marks``. ``floor_scale`` (singular values
    only): ``eps * max(m, n)``; the parts of a center line below ``floor_scale * sigma_1``
    (the center line of ``sigma_1`` of the same alpha) are rounding noise, drawn thin and grey
    instead of in the line's color.

    Returns the statistic's description (empty for a single run), the center curves drawn
    (on ``t > 0``, for :func:`_frame`) and whether any value was below the floor; the center
    lines are appended to ``center`` if given."""
    plt = _plt()
    sel = t > 0  # log time: t = 0 has no place
    lines = list(da["alpha"].values) if "alpha" in da.dims else [None]
    n_sv = 1 if top_k is None else min(top_k, da.sizes["sv"])
    # One line group: one color per singular value; else one color per alpha.
    by_sv = lines == [None] and top_k is not None
    cmap = plt.cm.tab10 if by_sv else plt.cm.viridis
    colors = cmap(np.arange(n_sv) % 10) if by_sv else cmap(np.linspace(0, 0.9, max(len(lines), 1)))
    text = ""
    curves = []
    below = False
    for i, a in enumerate(lines):
        sub = da if a is None else da.sel(alpha=a)
        floor = None
        for j in range(n_sv):
            d = sub if top_k is None else sub.isel(sv=j)
            c, lo, hi, runs = _summary(d, seeds, stat)
            if floor_scale is not None and top_k is not None and j == 0:
                floor = floor_scale * c[sel]  # sigma_1 comes first
            color = colors[j] if by_sv else colors[i]
            if by_sv:
                label = f"sigma_{j + 1}"
            else:
                label = None if a is None or j else f"alpha={a:.0e}"
            y = c[sel]
            if floor is not None:
                with np.errstate(invalid="ignore"):
                    low = y < floor
                if low.any():
                    # below the floor a value is rounding noise: grey, thin, without a label
                    ax.plot(t[sel], y, color="0.72", lw=0.8, ls="-" if by_sv else _STYLES[j % 4])
                    y = np.where(low, np.nan, y)
                    below = True
            curves.append(y)
            drawn = _draw(
                ax,
                t[sel],
                y,
                _take(lo, sel),
                _take(hi, sel),
                _take(runs, sel),
                color,
                label,
                logy,
                ls="-" if by_sv else _STYLES[j % 4],
            )
            if center is not None:
                center.append(drawn)
            if status is not None:
                st = _run_statuses(status if a is None else status.sel(alpha=a), seeds)
                vals = c[None] if runs is None else runs
                _mark_ends(ax, t[sel], vals[..., sel], st, color, logy)
                if marks is not None and j == 0:
                    marks.count(st)
            if runs is not None:
                text = _stat_text(seeds, runs.shape[0], stat, runs.shape[0] <= MAX_THIN)
    return text, curves, below


def _sparse_minor_labels(ax) -> None:
    """On a log time axis shorter than two decades matplotlib labels minor ticks densely
    (``3x10^1``, ``4x10^1``: they collide at the default size); label only ``2x`` and ``5x``."""
    from matplotlib.ticker import FuncFormatter

    left, right = ax.get_xlim()
    if not (left > 0 and np.log10(right / left) < 2):
        return

    def fmt(x, _pos):
        e = int(np.floor(np.log10(x) + 1e-9))
        m = round(x / 10**e)
        return f"$\\mathdefault{{{m}\\times10^{{{e}}}}}$" if m in (2, 5) else ""

    ax.xaxis.set_minor_formatter(FuncFormatter(fmt))


def _set_frame(ax, x: np.ndarray, curves: list[np.ndarray], logy: bool, keep_end: bool) -> None:
    """Limit the time axis to :func:`_frame`'s window, clipped to the records drawn;
    ``keep_end``: up to the last record (a run that did not end well is marked there)."""
    if x.size == 0:
        return
    left, right = _frame(x, curves, logy)
    end = float(x[-1]) * 10**0.05
    ax.set_xlim(left, end if keep_end else min(right, end))
    _sparse_minor_labels(ax)


def _legend_outside(ax, handles=None, labels=None, title: str | None = None) -> None:
    """A legend to the right of ``ax``, where it hides no curve (the layout makes room)."""
    kw = dict(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if title:
        kw.update(title=title, title_fontsize=7)
    if handles is None:
        ax.legend(**kw)
    else:
        ax.legend(handles, labels, **kw)


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
    from matplotlib.lines import Line2D

    tdim = "time" if "time" in ds.dims else "step"
    panels = list(ds["depth"].values) if "depth" in ds.dims else [None]
    fig, axs = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels) + 1.2, 3.8), squeeze=False, sharey=True
    )
    seeds = _seed_dims(ds)
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
        keep_end = st is not None and bool(_not_well(np.asarray(st.values, dtype=object)).any())
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
    seeds = _seed_dims(ds)
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
                bad = _not_well(st) & (vals > 0)  # log axes: NaN and <= 0 have no place
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


_NEEDS = {"loss": "loss", "singular-values": "singular_values", "effective-rank": "rank_ratio"}


# ---------------------------------------------------------------------------- one run
_KIND = {
    "loss": ("loss", "loss f(W(t))", True),
    "singular_values": ("singular_values", "singular values of W(t)", True),
    "effective_rank": (None, "effective rank", False),
    "grad_norm": ("grad_norm", "||grad L(params(t))||", True),
}


def _kind(kind) -> str:
    k = str(kind).replace("-", "_")
    if k not in TRAJECTORY_KINDS:
        raise ValueError(f"unknown `kind` {kind!r}; expected one of {', '.join(TRAJECTORY_KINDS)}")
    return k


_TITLES = {
    "loss": "Loss f(W(t))",
    "singular_values": "Singular values of W(t)",
    "effective_rank": "Effective rank of W(t)",
    "grad_norm": "Gradient norm",
}
_METHODS = {"gradient_flow": "gradient flow", "gradient_descent": "gradient descent"}


def _floor_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], color="0.72", lw=0.8), "below float resolution: eps*sigma_1*max(m,n)"


def _status_note(ax, status: str, own_figure: bool) -> None:
    """A small red note for a run that did not end well (none otherwise): under the axes in a
    figure of our own (where it hides no curve), else in the axes' lower left corner."""
    from .status import describe, ended_well

    if ended_well(status) or status == "unknown":  # "unknown": a file without a status
        return
    text = f"run {status}: {describe(status)}"
    if own_figure:
        ax.figure.text(0.01, 0.01, text, fontsize=7, color="C3", va="bottom")
    else:
        ax.text(
            0.02,
            0.03,
            text,
            transform=ax.transAxes,
            fontsize=7,
            color="C3",
            bbox=dict(fc="white", ec="none", alpha=0.8, pad=1.5),
        )


def plot_trajectory(
    traj, kind: str = "loss", *, ax=None, top_k: int | None = 5, rank_kind: str = "ratio"
):
    """Draw one quantity of one run (``kind`` in :data:`TRAJECTORY_KINDS`) into ``ax`` (or a
    new figure) and return the Axes; see ``Trajectory.plot``. Same panel code and axes as the
    sweep figures: log time (GD: log step), log values except the effective rank.

    Framing: the time axis runs from just before the first visible change of a drawn curve
    (:data:`VISIBLE_CHANGE` of the panel's value span) to just after the last one (a run that
    did not end well: to its last record, where it stopped). A gradient flow that stopped at
    its steady state before that margin has its last values held, dotted and labelled
    :data:`HELD_LABEL`, so that the final plateau shows. Singular values below
    the float resolution floor ``eps * sigma_1 * max(m, n)`` are drawn thin and grey. The
    title says what is shown; a run that did not end well gets a red note with its status."""
    from .status import RunStatus, ended_well
    from .trajectory import Trajectory

    if not isinstance(traj, Trajectory):
        raise TypeError(f"`traj` must be a rankbias Trajectory, got {type(traj).__name__}")
    kind = _kind(kind)
    if top_k is not None:
        top_k = int(top_k)
        if top_k < 1:
            raise ValueError(f"`top_k` must be >= 1 or None, got {top_k}")
    var, ylabel, logy = _KIND[kind]
    title = _TITLES[kind]
    if kind == "effective_rank":
        traj.effective_rank(rank_kind)  # validates rank_kind, fills the cache
        var, ylabel = f"rank_{rank_kind}", f"effective rank ({rank_kind})"
        title = f"Effective rank ({rank_kind}) of W(t)"
    ds = traj.to_xarray()
    tdim = "time"
    if traj.steps is not None:
        ds, tdim = ds.swap_dims({"time": "step"}), "step"
    new = ax is None
    if ax is None:
        # singular values: room for the legend right of the axes
        fig, ax = _plt().subplots(figsize=(6.8 if kind == "singular_values" else 5.6, 3.8))
    k = scale = None
    if kind == "singular_values":
        k = ds.sizes["sv"] if top_k is None else top_k
        scale = _floor_scale(np.shape(traj.final_matrix), traj.info.get("dtype", "float64"))
    x = np.asarray(ds[tdim].values, dtype=float)
    lines: list = []
    _, curves, below = _time_panel(
        ax, ds[var], x, [], "median", logy, k, floor_scale=scale, center=lines
    )
    method = traj.info.get("method", "run")
    _style_time_axis(ax, tdim, logy, f"{title}, {_METHODS.get(method, method)}", ylabel)
    xs = x[x > 0]
    if xs.size:
        left, right = _frame(xs, curves, logy)
        if not ended_well(traj.status):
            right = float(xs[-1]) * 10**0.05  # show where the run stopped
        elif right > xs[-1] and traj.steps is None and traj.status == RunStatus.STEADY_STATE:
            # the flow stopped as its last value arrived: hold the last values so that the
            # final plateau shows, marked as not computed
            for i, (line, y) in enumerate(zip(lines, curves, strict=True)):
                ok = np.flatnonzero(np.isfinite(y))
                if ok.size:
                    ax.plot(
                        [xs[-1], right],
                        [y[ok[-1]]] * 2,
                        color=line.get_color(),
                        ls=":",
                        lw=1.4,
                        alpha=0.7,
                        label=HELD_LABEL if i == 0 else None,
                    )
        else:
            right = min(right, float(xs[-1]) * 10**0.05)
        ax.set_xlim(left, right)
        _sparse_minor_labels(ax)
    _status_note(ax, traj.status, new)
    handles, labels = ax.get_legend_handles_labels()
    if below:
        h, lab = _floor_handle()
        handles, labels = [*handles, h], [*labels, lab]
    if handles and kind == "singular_values":
        _legend_outside(ax, handles, labels)
    elif handles:  # the one held line: small, where the curve is not
        ax.legend(handles, labels, fontsize=7, loc="best")
    if new:
        # room for the status note under the axes: one 7 pt line
        h = (7 * 1.3 / 72 / fig.get_figheight() + 0.015) if fig.texts else 0.0
        fig.tight_layout(rect=(0, h, 1, 1))
    return ax


# ---------------------------------------------------------------------------- GLRL
def _level_labels(ax, levels: np.ndarray, names, fontsize: float = 7) -> None:
    """``f(W_r) = ...`` to the right of ``ax`` at each level, pushed apart vertically so
    that no two overlap (levels closer than a line of text on the log axis would); ``names``:
    the ``r`` of each level."""
    fig = ax.figure
    ys = []
    for lev in levels:
        ys.append(ax.transData.transform((1.0, lev))[1] * 72 / fig.dpi)  # points
    ys = np.asarray(ys)
    order = np.argsort(ys)
    gap = fontsize * 1.35
    pos = ys.copy()
    for a, b in zip(order[:-1], order[1:], strict=True):
        pos[b] = max(pos[b], pos[a] + gap)
    top = ax.transAxes.transform((0, 1))[1] * 72 / fig.dpi
    excess = pos[order[-1]] - top
    if excess > 0:  # pushed past the top: shift the stack down
        pos -= excess
    for r, lev, y, p in zip(names, levels, ys, pos, strict=True):
        ax.annotate(
            f"f(W_{r}) = {lev:.3g}",
            (1.0, lev),
            xycoords=("axes fraction", "data"),
            xytext=(3, p - y),
            textcoords="offset points",
            fontsize=fontsize,
            color="0.3",
            va="center",
            annotation_clip=False,
        )


def plot_glrl(res, axes=None):
    """The GLRL staircase: loss on the phases' joint clock with the plateau levels
    ``f(W_0), ..., f(W_R)`` (dashed, labelled to the right), and the singular values of ``W``
    (phase ``r`` draws ``sigma_1 .. sigma_r``, the others are zero by construction).

    Phase ``r`` starts when phase ``r - 1`` has converged (its own clock from 0). Singular
    values below the float resolution floor ``eps * sigma_1 * max(m, n)`` (rounding noise) are
    drawn thin and grey. A phase that did not converge is named in a red note. ``axes``: two
    Axes (default: a new figure). Returns the two Axes (loss, singular values)."""
    plt = _plt()
    new = axes is None
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8))
    ax_l, ax_s = axes
    t0 = 0.0
    R = len(res.phases)
    colors = plt.cm.tab10(np.arange(max(R, 1)) % 10)
    below = False
    for p in res.phases:
        tr = p.trajectory
        t = tr.times + t0
        ax_l.plot(t, np.where(tr.loss > 0, tr.loss, np.nan), color="C0", lw=1.5)
        sv = np.asarray(tr.singular_values, dtype=float)
        floor = _resolution_floor(sv, np.shape(p.W), tr.info.get("dtype", "float64"))
        for j in range(min(p.rank, sv.shape[1])):
            s = np.where(sv[:, j] > 0, sv[:, j], np.nan)
            low = s < floor
            if low.any():
                below = True
                ax_s.plot(t, s, color="0.72", lw=0.8)
            ax_s.plot(
                t,
                np.where(low, np.nan, s),
                color=colors[j],
                lw=1.4,
                label=f"sigma_{j + 1}" if p.rank == j + 1 else None,
            )
        for ax in (ax_l, ax_s):
            ax.axvline(t0, color="0.6", lw=0.6, ls=":")
        t0 = float(t[-1])
    levels = np.asarray(res.levels, dtype=float)
    for lev in levels:
        if lev > 0:
            ax_l.axhline(lev, color="0.4", lw=0.7, ls="--")
    for ax, title, ylabel in (
        (
            ax_l,
            f"GLRL loss staircase ({'PSD' if res.symmetric else 'asymmetric'}, eps={res.eps:.0e})",
            "loss f(W)",
        ),
        (ax_s, "Singular values of W, GLRL phases back to back", "singular values of W"),
    ):
        ax.set_yscale("log")
        ax.set_xlabel("time (phases back to back)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    bad = [p.rank for p in res.phases if not p.converged]
    if bad:
        ax_l.text(
            0.02,
            0.03,
            f"phase(s) {', '.join(map(str, bad))} did not converge (phase_gtol)",
            transform=ax_l.transAxes,
            fontsize=7,
            color="C3",
            bbox=dict(fc="white", ec="none", alpha=0.8, pad=1.5),
        )
    handles, labels = ax_s.get_legend_handles_labels()
    if below:
        h, lab = _floor_handle()
        handles, labels = [*handles, h], [*labels, lab]
    if handles:
        ax_s.legend(handles, labels, fontsize=7, loc="lower right")
    pos = levels > 0
    if new:  # the level labels are spaced at the final axes height
        fig.tight_layout()
    if pos.any():
        idx = np.flatnonzero(pos)
        _level_labels(ax_l, levels[idx], names=idx)
    if new:
        fig.tight_layout()
    return np.asarray(axes)


def plot_comparison(cmp, ax=None):
    """Distance to GLRL against ``alpha`` of a :class:`~rankbias.compare.GLRLComparison`.

    Per seed: the end distance (filled dots: certified steady state; crosses: not certified)
    and its median; the phase-1 distance at its mid crossing (median); the fitted power laws
    ``e^b alpha^c`` and a line of the predicted slope ``(1 - lam_2/lam_1)/2`` through the
    phase-1 fit at the geometric middle of its alphas. Log axes. Returns the Axes."""
    plt = _plt()
    new = ax is None
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.0, 4.0))  # room for the legend right of the axes
    a = np.asarray(cmp.alphas, dtype=float)
    o = np.argsort(a)
    end = cmp.distances["end"]
    cert = cmp.certified
    for j in range(end.shape[1]):
        ax.plot(a[o], end[o, j], color="C0", lw=0.5, alpha=0.35)
    for mask, mk, lab in (
        (cert, "o", "end (certified steady state)"),
        (~cert, "x", "end (NOT certified)"),
    ):
        if mask.any():
            ii, jj = np.nonzero(mask)
            ax.plot(
                a[ii],
                end[ii, jj],
                mk,
                color="C0",
                ms=4,
                ls="none",
                label=lab,
                mfc="C0" if mk == "o" else "none",
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ax.plot(
            a[o],
            np.nanmedian(end, axis=1)[o],
            "-",
            color="C0",
            lw=1.6,
            label="end, median over seeds",
        )
        mid = cmp.distances["phase_at_mid"]
        if mid.shape[2] and np.isfinite(mid[:, :, 0]).any():
            ax.plot(
                a[o],
                np.nanmedian(mid[:, :, 0], axis=1)[o],
                "s-",
                color="C1",
                ms=3,
                lw=1.2,
                label="phase 1 at its mid crossing, median",
            )
    for key, color, name in (("end", "C0", "end"), ("phase1_at_mid", "C1", "phase 1")):
        f = cmp.fit if key == "end" else cmp.fit.get(key)
        if f and np.isfinite(f.get("c", np.nan)):
            xs = np.asarray(f["alphas_used"], dtype=float)
            xs = np.geomspace(xs.min(), xs.max(), 20)
            ax.plot(
                xs,
                np.exp(f["b"]) * xs ** f["c"],
                ":",
                color=color,
                lw=1.2,
                label=f"fit {name}: alpha^{f['c']:.3f}",
            )
    pred = cmp.fit.get("prediction", np.nan)
    f = cmp.fit.get("phase1_at_mid")
    if np.isfinite(pred) and f and np.isfinite(f.get("c", np.nan)):
        xs = np.asarray(f["alphas_used"], dtype=float)
        g = float(np.exp(np.mean(np.log(xs))))
        xs = np.geomspace(xs.min(), xs.max(), 20)
        ax.plot(
            xs,
            np.exp(f["b"]) * g ** f["c"] * (xs / g) ** pred,
            "--",
            color="0.3",
            lw=1,
            label=f"predicted slope (1-lam2/lam1)/2 = {pred:.3f}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("initialization scale alpha")
    ax.set_ylabel("||W_GF - W_GLRL||_F")
    ax.set_title(
        f"Distance to {cmp.info.get('glrl_variant', 'GLRL')} GLRL, "
        f"depth {cmp.info.get('depth', '?')}, {end.shape[1]} seed(s)",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both", lw=0.4)
    _legend_outside(ax)  # seven entries: inside, they hid the lines
    if new:
        fig.tight_layout()
    return ax


# ---------------------------------------------------------------------------- files
def _save(fig, out_dir: str | Path, name: str) -> list[Path]:
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for ext in ("png", "svg"):
            p = out_dir / f"{name}.{ext}"
            fig.savefig(p, dpi=110)
            paths.append(p)
    finally:
        plt.close(fig)
    return paths


def plot(ds, name: str, out_dir: str | Path, *, stat: str = "median") -> list[Path]:
    """Draw figure ``name`` into ``out_dir`` as ``<name>.png`` and ``<name>.svg``; returns
    both paths.

    ``ds`` is a sweep's dataset (:func:`rankbias.store.load`; ``name`` one of
    :data:`FIGURES`, ``stat`` ``"median"`` or ``"mean"``, see the module docstring) or one
    :class:`~rankbias.Trajectory` (``name`` one of :data:`TRAJECTORY_KINDS`, hyphens allowed).

    Raises ``ValueError`` for an unknown figure or one the data cannot support, ``TypeError``
    for anything but a dataset or a Trajectory."""
    from .trajectory import Trajectory

    _check_stat(stat)
    if isinstance(ds, Trajectory):
        try:
            kind = _kind(name)
        except ValueError:
            raise ValueError(
                f"figure {name!r} is not drawn for one Trajectory; expected one of "
                f"{', '.join(TRAJECTORY_KINDS)} (sweep figures need a dataset)"
            ) from None
        ax = plot_trajectory(ds, kind)
        return _save(ax.figure, out_dir, kind.replace("_", "-"))
    if not hasattr(ds, "data_vars"):
        raise TypeError(
            f"`ds` must be an xarray Dataset (rankbias.store.load) or a rankbias "
            f"Trajectory, got {type(ds).__name__}"
        )
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; expected one of {', '.join(FIGURES)}")
    need = _NEEDS.get(name)
    if need is not None and need not in ds:
        raise ValueError(f"figure {name!r} needs the runs to record {need!r} (record.metrics)")
    ds = ds.load()
    return _save(_figure(ds, name, stat), out_dir, name)


def plot_all(ds, out_dir: str | Path, *, stat: str = "median") -> dict[str, list[Path]]:
    """Every figure the dataset (or Trajectory) supports; figures it cannot draw are skipped."""
    from .trajectory import Trajectory

    _check_stat(stat)
    if isinstance(ds, Trajectory):
        return {k: plot(ds, k, out_dir) for k in TRAJECTORY_KINDS}
    ds = ds.load()
    out = {}
    for name in FIGURES:
        try:
            out[name] = plot(ds, name, out_dir, stat=stat)
        except ValueError:
            continue
    return out
