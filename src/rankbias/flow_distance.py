r"""How far a discrete run (GD, SGD, GroupRMSprop, momentum...) is from the gradient flow.

:func:`distance_to_flow` compares ``W`` of a run with ``W`` of a gradient-flow trajectory on a
shared time axis: the run's own recorded times (its effective time, ``Trajectory.times`` with
``info["time_axis"] == "effective"``, or ``steps * time_scale``) that lie inside the flow's
recorded range. The flow's ``W`` at those times is its record where the times coincide
(relative tolerance ``1e-9``) and otherwise the linear interpolation, in ``t``, between the two
neighbouring records; record the flow at the run's times for an exact comparison::

    flow = rb.gradient_flow(prob, model, params, t_max=tr.times[-1], save_at=tr.times,
                            save_matrices=True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .trajectory import Trajectory

__all__ = ["FlowDistance", "distance_to_flow"]


@dataclass(frozen=True)
class FlowDistance:
    r"""Distances ``d(t) = ||W_run(t) - W_flow(t)||_F / s`` at the shared times.

    ``s`` is ``||W_flow(T)||_F`` (the flow's last record) for ``relative=True``, else ``1``.

    Attributes
    ----------
    times: the shared times ``(K,)``; distance: ``d`` there ``(K,)``; max: ``max d``;
    at_end: ``d`` at the last shared time; to_limit: ``||W_run(end) - W_flow(T)||_F / s``
    (the run's end point against the flow's last record, its limit when the flow stopped at a
    steady state); exact: how many shared times are flow records (the rest interpolated);
    relative: the normalisation.
    """

    times: np.ndarray
    distance: np.ndarray
    max: float
    at_end: float
    to_limit: float
    exact: int
    relative: bool

    def __repr__(self) -> str:
        kind = "relative" if self.relative else "absolute"
        return (
            f"FlowDistance({kind}, {self.times.size} times up to t = {self.times[-1]:.4g} "
            f"({self.exact} exact): max {self.max:.3g}, at end {self.at_end:.3g}, "
            f"to the flow's limit {self.to_limit:.3g})"
        )


def _matrices(tr, name: str) -> np.ndarray:
    if not isinstance(tr, Trajectory):
        raise TypeError(f"`{name}` must be a rankbias Trajectory, got {type(tr).__name__}")
    if tr.matrices is None:
        raise ValueError(f"`{name}` has no recorded matrices; run it with save_matrices=True")
    return tr.matrices


def distance_to_flow(
    tr: Trajectory, flow: Trajectory, *, time_scale: float | None = None, relative: bool = True
) -> FlowDistance:
    r"""Distance of ``W`` between a run ``tr`` and a gradient flow ``flow`` over time.

    Parameters
    ----------
    tr: the run (:func:`rankbias.train`, :func:`rankbias.gradient_descent`), recorded with
        ``save_matrices=True``.
    flow: a :func:`rankbias.gradient_flow` trajectory from the same initialization, with
        ``save_matrices=True``.
    time_scale: if given, the run's time is ``steps * time_scale`` (e.g. ``lr`` for Adam,
        whose ``times`` are steps); by default ``tr.times``, which must be an effective time.
    relative: divide by ``||W_flow(T)||_F`` (the flow's last record).

    Returns
    -------
    :class:`FlowDistance`.

    Raises
    ------
    ValueError: no matrices recorded, shapes that differ, a run whose time axis is the step
        index (``info["time_axis"] == "step"``) without ``time_scale``, or no shared time.
    TypeError: arguments that are not trajectories.
    """
    Wr, Wf = _matrices(tr, "tr"), _matrices(flow, "flow")
    if Wr.shape[1:] != Wf.shape[1:]:
        raise ValueError(f"`tr` records {Wr.shape[1:]} matrices, `flow` {Wf.shape[1:]}")
    if time_scale is not None:
        if tr.steps is None:
            raise ValueError("`time_scale` needs a run with recorded `steps`")
        if not (np.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"`time_scale` must be > 0, got {time_scale!r}")
        t = tr.steps.astype(np.float64) * float(time_scale)
    else:
        if tr.info.get("time_axis") == "step":
            raise ValueError(
                f"`tr` ({tr.info.get('optimizer', 'this optimizer')}) has no "
                f"effective time: its `times` are steps. Pass `time_scale` "
                f"(time per step, e.g. its lr) to compare it with the flow"
            )
        t = np.asarray(tr.times, dtype=np.float64)
    tf = np.asarray(flow.times, dtype=np.float64)
    inside = (t >= tf[0]) & (t <= tf[-1] * (1 + 1e-12))
    if not inside.any():
        raise ValueError(
            f"no time of `tr` (in [{t[0]:.4g}, {t[-1]:.4g}]) lies in the flow's "
            f"recorded range [{tf[0]:.4g}, {tf[-1]:.4g}]"
        )
    ts, Ws = t[inside], Wr[inside]
    j = np.clip(np.searchsorted(tf, ts, side="right") - 1, 0, tf.size - 1)
    j1 = np.minimum(j + 1, tf.size - 1)
    hit0 = np.isclose(ts, tf[j], rtol=1e-9, atol=0)
    hit1 = np.isclose(ts, tf[j1], rtol=1e-9, atol=0)
    span = np.where(tf[j1] > tf[j], tf[j1] - tf[j], 1.0)
    w = np.clip((ts - tf[j]) / span, 0.0, 1.0)
    w = np.where(hit0, 0.0, np.where(hit1, 1.0, w))[:, None, None]
    Wflow = (1 - w) * Wf[j] + w * Wf[j1]
    s = float(np.linalg.norm(Wf[-1])) if relative else 1.0
    s = s if s > 0 else 1.0
    d = np.linalg.norm(Ws - Wflow, axis=(1, 2)) / s
    to_limit = float(np.linalg.norm(tr.final_matrix - flow.final_matrix)) / s
    return FlowDistance(
        times=ts,
        distance=d,
        max=float(d.max()),
        at_end=float(d[-1]),
        to_limit=to_limit,
        exact=int(np.sum(hit0 | hit1)),
        relative=relative,
    )
