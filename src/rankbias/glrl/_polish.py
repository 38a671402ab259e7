r"""Newton-CG on the factor objective of a completion problem: how the factor-only phases of
large GLRL problems finish.

The last digits of a flow's approach to a minimum converge at the rate of its smallest
curvature (most of the time on 1000 x 1000 completions); Newton from inside the basin reaches
the same minimiser quadratically (2-3 steps measured).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..dynamics._sparse import SparseCompletion
from ..dynamics.flow.solvers import vector_field as _vector_field
from ._factors import padded_model, unpad, width

__all__ = ["POLISH_FACTOR", "newton_polish", "neg_grad"]

#: Where the large-problem phases hand over from the flow to Newton-CG (times phase_gtol;
#: with the default phase_gtol: ``||grad L|| <= 1e-4 max(1, ||grad f(0)||)``).
POLISH_FACTOR = 1e7


def newton_polish(problem, params, psd: bool, gtol: float, max_iter: int = 30, *, data=None):
    """Newton-CG on the factor objective of a completion problem, from a point the flow
    brought near a minimiser; returns (params, ||grad L||, Newton iterations) at the width
    of ``params`` (the sparse backend's evaluations, padded to a multiple of 8 columns).

    Each step solves ``H d = -grad L`` by conjugate gradients on exact Hessian-vector
    products (the Hessian is singular along the factor's symmetries, ``U -> U Q``; CG stays
    in the range because the gradient does). No line search on loss values: near the
    minimiser the loss decrease falls below float64 resolution long before the gradient
    does, which stalls value-based searches (L-BFGS stopped at ``||grad|| ~ 1e-9`` on
    1000 x 1000 completions). A step is accepted when ``||grad L||`` falls, else halved."""
    r = width(params, psd)
    # zero columns stay zero: their gradient sym(G) 0 vanishes
    model, padded = padded_model(problem.shape, params, psd)
    data = SparseCompletion.from_problems(problem, model) if data is None else data
    y = model.flatten(tuple(jnp.asarray(p) for p in padded))
    g = neg_grad(data, model, y)
    gn = float(jnp.linalg.norm(g))
    it = 0
    while gn > gtol and it < max_iter:
        it += 1
        d = _newton_direction(data, model, y, g)
        step = 1.0
        for _ in range(8):
            y_new = y + step * d
            g_new = neg_grad(data, model, y_new)
            gn_new = float(jnp.linalg.norm(g_new))
            if gn_new < gn:
                break
            step *= 0.5
        else:
            break  # no decrease: at the precision floor
        y, g, gn = y_new, g_new, gn_new
    return unpad(model.unflatten(y), r, psd), gn, it


@eqx.filter_jit
def neg_grad(data, model, y):
    """``-grad L`` of the factor objective, flat (the sparse backend's vector field)."""
    return _vector_field(model)(0.0, y, data)


@eqx.filter_jit
def _newton_direction(data, model, y, g, maxiter: int = 200):
    """CG for ``H d = -grad L = g`` (``g`` is ``-grad L``, ``H`` the Hessian of ``L``), to
    relative residual 1e-4, stopping early at non-positive curvature."""
    f = lambda z: _vector_field(model)(0.0, z, data)
    hvp = lambda v: -jax.jvp(f, (y,), (v,))[1]  # -d(-grad L) = H v
    b2 = jnp.sum(g * g)

    def cond(c):
        k, x, res, p, rr, done = c
        return (k < maxiter) & (rr > 1e-8 * b2) & ~done

    def body(c):
        k, x, res, p, rr, done = c
        hp = hvp(p)
        php = jnp.sum(p * hp)
        neg = php <= 1e-30 * jnp.sum(p * p)
        alpha = rr / jnp.where(neg, 1.0, php)
        x = jnp.where(neg, jnp.where(k == 0, g, x), x + alpha * p)
        res = res - alpha * hp
        rr_new = jnp.sum(res * res)
        p = res + rr_new / rr * p
        return k + 1, x, res, p, rr_new, neg

    init = (0, jnp.zeros_like(g), g, g, b2, False)
    return jax.lax.while_loop(cond, body, init)[1]
