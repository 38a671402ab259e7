r"""Training with optax optimizers (and GroupRMSprop) on the gradient-descent engine.

``params_{k+1} = params_k + u_k`` with ``(u_k, s_{k+1}) = tx.update(g_k, s_k, params_k)`` for
an optax ``GradientTransformation`` ``tx``; ``g_k`` is the full gradient or, with
``batch_size``, an unbiased minibatch estimate of it. The loop, the recording and the
divergence test are those of :func:`rankbias.gradient_descent` (:mod:`.descent.loop`); only
the step rule differs (:class:`_OptaxRule`), whose gradient comes from the engines' dense/sparse
dispatch (:func:`rankbias.dynamics._sparse.loss_and_grad`).

Time axis (``Trajectory.times``): the sum of effective step sizes ``sum_k eta_k`` where the
optimizer has one (``info["time_axis"] == "effective"``): ``sgd`` (``eta_k = lr``),
``group_rmsprop`` (its adaptive ``eta_k``), ``momentum``/``nesterov`` (the step a constant
gradient would receive, ``lr (1 - b^(k+1)) / (1 - b)``, resp.
``lr (1 + b (1 - b^(k+1)) / (1 - b))``). Otherwise (``adam``, ``rmsprop``, any transform or
factory passed in) ``times`` is the step index (``info["time_axis"] == "step"``).
``Trajectory.steps`` is the step index in every case.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._deprecation import renamed
from .._validation import check_bool, check_choice, check_int, check_positive
from ..optimizers import OPTIMIZERS, check_hyperparams, make_optimizer
from ..options import TrainOptions
from ..trajectory import Trajectory
from ._common import (
    batch_data,
    build_trajectory,
    check_initial_loss,
    check_run,
    index_tree,
    prepare_batch,
)
from ._progress import check_progress, progress_display
from ._records import lapack_threads
from ._sparse import backend_data, batch_backend, heldout_tables, loss_and_grad
from ._validation_stop import check_early_stopping
from .descent.batching import check_initial_losses, collect, run_problem
from .descent.hints import Rerun, check_divergence, end_stationarity
from .descent.loop import LoopConfig, LoopSpec, interrupted_status, run_foreground
from .descent.settings import LoopSettings
from .descent.stationarity import warn_not_stationary

__all__ = ["train", "train_batch"]


# ---------------------------------------------------------------------------------------------
# Minibatches: the loss restricted to a uniform sample of observed entries / measurements,
# rescaled so that the loss and its gradient are unbiased estimates of the full ones.


def batch_population(problem) -> int:
    """How many items a minibatch samples from (``problem.num_terms``: observed entries,
    measurements or entries)."""
    population = problem.num_terms
    if population is None:
        raise ValueError(
            f"`batch_size` needs a MatrixCompletion, MatrixSensing or MatrixEstimation "
            f"problem (entries or measurements to sample), got {type(problem).__name__}"
        )
    return population


def batch_indices(seed, k, population: int, batch_size: int):
    """The ``batch_size`` distinct items of step ``k``: uniform without replacement, from
    ``fold_in(PRNGKey(seed), k)`` (the same in a vmapped batch as alone)."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), k)
    return jax.random.choice(key, population, (batch_size,), replace=False)


def minibatch(problem, idx):
    """The minibatch loss of ``problem`` on the items ``idx`` (``problem.minibatch``)."""
    return problem.minibatch(idx)


# ---------------------------------------------------------------------------------------------
# The step rule


