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

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._aot import aot_jit
from ...status import RunStatus
from .._common import batch_apply
from .._interrupt import ChunkReport, interrupts_return, report_chunk, warn_interrupted
from .._sparse import loss, loss_and_grad, record_from
from .._validation_stop import Monitor

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
    A rule whose ``full_batch`` is true (its gradient is the full ``grad L(params)``, the one
    a record evaluates) also has ``update(params, g, state, k, hyper) -> (new_params,
    new_state, eff)``: the loop then carries ``(f, g, aux)`` of :func:`~.._sparse.
    loss_and_grad` at the current iterate, each step evaluates it once at the next iterate,
    and a record takes its loss and gradient norm from the carry (:func:`_parts`).
    """

    save_matrices: bool
    rule: Any  # a step rule: .init(params, hyper), .step(problem, model, params, state, k, hyper)


def _parts(problem, hyper, limit, half, rise_tol: float, model, cfg: LoopConfig, heldout=None):
    """``(segment, rec)``: one record interval of the loop (``segment(carry, end)`` runs the
    steps up to step ``end``) and the record of a carry, for ``limit`` (the divergence
    threshold) and ``half`` (where the tail of the status starts).

    With a ``full_batch`` rule the carry's last entry is ``(f, g, aux)`` at its iterate: a
    step updates with that ``g`` and evaluates the next iterate (after the divergence
    test's freeze, so a stopped carry re-evaluates its own, unchanged iterate), and a
    record reads it. The gradient at a recorded iterate is the one the next step uses, so
    a record costs no evaluation of its own, and the iterates and records are the same
    numbers as a step that evaluates its own gradient. Otherwise (minibatches) the step
    evaluates its own and a record the full one (the entry is ``None``)."""
    rule = cfg.rule
    reuse = _reuses(rule)

    def one_step(c):
        params, state, k, bad, bad_step, bad_loss, t, tc, good, good_step, f_prev, rises = c[:12]
        if reuse:
            f, g, _ = c[12]
            new, new_state, eff = rule.update(params, g, state, k, hyper)
        else:
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
        new = keep(new, params)
        ev = loss_and_grad(problem, model, new) if reuse else None
        return (
            new,
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
            ev,
        )

    def rec(carry):
        params = carry[0]
        ev = carry[12] if reuse else loss_and_grad(problem, model, params)
        out = record_from(problem, model, params, ev, cfg.save_matrices, heldout)
        out["time"] = carry[6]
        return out

    def advance(carry, end):
        # Long stretches run in unrolled chunks of _CHUNK steps: one loop iteration (and, on a
        # GPU, one host round trip for the loop predicate) per chunk instead of per step.
        def chunk(c):
            return jax.lax.fori_loop(0, _CHUNK, lambda _, c: one_step(c), c, unroll=True)

        carry = jax.lax.while_loop(lambda c: (c[2] + _CHUNK <= end) & ~c[3], chunk, carry)
        return jax.lax.while_loop(lambda c: (c[2] < end) & ~c[3], one_step, carry)

    return advance, rec


def _reuses(rule) -> bool:
    """Whether the loop carries the step's evaluation for the records (:func:`_parts`)."""
    return bool(getattr(rule, "full_batch", False))


def _start(problem, params, last, hyper, divergence_factor, model, cfg: LoopConfig):
    """``(init carry, limit, half, rise_tol)`` of a run whose last record step is ``last``."""
    f0 = loss(problem, model, params)
    limit = divergence_factor * jnp.maximum(f0, 1e-12)
    # The tail (the last half of the steps) where the loss trend of the status is measured.
    half = last // 2
    # Loss rounding: 1e-10 relative in float64, 100 eps (1.2e-5) in float32.
    rise_tol = max(1e-10, 100 * float(jnp.finfo(f0.dtype).eps))
    zero = jnp.zeros((), f0.dtype)
    izero = jnp.zeros((), jnp.int64)
    init = (
        params,
        cfg.rule.init(params, hyper),
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
        loss_and_grad(problem, model, params) if _reuses(cfg.rule) else None,
    )
    return init, limit, half, rise_tol


def _output(carry, recs) -> dict:
    """The loop's result dict from its final carry and the records."""
    params, state, k, bad, bad_step, bad_loss, _, _, good, good_step, _, rises = carry[:12]
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


def _run(problem, params, rec_steps, hyper, divergence_factor, model, cfg: LoopConfig):
    """Core loop of every step rule. Returns records at ``rec_steps`` (with the summed
    effective step size ``time``), the divergence status and the last iterate whose loss had
    not risen (``good``, at step ``good_step``: where the divergence hint is measured)."""
    init, limit, half, rise_tol = _start(
        problem, params, rec_steps[-1], hyper, divergence_factor, model, cfg
    )
    advance, rec = _parts(problem, hyper, limit, half, rise_tol, model, cfg)

    def segment(carry, end):
        carry = advance(carry, end)
        return carry, rec(carry)

    rec0 = rec(init)
    carry, recs = jax.lax.scan(segment, init, rec_steps[1:])
    recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), rec0, recs)
    return _output(carry, recs)


