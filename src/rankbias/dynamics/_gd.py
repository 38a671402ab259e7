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
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_int, check_positive
from ._common import batch_apply, build_trajectory, check_run, index_tree, prepare_batch, record

__all__ = ["gradient_descent", "gradient_descent_batch", "DivergenceError", "save_steps",
           "sharpness"]


class DivergenceError(ValueError):
    """Gradient descent diverged; ``step``, ``loss`` and ``lr_hint`` say where and what to do."""

    def __init__(self, msg, *, step: int, loss: float, lr_hint: float | None, index: int | None = None):
        super().__init__(msg)
        self.step, self.loss, self.lr_hint, self.index = step, loss, lr_hint, index


_CHUNK = 8


@dataclass(frozen=True)
class _GDConfig:
    """Static options of the loop; ``rule`` is the update (hashable: it keys the compile cache).

    A rule has ``init(params, hyper) -> state`` and
    ``step(problem, model, params, state, k, hyper) -> (f, new_params, new_state, eff)``: the
    loss at ``params`` (what divergence is judged on), the next iterate, and the effective
    step size of this step (``nan`` where none is defined), summed into the recorded time.
    """

    divergence_factor: float
    save_matrices: bool
    rule: object


@dataclass(frozen=True)
class _GDRule:
    """``params - lr * s(k) * grad L(params)``; ``hyper = {"lr": lr}``."""

    schedule: Callable | None

    def init(self, params, hyper):
        return ()

    def step(self, problem, model, params, state, k, hyper):
        lr = hyper["lr"] if self.schedule is None else hyper["lr"] * self.schedule(k)
        f, g, _ = model.loss_and_grad(problem, params)
        return f, jax.tree_util.tree_map(lambda p, gp: p - lr * gp, params, g), state, lr


def save_steps(steps: int, n_save: int, extra=None) -> np.ndarray:
    """``0``, ``n_save - 1`` log-spaced step indices up to ``steps`` (rounded), plus ``extra``."""
    grid = np.concatenate([[0], np.unique(np.round(np.geomspace(1, max(steps, 1), max(n_save - 1, 1)))),
                           [steps]]).astype(np.int64)
    if extra is not None:
        extra = np.asarray(extra, dtype=np.int64).ravel()
        if np.any(extra < 0) or np.any(extra > steps):
            raise ValueError(f"`save_at` steps must lie in [0, steps={steps}]")
        grid = np.concatenate([grid, extra])
    return np.unique(grid[grid <= steps])


def sharpness(problem, model, params, iters: int = 100) -> float:
    """Largest Hessian eigenvalue of ``L`` at ``params`` (power iteration on exact HVPs).

    GD with a constant step ``eta`` is locally stable only if ``eta < 2 / sharpness``.
    """
    y = model.flatten(params)

    def grad_flat(z):
        return model.flatten(model.loss_and_grad(problem, model.unflatten(z))[1])

    @jax.jit
    def run(y):
        def body(_, c):
            v, _ = c
            w = jax.jvp(grad_flat, (y,), (v,))[1]
            n = jnp.linalg.norm(w)
            return jnp.where(n > 0, w / jnp.where(n > 0, n, 1), v), jnp.dot(v, w)

        v0 = jnp.cos(jnp.arange(y.size, dtype=y.dtype) * 1.618033988749895 + 0.3)
        return jax.lax.fori_loop(0, iters, body, (v0 / jnp.linalg.norm(v0), jnp.zeros((), y.dtype)))[1]

    return float(abs(run(y)))