@dataclass(frozen=True)
class _OptaxRule:
    """One optax step. Exactly one of ``name`` (a named optimizer, built inside the trace from
    the traced ``hyper``), ``tx`` (a transform, static) or ``factory`` (called with
    ``learning_rate=hyper["lr"]`` and the other hyper-parameters, inside the trace) is set.
    Static fields key the compile cache; ``hyper`` (lr, hyper-parameters, seed) is traced."""

    name: str | None
    tx: optax.GradientTransformation | None
    factory: Callable | None
    batch_size: int | None
    population: int | None

    def transform(self, hyper) -> optax.GradientTransformation:
        if self.tx is not None:
            return self.tx
        h = {k: v for k, v in hyper.items() if k != "seed"}
        if self.factory is not None:
            return self.factory(learning_rate=h.pop("lr"), **h)
        assert self.name is not None  # exactly one of name, tx, factory is set
        return make_optimizer(self.name, h)

    def init(self, params, hyper):
        return self.transform(hyper).init(params)

    @property
    def full_batch(self) -> bool:
        """Whether the step's gradient is the full one a record evaluates (no minibatches):
        the loop then evaluates it once per step, carries it and calls :meth:`update`."""
        return self.batch_size is None

    def update(self, params, g, state, k, hyper):
        """``(params + u, state', eff)`` with ``(u, state') = tx.update(g, state, params)``."""
        updates, state = self.transform(hyper).update(g, state, params)
        effective = None if self.name is None else OPTIMIZERS[self.name].effective
        eff = jnp.nan if effective is None else effective(state, hyper, k)
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        return optax.apply_updates(params, updates), state, jnp.asarray(eff, dtype)

    def step(self, problem, model, params, state, k, hyper):
        if self.batch_size is not None:
            assert self.population is not None  # set together with batch_size
            problem = minibatch(
                problem, batch_indices(hyper["seed"], k, self.population, self.batch_size)
            )
        # The engines' dispatch: on a dense problem it is model.loss_and_grad (the same
        # program, the same bits); sparse tables would take their factor-form path.
        f, g, _ = loss_and_grad(problem, model, params)
        return (f, *self.update(params, g, state, k, hyper))


# ---------------------------------------------------------------------------------------------
# Validation at the boundary


def _resolve_optimizer(optimizer, lr, hyperparams: dict) -> tuple[str, Any, dict[str, Any]]:
    """(kind, static object, numeric hyper-parameters) for ``optimizer``; raises naming it."""
    if isinstance(optimizer, optax.GradientTransformation):
        if lr is not None or hyperparams:
            given = ", ".join(["lr"] * (lr is not None) + sorted(hyperparams))
            raise ValueError(
                f"`optimizer` is an optax GradientTransformation, which fixes its "
                f"own hyper-parameters; got {given} as well. Pass a name (e.g. "
                f"'adam') or a factory (e.g. optax.adam) to set them here"
            )
        return "tx", optimizer, {}
    if isinstance(optimizer, str):
        return (
            "name",
            optimizer,
            check_hyperparams(
                optimizer,
                _scalar_or_first(lr),
                {k: _scalar_or_first(v) for k, v in hyperparams.items()},
            ),
        )
    if callable(optimizer):
        if lr is None:
            raise ValueError(
                f"`optimizer` {getattr(optimizer, '__name__', optimizer)!r} is a "
                f"factory, called as optimizer(learning_rate=lr, ...); `lr` is "
                f"required, got None"
            )
        for k, v in hyperparams.items():
            for x in np.atleast_1d(np.asarray(v, dtype=object)):
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                    raise ValueError(f"hyper-parameter `{k}` must be a finite number, got {v!r}")
        return "factory", optimizer, {}
    raise TypeError(
        f"`optimizer` must be an optax GradientTransformation, a factory such as "
        f"optax.adam, or one of {', '.join(map(repr, OPTIMIZERS))}; got "
        f"{type(optimizer).__name__}"
    )


def _scalar_or_first(v):
    return v if np.ndim(v) == 0 else np.asarray(v).ravel()[0]


def _rule(kind, obj, batch_size, problem) -> _OptaxRule:
    pop = None
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        pop = batch_population(problem)
        if batch_size > pop:
            raise ValueError(
                f"`batch_size` must be <= {pop} (the items a minibatch samples "
                f"from), got {batch_size}"
            )
    return _OptaxRule(
        obj if kind == "name" else None,
        obj if kind == "tx" else None,
        obj if kind == "factory" else None,
        batch_size,
        pop,
    )


