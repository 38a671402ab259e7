"""The step controller of a solve segment: diffrax's PID (clipped to the save times) wrapped so
that the segment ends when the clock can no longer resolve the steps, when the Krylov solver
asks for a new basis, or when the step budget is spent."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

#: Proposed steps shorter than this fraction of the time already integrated (16 in a row) end
#: the solve segment, and the flow goes on from a clock reset to 0. Float64 time has spacing
#: ``~2.2e-16 t``: an escape lasting O(1) time units at t ~ 1e16 (depth 4 from alpha 1e-32)
#: cannot be stepped through on that clock, whereas the flow is autonomous and restarting it
#: costs a few evaluations. The threshold keeps ``dt >= 2^22`` float64 spacings (float32
#: runs use ``2^-13``: ``2^10`` spacings).
TIME_RESOLUTION = 2.0**-30
#: The float32 threshold (``2^10`` spacings).
TIME_RESOLUTION_32 = 2.0**-13

DT_MIN = diffrax.RESULTS.dt_min_reached  # the segment-end signal (no dtmin is set anywhere)
# Ends a segment for a new Krylov basis (no diffrax solver we use raises it).
REBUILD = diffrax.RESULTS.nonlinear_divergence
_UNRESOLVED_STEPS = 16


class Segmented(diffrax.AbstractAdaptiveStepSizeController):
    """Wraps a controller: ends the solve with ``RESULTS.dt_min_reached`` when the proposed
    step has stayed below ``resolution * t`` for ``_UNRESOLVED_STEPS`` consecutive steps, and
    with ``max_steps_reached`` after ``budget`` steps. Its state carries the step count and the
    next step size, for the next segment.

    One short step is no signal: a step can land a few float64 spacings before a save time,
    and the next, clipped to it, is then that short (seen in GLRL's flows); from there the
    controller regrows the step by at most 10x per step, past the threshold within 7 steps.
    """

    controller: diffrax.AbstractAdaptiveStepSizeController
    budget: object  # steps left (int or scalar array)
    resolution: float = eqx.field(static=True, default=TIME_RESOLUTION)
    # Only a Krylov solver asks for a basis; for any other an all -inf error is an overflow.
    krylov: bool = eqx.field(static=True, default=False)

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return eqx.tree_at(lambda s: s.controller, self, self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t_next, inner = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        zero = jnp.asarray(0, jnp.int32)
        return t_next, (inner, zero, t_next - t0, zero)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        inner0, n, _, streak = state
        # An all -inf error: the Krylov solver asks for a new basis. Reject the step, keep it
        # for the next segment, and end this one. Any other non-finite error rejects the step.
        if self.krylov:
            rebuild = jnp.all(y_error == -jnp.inf)
        else:
            rebuild = jnp.zeros((), bool)
        y_error = jnp.where(rebuild | jnp.isfinite(y_error), y_error, jnp.inf)
        keep, next_t0, next_t1, jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, jnp.where(rebuild, 0.0, y_error), error_order, inner0
        )
        keep = keep & ~rebuild
        next_t0, next_t1 = jnp.where(rebuild, t0, next_t0), jnp.where(rebuild, t1, next_t1)
        inner = jax.tree_util.tree_map(lambda a, b: jnp.where(rebuild, a, b), inner0, inner)
        dt = next_t1 - next_t0
        n = n + 1
        streak = jnp.where(dt < self.resolution * next_t0, streak + 1, 0)
        ok = result == diffrax.RESULTS.successful
        # equinox's Enumeration types a member as its Literal, not as RESULTS
        result = diffrax.RESULTS.where(ok & rebuild, REBUILD, result)  # pyright: ignore[reportArgumentType]
        ok = result == diffrax.RESULTS.successful
        result = diffrax.RESULTS.where(ok & (streak >= _UNRESOLVED_STEPS), DT_MIN, result)
        ok = result == diffrax.RESULTS.successful
        result = diffrax.RESULTS.where(
            ok & (n >= self.budget), diffrax.RESULTS.max_steps_reached, result
        )
        return keep, next_t0, next_t1, jump, (inner, n, dt, streak), result
