"""Solving the flow: one compiled segment on a clock that starts at 0 (or where the previous
chunk ended), and the loop that continues a flow segment after segment (the host-driven
chunks of a single run, a clock reset, a new Krylov basis).

The compiled solve returns a dict (a pytree that :func:`rankbias._aot.aot_jit` can store
across processes); the host side reads it as a :class:`Segment`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ..._aot import aot_jit
from ...options import MAX_STEPS_CAP
from .._common import batch_apply, no_host_callbacks, record
from .._interrupt import interrupts_return
from .._sparse import loss_and_grad_norm
from .controller import DT_MIN, REBUILD, TIME_RESOLUTION, TIME_RESOLUTION_32, Segmented
from .settings import FlowConfig, Tolerances
from .solvers import (
    OWN,
    RK_STAGES,
    FlowArgs,
    build_basis,
    krylov_rank,
    make_solver,
    no_basis,
    vector_field,
)
from .steady import steady_event


class Resume(NamedTuple):
    """Where a flow stopped by :class:`~.controller.Segmented` goes on: on a clock that
    starts at ``start`` and reads global time minus ``offset`` (a clock reset: ``start = 0``;
    a host-driven chunk: the previous segment's clock and offset), with step ``dt0``, the
    solver's state (RKC's spectral data and evaluation count), the steps left for this
    segment, and the stopping test's references of the original start."""

    offset: jax.Array
    dt0: jax.Array
    solver_state: Any
    budget: jax.Array
    loss0: jax.Array
    gnorm0: jax.Array
    start: jax.Array


class Segment(NamedTuple):
    """A solved flow, one segment or all of them (:func:`continue_segments`): the records
    at the save times (``ts``; ``inf`` past the end), the end time, state and record, the
    diffrax result code, the step and evaluation counts (``nfe`` ``None`` where the solver
    does not expose them), what a next segment needs, and the clock resets and Krylov builds."""

    recs: dict
    ts: Any
    t_final: Any
    y_final: jax.Array
    final_rec: dict
    result: Any
    num_steps: Any
    num_accepted: Any
    num_rejected: Any
    nfe: Any
    solver_state: Any
    dt_next: Any
    loss0: jax.Array
    gnorm0: jax.Array
    restarts: int = 0
    krylov_builds: int = 0
    interrupted: bool = False
    stopped: bool = False


def _solve(
    problem,
    y0,
    ts,
    t_max,
    tols: Tolerances,
    model,
    cfg: FlowConfig,
    resume: Resume | None = None,
    basis=None,
    heldout=None,
) -> dict[str, Any]:
    """One segment of the flow, on a clock that starts at 0 (``resume.start`` for a chunk).

    Everything that may differ between runs of the same shapes (data, ``y0``, save times
    ``ts``, ``t_max``, the tolerances and the step budget in ``tols``) is traced; ``model`` and
    ``cfg`` are static.

    ``resume`` continues a flow stopped by :class:`~.controller.Segmented` at global time
    ``resume.offset``: save times are shifted by it, the solver's state and the stopping
    test's references carry over. ``basis = (Vt, theta)`` is the Krylov basis of ``"krylov"``
    (zeros, i.e. none yet, by default); it reaches the solver in its ``args``, constant over
    the segment (carried in the solver's state, its ``k x P`` floats would be copied at every
    step: measured 64 ms per step at ``P = 30,000``, ``k = 1024``). Returns the fields of a
    :class:`Segment` (without ``restarts`` and ``krylov_builds``).
    """
    vf = vector_field(model)
    solver = make_solver(cfg.solver, y0.size, tols)  # predicts the controller: issue 30
    k = krylov_rank(solver, y0.size)
    if k and basis is None:
        basis = no_basis(k, y0)
    if resume is None:
        offset, dt0, solver_state, budget, start = 0.0, None, None, tols.max_steps, 0.0
        loss0, gnorm0 = loss_and_grad_norm(problem, model, model.unflatten(y0))
    else:
        offset, dt0, solver_state, budget, loss0, gnorm0, start = resume
    t1 = t_max - offset
    ts = jnp.clip(ts - offset, start, t1)  # times before the segment: not recorded, discarded

    def term_fn(t, y, args: FlowArgs):
        return vf(t, y, args.problem)

    def full(t, y, args: FlowArgs):
        return record(args.problem, model, model.unflatten(y), cfg.save_matrices, heldout)

    def later(t, y, args: FlowArgs):  # a later segment records only the times after its start
        shapes = jax.eval_shape(full, t, y, args)
        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return jax.lax.cond(t > start, full, lambda *_: zeros, t, y, args)

    rec = full if resume is None else later

    own = cfg.solver in OWN
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=ts, fn=rec), diffrax.SubSaveAt(t1=True)],
        solver_state=own,
        controller_state=True,
    )
    event = steady_event(model) if cfg.steady_stop else None
    # Steps land on the save times: records carry no interpolation error.
    resolution = TIME_RESOLUTION if y0.dtype == jnp.float64 else TIME_RESOLUTION_32
    # The eqx.Module dataclass __init__ is not inferred through the diffrax base (pyright)
    controller = Segmented(
        diffrax.ClipStepSizeController(  # pyright: ignore[reportCallIssue]
            diffrax.PIDController(rtol=tols.rtol, atol=tols.atol), step_ts=ts
        ),
        budget,
        resolution,
        krylov=bool(k),
    )
    with no_host_callbacks():
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(term_fn),
            solver,
            t0=start,
            t1=t1,
            dt0=dt0,
            y0=y0,
            args=FlowArgs(problem, loss0, gnorm0, tols, basis if k else None),
            saveat=saveat,
            stepsize_controller=controller,
            max_steps=MAX_STEPS_CAP,
            event=event,
            throw=False,
            solver_state=solver_state if own else None,
        )
    # SaveAt(subs=..., controller_state=True, solver_state=own) saves these
    assert sol.ys is not None and sol.ts is not None and sol.controller_state is not None
    recs, yfinal = sol.ys
    final_rec = record(problem, model, model.unflatten(yfinal[0]), cfg.save_matrices, heldout)
    return dict(
        recs=recs,
        ts=sol.ts[0],
        t_final=sol.ts[1][0],
        y_final=yfinal[0],
        final_rec=final_rec,
        result=sol.result._value,
        num_steps=sol.stats["num_steps"],
        num_accepted=sol.stats["num_accepted_steps"],
        num_rejected=sol.stats["num_rejected_steps"],
        nfe=_count_evals(cfg, sol, resume, start),
        solver_state=sol.solver_state if own else None,
        dt_next=sol.controller_state[2],
        loss0=loss0,
        gnorm0=gnorm0,
    )