@aot_jit
def _chunk_start(problem, params, last, hyper, divergence_factor, heldout, model, cfg: LoopConfig):
    """The host-driven run's start: ``(carry, limit, half, record at step 0)``."""
    init, limit, half, rise_tol = _start(
        problem, params, last, hyper, divergence_factor, model, cfg
    )
    _, rec = _parts(problem, hyper, limit, half, rise_tol, model, cfg, heldout)
    return init, limit, half, rec(init)


@aot_jit
def _chunk(problem, carry, ends, keep, hyper, limit, half, heldout, model, cfg: LoopConfig):
    """One chunk of the host-driven run: the steps up to each of ``ends`` in turn, recorded
    where ``keep`` (elsewhere zeros: a boundary that only splits a long interval)."""
    rise_tol = max(1e-10, 100 * float(jnp.finfo(carry[10].dtype).eps))
    advance, rec = _parts(problem, hyper, limit, half, rise_tol, model, cfg, heldout)
    shapes = jax.eval_shape(rec, carry)

    def segment(carry, x):
        end, k = x
        carry = advance(carry, end)
        none = lambda c: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # noqa: E731
        return carry, jax.lax.cond(k, rec, none, carry)

    return jax.lax.scan(segment, carry, (ends, keep))


#: Boundaries (records, or splits of a long record interval) per host-driven chunk.
CHUNK_RECORDS = 64
#: The work of one host-driven chunk, in floating-point operations of the model's dense
#: step estimate (:func:`chunk_steps`): about a second on a CPU core.
CHUNK_FLOPS = 5e9


