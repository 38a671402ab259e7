r"""The sharpness ``lambda_max(nabla^2 L(params))``: power iteration on exact Hessian-vector
products. GD with a constant step ``eta`` is locally stable only for ``eta < 2 / sharpness``."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..._validation import check_int
from .._common import check_problem_model
from .._sparse import loss_and_grad

__all__ = ["sharpness"]


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


def sharp(problem, model, params) -> float:
    """``|lambda_max|`` of the Hessian at ``params`` (100 power iterations); nan on failure."""
    try:
        return float(abs(_sharpness(problem, model.flatten(params), jnp.asarray(100), model)))
    except Exception:  # pragma: no cover - the hint is best effort
        return float("nan")