def _count_evals(cfg: FlowConfig, sol, resume: Resume | None, start):
    """Vector-field evaluations of one segment (a JVP counts as one), or ``None`` where the
    solver does not expose them (``"kvaerno5"``: its Newton iterations are not counted).

    Beyond the solver's own: the steady-state test (one gradient at the start of the
    segment and after every step; its Lanczos products, run only where the gradient is
    already below ``gtol``, are not counted) and the records (one gradient per saved time,
    plus the segment's end).
    """
    steps = sol.stats["num_steps"]
    if cfg.solver in OWN:
        solver_nfe = sol.solver_state[3]  # RKC counts its stages, power iterations and init
        if resume is not None:
            solver_nfe = solver_nfe - resume.solver_state[3]  # the counter carries over segments
    elif cfg.solver in RK_STAGES:
        # FSAL: the first step also evaluates f(y0) (exact unless the first step is rejected,
        # which repeats it: the initial step selection makes that rare).
        solver_nfe = (RK_STAGES[cfg.solver] - 1) * steps + (steps > 0)
    else:
        return None
    # No initial step-size selection: diffrax's PID picks dt0 = 0.01 without evaluations
    # for the wrapped terms that diffeqsolve passes it.
    extra = steps + 1 if cfg.steady_stop else 0
    saved = jnp.sum(jnp.isfinite(sol.ts[0]) & ((sol.ts[0] > start) | (resume is None))) + 1
    return (solver_nfe + extra + saved).astype(jnp.int64)


solve = aot_jit(_solve)


@aot_jit
def solve_batch(problem, y0, ts, t_max, tols, model, cfg, p_axis):
    """:func:`solve` over a batch (``y0`` ``(B, P)``; ``problem`` shared, ``p_axis`` None,
    or stacked along axis 0), as one compiled computation (:func:`batch_apply`)."""
    return batch_apply(
        lambda p, y: _solve(p, y, ts, t_max, tols, model, cfg), (p_axis, 0), (problem, y0)
    )


_RESTART = int(DT_MIN._value)
_NEW_BASIS = int(REBUILD._value)


#: Solver steps per host-driven chunk of a single flow (:func:`continue_segments`): a fixed
#: count, so that chunks never depend on the clock or on the display.
CHUNK_STEPS = 2000

_MAX_STEPS = int(diffrax.RESULTS.max_steps_reached._value)


