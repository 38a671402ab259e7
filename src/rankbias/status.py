"""How a run ended: the one list of run statuses, shown wherever a run is shown.

Every engine writes one of these into ``info["status"]`` of its result; the store keeps it
with each run, the sweep dataset carries it, and the CLI, figures and reports count and mark
runs by it. A :class:`RunStatus` is a ``str`` (``RunStatus.STEADY_STATE == "steady_state"``),
so results saved before this module existed compare and load unchanged.

A run *ended well* when it reached what it was asked to reach: a certified steady state (a
flow), all its steps near a stationary point (gradient descent, optimizers) or a KKT point
(GLRL), or was stopped by validation early stopping. Every other
status is a run cut short or gone wrong, and is counted and marked as such.
"""

from __future__ import annotations

import enum

__all__ = ["RunStatus", "ended_well", "describe"]


class RunStatus(enum.StrEnum):
    """The statuses a run can end with (``info["status"]``)."""

    #: gradient flow: stopped at a certified steady state (gradient below ``gtol``).
    STEADY_STATE = "steady_state"
    #: gradient flow: reached ``t_max`` without a certified steady state.
    T_MAX = "t_max"
    #: gradient flow: ran out of solver steps (``max_steps``) before ``t_max``.
    MAX_STEPS = "max_steps"
    #: gradient flow: the solver failed (non-finite state or step size underflow).
    SOLVER_FAILURE = "solver_failure"
    #: gradient descent / optimizers: ran every step and ended near a stationary point.
    COMPLETED = "completed"
    #: gradient descent / optimizers: ran every step but ended far from a stationary point
    #: (its gradient norm and loss trend say it was still moving or oscillating).
    NOT_STATIONARY = "not_stationary"
    #: gradient descent / optimizers: the loss became non-finite or grew past the limit.
    DIVERGED = "diverged"
    #: GLRL: stopped by the KKT test (top eigenvalue of ``-grad f`` at most ``tol``).
    KKT = "kkt"
    #: GLRL: stopped by the rank budget (``max_rank``) before the KKT test held.
    MAX_RANK = "max_rank"
    #: any engine run in the foreground (gradient flow, gradient descent, ``train``, GLRL):
    #: interrupted (Ctrl-C); the result holds the trajectory up to the interrupt.
    INTERRUPTED = "interrupted"
    #: gradient descent, ``train``, gradient flow with ``early_stopping=``: stopped because
    #: the held-out RMSE stopped improving (validation early stopping).
    VALIDATION_STOP = "validation_stop"


#: the statuses of a run that reached what it was asked to reach.
_WELL = frozenset(
    {RunStatus.STEADY_STATE, RunStatus.COMPLETED, RunStatus.KKT, RunStatus.VALIDATION_STOP}
)

_WORDS = {
    RunStatus.STEADY_STATE: "certified steady state",
    RunStatus.T_MAX: "stopped at t_max without a steady state",
    RunStatus.MAX_STEPS: "ran out of solver steps (max_steps)",
    RunStatus.SOLVER_FAILURE: "solver failure",
    RunStatus.COMPLETED: "all steps, near a stationary point",
    RunStatus.NOT_STATIONARY: "all steps, but far from a stationary point",
    RunStatus.DIVERGED: "diverged",
    RunStatus.KKT: "KKT point (GLRL's eigenvalue test)",
    RunStatus.MAX_RANK: "stopped at max_rank before a KKT point",
    RunStatus.INTERRUPTED: "interrupted (Ctrl-C); the trajectory up to the interrupt",
    RunStatus.VALIDATION_STOP: "stopped by validation early stopping",
}


def ended_well(status: str) -> bool:
    """Whether a run with this status reached what it was asked to (steady state, completed,
    KKT)."""
    return status in _WELL


def describe(status: str) -> str:
    """A few words for a status (an unknown one, e.g. from a newer version, as itself)."""
    try:
        return _WORDS[RunStatus(status)]
    except ValueError:
        return str(status)
