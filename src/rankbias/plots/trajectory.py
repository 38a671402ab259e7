"""Figures of one run (:data:`TRAJECTORY_KINDS`), drawn through the same panel code as the sweep
figures: the run becomes a one-run dataset (``to_xarray``)."""

from __future__ import annotations

import numpy as np

from ..status import RunStatus, ended_well
from ._floor import _floor_scale
from ._frame import _frame, _sparse_minor_labels
from ._panel import _time_panel
from ._protocol import RunRecord
from ._style import _floor_handle, _legend_outside, _plt, _status_note, _style_time_axis

#: What one :class:`~rankbias.Trajectory` can show (``Trajectory.plot(kind)``).
TRAJECTORY_KINDS = ("loss", "singular_values", "effective_rank", "grad_norm")
#: Per-record metrics a run may carry (``traj.metrics``), drawn on request only.
METRIC_KINDS = ("heldout_rmse",)


#: The legend label of the held last values of a flow stopped at its steady state.
HELD_LABEL = "held after the steady-state stop"


_KIND = {
    "loss": ("loss", "loss f(W(t))", True),
    "singular_values": ("singular_values", "singular values of W(t)", True),
    "effective_rank": (None, "effective rank", False),
    "grad_norm": ("grad_norm", "||grad L(params(t))||", True),
    "heldout_rmse": ("heldout_rmse", "held-out RMSE", False),
}


def _kind(kind) -> str:
    k = str(kind).replace("-", "_")
    if k not in TRAJECTORY_KINDS + METRIC_KINDS:
        raise ValueError(
            f"unknown `kind` {kind!r}; expected one of {', '.join(TRAJECTORY_KINDS + METRIC_KINDS)}"
        )
    return k


_TITLES = {
    "loss": "Loss f(W(t))",
    "singular_values": "Singular values of W(t)",
    "effective_rank": "Effective rank of W(t)",
    "grad_norm": "Gradient norm",
    "heldout_rmse": "Held-out RMSE of W(t)",
}
_METHODS = {"gradient_flow": "gradient flow", "gradient_descent": "gradient descent"}


def plot_trajectory(
    traj: RunRecord, kind: str = "loss", *, ax=None, top_k: int | None = 5, rank_kind: str = "ratio"
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
    if not isinstance(traj, RunRecord):  # structurally: see _protocol
        raise TypeError(f"`traj` must be a rankbias Trajectory, got {type(traj).__name__}")
    kind = _kind(kind)
    if top_k is not None:
        top_k = int(top_k)
        if top_k < 1:
            raise ValueError(f"`top_k` must be >= 1 or None, got {top_k}")
    if kind in METRIC_KINDS and kind not in getattr(traj, "metrics", {}):
        raise ValueError(f"the run has no {kind!r} records: run it with `heldout=`")
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
