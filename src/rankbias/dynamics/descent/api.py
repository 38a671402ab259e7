r"""Gradient descent ``params_{k+1} = params_k - lr s(k) grad L(params_k)``, jit-compiled:
:func:`gradient_descent` and :func:`gradient_descent_batch`.

The loop (:mod:`.loop`) stops the moment the loss is non-finite or has grown by
``divergence_factor``; the Python side then raises a :class:`~.hints.DivergenceError` naming
the step, the loss and a stable step size. A finished run gets a status from
:func:`~.stationarity.stationarity`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..._deprecation import renamed
from ..._validation import check_bool, check_choice
from ...options import DescentOptions
from .._common import (
    batch_data,
    build_trajectory,
    check_initial_loss,
    check_run,
    index_tree,
    prepare_batch,
)
from .._progress import check_progress, progress_display
from .._records import lapack_threads
from .._sparse import backend_data, choose_backend, heldout_tables
from .._validation_stop import check_early_stopping
from .batching import batch_strategy, check_initial_losses, collect, run_problem
from .hints import Rerun, check_divergence, end_stationarity
from .loop import LoopConfig, LoopSpec, interrupted_status, run_foreground
from .rules import GDRule, check_schedule, gd_times, schedule_values
from .settings import LoopSettings
from .sharpness import sharp
from .stationarity import warn_not_stationary

__all__ = ["gradient_descent", "gradient_descent_batch"]


def _check_gd_args(
    lr, steps, n_save, divergence_factor, lr_schedule, save_at, save_spacing="log"
) -> LoopSettings:
    """The boundary checks of both public functions: one :class:`DescentOptions` (``lr`` may
    hold one value per run of a batch), then ``save_at`` and the schedule."""
    options = DescentOptions(
        lr=lr,
        steps=steps,
        n_save=n_save,
        divergence_factor=divergence_factor,
        save_spacing=save_spacing,
        save_at=save_at,
    )
    settings = LoopSettings.from_options(options, save_at)
    check_schedule(lr_schedule)
    return settings


def _spec(settings: LoopSettings, save_matrices, lr_schedule, model, dtype) -> LoopSpec:
    cfg = LoopConfig(check_bool(save_matrices, "save_matrices"), GDRule(lr_schedule))
    rec_steps, padded = settings.record_steps()
    return LoopSpec(rec_steps, padded, settings.divergence_factor, model, cfg, dtype)


def _finish(
    out, spec: LoopSpec, lr, problem, info, params0, schedule_vals, index, rerun, stacklevel=3
):
    model, rec_steps = spec.model, spec.rec_steps
    check_divergence(out, problem, model, "gradient descent", lr, index, params0, rerun)
    if (stopped := interrupted_status(out, "gradient descent", stacklevel + 1)) is not None:
        status, stat = stopped
        info = dict(
            method="gradient_descent",
            lr=float(lr),
            steps=int(rec_steps[-1]),
            status=status,
            stationarity=stat,
            **info,
        )
        if "validation_stop" in out:
            info["early_stopping"] = out["validation_stop"]
        times = gd_times(rec_steps, lr, schedule_vals)
        recs = {k: np.asarray(v) for k, v in out["recs"].items() if k != "time"}
        return build_trajectory(recs, times, out["params"], model, info, steps=rec_steps)
    n = rec_steps.size
    recs = {k: np.asarray(v)[:n] for k, v in out["recs"].items() if k != "time"}
    times = gd_times(rec_steps, lr, schedule_vals)

    def first() -> float:  # the sharpness is measured only for an oscillating run
        s = sharp(problem, model, out["params"])
        return min(0.95 * 2.0 / s if np.isfinite(s) and s > 0 else np.inf, 0.7 * lr)

    status, stat = end_stationarity(out, rec_steps, problem, model, rerun, first)
    info = dict(
        method="gradient_descent",
        lr=float(lr),
        steps=int(rec_steps[-1]),
        status=status,
        stationarity=stat,
        **info,
    )
    return build_trajectory(recs, times, out["params"], model, info, steps=rec_steps)


def gradient_descent(
    problem,
    model,
    params,
    lr: float,
    steps: int,
    *,
    n_save: int = 200,
    save_at=None,
    save_spacing: str = "log",
    lr_schedule: Callable | None = None,
    save_matrices: bool = False,
    divergence_factor: float = 1e8,
    dtype=None,
    backend: str = "auto",
    progress: bool | None = None,
    heldout=None,
    early_stopping=None,
):
    r"""Run ``steps`` steps of ``params <- params - lr * s(k) * grad L(params)``.

    Compiled once per shapes, dtype, ``save_matrices`` and ``lr_schedule`` (a function
    object: define it once, outside a loop); ``lr``, ``steps``, the record steps (for equal
    ``n_save`` and ``len(save_at)``), ``divergence_factor``, the data and the init are traced.

    Arguments:
        lr: the step size ``eta`` (``> 0``); stable near ``params`` for
            ``eta < 2 / sharpness`` (:func:`sharpness`).
        steps: number of steps, at most :data:`MAX_STEPS` (``10^8``).
        lr_schedule: optional JAX-traceable ``s(k) >= 0`` multiplying ``lr`` at step ``k``.
        save_spacing: ``"log"`` (default) or ``"linear"`` (``round(steps j / (n_save - 1))``
            instead of the log-spaced steps below).
        n_save, save_at: record at step 0, ``n_save - 1`` log-spaced steps and ``save_at``
            (sorted integers in ``[0, steps]``).
        divergence_factor: the run counts as diverged when the loss is non-finite or exceeds
            ``divergence_factor * max(f(W(0)), 1e-12)`` (``> 1``).
        backend: ``"auto"`` (default), ``"dense"`` or ``"sparse"``: how ``grad L`` is
            evaluated, as for :func:`rankbias.gradient_flow` (``"sparse"``: a
            :class:`MatrixCompletion` in factor form, ``O(|Omega| k)`` per step, no ``(m, n)``
            array; see :func:`rankbias.dynamics.choose_backend`); ``info["backend"]``.
        progress: a live line (step, loss, rate) for runs over 2 s; ``None``: when standard
            error is a terminal, not in a notebook. Ctrl-C returns the run so far
            (``info["status"] == "interrupted"``, a ``RuntimeWarning``).
        heldout: a :class:`rankbias.problems.HeldOut` of the problem's shape: every record
            then scores ``sqrt(mean_k (W[rows_k, cols_k] - values_k)^2)`` inside the compiled
            record (a gather; the factor form never forms ``W``), in
            ``traj.metrics["heldout_rmse"]`` ``(T,)``.
        early_stopping: a :class:`rankbias.EarlyStopping` (with ``heldout``): stop at the
            first record whose held-out RMSE has not improved by ``min_delta`` for
            ``patience`` records; status ``"validation_stop"``, ``info["early_stopping"]``
            (best and stopping record and step), ``final_params`` of the best record with
            ``restore_best`` (:mod:`rankbias.dynamics._validation_stop`).

    Returns:
        :class:`Trajectory` with ``steps`` and ``times`` (``= cumulative step size``);
        ``info["status"]`` is ``"completed"`` near a stationary point, else
        ``"not_stationary"`` (still descending, or oscillating), by :func:`stationarity`,
        whose quantities ``info["stationarity"]`` holds. An oscillating run warns once
        (``RuntimeWarning``) with a step size verified by a rerun
        (``info["stationarity"]["lr_hint"]``).

    Raises:
        ValueError: a bad argument (named), before anything is compiled; ``steps`` above
            :data:`MAX_STEPS`.
        DivergenceError: naming the step, the loss and a step size (``lr_hint``) verified
            by rerunning the run until it neither diverges nor oscillates (up to 5 tries:
            ``2 / sharpness`` before the blow-up grows along the run).
    """
    settings = _check_gd_args(
        lr, steps, n_save, divergence_factor, lr_schedule, save_at, save_spacing
    )
    check_progress(progress)
    stopping = check_early_stopping(early_stopping, heldout)
    if np.ndim(lr) != 0:
        raise ValueError("`lr` must be a scalar; use gradient_descent_batch for several")
    problem, params, dtype = check_run(problem, model, params, dtype)
    backend = choose_backend(backend, problem, model)
    check_initial_loss(problem, model, params)
    data = backend_data(problem, model, backend)
    sched = schedule_values(lr_schedule, settings.steps)
    spec = _spec(settings, save_matrices, lr_schedule, model, dtype)
    spec = dataclasses.replace(spec, heldout=heldout_tables(heldout, problem.shape, dtype))
    t0 = time.perf_counter()
    hyper = {"lr": jnp.asarray(lr, dtype)}
    # the records' QR/SVD on one BLAS thread above a size
    with lapack_threads(model.shape), progress_display(progress) as display:
        out, ran = run_foreground(spec, data, params, hyper, "gradient_descent", display, stopping)
    wall = time.perf_counter() - t0
    rerun = Rerun(lambda: data, params, spec, {})
    traj = _finish(
        out,
        ran,
        float(lr),
        problem,
        dict(wall_time=wall, dtype=str(jnp.dtype(dtype)), backend=backend),
        params,
        sched,
        None,
        rerun,
    )
    warn_not_stationary("gradient descent", [(None, float(lr), traj.info["stationarity"])])
    return traj


def gradient_descent_batch(
    problems,
    model,
    params_list,
    lr,
    steps: int,
    *,
    n_save: int = 200,
    save_at=None,
    save_spacing: str = "log",
    lr_schedule: Callable | None = None,
    save_matrices: bool = False,
    divergence_factor: float = 1e8,
    dtype=None,
    on_failure: str = "raise",
    strategy: str = "auto",
    backend: str = "auto",
    on_divergence: str | None = None,
):
    """Many GD runs that share shapes, as one vmapped computation or a loop of single runs.

    ``problems``: one problem or one per run; ``lr``: a scalar or one per run. The settings
    are those of :func:`gradient_descent` (traced the same way, ``backend`` too).
    ``on_failure="raise"`` raises for the first diverged run; ``"return"`` puts the
    :class:`DivergenceError` in that run's place in the returned list (the word of
    :func:`~rankbias.dynamics.gradient_flow_batch`). ``on_divergence``: its deprecated spelling
    (same values; warns once).

    ``strategy``: ``"vmap"`` (one batched computation: ``B`` runs step together, each matrix
    product a batched one), ``"loop"`` (the compiled program of :func:`gradient_descent`,
    called run by run) or ``"auto"``: ``"vmap"`` on accelerators, on the CPU
    :func:`batch_strategy`'s size rule. The runs are the same either way (the same step
    arithmetic; batched and single matrix products may differ in the last bits).

    Raises:
        ValueError: a bad argument (named), before anything is compiled.
        DivergenceError: as :func:`gradient_descent` (``on_failure="raise"``).
    """
    settings = _check_gd_args(
        lr, steps, n_save, divergence_factor, lr_schedule, save_at, save_spacing
    )
    on_failure = renamed(
        "gradient_descent_batch()",
        "on_divergence",
        on_divergence,
        "on_failure",
        on_failure,
        "raise",
    )
    check_choice(on_failure, "on_failure", ("raise", "return"))
    if strategy not in ("auto", "vmap", "loop"):
        raise ValueError(f"`strategy` must be 'auto', 'vmap' or 'loop', got {strategy!r}")
    problem, p_axis, params, dtype, B = prepare_batch(problems, model, params_list, dtype)
    backend = choose_backend(backend, run_problem(problem, p_axis, 0), model)
    check_initial_losses(problem, p_axis, model, params, B)
    lrs = np.asarray(lr, dtype=np.float64)
    if lrs.ndim > 1 or (lrs.ndim == 1 and lrs.shape[0] != B):
        raise ValueError(f"`lr` must be a scalar or hold {B} values, got shape {lrs.shape}")
    lr_axis = None if lrs.ndim == 0 else 0
    sched = schedule_values(lr_schedule, settings.steps)
    spec = _spec(settings, save_matrices, lr_schedule, model, dtype)
    if strategy == "auto":
        strategy = batch_strategy(model, B)
    t0 = time.perf_counter()
    if strategy == "vmap":
        out = spec.run_batched(
            batch_data(problem, p_axis, model, backend, B),
            params,
            {"lr": jnp.asarray(lrs, dtype)},
            p_axis,
            {"lr": lr_axis},
        )
        outs = [index_tree(out, i) for i in range(B)]
    else:
        # Dispatched together, waited for once: the runs overlap on an accelerator.
        outs = [
            spec.run(
                backend_data(run_problem(problem, p_axis, i), model, backend),
                index_tree(params, i),
                {"lr": jnp.asarray(lrs if lr_axis is None else lrs[i], dtype)},
                block=False,
            )
            for i in range(B)
        ]
        outs = jax.block_until_ready(outs)
    wall = time.perf_counter() - t0

    def finish(i: int):
        prob_i = run_problem(problem, p_axis, i)
        lr_i = float(lrs) if lr_axis is None else float(lrs[i])
        data_i = functools.partial(backend_data, prob_i, model, backend)
        info = dict(
            wall_time=wall / B,
            dtype=str(jnp.dtype(dtype)),
            backend=backend,
            batch_size=B,  # deprecated spelling of batch_runs, kept for one release
            batch_runs=B,
            batch_index=i,
            batch_strategy=strategy,
        )
        rerun = Rerun(data_i, index_tree(params, i), spec, {})
        return _finish(outs[i], spec, lr_i, prob_i, info, index_tree(params, i), sched, i, rerun)

    result, ended = collect(B, finish, on_failure)
    warn_not_stationary("gradient descent", ended)
    return result
