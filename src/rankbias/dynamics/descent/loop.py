r"""The compiled loop of gradient descent and of every optimizer (:func:`rankbias.train`).

A ``lax.scan`` over the recording points with a ``lax.while_loop`` between them that stops
the moment the loss is non-finite or has grown by ``divergence_factor``. The update is a
static step *rule* (:class:`LoopConfig` ``.rule``): plain GD is
:class:`~.rules.GDRule`, an optax optimizer :class:`rankbias.dynamics._train._OptaxRule`.
Static: the rule, ``save_matrices``, the shapes and dtypes, the model (the compile key);
traced: the step size and other hyper-parameters, the record steps and
``divergence_factor``, the data and the init (a new value compiles nothing).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._aot import aot_jit
from .._common import batch_apply
from .._sparse import loss, record

__all__ = ["LoopConfig", "LoopSpec"]

#: Steps per unrolled chunk of the inner loop.
_CHUNK = 8


@dataclass(frozen=True)
class LoopConfig:
    """Static options of the loop (with the shapes and dtypes, the compilation key); the step
    size and other hyper-parameters, the record steps and ``divergence_factor`` are traced.

    ``rule`` is the update (hashable: it keys the compile cache). A rule has
    ``init(params, hyper) -> state`` and
    ``step(problem, model, params, state, k, hyper) -> (f, new_params, new_state, eff)``: the
    loss at ``params`` (what divergence is judged on), the next iterate, and the effective
    step size of this step (``nan`` where none is defined), summed into the recorded time.
    """

    save_matrices: bool
    rule: Any  # a step rule: .init(params, hyper), .step(problem, model, params, state, k, hyper)


def _run(problem, params, rec_steps, hyper, divergence_factor, model, cfg: LoopConfig):
    """Core loop of every step rule. Returns records at ``rec_steps`` (with the summed
    effective step size ``time``), the divergence status and the last iterate whose loss had
    not risen (``good``, at step ``good_step``: where the divergence hint is measured)."""
    f0 = loss(problem, model, params)
    limit = divergence_factor * jnp.maximum(f0, 1e-12)
    rule = cfg.rule
    # The tail (the last half of the steps) where the loss trend of the status is measured.
    half = rec_steps[-1] // 2
    # Loss rounding: 1e-10 relative in float64, 100 eps (1.2e-5) in float32.
    rise_tol = max(1e-10, 100 * float(jnp.finfo(f0.dtype).eps))

    def one_step(c):
        params, state, k, bad, bad_step, bad_loss, t, tc, good, good_step, f_prev, rises = c
        f, new, new_state, eff = rule.step(problem, model, params, state, k, hyper)
        diverged = ~bad & (~jnp.isfinite(f) | (f > limit))
        stop = bad | diverged
        keep = functools.partial(jax.tree_util.tree_map, lambda n, p: jnp.where(stop, p, n))
        # The last iterate whose loss did not rise: the state before the blow-up, where the
        # divergence hint measures the sharpness (the blown-up state's is meaningless).
        fell = ~stop & (f <= f_prev)
        # A rise beyond rounding in the tail: oscillation, not descent.
        rose = ~stop & (k > half) & (f > f_prev + rise_tol * jnp.abs(f_prev))
        good = jax.tree_util.tree_map(lambda p, q: jnp.where(fell, p, q), params, good)
        # Kahan-compensated sum: a constant step summed 10^6 times stays within an ulp of k * lr.
        y = jnp.where(stop, 0.0, eff) - tc
        s = t + y
        return (
            keep(new, params),
            keep(new_state, state),
            jnp.where(stop, k, k + 1),
            stop,
            jnp.where(diverged, k, bad_step),
            jnp.where(diverged, f, bad_loss),
            s,
            (s - t) - y,
            good,
            jnp.where(fell, k, good_step),
            jnp.where(stop, f_prev, f),
            rises + rose.astype(rises.dtype),
        )

    def rec(carry):
        out = record(problem, model, carry[0], cfg.save_matrices)
        out["time"] = carry[6]
        return out

    def segment(carry, end):
        # Long stretches run in unrolled chunks of _CHUNK steps: one loop iteration (and, on a
        # GPU, one host round trip for the loop predicate) per chunk instead of per step.
        def chunk(c):
            return jax.lax.fori_loop(0, _CHUNK, lambda _, c: one_step(c), c, unroll=True)

        carry = jax.lax.while_loop(lambda c: (c[2] + _CHUNK <= end) & ~c[3], chunk, carry)
        carry = jax.lax.while_loop(lambda c: (c[2] < end) & ~c[3], one_step, carry)
        return carry, rec(carry)

    zero = jnp.zeros((), f0.dtype)
    izero = jnp.zeros((), jnp.int64)
    init = (
        params,
        rule.init(params, hyper),
        izero,
        jnp.array(False),
        izero,
        zero,
        zero,
        zero,
        params,
        izero,
        f0,
        izero,
    )
    rec0 = rec(init)
    (params, state, k, bad, bad_step, bad_loss, _, _, good, good_step, _, rises), recs = (
        jax.lax.scan(segment, init, rec_steps[1:])
    )
    recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), rec0, recs)
    return dict(
        recs=recs,
        params=params,
        state=state,
        k=k,
        bad=bad,
        bad_step=bad_step,
        bad_loss=bad_loss,
        good=good,
        good_step=good_step,
        tail_rises=rises,
    )


_run_jit = aot_jit(_run)


@aot_jit
def _run_batched(problem, params, rec_steps, hyper, divergence_factor, model, cfg, p_axis, h_axes):
    return batch_apply(
        lambda p, x, h: _run(p, x, rec_steps, h, divergence_factor, model, cfg),
        (p_axis, 0, h_axes),
        (problem, params, hyper),
        cpu_vmap=True,
    )


@dataclass(frozen=True, eq=False)
class LoopSpec:
    """One run's settings as the loop takes them, built once per call.

    ``rec_steps``: the record steps (sorted, the last is ``steps``); ``padded``: the same
    padded to a length that depends on ``n_save`` and ``len(save_at)`` only (what the compiled
    loop scans, so that ``steps`` compiles nothing); ``divergence_factor`` (traced);
    ``model`` and ``cfg`` (static); ``dtype``: the run's float dtype."""

    rec_steps: np.ndarray
    padded: np.ndarray
    divergence_factor: float
    model: Any
    cfg: LoopConfig
    dtype: Any

    @property
    def steps(self) -> int:
        return int(self.rec_steps[-1])

    def _args(self, data, params, hyper: dict) -> tuple:
        traced = (jnp.asarray(self.padded), hyper, jnp.asarray(self.divergence_factor, self.dtype))
        return (data, params, *traced, self.model, self.cfg)

    def run(self, data, params, hyper: dict, *, block: bool = True):
        """The single run's compiled program on ``data`` (a problem or its sparse tables)
        from ``params`` with the traced ``hyper`` (``{"lr": ...}``, ...)."""
        out = _run_jit(*self._args(data, params, hyper))
        return jax.block_until_ready(out) if block else out

    def run_batched(self, data, params, hyper: dict, p_axis, h_axes):
        """All runs as one vmapped program: ``params`` stacked, ``data`` stacked along
        ``p_axis`` (``None``: shared), each ``hyper`` leaf along its ``h_axes`` entry."""
        out = _run_batched(*self._args(data, params, hyper), p_axis, h_axes)
        return jax.block_until_ready(out)
