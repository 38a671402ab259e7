"""Framing a log time axis on the dynamics: from just before the first visible change of a
drawn curve to just after the last one, so that the final plateau shows."""

from __future__ import annotations

import numpy as np

#: A change of a drawn curve is visible when it exceeds this fraction of the panel's value
#: span (log values on a log axis): the time axis starts at the first such change.
#: A change of a drawn curve is visible when it exceeds this fraction of the panel's value
#: span (log values on a log axis): the time axis starts at the first such change.
VISIBLE_CHANGE = 0.01
#: Log-time margins of the framed window, as fractions of its span (at least so many
#: decades): a little before the first change, more after the last one, so that the final
#: plateau takes a visible part of the axis.
_PAD_LEFT, _MIN_PAD_LEFT = 0.08, 0.2
_PAD_RIGHT, _MIN_PAD_RIGHT = 0.2, 0.4


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


def _sparse_minor_labels(ax) -> None:
    """On a log time axis shorter than two decades matplotlib labels minor ticks densely
    (``3x10^1``, ``4x10^1``: they collide at the default size); label only ``2x`` and ``5x``."""
    from matplotlib.ticker import FuncFormatter  # at the first drawing, as in _style._plt

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