def _run(problem, params, rec_steps, hyper, model, cfg: _GDConfig):
    """Core loop of every step rule. Returns records at ``rec_steps`` (with the summed
    effective step size ``time``) and the divergence status."""
    f0 = problem.loss(model.product(params))
    limit = cfg.divergence_factor * jnp.maximum(f0, 1e-12)
    rule = cfg.rule

    def one_step(c):
        params, state, k, bad, bad_step, bad_loss, t, tc = c
        f, new, new_state, eff = rule.step(problem, model, params, state, k, hyper)
        diverged = ~bad & (~jnp.isfinite(f) | (f > limit))
        stop = bad | diverged
        keep = functools.partial(jax.tree_util.tree_map, lambda n, p: jnp.where(stop, p, n))
        # Kahan-compensated sum: a constant step summed 10^6 times stays within an ulp of k * lr.
        y = jnp.where(stop, 0.0, eff) - tc
        s = t + y
        return (keep(new, params), keep(new_state, state), jnp.where(stop, k, k + 1), stop,
                jnp.where(diverged, k, bad_step), jnp.where(diverged, f, bad_loss),
                s, (s - t) - y)

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
    init = (params, rule.init(params, hyper), jnp.zeros((), jnp.int64), jnp.array(False),
            jnp.zeros((), jnp.int64), zero, zero, zero)
    rec0 = rec(init)
    (params, state, k, bad, bad_step, bad_loss, _, _), recs = jax.lax.scan(segment, init,
                                                                          rec_steps[1:])
    recs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), rec0, recs)
    return dict(recs=recs, params=params, state=state, k=k, bad=bad, bad_step=bad_step,
                bad_loss=bad_loss)


_run_jit = eqx.filter_jit(_run)


@eqx.filter_jit
def _run_batched(problem, params, rec_steps, hyper, model, cfg, p_axis, h_axes):
    return batch_apply(lambda p, x, h: _run(p, x, rec_steps, h, model, cfg),
                       (p_axis, 0, h_axes), (problem, params, hyper), cpu_vmap=True)


def _check_gd_args(lr, steps, n_save, divergence_factor, lr_schedule):
    steps = check_int(steps, "steps", minimum=0)
    check_int(n_save, "n_save", minimum=2)
    check_positive(divergence_factor, "divergence_factor")
    if lr_schedule is not None and not callable(lr_schedule):
        raise ValueError("`lr_schedule` must be a callable k -> multiplier of `lr` (JAX-traceable)")
    lrs = np.atleast_1d(np.asarray(lr, dtype=np.float64))
    for v in lrs:
        check_positive(v, "lr")
    return steps


def _times(rec_steps, lr, schedule):
    if schedule is None:
        return rec_steps * lr
    k = jnp.arange(int(rec_steps[-1]))
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(lr * jax.vmap(schedule)(k), dtype=np.float64))])
    return cum[rec_steps]


def check_divergence(out, problem, model, what: str, lr: float | None, index=None) -> None:
    """Raise :class:`DivergenceError` if the loop ``out`` stopped on divergence.

    ``what`` names the method in the message (``"gradient descent"``, ``"adam"``).
    """
    if not bool(out["bad"]):
        return
    step, loss = int(out["bad_step"]), float(out["bad_loss"])
    # The parameters were frozen at the last finite iterate before the bad step.
    hint = None
    try:
        s = sharpness(problem, model, out["params"])
        hint = 1.9 / s if s > 0 else None
    except Exception:  # pragma: no cover - the hint is best effort
        hint = None
    which = "" if index is None else f" (run {index} of the batch)"
    raise DivergenceError(
        f"{what} diverged at step {step}{which}: loss = {loss:.4g}"
        + ("" if lr is None else f" with lr = {lr:g}")
        + (f"; the local sharpness there allows lr < {hint:.3g} (2 / lambda_max of the "
           f"Hessian, with a margin)" if hint else ""),
        step=step, loss=loss, lr_hint=hint, index=index)


def _finish(out, rec_steps, lr, problem, model, cfg, info, index=None):
    check_divergence(out, problem, model, "gradient descent", lr, index)
    times = _times(rec_steps, lr, cfg.rule.schedule)
    info = dict(method="gradient_descent", lr=float(lr), steps=int(rec_steps[-1]),
                status="completed", **info)
    return build_trajectory(out["recs"], times, out["params"], model, info, steps=rec_steps)


