r"""Gradient descent ``params_{k+1} = params_k - eta_k grad L(params_k)``, jit-compiled.

All factors are updated at once (vanilla GD, as in Chou et al.). The loop is a ``lax.scan``
over the recording points with a ``lax.while_loop`` between them that stops the moment the
loss is non-finite or has grown by ``divergence_factor``; the Python side then raises a
:class:`DivergenceError` naming the step, the loss and a stable step size.

The loop (:func:`_run`) is shared with :func:`rankbias.train` (optax optimizers): it is
parameterized by a static step *rule* (``_GDConfig.rule``); plain GD is ``_GDRule``.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._aot import aot_jit
from .._validation import check_bool, check_int, check_positive
from ..status import RunStatus
from ._common import (
    batch_apply,
    batch_data,
    build_trajectory,
    check_initial_loss,
    check_problem_model,
    check_run,
    index_tree,
    prepare_batch,
    record,
)
from ._sparse import backend_data, choose_backend, loss, loss_and_grad

__all__ = [
    "gradient_descent",
    "gradient_descent_batch",
    "DivergenceError",
    "save_steps",
    "sharpness",
]


class DivergenceError(ValueError):
    """Gradient descent diverged; ``step``, ``loss`` and ``lr_hint`` say where and what to do."""

    def __init__(
        self, msg, *, step: int, loss: float, lr_hint: float | None, index: int | None = None
    ):
        super().__init__(msg)
        self.step, self.loss, self.lr_hint, self.index = step, loss, lr_hint, index


_CHUNK = 8


@dataclass(frozen=True)
class _GDConfig:
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


@dataclass(frozen=True)
class _GDRule:
    """``params - lr * s(k) * grad L(params)``; ``hyper = {"lr": lr}``."""

    schedule: Callable | None

    def init(self, params, hyper):
        return ()

    def step(self, problem, model, params, state, k, hyper):
        lr = hyper["lr"] if self.schedule is None else hyper["lr"] * self.schedule(k)
        f, g, _ = loss_and_grad(problem, model, params)
        return f, jax.tree_util.tree_map(lambda p, gp: p - lr * gp, params, g), state, lr


#: The largest ``n_save`` (records of ``min(m, n) + 2`` floats each, ``W`` too with
#: ``save_matrices``).
MAX_SAVE = 100_000


def save_steps(steps: int, n_save: int, extra=None) -> np.ndarray:
    """``0``, ``n_save - 1`` log-spaced step indices up to ``steps`` (rounded), plus ``extra``."""
    grid = np.concatenate(
        [[0], np.unique(np.round(np.geomspace(1, max(steps, 1), max(n_save - 1, 1)))), [steps]]
    ).astype(np.int64)
    if extra is not None:
        extra = check_save_steps(extra, steps)
        grid = np.concatenate([grid, extra])
    return np.unique(grid[grid <= steps])


def check_save_steps(save_at, steps: int) -> np.ndarray:
    """``save_at`` (integer steps in any order) as a sorted int64 vector in ``[0, steps]``;
    raises ``ValueError`` for non-integer or out-of-range steps."""
    try:
        a = np.asarray(save_at, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"`save_at` must be an array of step indices, got {save_at!r}") from None
    if a.size > MAX_SAVE:
        raise ValueError(f"`save_at` holds {a.size} steps; at most {MAX_SAVE}")
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
        raise ValueError(
            "`save_at` must hold integer step indices (gradient descent records after whole steps)"
        )
    if np.any(a < 0) or np.any(a > steps):
        bad = a[(a < 0) | (a > steps)][0]
        raise ValueError(f"`save_at` steps must lie in [0, steps={steps}], got {bad:g}")
    return np.sort(a).astype(np.int64)  # a set of record steps: any order


def _padded(rec_steps: np.ndarray, n_save: int, n_extra: int) -> np.ndarray:
    """``rec_steps`` padded with copies of its last step to the most that ``n_save`` and
    ``len(save_at)`` allow: the number of distinct rounded log-spaced steps depends on
    ``steps``, the scan's length must not (a repeated end is an empty segment)."""
    n = n_save + 1 + n_extra
    return np.concatenate([rec_steps, np.full(n - rec_steps.size, rec_steps[-1])])


