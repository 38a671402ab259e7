"""The shared look of every figure: matplotlib (Agg), log time axes, legends beside the axes,
the legend entry of the float resolution floor and the red note of a run that did not end well.
"""

from __future__ import annotations

from ..status import describe, ended_well

#: Line styles of the singular values ``sigma_1, sigma_2, ...`` when colors encode alpha.
_STYLES = ["-", "--", ":", "-."]


def _plt():
    """``matplotlib.pyplot`` on the Agg backend.

    Imported here, at the first drawing, not at module import: matplotlib is heavy and
    optional for everything but figures, and choosing Agg at import would switch the backend of
    a notebook that merely imports rankbias."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style_time_axis(ax, tdim: str, logy: bool, title: str, ylabel: str | None = None):
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("time t" if tdim == "time" else "step")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both", lw=0.4)


def _legend_outside(ax, handles=None, labels=None, title: str | None = None) -> None:
    """A legend to the right of ``ax``, where it hides no curve (the layout makes room)."""
    kw = dict(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if title:
        kw.update(title=title, title_fontsize=7)
    if handles is None:
        ax.legend(**kw)
    else:
        ax.legend(handles, labels, **kw)


def _floor_handle():
    """The legend entry of the grey parts of a line: below the float resolution floor."""
    from matplotlib.lines import Line2D  # at the first drawing, as in _style._plt

    return Line2D([], [], color="0.72", lw=0.8), "below float resolution: eps*sigma_1*max(m,n)"


def _status_note(ax, status: str, own_figure: bool) -> None:
    """A small red note for a run that did not end well (none otherwise): under the axes in a
    figure of our own (where it hides no curve), else in the axes' lower left corner."""
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