def chunk_steps(model) -> int:
    """Steps per host-driven chunk at most: ``CHUNK_FLOPS`` over a step's estimated cost
    ``6 m n w L`` (``w`` the widest factor dimension, ``L`` the factor count), in
    ``[1, 2^16]``. It depends on the model only: chunks never depend on the clock."""
    m, n = model.shape
    dims = [d for shape in model.param_shapes for d in shape]
    cost = 6.0 * m * n * max(dims) * max(len(model.param_shapes), 1)
    return int(min(max(CHUNK_FLOPS // cost, 1), 2**16))


def chunk_plan(rec_steps: np.ndarray, per_chunk: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The host-driven chunks of a run with record steps ``rec_steps``: each a pair
    ``(ends, keep)`` of ``CHUNK_RECORDS`` boundary steps (a record interval longer than
    ``per_chunk`` steps split at multiples of ``per_chunk``; padded with the last end) and
    whether each boundary is a record; a chunk covers at most ``per_chunk`` steps."""
    ends: list[int] = []
    keep: list[bool] = []
    for a, b in zip(rec_steps[:-1], rec_steps[1:], strict=True):
        for s in range((int(a) // per_chunk + 1) * per_chunk, int(b), per_chunk):
            ends.append(s)
            keep.append(False)
        ends.append(int(b))
        keep.append(True)
    chunks, i, start = [], 0, int(rec_steps[0])
    while i < len(ends):
        j = i + 1
        while j < len(ends) and j - i < CHUNK_RECORDS and ends[j] - start <= per_chunk:
            j += 1
        e = np.full(CHUNK_RECORDS, ends[j - 1], np.int64)
        e[: j - i] = ends[i:j]
        k = np.zeros(CHUNK_RECORDS, bool)
        k[: j - i] = keep[i:j]
        chunks.append((e, k))
        start, i = ends[j - 1], j
    return chunks


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
    #: ``(rows, cols, values)`` of held-out entries scored at every record of a host-driven
    #: run (:func:`~.._sparse.heldout_tables`), or ``None``.
    heldout: Any = None

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

    def run_chunked(self, data, params, hyper: dict, method: str, display=None, stopping=None):
        """The single run driven from the host chunk by chunk (:func:`chunk_plan`; equal to
        :meth:`run`): ``(out, reached)``, ``reached`` the number of records reached, fewer
        than ``rec_steps.size`` when a ``KeyboardInterrupt`` ended the run (outside
        :func:`~.._interrupt.raise_interrupts`; within it the interrupt propagates) or
        ``stopping`` (an :class:`~.._validation_stop.EarlyStopping`, with ``heldout``) stopped
        it: then ``out["validation_stop"]`` says where, and the chunk that crossed the
        stopping record (and, with ``restore_best``, the best one) is replayed from its start
        to that record. Every chunk is reported (:func:`~.._interrupt.report_chunk`, then
        ``display``)."""
        model, cfg = self.model, self.cfg
        last = jnp.asarray(self.steps, jnp.int64)
        df = jnp.asarray(self.divergence_factor, self.dtype)
        n = self.rec_steps.size
        monitor = None if stopping is None else Monitor(stopping)
        state = None

        def run(carry, ends, keep):
            return _chunk(
                data,
                carry,
                jnp.asarray(ends),
                jnp.asarray(keep),
                hyper,
                limit,
                half,
                self.heldout,
                model,
                cfg,
            )

        def replay(at):  # the carry at a record: (chunk start carry, ends, keep, position)
            start, ends, keep, q = at
            if ends is None:
                return start
            i = int(np.nonzero(keep)[0][q])
            ends, keep = ends.copy(), keep.copy()
            ends[i + 1 :], keep[i + 1 :] = ends[i], False
            return run(start, ends, keep)[0]

        stop = None
        try:
            carry, limit, half, rec0 = _chunk_start(
                data, params, last, hyper, df, self.heldout, model, cfg
            )
            rec0 = {k: np.asarray(v)[None] for k, v in rec0.items()}
            state = (carry, [rec0])
            best_at = (carry, None, None, 0)
            if monitor is not None:
                monitor.feed(rec0["heldout_rmse"])
            for ends, keep in chunk_plan(self.rec_steps, chunk_steps(model)):
                start = state[0]
                new, r = run(start, ends, keep)
                part = {k: np.asarray(v)[keep] for k, v in r.items()}
                state = (new, [*state[1], part])  # one store: an interrupt sees both or none
                k_done = int(new[2])
                report_chunk(
                    ChunkReport(
                        method,
                        k_done,
                        self.steps,
                        float(part["loss"][-1]),
                        float(part["grad_norm"][-1]),
                        k_done,
                    )
                    if keep.any()
                    else ChunkReport(
                        method, k_done, self.steps, float("nan"), float("nan"), k_done
                    ),
                    display,
                )
                if monitor is not None:
                    first = monitor.seen
                    j = monitor.feed(part["heldout_rmse"])
                    if monitor.best_record >= first:
                        best_at = (start, ends, keep, monitor.best_record - first)
                    if j is not None:
                        stop = (j, (start, ends, keep, j - first), best_at)
                        break
                if bool(new[3]):  # diverged: the rest of the records repeat the frozen state
                    break
        except KeyboardInterrupt:
            if state is None or not interrupts_return():
                raise
        carry, parts = state
        recs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        reached = min(len(recs["loss"]), n)
        if stop is not None:
            assert monitor is not None and stopping is not None
            j, stop_at, best_at = stop
            carry = replay(stop_at)
            reached = j + 1
            recs = {k: v[:reached] for k, v in recs.items()}
            b = monitor.best_record
            out = _output(carry, recs)
            if stopping.restore_best:
                out["params"] = replay(best_at)[0]
            out["validation_stop"] = dict(
                best_record=b,
                best_step=int(self.rec_steps[b]),
                best_heldout_rmse=float(recs["heldout_rmse"][b]),
                stop_record=j,
                stop_step=int(self.rec_steps[j]),
                patience=stopping.patience,
                min_delta=stopping.min_delta,
                restore_best=stopping.restore_best,
            )
            return out, reached
        if bool(carry[3]) and reached < n:
            recs = {
                k: np.concatenate([v, np.repeat(v[-1:], n - reached, 0)]) for k, v in recs.items()
            }
            reached = n
        return _output(carry, recs), reached

    def run_batched(self, data, params, hyper: dict, p_axis, h_axes):
        """All runs as one vmapped program: ``params`` stacked, ``data`` stacked along
        ``p_axis`` (``None``: shared), each ``hyper`` leaf along its ``h_axes`` entry."""
        out = _run_batched(*self._args(data, params, hyper), p_axis, h_axes)
        return jax.block_until_ready(out)


def run_foreground(
    spec: LoopSpec, data, params, hyper: dict, method: str, display=None, stopping=None
):
    """A single run driven chunk by chunk (:meth:`LoopSpec.run_chunked`): ``(out, spec)``,
    ``spec`` cut to the records reached when a ``KeyboardInterrupt`` (``out["interrupted"]``
    then holds the step reached) or validation early stopping (``out["validation_stop"]``)
    ended the run early."""
    out, reached = spec.run_chunked(data, params, hyper, method, display, stopping)
    if reached < spec.rec_steps.size:
        if "validation_stop" not in out:
            out["interrupted"] = int(out["k"])
        recs = {k: v[:reached] for k, v in out["recs"].items()}
        out["recs"] = recs
        spec = dataclasses.replace(spec, rec_steps=spec.rec_steps[:reached])
    return out, spec


def interrupted_status(out: dict, what: str, stacklevel: int) -> tuple[str, dict] | None:
    """``(status, stationarity)`` of an interrupted run (warns ``RuntimeWarning``) or one
    stopped by validation early stopping, else ``None``."""
    if "validation_stop" in out:
        return RunStatus.VALIDATION_STOP.value, dict(verdict="validation_stop")
    if "interrupted" not in out:
        return None
    k = out["interrupted"]
    warn_interrupted(what, f"step {k}", stacklevel + 1)
    return RunStatus.INTERRUPTED.value, dict(verdict="interrupted", steps_done=k)