def _label(optimizer) -> str:
    if isinstance(optimizer, str):
        return optimizer
    if isinstance(optimizer, optax.GradientTransformation):
        return "optax transform"
    return getattr(optimizer, "__name__", type(optimizer).__name__)


def _monotone(rule) -> bool:
    """Whether each healthy step lowers the loss (full-batch sgd: GD), so that a rise counts
    as oscillation (:func:`rankbias.dynamics.descent.stationarity.stationarity`)."""
    return rule.name == "sgd" and rule.batch_size is None


def _rerun(rule, problem, params, spec: LoopSpec, hyper):
    """The :class:`Rerun` of one run for its step-size hints, or None where ``lr`` is not a
    traced hyper-parameter (an optax transform fixes its own)."""
    if rule.tx is not None:
        return None
    return Rerun(
        lambda: problem,
        params,
        spec,
        hyper,
        monotone=_monotone(rule),
        sharpness=rule.name == "sgd",
    )


def _finish(
    out, spec: LoopSpec, problem, rule, info, params0, index=None, rerun=None
) -> Trajectory:
    model, rec_steps = spec.model, spec.rec_steps
    label = info["optimizer"]
    check_divergence(
        out, problem, model, f"training with {label}", info.get("lr"), index, params0, rerun
    )
    stopped = interrupted_status(out, f"training with {label}", 3)
    effective = rule.name is not None and OPTIMIZERS[rule.name].effective is not None
    # The loop ran over record steps padded to a fixed length: keep the real ones.
    recs = {k: np.asarray(v)[: rec_steps.size] for k, v in out["recs"].items()}
    times = (
        np.asarray(recs.pop("time"), dtype=np.float64)
        if effective
        else rec_steps.astype(np.float64)
    )
    recs.pop("time", None)
    lr = info.get("lr")
    status, stat = stopped or end_stationarity(
        out,
        rec_steps,
        problem,
        model,
        rerun,
        lambda: None if lr is None else 0.5 * lr,
        _monotone(rule),
    )
    info = dict(
        info,
        time_axis="effective" if effective else "step",
        steps=int(rec_steps[-1]),
        status=status,
        stationarity=stat,
    )
    if "validation_stop" in out:
        info["early_stopping"] = out["validation_stop"]
    return build_trajectory(recs, times, out["params"], model, info, steps=rec_steps)


def _hyper_tree(values: dict, B: int | None, dtype):
    """Traced hyper-parameters, each a scalar or (batch) one per run; returns (tree, axes)."""
    tree, axes = {}, {}
    for k, v in values.items():
        a = np.asarray(v)
        if a.ndim > 1 or (a.ndim == 1 and (B is None or a.shape[0] != B)):
            want = "a scalar" if B is None else f"a scalar or {B} values (one per run)"
            raise ValueError(f"`{k}` must be {want}, got shape {a.shape}")
        tree[k] = jnp.asarray(a, jnp.int64 if k == "seed" else dtype)
        axes[k] = None if a.ndim == 0 else 0
    return tree, axes


def _common_args(
    steps, n_save, divergence_factor, seed, save_at, save_spacing="log"
) -> LoopSettings:
    """One :class:`TrainOptions` of the loop settings and the minibatch seed(s), then
    ``save_at``."""
    options = TrainOptions(
        steps=steps,
        n_save=n_save,
        divergence_factor=divergence_factor,
        seed=seed,
        save_spacing=save_spacing,
        save_at=save_at,
    )
    return LoopSettings.from_options(options, save_at)


def _spec(settings: LoopSettings, save_matrices, rule, model, dtype) -> LoopSpec:
    cfg = LoopConfig(check_bool(save_matrices, "save_matrices"), rule)
    rec_steps, padded = settings.record_steps()
    return LoopSpec(rec_steps, padded, settings.divergence_factor, model, cfg, dtype)


