"""Figures of GLRL (the loss staircase and the singular values of its phases) and of a
GLRL comparison (distance to GLRL against alpha, with the fitted and predicted power laws).

The results are read by their attributes (``res.phases``, ``cmp.distances``, ...): this module
imports neither :mod:`rankbias.glrl` nor :mod:`rankbias.compare`, whose ``plot`` methods
forward here."""

from __future__ import annotations

import numpy as np

from .._quiet import quietly
from ._floor import _resolution_floor
from ._style import _floor_handle, _legend_outside, _plt


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
            f"GLRL loss staircase ({'PSD' if res.psd else 'asymmetric'}, eps={res.eps:.0e})",
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
    with quietly(RuntimeWarning):  # an alpha without any finite distance: NaN, no warning
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
