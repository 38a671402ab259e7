"""The figure of a diagonal network's small-initialisation limit: coordinates against the
rescaled time ``t / h(alpha)``, the limit path as steps, optionally a flow overlaid.

The result is read by its attributes (``res.times``, ``res.betas``, ...): this module does not
import :mod:`rankbias.diagonal_limits`, whose ``plot`` forwards here with the flow already on
the rescaled clock."""

from __future__ import annotations

import numpy as np

from ._style import _legend_outside, _plt


def plot_diagonal_limit(res, ax=None, *, flow=None, max_labels: int = 8):
    """Draw the limit path of ``res`` into ``ax`` (default: a new figure); ``flow``: ``(tau
    (T,), betas (T, d))`` on the rescaled clock, drawn thin in the same colors. Coordinates
    that are zero along the whole path are not drawn; the ``max_labels`` largest (by
    ``max |beta_i|`` over the path) are named in the legend, the others are drawn grey.
    Returns the Axes."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
    times = np.asarray(res.times, dtype=float)
    betas = np.asarray(res.betas, dtype=float)
    end = times[-1] * 1.25 if times[-1] > 0 else 1.0
    if flow is not None:
        end = max(end, min(float(flow[0][-1]), 2.0 * end))
    x = np.append(times, end)
    size = np.max(np.abs(betas), axis=0)
    drawn = np.flatnonzero(size > 0)
    named = drawn[np.argsort(-size[drawn], kind="stable")][:max_labels]
    colors = plt.cm.tab10(np.arange(10))
    for rank, i in enumerate(named):
        c = colors[rank % 10]
        ax.step(x, np.append(betas[:, i], betas[-1, i]), where="post", color=c, lw=1.6,
                label=f"beta_{i}")  # fmt: skip
        if flow is not None:
            ax.plot(flow[0], flow[1][:, i], color=c, lw=0.8, alpha=0.7)
    for i in np.setdiff1d(drawn, named):
        ax.step(x, np.append(betas[:, i], betas[-1, i]), where="post", color="0.65", lw=0.9)
    for t in times[1:]:
        ax.axvline(t, color="0.5", lw=0.6, ls=":")
    ax.axhline(0.0, color="0.3", lw=0.5)
    ax.set_xlim(0.0, end)
    ax.set_xlabel("rescaled time t / h(alpha)")
    ax.set_ylabel("coordinates beta_i")
    title = f"{res.algorithm}: limit path, depth {res.depth}"
    if flow is not None:
        title += " (thin: flow)"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, lw=0.4)
    handles, labels = ax.get_legend_handles_labels()
    if len(drawn) > len(named):
        from matplotlib.lines import Line2D  # at the first drawing, as in _style._plt

        handles.append(Line2D([], [], color="0.65", lw=0.9))
        labels.append(f"{len(drawn) - len(named)} smaller")
    if handles:
        _legend_outside(ax, handles, labels)
    if fig is not None:  # our own figure: make room for the legend beside the axes
        fig.tight_layout()
    return ax