def _info(optimizer, hyper: dict, rule, seed: int, wall: float, dtype, **batch) -> dict:
    """``Trajectory.info`` of a run (before the status): ``batch_size`` is the minibatch size
    (``None``: full batch), the run count of a batch is ``batch_runs``."""
    return dict(
        method="train",
        optimizer=_label(optimizer),
        lr=hyper.get("lr"),
        hyperparams={k: v for k, v in hyper.items() if k != "lr"},
        batch_size=rule.batch_size,
        seed=seed,
        wall_time=wall,
        dtype=str(jnp.dtype(dtype)),
        **batch,
    )


def train(
    problem,
    model,
    params,
    optimizer,
    *,
    lr: float | None = None,
    steps: int,
    batch_size: int | None = None,
    seed: int = 0,
    n_save: int = 200,
    save_at=None,
    save_spacing: str = "log",
    save_matrices: bool = False,
    divergence_factor: float = 1e8,
    dtype=None,
    progress: bool | None = None,
    heldout=None,
    early_stopping=None,
    backend: str = "auto",
    **hyperparams,
):
    r"""Train ``params`` with an optax optimizer for ``steps`` steps.

    ``params_{k+1} = params_k + u_k``, ``(u_k, s_{k+1}) = tx.update(g_k, s_k, params_k)``,
    ``g_k = grad L(params_k)`` (``L = f(W_L ... W_1)``, factor shapes as ``model``), or with
    ``batch_size = B`` the gradient of the minibatch loss: ``B`` of the ``N`` observed entries
    (completion, loss scaled by ``N / B``), measurements (sensing, mean over the ``B``) or
    entries (estimation), drawn uniformly without replacement at every step from
    ``fold_in(PRNGKey(seed), k)``, so a run is reproducible from ``seed`` and identical alone
    and inside :func:`train_batch`.

    Parameters
    ----------
    optimizer: a name (``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"``, ``"rmsprop"``,
        ``"group_rmsprop"``; :data:`rankbias.optimizers.OPTIMIZERS`) used with ``lr`` and its
        hyper-parameters as keywords (``momentum=0.9``, ``b1``, ``b2``, ``eps``, ``decay``,
        ``alpha``); an optax ``GradientTransformation`` (``optax.adam(1e-3)``, used as is:
        ``lr`` must be None); or a factory called as ``optimizer(learning_rate=lr,
        **hyperparams)`` (``optax.adam``). Names and factories are built inside the compiled
        loop from traced values: changing ``lr``, a hyper-parameter, ``steps`` or ``seed``
        does not recompile. A transform object is static: a new object compiles anew.
    lr: learning rate (required for names and factories).
    steps: number of steps, at most :data:`rankbias.dynamics.MAX_STEPS` (``10^8``).
    batch_size, seed: minibatch size (None: full batch) and its random seed.
    n_save, save_at: record at step 0, ``n_save - 1`` log-spaced steps and ``save_at``.
    save_spacing: ``"log"`` (default) or ``"linear"`` (``round(steps j / (n_save - 1))``).
    save_matrices: also keep ``W`` at each record.
    backend: ``"auto"`` (default), ``"dense"`` or ``"sparse"``: the loss and gradient of a
        matrix completion in factor form, ``O(|Omega| k)`` (:func:`rankbias.gradient_descent`,
        :func:`rankbias.dynamics.choose_backend`); full batch only (with ``batch_size``,
        ``"auto"`` is dense). ``info["backend"]`` records the choice.
    divergence_factor: the run counts as diverged when the (minibatch) loss is non-finite or
        exceeds ``divergence_factor * max(f(W(0)), 1e-12)``.
    progress: a live line (step, loss, rate) for runs over 2 s; ``None``: when standard
        error is a terminal, not in a notebook (:mod:`rankbias.dynamics._progress`). Ctrl-C
        returns the run so far with ``info["status"] == "interrupted"``.
    heldout: a :class:`rankbias.problems.HeldOut`: each record scores its RMSE
        (``traj.metrics["heldout_rmse"]``), as in :func:`rankbias.gradient_descent`.
    early_stopping: a :class:`rankbias.EarlyStopping` (with ``heldout``): validation early
        stopping, as in :func:`rankbias.gradient_descent`.

    Returns
    -------
    :class:`Trajectory`: ``steps`` the step index; ``times`` the effective time
    ``sum_k eta_k`` where the optimizer defines one (``info["time_axis"] = "effective"``:
    sgd, group_rmsprop, momentum, nesterov), else the step index (``"step"``). Loss, gradient
    norm and singular values are recorded on the full problem. ``info["status"]``:
    ``"completed"`` near a stationary point, else ``"not_stationary"``
    (:func:`rankbias.dynamics.stationarity`; full-batch ``"sgd"`` judged as GD, the other
    optimizers oscillate only without net descent), ``info["stationarity"]`` its quantities;
    an oscillating run warns once (``RuntimeWarning``) with a rerun-verified ``lr``.

    Raises
    ------
    ValueError: an unknown optimizer name or hyper-parameter, a value out of range, ``lr``
        missing (names, factories) or given with a transform, a bad ``batch_size``.
    TypeError: ``optimizer`` of another type.
    DivergenceError: naming the step, the loss and a step size (``lr_hint``) verified by a
        rerun (names and factories; :func:`rankbias.gradient_descent`).
    """
    kind, obj, hyper = _resolve_optimizer(optimizer, lr, hyperparams)
    settings = _common_args(steps, n_save, divergence_factor, seed, save_at, save_spacing)
    check_progress(progress)
    stopping = check_early_stopping(early_stopping, heldout)
    if kind == "factory":
        lr = check_positive(lr, "lr")
        hyper = dict(lr=float(lr), **{k: float(v) for k, v in hyperparams.items()})
    for k, v in list(hyper.items()) + [("seed", seed)]:
        if np.ndim(v) != 0:
            raise ValueError(f"`{k}` must be a scalar; use train_batch for several")
    problem, params, dtype = check_run(problem, model, params, dtype)
    check_initial_loss(problem, model, params)
    rule = _rule(kind, obj, batch_size, problem)
    backend = batch_backend(backend, problem, model, rule.batch_size)
    data = backend_data(problem, model, backend)
    spec = _spec(settings, save_matrices, rule, model, dtype)
    spec = dataclasses.replace(spec, heldout=heldout_tables(heldout, problem.shape, dtype))
    tree, _ = _hyper_tree(dict(hyper, seed=seed), None, dtype)
    t0 = time.perf_counter()
    # the records' QR/SVD on one BLAS thread above a size
    with lapack_threads(model.shape), progress_display(progress) as display:
        out, ran = run_foreground(spec, data, params, tree, "train", display, stopping)
    wall = time.perf_counter() - t0
    info = _info(optimizer, hyper, rule, int(seed), wall, dtype, backend=backend)
    rerun = _rerun(rule, data, params, spec, tree)
    traj = _finish(out, ran, problem, rule, info, params, None, rerun)
    warn_not_stationary(
        f"training with {info['optimizer']}", [(None, info["lr"], traj.info["stationarity"])]
    )
    return traj


