"""One time panel, shared by the sweep figures and the figures of one run: per line, the center
of the seeds' statistic, its band, thin per-run lines when few, the grey parts below the float
resolution floor and the ``x`` of runs that did not end well."""

from __future__ import annotations

import numpy as np

from ._marks import _mark_ends, _Marks, _run_statuses
from ._stats import MAX_THIN, _stat_text, _summary, _take
from ._style import _STYLES, _plt


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