@eqx.filter_jit
def _sharpness(problem, y, iters, model):
    def grad_flat(z):
        return model.flatten(loss_and_grad(problem, model, model.unflatten(z))[1])

    def body(_, c):
        v, _ = c
        w = jax.jvp(grad_flat, (y,), (v,))[1]
        n = jnp.linalg.norm(w)
        return jnp.where(n > 0, w / jnp.where(n > 0, n, 1), v), jnp.dot(v, w)

    v0 = jnp.cos(jnp.arange(y.size, dtype=y.dtype) * 1.618033988749895 + 0.3)
    return jax.lax.fori_loop(0, iters, body, (v0 / jnp.linalg.norm(v0), jnp.zeros((), y.dtype)))[1]


def sharpness(problem, model, params, iters: int = 100) -> float:
    r"""Largest Hessian eigenvalue ``lambda_max(nabla^2 L(params))`` (power iteration on exact
    Hessian-vector products, ``iters`` of them; compiled once per shapes and dtype).

    GD with a constant step ``eta`` is locally stable only if ``eta < 2 / sharpness``: this
    is the way to pick ``lr`` for :func:`gradient_descent` (e.g. ``lr = 1 / sharpness`` at
    the init; the sharpness may grow along the run).

    Raises:
        ValueError: ``params`` with non-finite entries (named), or a non-finite result.
    """
    check_problem_model(problem, model)
    iters = check_int(iters, "iters", minimum=1)
    params = model.check_params(params)
    out = float(abs(_sharpness(problem, model.flatten(params), jnp.asarray(iters), model)))
    if not np.isfinite(out):
        raise ValueError(
            f"the sharpness at `params` is not finite ({out}): the Hessian-vector "
            f"products overflowed; check the problem and the scale of `params`"
        )
    return out


def _run(problem, params, rec_steps, hyper, divergence_factor, model, cfg: _GDConfig):
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


#: :func:`batch_strategy`: on the CPU, batches of models whose largest dimension (matrix
#: side or width) exceeds this run one by one.
VMAP_MAX_DIM = 200


def batch_strategy(model, batch: int) -> str:
    """How :func:`gradient_descent_batch` runs ``batch`` runs of ``model`` by default.

    ``"loop"`` (the single run's compiled program, shared with :func:`gradient_descent`)
    for one run; on accelerators ``"vmap"``; on the CPU ``"vmap"`` while the model's largest
    dimension ``max(m, n, widths)`` is at most :data:`VMAP_MAX_DIM` (200), ``"loop"`` above.
    Measured on 2 CPU cores, float64, 16 runs: vmap took 0.60-0.92x the one-by-one time at
    15 x 15 and 30 x 30 (depth 2 and 3) and 0.39x at 100 x 100 depth 3
    (``benchmarks/bench_batch_gd.py --grid``, loaded machine); from the per-step times of
    ``bench_gd.py`` (idle machine, depth 3) batch 16 against 16 single steps: 0.80x at
    d = 100, 1.18x at d = 300 and 1.05x at d = 1000 (matmul-bound: one large product runs
    closer to the matmul rate than a batched one).

    Returns:
        ``"vmap"`` or ``"loop"``.
    """
    if batch == 1:
        return "loop"
    if jax.default_backend() != "cpu":
        return "vmap"
    dims = tuple(getattr(model, "shape", ())) + tuple(getattr(model, "widths", None) or ())
    dims += (int(getattr(model, "width", 0) or 0),)
    return "vmap" if max(dims) <= VMAP_MAX_DIM else "loop"


MAX_STEPS = 100_000_000
"""The most ``steps`` one gradient-descent or optimizer run may take (``10^8``).

A step costs at least ~10 us on a CPU even on tiny problems (17 us measured at 8 x 8,
depth 3, 2 cores), so ``10^8`` steps already take ~30 minutes; far beyond it a run does not
finish (``10^12``: years). Longer runs chain shorter ones from ``final_params``. Checked by
:func:`rankbias.gradient_descent`, :func:`rankbias.train` and their batches."""


def check_steps(steps, name: str = "steps") -> int:
    """``steps`` as an int in ``[0, MAX_STEPS]``; raises ``ValueError`` naming ``name``."""
    steps = check_int(steps, name, minimum=0)
    if steps > MAX_STEPS:
        raise ValueError(
            f"`{name}` must be <= {MAX_STEPS:_} (MAX_STEPS: at >= ~10 us per step such a run "
            f"would not finish), got {steps:_}; run fewer steps, or chain runs from "
            f"the previous run's final_params"
        )
    return steps


