"""A solved flow as a :class:`~rankbias.Trajectory`: its status, the records up to the stopping
time, the advice when it ran out of steps, and the error when it became non-finite."""

from __future__ import annotations

import warnings
from typing import Any

import diffrax
import jax.numpy as jnp
import numpy as np

from ...status import RunStatus
from ...trajectory import Trajectory
from .._common import build_trajectory
from .._interrupt import warn_interrupted
from .precision import flow_defaults
from .segments import Segment
from .settings import FlowSettings
from .solvers import DENSE_LIMIT


def status(result: int) -> str:
    """The :class:`RunStatus` value of a diffrax result code."""
    if result == int(diffrax.RESULTS.successful._value):
        return RunStatus.T_MAX.value
    if result == int(diffrax.RESULTS.event_occurred._value):
        return RunStatus.STEADY_STATE.value
    if result == int(diffrax.RESULTS.max_steps_reached._value):
        return RunStatus.MAX_STEPS.value
    return RunStatus.SOLVER_FAILURE.value


def max_steps_advice(settings: FlowSettings, num_rejected: int, num_steps: int) -> str:
    """What would help a flow that ran out of steps (it depends on what was used)."""
    solver, dtype = settings.options.solver, settings.dtype
    if solver in ("tsit5", "dopri5", "dopri8"):
        return (
            "use solver='rkc' (stabilised explicit: the flow is likely stiff), or raise `max_steps`"
        )
    tips = []
    d = flow_defaults(dtype)
    atol = settings.atol
    assert atol is not None  # resolved for the init
    if num_rejected > 0.3 * max(num_steps, 1):
        tips.append(
            f"{num_rejected} of {num_steps} steps were rejected: the tolerances are near "
            f"the rounding level of {jnp.dtype(dtype).name} (rtol={settings.rtol:g}, "
            f"atol={atol:.3g}); loosen them"
            + ("" if jnp.dtype(dtype) == jnp.float64 else " or use float64")
        )
    if settings.rtol < d["rtol"]:
        tips.append(
            f"rtol={settings.rtol:g} is below the {jnp.dtype(dtype).name} default {d['rtol']:g}"
        )
    if solver == "rkc":
        tips.append(
            f"for the stiff stretch between escapes (depth >= 3 from small inits) "
            f"solver='hybrid' takes dense Rodas4 steps (<= {DENSE_LIMIT} parameters)"
        )
    tips.append("raise `max_steps` or shorten `t_max`")
    return "; ".join(tips)


def to_trajectory(
    out: Segment,
    ts_np: np.ndarray,
    model,
    settings: FlowSettings,
    wall: float,
    run_info: dict,
    stacklevel: int,
) -> Trajectory:
    """The :class:`Trajectory` of a solved flow: the records at the save times up to the
    stopping time, then the end point; ``info`` holds the settings used, the status and the
    counts, then ``run_info`` (dtype, backend, a batch's run count ``batch_runs`` and index). Warns
    (``RuntimeWarning``) when the flow ran out of steps; raises ``FloatingPointError`` when
    it became non-finite. ``stacklevel``: what the caller would pass to
    :func:`warnings.warn`."""
    t_final = float(out.t_final)
    keep = ts_np <= t_final * (1 + 1e-12)
    recs = {k: np.asarray(v)[keep] for k, v in out.recs.items()}
    times = ts_np[keep]
    if times[-1] < t_final:
        recs = {k: np.concatenate([v, np.asarray(out.final_rec[k])[None]]) for k, v in recs.items()}
        times = np.concatenate([times, [t_final]])
    stat = RunStatus.INTERRUPTED.value if out.interrupted else status(int(out.result))
    if out.stopped:
        stat = RunStatus.VALIDATION_STOP.value
    solver, t_max = settings.options.solver, settings.options.t_max
    info: dict[str, Any] = dict(
        method="gradient_flow",
        solver=solver,
        rtol=settings.rtol,
        atol=settings.atol,
        gtol=settings.gtol,
        t_max=t_max,
        t_final=t_final,
        status=stat,
        num_steps=int(out.num_steps),
        num_accepted=int(out.num_accepted),
        num_rejected=int(out.num_rejected),
        num_vf_evals=None if out.nfe is None else int(out.nfe),
        restarts=int(out.restarts),
        wall_time=wall,
        **run_info,
    )
    if out.krylov_builds:
        info["krylov_builds"] = int(out.krylov_builds)
    if out.interrupted:
        warn_interrupted("gradient_flow", f"t={t_final:.4g} of t_max={t_max:g}", stacklevel)
    if stat == "max_steps":
        advice = max_steps_advice(settings, info["num_rejected"], info["num_steps"])
        warnings.warn(
            f"gradient_flow stopped at max_steps={settings.options.max_steps} at "
            f"t={t_final:.4g} < t_max={t_max:g} (solver {solver!r}); {advice}",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
    if stat == "solver_failure" or not np.all(np.isfinite(recs["loss"])):
        raise FloatingPointError(
            f"gradient_flow failed at t={t_final:.4g} (solver {solver!r}, status "
            f"{stat}): the trajectory became non-finite; lower rtol/atol or check the problem"
        )
    y_final = np.asarray(out.y_final, dtype=np.float64)
    final_params = model.unflatten(jnp.asarray(y_final))
    return build_trajectory(recs, times, final_params, model, info)
