r"""The gradient-descent step rule ``params - lr * s(k) * grad L(params)`` and its schedule
``s(k)`` (``lr_schedule``), with the time axis it defines: ``t_k = sum_{j<k} lr s(j)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .._sparse import loss_and_grad

__all__ = ["GDRule", "check_schedule", "schedule_values", "gd_times"]


@dataclass(frozen=True)
class GDRule:
    """``params - lr * s(k) * grad L(params)``; ``hyper = {"lr": lr}``. All factors move at
    once (vanilla GD, as in Chou et al.); ``grad L`` by the dense/sparse dispatch."""

    schedule: Callable | None

    #: The step's gradient is the full ``grad L(params)`` (what a record evaluates): the loop
    #: evaluates it once, carries it and calls :meth:`update` (:mod:`.loop`).
    full_batch = True

    def init(self, params, hyper):
        return ()

    def update(self, params, g, state, k, hyper):
        """``(params - lr s(k) g, state, lr s(k))`` for the gradient ``g`` at ``params``."""
        lr = hyper["lr"] if self.schedule is None else hyper["lr"] * self.schedule(k)
        return jax.tree_util.tree_map(lambda p, gp: p - lr * gp, params, g), state, lr

    def step(self, problem, model, params, state, k, hyper):
        f, g, _ = loss_and_grad(problem, model, params)
        return (f, *self.update(params, g, state, k, hyper))


def check_schedule(lr_schedule) -> None:
    """``lr_schedule``: ``None`` or a callable (its values are checked by
    :func:`schedule_values`)."""
    if lr_schedule is not None and not callable(lr_schedule):
        raise ValueError("`lr_schedule` must be a callable k -> multiplier of `lr` (JAX-traceable)")


def schedule_values(schedule, steps: int) -> np.ndarray | None:
    """``s(0), ..., s(steps - 1)``, checked finite and ``>= 0`` (a negative multiplier would
    run gradient ascent, with decreasing times)."""
    if schedule is None:
        return None
    try:
        vals = np.asarray(jax.vmap(schedule)(jnp.arange(max(steps, 1))), dtype=np.float64)
    except Exception as e:
        raise ValueError(
            f"`lr_schedule` must map a step index (traced int array) to a "
            f"multiplier of `lr`; calling it failed: {e}"
        ) from None
    vals = np.broadcast_to(vals, (max(steps, 1),))[:steps]
    bad = np.nonzero(~np.isfinite(vals) | (vals < 0))[0]
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"`lr_schedule` must return finite multipliers >= 0, got lr_schedule({k}) = {vals[k]:g}"
        )
    return vals


def gd_times(rec_steps, lr, schedule_vals):
    """The times of the record steps: ``k lr`` or, with a schedule, ``sum_{j<k} lr s(j)``
    (float64, on the host, from the step sizes themselves)."""
    if schedule_vals is None:
        return rec_steps * lr
    cum = np.concatenate([[0.0], np.cumsum(lr * schedule_vals)])
    return cum[rec_steps]