def check_loop_args(steps, n_save, divergence_factor, save_at):
    """Validate the settings shared by :func:`gradient_descent` and :func:`rankbias.train`;
    returns ``(steps, n_save, divergence_factor, save_at)`` (``save_at`` as sorted ints).
    ``steps`` is bounded by :data:`MAX_STEPS` (:func:`check_steps`)."""
    steps = check_steps(steps)
    n_save = check_int(n_save, "n_save", minimum=2)
    if n_save > MAX_SAVE:
        raise ValueError(
            f"`n_save` must be <= {MAX_SAVE} (each record holds the loss, the "
            f"gradient norm and all singular values), got {n_save}"
        )
    divergence_factor = check_positive(divergence_factor, "divergence_factor")
    if divergence_factor <= 1:
        raise ValueError(
            f"`divergence_factor` must be > 1 (a growth factor of the loss), got "
            f"{divergence_factor}"
        )
    if save_at is not None:
        save_at = check_save_steps(save_at, steps)
    return steps, n_save, divergence_factor, save_at


def record_steps(steps: int, n_save: int, save_at) -> tuple[np.ndarray, np.ndarray]:
    """The record steps and the same padded to a length that depends on ``n_save`` and
    ``len(save_at)`` only (what the compiled loop sees)."""
    rec_steps = save_steps(steps, n_save, save_at)
    return rec_steps, _padded(rec_steps, n_save, 0 if save_at is None else len(save_at))


