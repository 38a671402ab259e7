r"""How far from a stationary point a finished gradient-descent or optimizer run ended
(:func:`stationarity`), and the one warning for the runs that oscillated."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np

from ...status import RunStatus

__all__ = ["stationarity", "loop_stationarity", "warn_not_stationary"]


#: :func:`stationarity`: the last recorded gradient norm at most this fraction of the run's
#: largest recorded one: near a stationary point.
GRAD_RTOL = 1e-3
#: :func:`stationarity`: a loss that fell by more than this fraction over the last half of
#: the steps is still descending.
DESCENT_RTOL = 1e-3
#: :func:`stationarity`: more than this fraction of the last half's steps raising the loss
#: (beyond rounding) is an oscillation (healthy GD lowers the loss at every step).
RISE_FRACTION = 0.05


#: ``stationarity``: a run whose gradient ends above this fraction of its largest recorded
#: gradient, and whose loss never moved, is ``"stalled"`` (nothing can be said of it).
STALL_RATIO = 0.5
#: ``stationarity``: ``g |theta| / |f|`` below this is a saddle's plateau, not a stalled run.
SADDLE_RTOL = 1e-2


def stationarity(
    rec_steps, loss, grad_norm, tail_rises: int | None, *, param_norm: float | None = None
) -> dict[str, Any]:
    r"""How far from a stationary point a run that ran all its steps ended.

    With ``g_k`` the recorded gradient norms, ``f_k`` the recorded losses and the *tail* the
    last half of the ``S`` steps (from the last record at or before ``S // 2``):

    * ``grad_ratio = g_end / max_k g_k`` (the gradient at the end against the run's scale);
    * ``tail_drop = (f_tail_start - f_end) / |f_tail_start|`` (the loss trend);
    * ``tail_rise_fraction``: the fraction of the tail's steps at which the loss rose
      (``tail_rises`` counted at every step by the loop, for GD and full-batch sgd, whose
      healthy steps all lower the loss); ``tail_rises=None`` (minibatches, momentum,
      adaptive and unknown optimizers, whose losses go up and down on the way): the
      fraction of rises between the tail's records, which counts only without net descent.

    The verdict: ``"near_stationary"`` if ``grad_ratio <= GRAD_RTOL`` (``1e-3``) or no step
    ran; else ``"oscillating"`` if the loss rose over the tail or, with ``tail_rises``,
    ``tail_rise_fraction > RISE_FRACTION`` (``0.05``), without it, that and a tail drop
    ``<= DESCENT_RTOL`` (a step size too large: no descent at a large gradient); else
    ``"descending"`` if ``tail_drop > DESCENT_RTOL`` (``1e-3``: still going down, too few
    steps); else ``"stalled"`` if the loss changed by at most ``DESCENT_RTOL`` over the whole
    run while ``grad_ratio > STALL_RATIO`` (``0.5``: the gradient never fell from its largest
    value) and the gradient is not small against the loss, ``g_end |theta_end| >
    SADDLE_RTOL |f_end|`` (``1e-2``; ``|theta|`` the factors' norm, ``param_norm``): ``lr x
    steps`` was too short to say anything (a tiny ``lr``); else ``"plateau"`` (a flat loss at a
    gradient too small to move it: a saddle's plateau, e.g. the one at 0 from a small init,
    not a defect of the run).
    ``"oscillating"``, ``"descending"`` and ``"stalled"`` end with status ``not_stationary``,
    the others ``completed``. The rises are judged only with ``tail_rises`` (per-step
    counts): the losses of minibatches and adaptive optimizers fluctuate at their noise floor,
    so for them only a net rise over the tail is ``"oscillating"``.

    Arguments:
        rec_steps: the record steps (sorted, the last is ``S``), ``Trajectory.steps``.
        loss, grad_norm: the recorded losses and gradient norms (full problem), one per step.
        tail_rises: the loop's count of loss rises over the tail's steps, or ``None``.

    Returns:
        ``dict(verdict, status, grad_ratio, tail_drop, tail_rise_fraction)`` (what
        ``info["stationarity"]`` holds, ``status`` apart).
    """
    rec_steps = np.asarray(rec_steps)
    f = np.asarray(loss, dtype=np.float64)
    g = np.asarray(grad_norm, dtype=np.float64)
    steps = int(rec_steps[-1])
    g_max = float(np.max(g))
    ratio = float(g[-1] / g_max) if g_max > 0 else 0.0
    half = steps // 2
    i0 = max(int(np.searchsorted(rec_steps, half, side="right")) - 1, 0)
    f_a = float(f[i0])
    drop = (f_a - float(f[-1])) / abs(f_a) if f_a != 0 else 0.0
    if tail_rises is not None:
        n = max(steps - 1 - half, 0)
        rise = int(tail_rises) / n if n else 0.0
    else:
        d = np.diff(f[i0:])
        rise = float(np.mean(d > 1e-5 * np.abs(f[i0:-1]))) if d.size else 0.0
    # Only the per-step count judges rises: minibatch and adaptive losses fluctuate at their
    # noise floor (rises between records there are noise, not a step size too large).
    rises = rise > RISE_FRACTION and tail_rises is not None
    f_0 = float(f[0])
    moved = abs(f_0 - float(f[-1])) > DESCENT_RTOL * max(abs(f_0), 1e-300)
    # g |theta| / f is dimensionless (for a depth-L factorization near 0 it is ~ L times the
    # end-to-end scale): tiny at a saddle near the origin, O(1) away from stationary points
    saddle = param_norm is not None and float(g[-1]) * param_norm <= SADDLE_RTOL * abs(float(f[-1]))
    if steps == 0 or ratio <= GRAD_RTOL:
        verdict = "near_stationary"
    elif rises or drop < -DESCENT_RTOL:
        verdict = "oscillating"
    elif drop > DESCENT_RTOL:
        verdict = "descending"
    elif not moved and ratio > STALL_RATIO and not saddle:
        # the loss never moved, the gradient is still at its largest and not small against
        # the loss: lr x steps was too short to say anything (e.g. a tiny lr)
        verdict = "stalled"
    else:
        verdict = "plateau"
    status = (
        RunStatus.NOT_STATIONARY
        if verdict in ("oscillating", "descending", "stalled")
        else RunStatus.COMPLETED
    ).value  # a plain str, as the flow's statuses (reprs, JSON)
    return dict(
        verdict=verdict,
        status=status,
        grad_ratio=ratio,
        tail_drop=float(drop),
        tail_rise_fraction=float(rise),
    )


def loop_stationarity(out, rec_steps, monotone: bool = True) -> dict[str, Any]:
    """:func:`stationarity` of a finished loop output (records cut to ``rec_steps``);
    ``monotone``: a rule whose healthy steps all lower the loss (GD, full-batch sgd)."""
    n = rec_steps.size
    leaves = jax.tree_util.tree_leaves(out["params"])
    return stationarity(
        rec_steps,
        np.asarray(out["recs"]["loss"])[:n],
        np.asarray(out["recs"]["grad_norm"])[:n],
        int(out["tail_rises"]) if monotone else None,
        param_norm=float(np.sqrt(sum(float(np.sum(np.square(x))) for x in leaves))),
    )


def warn_not_stationary(what: str, runs: list[tuple[int | None, float | None, dict]]) -> None:
    """One ``RuntimeWarning`` for the runs (``(batch index or None, lr, stationarity)``) that
    oscillated: a step too large, with the stable step where one was found."""
    bad = [(i, lr, st) for i, lr, st in runs if st["verdict"] == "oscillating"]
    if not bad:
        return

    def one(i, lr, st):
        who = "" if i is None else f"run {i}: "
        hint = st.get("lr_hint")
        fix = (
            "lower lr"
            if hint is None
            else f"take lr <= {hint:.3g}"
            + (
                " (verified: a run at it neither diverges nor oscillates)"
                if st["lr_verified"]
                else ""
            )
        )
        at = "" if lr is None else f" at lr = {lr:g}"
        return (
            f"{who}the loss rose at {st['tail_rise_fraction']:.0%} of the last half's steps"
            f"{at}, ending with the gradient at {st['grad_ratio']:.2g} of its largest: {fix}"
        )

    runs_txt = "; ".join(one(*r) for r in bad)
    warnings.warn(
        f"{what} ended far from a stationary point (status not_stationary, "
        f"oscillating: the step size is too large); {runs_txt}",
        RuntimeWarning,
        stacklevel=3,
    )