def gradient_descent(problem, model, params, lr: float, steps: int, *, n_save: int = 200,
                     save_at=None, lr_schedule: Callable | None = None,
                     save_matrices: bool = False, divergence_factor: float = 1e8, dtype=None):
    r"""Run ``steps`` steps of ``params <- params - lr * s(k) * grad L(params)``.

    Arguments:
        lr: the step size ``eta`` (``> 0``).
        steps: number of steps.
        lr_schedule: optional JAX-traceable ``s(k)`` multiplying ``lr`` at step ``k``.
        n_save, save_at: record at step 0, ``n_save - 1`` log-spaced steps and ``save_at``.
        divergence_factor: the run counts as diverged when the loss is non-finite or exceeds
            ``divergence_factor * max(f(W(0)), 1e-12)``.

    Returns:
        :class:`Trajectory` with ``steps`` and ``times`` (``= cumulative step size``).

    Raises:
        DivergenceError: naming the step, the loss and a stable step size.
    """
    steps = _check_gd_args(lr, steps, n_save, divergence_factor, lr_schedule)
    if np.ndim(lr) != 0:
        raise ValueError("`lr` must be a scalar; use gradient_descent_batch for several")
    problem, params, dtype = check_run(problem, model, params, dtype)
    cfg = _GDConfig(float(divergence_factor), bool(save_matrices), _GDRule(lr_schedule))
    rec_steps = save_steps(steps, n_save, save_at)
    t0 = time.perf_counter()
    out = jax.block_until_ready(_run_jit(problem, params, jnp.asarray(rec_steps),
                                         {"lr": jnp.asarray(lr, dtype)}, model, cfg))
    wall = time.perf_counter() - t0
    return _finish(out, rec_steps, float(lr), problem, model, cfg,
                   dict(wall_time=wall, dtype=str(jnp.dtype(dtype))))


def gradient_descent_batch(problems, model, params_list, lr, steps: int, *, n_save: int = 200,
                           save_at=None, lr_schedule: Callable | None = None,
                           save_matrices: bool = False, divergence_factor: float = 1e8,
                           dtype=None, on_divergence: str = "raise"):
    """Many GD runs that share shapes as one vmapped computation.

    ``problems``: one problem or one per run; ``lr``: a scalar or one per run.
    ``on_divergence="raise"`` raises for the first diverged run; ``"return"`` puts the
    :class:`DivergenceError` in that run's place in the returned list.
    """
    steps = _check_gd_args(lr, steps, n_save, divergence_factor, lr_schedule)
    if on_divergence not in ("raise", "return"):
        raise ValueError(f"`on_divergence` must be 'raise' or 'return', got {on_divergence!r}")
    problem, p_axis, params, dtype, B = prepare_batch(problems, model, params_list, dtype)
    lrs = np.asarray(lr, dtype=np.float64)
    if lrs.ndim == 1 and lrs.shape[0] != B:
        raise ValueError(f"`lr` must be a scalar or hold {B} values, got {lrs.shape[0]}")
    lr_axis = None if lrs.ndim == 0 else 0
    cfg = _GDConfig(float(divergence_factor), bool(save_matrices), _GDRule(lr_schedule))
    rec_steps = save_steps(steps, n_save, save_at)
    t0 = time.perf_counter()
    out = jax.block_until_ready(_run_batched(problem, params, jnp.asarray(rec_steps),
                                             {"lr": jnp.asarray(lrs, dtype)}, model, cfg, p_axis,
                                             {"lr": lr_axis}))
    wall = time.perf_counter() - t0
    result = []
    for i in range(B):
        prob_i = problem if p_axis is None else index_tree(problem, i)
        lr_i = float(lrs) if lr_axis is None else float(lrs[i])
        try:
            result.append(_finish(index_tree(out, i), rec_steps, lr_i, prob_i, model, cfg,
                                  dict(wall_time=wall / B, dtype=str(jnp.dtype(dtype)),
                                       batch_size=B, batch_index=i), index=i))
        except DivergenceError as e:
            if on_divergence == "raise":
                raise
            result.append(e)
    return result