def _check_gd_args(lr, steps, n_save, divergence_factor, lr_schedule, save_at):
    steps, n_save, divergence_factor, save_at = check_loop_args(
        steps, n_save, divergence_factor, save_at
    )
    if lr_schedule is not None and not callable(lr_schedule):
        raise ValueError("`lr_schedule` must be a callable k -> multiplier of `lr` (JAX-traceable)")
    try:
        lrs = np.atleast_1d(np.asarray(lr, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"`lr` must be a positive number (or one per run), got {lr!r}") from None
    for v in lrs:
        check_positive(v, "lr")
    return steps, n_save, divergence_factor, save_at


def _schedule_values(schedule, steps: int) -> np.ndarray | None:
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


def _times(rec_steps, lr, schedule_vals):
    if schedule_vals is None:
        return rec_steps * lr
    cum = np.concatenate([[0.0], np.cumsum(lr * schedule_vals)])
    return cum[rec_steps]


#: :func:`stationarity`: the last recorded gradient norm at most this fraction of the run's
#: largest recorded one: near a stationary point.
GRAD_RTOL = 1e-3
#: :func:`stationarity`: a loss that fell by more than this fraction over the last half of
#: the steps is still descending.
DESCENT_RTOL = 1e-3
#: :func:`stationarity`: more than this fraction of the last half's steps raising the loss
#: (beyond rounding) is an oscillation (healthy GD lowers the loss at every step).
RISE_FRACTION = 0.05


#: ``stationarity``: a run whose gradient ends above this fraction of its largest recorded
#: gradient, and whose loss never moved, is ``"stalled"`` (nothing can be said of it).
STALL_RATIO = 0.5
#: ``stationarity``: ``g |theta| / |f|`` below this is a saddle's plateau, not a stalled run.
SADDLE_RTOL = 1e-2


def stationarity(
    rec_steps, loss, grad_norm, tail_rises: int | None, *, param_norm: float | None = None
) -> dict[str, Any]:
    r"""How far from a stationary point a run that ran all its steps ended.

    With ``g_k`` the recorded gradient norms, ``f_k`` the recorded losses and the *tail* the
    last half of the ``S`` steps (from the last record at or before ``S // 2``):

    * ``grad_ratio = g_end / max_k g_k`` (the gradient at the end against the run's scale);
    * ``tail_drop = (f_tail_start - f_end) / |f_tail_start|`` (the loss trend);
    * ``tail_rise_fraction``: the fraction of the tail's steps at which the loss rose
      (``tail_rises`` counted at every step by the loop, for GD and full-batch sgd, whose
      healthy steps all lower the loss); ``tail_rises=None`` (minibatches, momentum,
      adaptive and unknown optimizers, whose losses go up and down on the way): the
      fraction of rises between the tail's records, which counts only without net descent.

    The verdict: ``"near_stationary"`` if ``grad_ratio <= GRAD_RTOL`` (``1e-3``) or no step
    ran; else ``"oscillating"`` if the loss rose over the tail or, with ``tail_rises``,
    ``tail_rise_fraction > RISE_FRACTION`` (``0.05``), without it, that and a tail drop
    ``<= DESCENT_RTOL`` (a step size too large: no descent at a large gradient); else
    ``"descending"`` if ``tail_drop > DESCENT_RTOL`` (``1e-3``: still going down, too few
    steps); else ``"stalled"`` if the loss changed by at most ``DESCENT_RTOL`` over the whole
    run while ``grad_ratio > STALL_RATIO`` (``0.5``: the gradient never fell from its largest
    value) and the gradient is not small against the loss, ``g_end |theta_end| >
    SADDLE_RTOL |f_end|`` (``1e-2``; ``|theta|`` the factors' norm, ``param_norm``): ``lr x
    steps`` was too short to say anything (a tiny ``lr``); else ``"plateau"`` (a flat loss at a
    gradient too small to move it: a saddle's plateau, e.g. the one at 0 from a small init,
    not a defect of the run).
    ``"oscillating"``, ``"descending"`` and ``"stalled"`` end with status ``not_stationary``,
    the others ``completed``. The rises are judged only with ``tail_rises`` (per-step
    counts): the losses of minibatches and adaptive optimizers fluctuate at their noise floor,
    so for them only a net rise over the tail is ``"oscillating"``.

    Arguments:
        rec_steps: the record steps (sorted, the last is ``S``), ``Trajectory.steps``.
        loss, grad_norm: the recorded losses and gradient norms (full problem), one per step.
        tail_rises: the loop's count of loss rises over the tail's steps, or ``None``.

    Returns:
        ``dict(verdict, status, grad_ratio, tail_drop, tail_rise_fraction)`` (what
        ``info["stationarity"]`` holds, ``status`` apart).
    """
    rec_steps = np.asarray(rec_steps)
    f = np.asarray(loss, dtype=np.float64)
    g = np.asarray(grad_norm, dtype=np.float64)
    steps = int(rec_steps[-1])
    g_max = float(np.max(g))
    ratio = float(g[-1] / g_max) if g_max > 0 else 0.0
    half = steps // 2
    i0 = max(int(np.searchsorted(rec_steps, half, side="right")) - 1, 0)
    f_a = float(f[i0])
    drop = (f_a - float(f[-1])) / abs(f_a) if f_a != 0 else 0.0
    if tail_rises is not None:
        n = max(steps - 1 - half, 0)
        rise = int(tail_rises) / n if n else 0.0
    else:
        d = np.diff(f[i0:])
        rise = float(np.mean(d > 1e-5 * np.abs(f[i0:-1]))) if d.size else 0.0
    # Only the per-step count judges rises: minibatch and adaptive losses fluctuate at their
    # noise floor (rises between records there are noise, not a step size too large).
    rises = rise > RISE_FRACTION and tail_rises is not None
    f_0 = float(f[0])
    moved = abs(f_0 - float(f[-1])) > DESCENT_RTOL * max(abs(f_0), 1e-300)
    # g |theta| / f is dimensionless (for a depth-L factorization near 0 it is ~ L times the
    # end-to-end scale): tiny at a saddle near the origin, O(1) away from stationary points
    saddle = param_norm is not None and float(g[-1]) * param_norm <= SADDLE_RTOL * abs(float(f[-1]))
    if steps == 0 or ratio <= GRAD_RTOL:
        verdict = "near_stationary"
    elif rises or drop < -DESCENT_RTOL:
        verdict = "oscillating"
    elif drop > DESCENT_RTOL:
        verdict = "descending"
    elif not moved and ratio > STALL_RATIO and not saddle:
        # the loss never moved, the gradient is still at its largest and not small against
        # the loss: lr x steps was too short to say anything (e.g. a tiny lr)
        verdict = "stalled"
    else:
        verdict = "plateau"
    status = (
        RunStatus.NOT_STATIONARY
        if verdict in ("oscillating", "descending", "stalled")
        else RunStatus.COMPLETED
    ).value  # a plain str, as the flow's statuses (reprs, JSON)
    return dict(
        verdict=verdict,
        status=status,
        grad_ratio=ratio,
        tail_drop=float(drop),
        tail_rise_fraction=float(rise),
    )


def _sharp(problem, model, params) -> float:
    """``|lambda_max|`` of the Hessian at ``params`` (100 power iterations); nan on failure."""
    try:
        return float(abs(_sharpness(problem, model.flatten(params), jnp.asarray(100), model)))
    except Exception:  # pragma: no cover - the hint is best effort
        return float("nan")


#: :func:`_verified_lr`: how many step sizes it tries (each a rerun of the whole run).
_HINT_TRIES = 5


def _verified_lr(candidate: float, rerun, problem, model) -> tuple[float, bool]:
    """Lower ``candidate`` until a rerun of the run at it neither diverges nor oscillates.

    The sharpness grows along a run (near the solution of a deep factorization it is
    ``~2 L sigma_1^(2 - 2/L)``), so ``2 / sharpness`` at the start or before a blow-up is
    no stable step for the whole run; the only honest check is the run itself. A failed try
    goes on from ``min(0.95 * 2 / sharpness, 0.7 * candidate)`` measured where that try
    failed (before its blow-up, or at its end). ``rerun(lr) -> (loop output, stationarity)``.
    Returns ``(lr, verified)`` after at most :data:`_HINT_TRIES` reruns.
    """
    use_s = getattr(rerun, "sharpness", True)
    for _ in range(_HINT_TRIES):
        out, stat = rerun(candidate)
        bad = bool(out["bad"])
        if not bad and stat["verdict"] != "oscillating":
            return candidate, True
        s = _sharp(problem, model, out["good"] if bad else out["params"]) if use_s else np.nan
        nxt = 0.95 * 2.0 / s if np.isfinite(s) and s > 0 else np.inf
        candidate = float(min(nxt, 0.7 * candidate))
    return candidate, False


def _divergence_message(
    what, step, loss, lr, problem, model, params0, good, good_step, index, rerun=None, steps=None
):
    """The error for a diverged run and its ``lr_hint``.

    Without ``rerun``: ``2 / sharpness`` at the last iterate whose loss had not risen
    (``good``, step ``good_step``; the start if it rose at once), not at the blown-up state,
    whose curvature is meaningless. With ``rerun`` (gradient descent): that value (or half
    of ``lr`` if ``lr`` was below it) lowered by :func:`_verified_lr` until a run of all
    ``steps`` at it neither diverges nor oscillates: a hint that holds for the whole run.
    """
    which = "" if index is None else f" (run {index} of the batch)"
    msg = f"{what} diverged at step {step}{which}: loss = {loss:.4g}" + (
        "" if lr is None else f" with lr = {lr:g}"
    )

    def sharp(p):
        return _sharp(problem, model, p)

    s_good = sharp(good)
    where = (
        "at the start" if good_step == 0 else f"at step {good_step} (the last before the loss rose)"
    )
    if rerun is not None and lr is not None:
        known = rerun.sharpness and np.isfinite(s_good) and s_good > 0
        stable = 2.0 / s_good if known else np.inf
        first = 0.95 * stable if lr >= 0.95 * stable else 0.5 * lr
        hint, ok = _verified_lr(float(first), rerun, problem, model)
        grew = hint < first  # lowered by the reruns: the sharpness grew along the run
        seen = (
            f"; {where} rb.sharpness is {s_good:.4g} (2 / sharpness = {stable:.4g})"
            + (", and it grows along the run" if grew else "")
            if known
            else ""
        )
        if ok:
            return (
                msg + f"{seen}: take lr <= {hint:.3g} (a run at lr = {hint:.3g} ran all "
                f"{steps} steps without diverging or oscillating)"
            ), hint
        return (
            msg + f"{seen}: take lr below {hint:.3g} (not verified: runs at the "
            f"{_HINT_TRIES} larger steps tried still diverged or oscillated)"
        ), hint
    if not (np.isfinite(s_good) and s_good > 0):
        return msg + "; pick lr below 2 / rb.sharpness(problem, model, params)", None
    stable = 2.0 / s_good
    if lr is None or lr >= 0.95 * stable:
        hint = 0.95 * stable
        start = (
            "" if good_step == 0 or params0 is None else f" (at the start: {sharp(params0):.4g})"
        )
        return (
            msg + f"; {where} the sharpness is {s_good:.4g}{start}, so GD is stable there only "
            f"for lr < 2 / sharpness = {stable:.4g}: take lr < {hint:.3g} (measure it with "
            f"rb.sharpness(problem, model, params))"
        ), hint
    return (
        msg + f"; lr is below 2 / sharpness = {stable:.4g} {where}, so the sharpness grew "
        f"after it: lower lr, or measure rb.sharpness(problem, model, params) at later "
        f"iterates (a shorter run's final_params)"
    ), None


def check_divergence(
    out, problem, model, what: str, lr: float | None, index=None, params0=None, rerun=None
) -> None:
    """Raise :class:`DivergenceError` if the loop ``out`` stopped on divergence.

    ``what`` names the method in the message (``"gradient descent"``, ``"training with adam"``).
    ``rerun`` (``lr -> (loop output, stationarity)``): verify the hint by rerunning
    (:func:`_verified_lr`).
    """
    if not bool(out["bad"]):
        return
    step, loss = int(out["bad_step"]), float(out["bad_loss"])
    msg, hint = _divergence_message(
        what,
        step,
        loss,
        lr,
        problem,
        model,
        params0,
        out["good"],
        int(out["good_step"]),
        index,
        rerun,
        None if rerun is None else rerun.steps,
    )
    raise DivergenceError(msg, step=step, loss=loss, lr_hint=hint, index=index)


def end_stationarity(
    out, rec_steps, problem, model, rerun, first_lr: Callable[[], float | None], monotone=True
) -> tuple[str, dict[str, Any]]:
    """``(status, stationarity)`` of a finished run: :func:`loop_stationarity`, and for an
    oscillating run the verified stable step from ``first_lr()`` (called only then, as it may
    measure a sharpness; ``None`` or no ``rerun``: no step to offer)."""
    stat = loop_stationarity(out, rec_steps, monotone)
    status = stat.pop("status")
    if stat["verdict"] == "oscillating":
        stat["lr_hint"], stat["lr_verified"] = None, False
        first = first_lr() if rerun is not None else None
        if first is not None:
            stat["lr_hint"], stat["lr_verified"] = _verified_lr(first, rerun, problem, model)
    return status, stat


def loop_stationarity(out, rec_steps, monotone: bool = True) -> dict[str, Any]:
    """:func:`stationarity` of a finished loop output (records cut to ``rec_steps``);
    ``monotone``: a rule whose healthy steps all lower the loss (GD, full-batch sgd)."""
    n = rec_steps.size
    leaves = jax.tree_util.tree_leaves(out["params"])
    return stationarity(
        rec_steps,
        np.asarray(out["recs"]["loss"])[:n],
        np.asarray(out["recs"]["grad_norm"])[:n],
        int(out["tail_rises"]) if monotone else None,
        param_norm=float(np.sqrt(sum(float(np.sum(np.square(x))) for x in leaves))),
    )


def warn_not_stationary(what: str, runs: list[tuple[int | None, float | None, dict]]) -> None:
    """One ``RuntimeWarning`` for the runs (``(batch index or None, lr, stationarity)``) that
    oscillated: a step too large, with the stable step where one was found."""
    bad = [(i, lr, st) for i, lr, st in runs if st["verdict"] == "oscillating"]
    if not bad:
        return

    def one(i, lr, st):
        who = "" if i is None else f"run {i}: "
        hint = st.get("lr_hint")
        fix = (
            "lower lr"
            if hint is None
            else f"take lr <= {hint:.3g}"
            + (
                " (verified: a run at it neither diverges nor oscillates)"
                if st["lr_verified"]
                else ""
            )
        )
        at = "" if lr is None else f" at lr = {lr:g}"
        return (
            f"{who}the loss rose at {st['tail_rise_fraction']:.0%} of the last half's steps"
            f"{at}, ending with the gradient at {st['grad_ratio']:.2g} of its largest: {fix}"
        )

    runs_txt = "; ".join(one(*r) for r in bad)
    warnings.warn(
        f"{what} ended far from a stationary point (status not_stationary, "
        f"oscillating: the step size is too large); {runs_txt}",
        RuntimeWarning,
        stacklevel=3,
    )


class Rerun:
    """``lr -> (loop output, stationarity)``: the same run (GD or an optimizer whose
    ``hyper`` holds ``"lr"``) at another ``lr``, by the single run's compiled program; for
    the step-size hints. ``data_fn`` is called on the first rerun only (most runs need none).
    ``sharpness``: whether ``2 / sharpness`` bounds the step (plain GD, sgd), else the hint
    search only lowers ``lr`` (:func:`_verified_lr`)."""

    def __init__(
        self,
        data_fn,
        params,
        padded,
        rec_steps,
        hyper: dict,
        divergence_factor,
        model,
        cfg,
        dtype,
        *,
        monotone: bool = True,
        sharpness: bool = True,
    ):
        self.data_fn, self.data = data_fn, None
        self.args = (params, padded, hyper, divergence_factor, model, cfg)
        self.rec_steps, self.dtype, self.steps = rec_steps, dtype, int(rec_steps[-1])
        self.monotone, self.sharpness = monotone, sharpness

    def __call__(self, lr: float):
        params, padded, hyper, divergence_factor, model, cfg = self.args
        if self.data is None:
            self.data = self.data_fn()
        out = jax.block_until_ready(
            _run_jit(
                self.data,
                params,
                jnp.asarray(padded),
                dict(hyper, lr=jnp.asarray(lr, self.dtype)),
                jnp.asarray(divergence_factor, self.dtype),
                model,
                cfg,
            )
        )
        bad = bool(out["bad"])
        return out, (None if bad else loop_stationarity(out, self.rec_steps, self.monotone))


def _finish(out, rec_steps, lr, problem, model, info, params0, schedule_vals, index, rerun):
    check_divergence(out, problem, model, "gradient descent", lr, index, params0, rerun)
    n = rec_steps.size
    recs = {k: np.asarray(v)[:n] for k, v in out["recs"].items() if k != "time"}
    times = _times(rec_steps, lr, schedule_vals)

    def first() -> float:  # the sharpness is measured only for an oscillating run
        s = _sharp(problem, model, out["params"])
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
    lr_schedule: Callable | None = None,
    save_matrices: bool = False,
    divergence_factor: float = 1e8,
    dtype=None,
    backend: str = "auto",
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
        n_save, save_at: record at step 0, ``n_save - 1`` log-spaced steps and ``save_at``
            (sorted integers in ``[0, steps]``).
        divergence_factor: the run counts as diverged when the loss is non-finite or exceeds
            ``divergence_factor * max(f(W(0)), 1e-12)`` (``> 1``).
        backend: ``"auto"`` (default), ``"dense"`` or ``"sparse"``: how ``grad L`` is
            evaluated, as for :func:`rankbias.gradient_flow` (``"sparse"``: a
            :class:`MatrixCompletion` in factor form, ``O(|Omega| k)`` per step, no ``(m, n)``
            array; see :func:`rankbias.dynamics.choose_backend`); ``info["backend"]``.

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
    steps, n_save, divergence_factor, save_at = _check_gd_args(
        lr, steps, n_save, divergence_factor, lr_schedule, save_at
    )
    if np.ndim(lr) != 0:
        raise ValueError("`lr` must be a scalar; use gradient_descent_batch for several")
    problem, params, dtype = check_run(problem, model, params, dtype)
    backend = choose_backend(backend, problem, model)
    check_initial_loss(problem, model, params)
    data = backend_data(problem, model, backend)
    sched = _schedule_values(lr_schedule, steps)
    cfg = _GDConfig(check_bool(save_matrices, "save_matrices"), _GDRule(lr_schedule))
    rec_steps, padded = record_steps(steps, n_save, save_at)
    t0 = time.perf_counter()
    out = jax.block_until_ready(
        _run_jit(
            data,
            params,
            jnp.asarray(padded),
            {"lr": jnp.asarray(lr, dtype)},
            jnp.asarray(divergence_factor, dtype),
            model,
            cfg,
        )
    )
    wall = time.perf_counter() - t0
    rerun = Rerun(lambda: data, params, padded, rec_steps, {}, divergence_factor, model, cfg, dtype)
    traj = _finish(
        out,
        rec_steps,
        float(lr),
        problem,
        model,
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
    lr_schedule: Callable | None = None,
    save_matrices: bool = False,
    divergence_factor: float = 1e8,
    dtype=None,
    on_divergence: str = "raise",
    strategy: str = "auto",
    backend: str = "auto",
):
    """Many GD runs that share shapes, as one vmapped computation or a loop of single runs.

    ``problems``: one problem or one per run; ``lr``: a scalar or one per run. The settings
    are those of :func:`gradient_descent` (traced the same way, ``backend`` too).
    ``on_divergence="raise"`` raises for the first diverged run; ``"return"`` puts the
    :class:`DivergenceError` in that run's place in the returned list.

    ``strategy``: ``"vmap"`` (one batched computation: ``B`` runs step together, each matrix
    product a batched one), ``"loop"`` (the compiled program of :func:`gradient_descent`,
    called run by run) or ``"auto"``: ``"vmap"`` on accelerators, on the CPU
    :func:`batch_strategy`'s size rule. The runs are the same either way (the same step
    arithmetic; batched and single matrix products may differ in the last bits).

    Raises:
        ValueError: a bad argument (named), before anything is compiled.
        DivergenceError: as :func:`gradient_descent` (``on_divergence="raise"``).
    """
    steps, n_save, divergence_factor, save_at = _check_gd_args(
        lr, steps, n_save, divergence_factor, lr_schedule, save_at
    )
    if on_divergence not in ("raise", "return"):
        raise ValueError(f"`on_divergence` must be 'raise' or 'return', got {on_divergence!r}")
    if strategy not in ("auto", "vmap", "loop"):
        raise ValueError(f"`strategy` must be 'auto', 'vmap' or 'loop', got {strategy!r}")
    problem, p_axis, params, dtype, B = prepare_batch(problems, model, params_list, dtype)
    backend = choose_backend(backend, problem if p_axis is None else index_tree(problem, 0), model)
    for i in range(B):
        check_initial_loss(
            problem if p_axis is None else index_tree(problem, i),
            model,
            index_tree(params, i),
            name=f"params_list[{i}]",
        )
    lrs = np.asarray(lr, dtype=np.float64)
    if lrs.ndim > 1 or (lrs.ndim == 1 and lrs.shape[0] != B):
        raise ValueError(f"`lr` must be a scalar or hold {B} values, got shape {lrs.shape}")
    lr_axis = None if lrs.ndim == 0 else 0
    sched = _schedule_values(lr_schedule, steps)
    cfg = _GDConfig(check_bool(save_matrices, "save_matrices"), _GDRule(lr_schedule))
    rec_steps, padded = record_steps(steps, n_save, save_at)
    if strategy == "auto":
        strategy = batch_strategy(model, B)
    single = lambda i: problem if p_axis is None else index_tree(problem, i)
    t0 = time.perf_counter()
    if strategy == "vmap":
        out = jax.block_until_ready(
            _run_batched(
                batch_data(problem, p_axis, model, backend, B),
                params,
                jnp.asarray(padded),
                {"lr": jnp.asarray(lrs, dtype)},
                jnp.asarray(divergence_factor, dtype),
                model,
                cfg,
                p_axis,
                {"lr": lr_axis},
            )
        )
        outs = [index_tree(out, i) for i in range(B)]
    else:
        outs = [
            _run_jit(
                backend_data(single(i), model, backend),
                index_tree(params, i),
                jnp.asarray(padded),
                {"lr": jnp.asarray(lrs if lr_axis is None else lrs[i], dtype)},
                jnp.asarray(divergence_factor, dtype),
                model,
                cfg,
            )
            for i in range(B)
        ]
        outs = jax.block_until_ready(outs)
    wall = time.perf_counter() - t0
    result = []
    ended = []
    for i in range(B):
        prob_i = problem if p_axis is None else index_tree(problem, i)
        lr_i = float(lrs) if lr_axis is None else float(lrs[i])
        rerun = Rerun(
            functools.partial(backend_data, prob_i, model, backend),
            index_tree(params, i),
            padded,
            rec_steps,
            {},
            divergence_factor,
            model,
            cfg,
            dtype,
        )
        try:
            result.append(
                _finish(
                    outs[i],
                    rec_steps,
                    lr_i,
                    prob_i,
                    model,
                    dict(
                        wall_time=wall / B,
                        dtype=str(jnp.dtype(dtype)),
                        backend=backend,
                        batch_size=B,
                        batch_index=i,
                        batch_strategy=strategy,
                    ),
                    index_tree(params, i),
                    sched,
                    i,
                    rerun,
                )
            )
            ended.append((i, lr_i, result[-1].info["stationarity"]))
        except DivergenceError as e:
            if on_divergence == "raise":
                raise
            result.append(e)
    warn_not_stationary("gradient descent", ended)
    return result