def continue_segments(
    problem,
    first: Segment,
    ts,
    t_max,
    tols: Tolerances,
    model,
    cfg: FlowConfig,
    chunk: int | None = None,
    on_chunk=None,
    heldout=None,
    stop=None,
) -> Segment:
    """Continue a solve that stopped on the time-resolution signal, asked for a new Krylov
    basis or (``chunk``: a host-driven run) spent its ``chunk`` steps, segment after segment.

    ``first`` is the first segment's output (one run; solved with a step budget of ``chunk``
    when given); returns it with the records of all segments merged (each save time taken
    from the segment that covers it), the global stopping time, the summed step counts,
    ``restarts`` (the number of clock resets) and ``krylov_builds`` (bases built at the state
    where the segment stopped; the step that asked is retried with it). A chunk goes on on
    the same clock with the solver's and controller's state, so that the run equals a
    one-call run (its bookkeeping evaluations, a steady-state test, a first-stage evaluation
    and an end record per chunk, are not counted in ``nfe``). ``on_chunk(segment, t, steps)``
    is called after each segment (``t`` the global time reached, ``steps`` the steps so far). A ``KeyboardInterrupt``
    (outside :func:`~.._interrupt.raise_interrupts`) returns the segments finished so far,
    marked ``interrupted``. ``stop(records, t)`` (the merged host records, the global time
    reached) is asked after each segment; ``True`` ends the run there, marked ``stopped``.
    """
    max_steps = int(tols.max_steps)
    out = first
    counts = dict(
        num_steps=int(out.num_steps),
        num_accepted=int(out.num_accepted),
        num_rejected=int(out.num_rejected),
    )

    def goes_on(out, counts) -> bool:
        code = int(out.result)
        if code in (_RESTART, _NEW_BASIS):
            return counts["num_steps"] < max_steps
        return chunk is not None and code == _MAX_STEPS and counts["num_steps"] < max_steps

    try:
        if on_chunk is not None:
            on_chunk(out, float(out.t_final), counts["num_steps"])
    except KeyboardInterrupt:
        if not interrupts_return():
            raise
        return out._replace(interrupted=goes_on(out, counts))  # ended anyway: not cut short
    if not goes_on(out, counts):
        return out
    if stop is not None and stop({k: np.asarray(v) for k, v in out.recs.items()}, out.t_final):
        return out._replace(stopped=True)
    recs = {k: np.array(v) for k, v in out.recs.items()}
    nfe = None if out.nfe is None else int(out.nfe)  # per segment: summed
    offset, restarts, builds = 0.0, 0, 0
    y = out.y_final
    rank = krylov_rank(make_solver(cfg.solver, y.size), y.size)
    basis = no_basis(rank, y) if rank else None
    fsal = 1 if cfg.solver in RK_STAGES else 0
    steady = 1 if cfg.steady_stop else 0
    state = (out, offset, restarts, builds, basis, recs, counts, nfe)
    interrupted = stopped = False
    try:
        while goes_on(state[0], state[6]):
            out, offset, restarts, builds, basis, recs, counts, nfe = state
            counts, recs = dict(counts), {k: v.copy() for k, v in recs.items()}
            code = int(out.result)
            solver_state, start = out.solver_state, jnp.asarray(0.0, ts.dtype)
            if code == _NEW_BASIS:
                basis = build_basis(problem, out.y_final, model, rank)
                solver_state = tuple(solver_state[:4]) + (jnp.zeros_like(solver_state[4]),)
                builds += 1
            elif code == _RESTART:
                restarts += 1
            if code == _MAX_STEPS:  # a chunk: on the same clock
                start = jnp.asarray(out.t_final, ts.dtype)
            else:  # a clock reset
                offset += float(out.t_final)
            left = max_steps - counts["num_steps"]
            resume = Resume(
                jnp.asarray(offset, ts.dtype),
                jnp.asarray(out.dt_next, ts.dtype),
                solver_state,
                jnp.asarray(left if chunk is None else min(left, chunk), jnp.int32),
                out.loss0,
                out.gnorm0,
                start,
            )
            new = Segment(
                **solve(problem, out.y_final, ts, t_max, tols, model, cfg, resume, basis, heldout)
            )
            clock = np.asarray(new.ts)
            saved = np.isfinite(clock) & (clock > float(start))
            for k in recs:
                recs[k][saved] = np.asarray(new.recs[k])[saved]
            counts["num_steps"] += int(new.num_steps)
            counts["num_accepted"] += int(new.num_accepted)
            counts["num_rejected"] += int(new.num_rejected)
            if nfe is not None:
                nfe += int(new.nfe)
                if code == _MAX_STEPS:  # the chunk's bookkeeping, not the flow's
                    nfe -= steady + 1 + (fsal if int(new.num_steps) > 0 else 0)
            state = (new, offset, restarts, builds, basis, recs, counts, nfe)
            if on_chunk is not None:
                on_chunk(new, offset + float(new.t_final), counts["num_steps"])
            if stop is not None and goes_on(new, counts):
                if stop(recs, offset + float(new.t_final)):
                    stopped = True
                    break
    except KeyboardInterrupt:
        if not interrupts_return():
            raise
        interrupted = True
    out, offset, restarts, builds, basis, recs, counts, nfe = state
    result = int(out.result)
    if result in (_RESTART, _NEW_BASIS):  # the step budget ran out first
        result = _MAX_STEPS
    if nfe is not None:
        nfe += 3 * rank * builds  # the builds' JVPs
    return out._replace(
        recs=recs,
        t_final=offset + float(out.t_final),
        restarts=restarts,
        krylov_builds=builds,
        result=result,
        nfe=nfe,
        interrupted=interrupted,
        stopped=stopped,
        **counts,
    )