def train_batch(
    problems,
    model,
    params_list: Sequence,
    optimizer,
    *,
    lr=None,
    steps: int,
    batch_size: int | None = None,
    seed: int | Sequence[int] = 0,
    n_save: int = 200,
    save_at=None,
    save_spacing: str = "log",
    save_matrices: bool = False,
    divergence_factor: float = 1e8,
    dtype=None,
    backend: str = "auto",
    on_failure: str = "raise",
    on_divergence: str | None = None,
    **hyperparams,
):
    """Many :func:`train` runs that share shapes and optimizer as one vmapped computation.

    ``problems``: one problem or one per run; ``lr``, ``seed`` and every numeric
    hyper-parameter: a scalar or one value per run. Each run equals the :func:`train` run with
    its values (the same minibatches; the last bits of batched products may differ).
    ``on_failure="raise"`` raises for the first diverged run; ``"return"`` puts the
    :class:`DivergenceError` in that run's place in the returned list (the word of
    :func:`~rankbias.dynamics.gradient_flow_batch`). ``on_divergence``: its deprecated spelling
    (same values; warns once).

    Raises
    ------
    ValueError, TypeError: as :func:`train`, and for per-run lists of the wrong length.
    """
    on_failure = renamed(
        "train_batch()", "on_divergence", on_divergence, "on_failure", on_failure, "raise"
    )
    check_choice(on_failure, "on_failure", ("raise", "return"))
    kind, obj, hyper = _resolve_optimizer(optimizer, lr, hyperparams)
    settings = _common_args(steps, n_save, divergence_factor, seed, save_at, save_spacing)
    problem, p_axis, params, dtype, B = prepare_batch(problems, model, params_list, dtype)
    if kind == "name":
        # Per-run values: validated one by one (check_hyperparams saw the first only).
        per_run = dict(hyperparams, lr=lr)
        for i in range(B):
            check_hyperparams(obj, *_nth(per_run, i, B))
        full = check_hyperparams(obj, _scalar_or_first(lr), {})
        hyper = {k: per_run.get(k, full[k]) for k in full}
    elif kind == "factory":
        for v in np.atleast_1d(np.asarray(lr, dtype=np.float64)):
            check_positive(v, "lr")
        hyper = dict(hyperparams, lr=lr)
    rule = _rule(kind, obj, batch_size, run_problem(problem, p_axis, 0))
    backend = batch_backend(backend, run_problem(problem, p_axis, 0), model, rule.batch_size)
    check_initial_losses(problem, p_axis, model, params, B)
    spec = _spec(settings, save_matrices, rule, model, dtype)
    tree, axes = _hyper_tree(dict(hyper, seed=seed), B, dtype)
    t0 = time.perf_counter()
    out = spec.run_batched(
        batch_data(problem, p_axis, model, backend, B), params, tree, p_axis, axes
    )
    wall = time.perf_counter() - t0
    seeds = np.asarray(seed)

    def finish(i: int) -> Trajectory:
        prob_i = run_problem(problem, p_axis, i)
        h_i = {
            k: float(a.ravel()[i] if a.ndim else a)
            for k, a in ((k, np.asarray(v)) for k, v in hyper.items())
        }
        seed_i = int(seeds.ravel()[i] if seeds.ndim else seeds)
        info = _info(
            optimizer,
            h_i,
            rule,
            seed_i,
            wall / B,
            dtype,
            backend=backend,
            batch_index=i,
            batch_runs=B,
        )
        params_i = index_tree(params, i)
        h_tree = _hyper_tree(dict(h_i, seed=seed_i), None, dtype)[0]
        data_i = backend_data(prob_i, model, backend)
        rerun = _rerun(rule, data_i, params_i, spec, h_tree)
        return _finish(index_tree(out, i), spec, prob_i, rule, info, params_i, i, rerun)

    result, ended = collect(B, finish, on_failure)
    warn_not_stationary(f"training with {_label(optimizer)}", ended)
    return result


def _nth(per_run: dict, i: int, B: int):
    """(lr, hyper) of run ``i`` from scalars or length-``B`` lists."""
    vals = {}
    for k, v in per_run.items():
        a = np.asarray(v, dtype=object)
        if a.ndim == 1 and a.shape[0] != B:
            raise ValueError(
                f"`{k}` must be a scalar or {B} values (one per run), got {a.shape[0]}"
            )
        vals[k] = a.ravel()[i] if a.ndim == 1 else v
    lr = vals.pop("lr")
    return lr, vals
