"""The public gradient-flow functions: :func:`gradient_flow` (one run) and
:func:`gradient_flow_batch` (runs that share shapes, as one compiled computation).

Both take plain keyword arguments and build one :class:`~rankbias.options.FlowOptions` from
them (validated once), resolve it for the dtype and the initializations
(:class:`~.settings.FlowSettings`), solve, and turn each output into a trajectory. They differ
only in how the runs are checked and solved (one compiled solve, or a vmapped/mapped one).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..._validation import check_bool
from ...options import FlowOptions
from ...status import RunStatus
from ...trajectory import Trajectory
from .._common import batch_data, batch_runs, check_run, index_tree, prepare_batch, resolve_dtype
from .._interrupt import ChunkReport, report_chunk
from .._progress import check_progress, progress_display
from .._records import lapack_threads
from .._sparse import backend_data, choose_backend, heldout_tables
from .._validation_stop import Monitor, check_early_stopping
from .initial import check_initial_state
from .precision import warn_resolution
from .result import to_trajectory
from .segments import CHUNK_STEPS, Segment, continue_segments, solve, solve_batch
from .settings import FlowConfig, FlowSettings, Tolerances

__all__ = ["gradient_flow", "gradient_flow_batch"]

#: The arguments of the public functions that are fields of :class:`FlowOptions`.
_OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(FlowOptions))


def _settings(args: dict[str, Any], stacklevel: int) -> FlowSettings:
    """The settings of a public call, from its arguments (its ``locals()`` on entry): one
    :class:`FlowOptions` (``ValueError`` naming a bad argument), resolved for the dtype."""
    dtype = resolve_dtype(args["dtype"])
    # A message more specific than FlowOptions' generic one (tests and users match it).
    gtol = args["gtol"]
    if isinstance(gtol, str) and gtol != "auto":
        raise ValueError(f"`gtol` must be a positive number, None or 'auto', got {gtol!r}")
    fields = {k: args[k] for k in _OPTION_FIELDS if k != "dtype"}
    options = FlowOptions(**fields, dtype=jnp.dtype(dtype).name)
    save_matrices = check_bool(args["save_matrices"], "save_matrices")
    return FlowSettings.resolve(options, dtype, args["save_at"], save_matrices, stacklevel + 1)


def _start(
    settings: FlowSettings, model, runs: Iterable[tuple], rows: np.ndarray, stacklevel: int
) -> FlowSettings:
    """Check each run's initial state (``runs``: ``(problem, params, name)``), then resolve
    ``atol`` for the initializations ``rows`` (``(B, P)``) and warn when the later escapes
    are below float resolution (the smallest init decides, as for ``atol``)."""
    o = settings.options
    for problem, params, name in runs:
        check_initial_state(
            problem, model, params, settings.dtype, o.t_max, o.max_steps, o.solver, name
        )
    settings = settings.for_init(rows, stacklevel + 1)
    warn_resolution(model, np.array([np.abs(rows).max(axis=1).min()]), stacklevel + 1)
    return settings


class _Solves(NamedTuple):
    """What every solve of a call shares: the record times (host and traced), ``t_max``,
    the traced tolerances, the static configuration and the model."""

    ts_np: np.ndarray
    ts: jax.Array
    t_max: jax.Array
    tols: Tolerances
    config: FlowConfig
    model: Any

    @classmethod
    def of(cls, settings: FlowSettings, model) -> _Solves:
        ts_np = settings.save_times()
        ts = jnp.asarray(ts_np, settings.dtype)
        tm = jnp.asarray(settings.options.t_max, settings.dtype)
        return cls(ts_np, ts, tm, settings.tolerances(), settings.config, model)

    def first(self, data, y0, chunk: int | None = None, heldout=None) -> Segment:
        """The first segment of one run (``y0`` ``(P,)``), of at most ``chunk`` steps when
        given (a host-driven run, :func:`continue_segments`)."""
        tols = self.tols
        if chunk is not None:
            budget = jnp.minimum(tols.max_steps, jnp.asarray(chunk, tols.max_steps.dtype))
            tols = tols._replace(max_steps=budget)
        args = (data, y0, self.ts, self.t_max, tols, self.model, self.config)
        if heldout is None:  # the call of every run before heldout= existed (its cache key)
            return Segment(**solve(*args))
        return Segment(**solve(*args, None, None, heldout))

    def first_batch(self, data, y0, p_axis) -> dict:
        """The first segments of a batch (``y0`` ``(B, P)``), stacked."""
        return solve_batch(
            data, y0, self.ts, self.t_max, self.tols, self.model, self.config, p_axis
        )

    def finish(
        self,
        problem,
        first: Segment,
        settings: FlowSettings,
        run_info: dict,
        since: float,
        stacklevel: int,
        wall_share: float = 0.0,
        chunk: int | None = None,
        on_chunk=None,
        heldout=None,
        stop=None,
    ) -> Trajectory:
        """One run's trajectory: its later segments, if any (the chunks of a host-driven run;
        runs that outgrew float64 time resolution, rare: escapes at ``t >~ 1e12``), then the
        records; ``wall_time`` is ``wall_share`` plus the time since ``since``."""
        out = continue_segments(
            problem,
            first,
            self.ts,
            self.t_max,
            self.tols,
            self.model,
            self.config,
            chunk,
            on_chunk,
            heldout,
            stop,
        )
        out = jax.block_until_ready(out)
        wall = wall_share + time.perf_counter() - since
        return to_trajectory(out, self.ts_np, self.model, settings, wall, run_info, stacklevel + 1)


def chunk_reporter(t_max: float, display=None):
    """``on_chunk(segment, t, steps)`` of :func:`continue_segments` for a single flow: a
    :class:`~.._interrupt.ChunkReport` to the hooks and ``display``."""

    def on_chunk(seg: Segment, t: float, steps: int) -> None:
        report_chunk(
            ChunkReport(
                "gradient_flow",
                t,
                t_max,
                float(seg.final_rec["loss"]),
                float(seg.final_rec["grad_norm"]),
                steps,
            ),
            display,
        )

    return on_chunk


def _flow(
    problem,
    model,
    params,
    settings: FlowSettings,
    backend: str,
    stacklevel: int,
    display=None,
    heldout=None,
    stopping=None,
):
    """One checked run (``problem`` and ``params`` cast to the dtype): ``(trajectory, the
    settings resolved for its init)``."""
    flat0 = np.concatenate([np.ravel(np.asarray(p)) for p in params])
    settings = _start(settings, model, [(problem, params, "params")], flat0[None], stacklevel + 1)
    data = backend_data(problem, model, backend)
    solves = _Solves.of(settings, model)
    y0 = model.flatten(params)
    t0 = time.perf_counter()
    held = heldout_tables(heldout, problem.shape, settings.dtype)
    monitor = None if stopping is None else Monitor(stopping)
    where: dict[str, Any] = {}

    def stop(recs: dict, t) -> bool:  # the rule at the save times reached so far
        assert monitor is not None
        reached = int(np.searchsorted(solves.ts_np, float(t), side="right"))
        j = monitor.feed(recs["heldout_rmse"][monitor.seen : reached])
        if j is not None:
            where.update(best_record=monitor.best_record, stop_record=j)
        return j is not None

    first = solves.first(data, y0, CHUNK_STEPS, held)
    run_info = dict(dtype=str(jnp.dtype(settings.dtype)), backend=backend)
    on_chunk = chunk_reporter(settings.options.t_max, display)
    traj = solves.finish(
        data,
        first,
        settings,
        run_info,
        t0,
        stacklevel + 1,
        0.0,
        CHUNK_STEPS,
        on_chunk,
        held,
        None if monitor is None else stop,
    )
    if where and stopping is not None:
        b, j = where["best_record"], where["stop_record"]
        traj.info["early_stopping"] = dict(
            where,
            best_time=float(traj.times[b]),
            best_heldout_rmse=float(traj.metrics["heldout_rmse"][b]),
            stop_time=float(traj.times[j]),
            patience=stopping.patience,
            min_delta=stopping.min_delta,
            restore_best=False,
        )
    return traj, settings


def gradient_flow(
    problem,
    model,
    params,
    t_max: float = 1e4,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    solver: str = "rkc",
    gtol: float | str | None = "auto",
    curvature_tol: float | None = None,
    certificate_tol: float | None = None,
    n_save: int = 200,
    t_min: float | None = None,
    save_at=None,
    save_spacing: str = "log",
    save_matrices: bool = False,
    max_steps: int = 1_000_000,
    dtype=None,
    error_estimate: bool = False,
    backend: str = "auto",
    progress: bool | None = None,
    heldout=None,
    early_stopping=None,
):
    r"""Integrate the gradient flow ``d params/dt = -grad L(params)`` from ``params``.

    ``L = f(W_L ... W_1)`` for :class:`DeepFactorization`, ``1/2 f(U U^T)`` for
    :class:`SymmetricFactorization`. Adaptive steps (PID control of the local error against
    ``atol + rtol |y|``) in float64 unless ``dtype=float32``.

    Compiled once per shapes, dtype, solver, ``gtol is None`` and ``save_matrices``: runs
    that differ in the init, the data, ``t_max``, the tolerances, ``max_steps`` or the save
    times (of equal number) reuse the compiled solve.

    Arguments:
        t_max: final time (the flow stops earlier at a steady state, see ``gtol``).
        rtol: relative tolerance; default from the dtype (:func:`flow_defaults`: ``1e-8`` in
            float64, ``1e-5`` in float32). One below ``10 eps`` warns (:class:`PrecisionWarning`).
        atol: absolute tolerance; default ``min(1e-12, 1e-4 rtol max|params(0)|)`` so that it
            stays below the initial factors at any scale.
        solver: ``"rkc"`` (default, stiff-capable, see :class:`rankbias.dynamics.RKC`),
            ``"hybrid"`` (RKC plus dense Rodas4 steps where RKC would need more than
            ``DENSE_STAGES`` stages, for at most ``DENSE_LIMIT`` parameters: the stretch
            between two escapes of depth >= 3 flows from tiny scales), ``"krylov"`` (the
            same with matrix-free Rodas4 steps, GMRES preconditioned by ``KRYLOV_RANK``
            dominant Jacobian eigenvectors: any ``P``; experimental, docs: Numerical notes), ``"rodas4"``,
            ``"tsit5"``, ``"dopri5"``, ``"dopri8"``, ``"kvaerno5"``. At depth ``L >= 3`` with
            ``max|params(0)|^(L-1) < 0.01 eps`` a :class:`ResolutionWarning` says that the
            later escape times are below float resolution (:func:`warn_resolution`).
        gtol: stop at a steady state: ``||grad L|| <= gtol`` at a point certified not to be
            a saddle: ``||grad f(W)|| <= certificate_tol ||grad f(W(0))||`` (PSD-KKT residual
            for ``U U^T``) when no width constrains the rank; otherwise ``f(W) < f(W(0))`` and
            Hessian ``lambda_min >= -curvature_tol`` (Lanczos; blind to the high-order
            saddles of depth >= 3). Uncertified points run on to ``t_max``; ``None``
            always runs to ``t_max``. ``"auto"``: ``1e-10`` (float64), ``1e-5`` (float32);
            ``curvature_tol`` and ``certificate_tol`` default to ``1e-6`` (float64) and
            ``1e-4`` (float32); ``curvature_tol=inf`` drops the Lanczos test (any point
            with a small gradient and a lower loss stops the flow).
        save_spacing: ``"log"`` (default) or ``"linear"``: ``n_save`` times ``t_max j /
            (n_save - 1)`` instead of the log-spaced ones below.
        n_save, t_min, save_at: record at ``t = 0``, ``n_save - 1`` log-spaced times in
            ``[t_min, t_max]`` (``0 < t_min < t_max``, default ``min(1e-2, t_max / 1e4)``)
            and the extra times ``save_at`` (sorted, in ``[0, t_max]``); the stopping time is
            appended. ``2 <= n_save <= MAX_SAVE``.
        save_matrices: also keep ``W(t)`` at each recorded time.
        error_estimate: solve a second time with tolerances / 10 and report the largest
            difference of ``W`` at the recorded times and at the end (``info["error_estimate"]``).
        backend: how ``grad L`` is evaluated (``info["backend"]`` records the choice).
            ``"dense"``: through the product ``W`` (``(m, n)``; ``O(m n k)`` per evaluation
            and a full SVD of ``W`` per record). ``"sparse"`` (:class:`MatrixCompletion`
            with :class:`SymmetricFactorization` or :class:`DeepFactorization` of depth
            ``>= 2``): in factor form, ``W = A B^T`` never formed: residuals
            ``r_ij = c (<A_i, B_j> - M_ij)`` on ``Omega``, ``grad L = sym(G) U`` (symmetric)
            or ``(A^T G, backward pass of G B)`` (deep), ``O(|Omega| k + (m + n) k^2 L)`` per
            evaluation; singular values from QR of the factors. ``"auto"`` (default): sparse
            for width-limited models when ``m n >= SPARSE_RATIO |Omega|`` (see
            :func:`rankbias.dynamics.choose_backend`), else dense. Same flow, same stopping
            rules, equal to solver tolerance.
        progress: a live line (time reached, loss, gradient norm, steps per second) for
            runs over 2 s; ``None`` (default): when standard error is a terminal, not in a
            notebook. Display only. Ctrl-C returns the trajectory so far
            (``info["status"] == "interrupted"``, a ``RuntimeWarning``).
        heldout: a :class:`rankbias.problems.HeldOut` of the problem's shape: every record
            scores ``sqrt(mean_k (W[rows_k, cols_k] - values_k)^2)`` inside the compiled
            record (a gather; the sparse backend gathers rows of its factors), in
            ``traj.metrics["heldout_rmse"]`` ``(T,)``.
        early_stopping: a :class:`rankbias.EarlyStopping` with ``restore_best=False`` (a flow
            keeps no parameters at its records) and ``heldout``: the rule of
            :mod:`rankbias.dynamics._validation_stop` at the save times, checked after each
            chunk; the flow stops at the end of the chunk in which it triggered (its records
            run to there), status ``"validation_stop"``, ``info["early_stopping"]`` (best and
            stopping record and time).

    Returns:
        :class:`Trajectory` with ``info`` holding ``status`` (``"t_max"``, ``"steady_state"``,
        ``"max_steps"``), ``num_steps``, ``num_rejected``, ``num_vf_evals`` (gradient
        evaluations and JVPs of the whole solve, stopping tests and records included; a lower
        bound for the RKC-based solvers, which lose rejected attempts; ``None`` for
        ``"kvaerno5"``; docs: the gradient-flow guide), ``wall_time`` and
        ``restarts``: how often the clock was reset to 0 because the steps stayed below
        ``TIME_RESOLUTION`` times the time integrated (escapes at ``t >~ 1e12``; the flow is
        autonomous, so the solve goes on exactly; step counts and ``max_steps`` cover all
        segments).

    Raises:
        ValueError: a bad argument (named); an initial point where ``f(W(0))`` or its gradient
            is not finite; factors too large for the dtype or for any run to finish within
            ``max_steps`` (:func:`~.initial.check_initial_state`). ``FloatingPointError``: the
            trajectory became non-finite.
    """
    settings = _settings(locals(), stacklevel=2)
    check_progress(progress)
    stopping = check_early_stopping(early_stopping, heldout)
    if stopping is not None and stopping.restore_best:
        raise ValueError(
            "`early_stopping`: a gradient flow keeps no parameters at its records, so it "
            "cannot restore the best one; pass rb.EarlyStopping(..., restore_best=False) "
            "(the best record's time is in info['early_stopping'])"
        )
    problem, params, _ = check_run(problem, model, params, settings.dtype)
    backend = choose_backend(settings.options.backend, problem, model)
    # the records' QR/SVD on one BLAS thread above a size
    with lapack_threads(model.shape), progress_display(progress) as display:
        traj, used = _flow(problem, model, params, settings, backend, 2, display, heldout, stopping)
    if error_estimate and traj.status != RunStatus.INTERRUPTED:
        fine, _ = _flow(problem, model, params, used.finer(stacklevel=2), backend, stacklevel=2)
        n = min(len(traj), len(fine))
        # nanmax: above a size records hold the top-k singular values and NaN (_records)
        sv_err = float(np.nanmax(np.abs(traj.singular_values[:n] - fine.singular_values[:n])))
        traj.info["error_estimate"] = dict(
            final_matrix=float(np.linalg.norm(traj.final_matrix - fine.final_matrix)),
            singular_values_max=sv_err,
        )
    return traj


def gradient_flow_batch(
    problems,
    model,
    params_list,
    t_max: float = 1e4,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    solver: str = "rkc",
    gtol: float | str | None = "auto",
    curvature_tol: float | None = None,
    certificate_tol: float | None = None,
    n_save: int = 200,
    t_min: float | None = None,
    save_at=None,
    save_spacing: str = "log",
    save_matrices: bool = False,
    max_steps: int = 1_000_000,
    dtype=None,
    on_failure: str = "raise",
    backend: str = "auto",
):
    """Many gradient flows that share shapes, as one vmapped computation.

    ``problems`` is one problem (shared) or a list with one problem per run (same type and
    array shapes); ``params_list`` holds one initial parameter tuple per run. Each run keeps
    its own adaptive step sizes and stopping time; results equal :func:`gradient_flow`
    run by run (same arithmetic, up to the last bits of batched matrix products). The
    settings are those of :func:`gradient_flow` (traced: no recompilation when they change).

    ``on_failure="raise"`` raises for the first run whose solve failed (non-finite
    trajectory); ``"return"`` puts the ``FloatingPointError`` in that run's place.

    Returns a list of :class:`Trajectory`, in the order of ``params_list``.

    Raises:
        ValueError: as :func:`gradient_flow`, for any run of the batch (before compiling).
    """
    if on_failure not in ("raise", "return"):
        raise ValueError(f"`on_failure` must be 'raise' or 'return', got {on_failure!r}")
    settings = _settings(locals(), stacklevel=2)
    problem, p_axis, params, dtype, B = prepare_batch(problems, model, params_list, settings.dtype)
    first_problem = problem if p_axis is None else index_tree(problem, 0)
    backend = choose_backend(settings.options.backend, first_problem, model)
    y0 = jax.vmap(model.flatten)(params)
    runs = batch_runs(problem, p_axis, params, B)
    settings = _start(settings, model, runs, np.asarray(y0), stacklevel=2)
    solves = _Solves.of(settings, model)
    data = batch_data(problem, p_axis, model, backend, B)
    t0 = time.perf_counter()
    with lapack_threads(model.shape):
        out = jax.block_until_ready(solves.first_batch(data, y0, p_axis))
    wall = time.perf_counter() - t0
    result: list[Any] = []  # Trajectory, or FloatingPointError with on_failure="return"
    for k in range(B):
        data_k = data if p_axis is None else index_tree(data, k)
        # batch_runs: the word for a batch's run count (train's too); batch_size: its
        # deprecated spelling, kept for one release (a dict key cannot warn).
        run_info = dict(
            dtype=str(jnp.dtype(dtype)),
            backend=backend,
            batch_size=B,
            batch_runs=B,
            batch_index=k,
        )
        try:
            first = Segment(**index_tree(out, k))
            since = time.perf_counter()
            result.append(solves.finish(data_k, first, settings, run_info, since, 2, wall / B))
        except FloatingPointError as e:
            if on_failure == "raise":
                raise FloatingPointError(f"run {k} of the batch: {e}") from None
            result.append(e)
    return result
