"""The steady-state event: the flow stops at a small gradient certified not to be a saddle."""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp

from ..._lanczos import lanczos_extremes
from .._sparse import loss_and_grad, optimality_gap
from .solvers import FlowArgs, vector_field


def steady_event(model) -> diffrax.Event:
    """Converged: a small parameter gradient at a point certified not to be a saddle.

    The gradient is also tiny at the saddles the flow visits (the origin, and between the
    greedy phases), and at depth >= 3 these are high-order saddles with ~zero curvature.
    Where the model class has no rank constraint, a minimiser of ``L`` has ``grad f(W) = 0``
    (PSD-KKT for ``U U^T``): we require that residual to be ``<= certificate_tol`` relative
    to ``||grad f(W(0))||``. Rank-constrained widths fall back to ``f(W) < f(W(0))`` and a
    Lanczos test ``lambda_min(Hessian) >= -curvature_tol``, which cannot see high-order saddles
    (the loss test first: the 24 Hessian products run only where both cheap tests pass;
    ``curvature_tol = inf`` skips them).
    """
    vf = vector_field(model)
    # Whether the class has a certificate is static (None for a rank constraint).
    has_gap = jax.eval_shape(lambda: model.optimality_gap(jnp.zeros(model.shape))) is not None

    def cond_fn(t, y, args: FlowArgs, **kwargs):
        problem, tols = args.problem, args.tols
        params = model.unflatten(y)
        f, g, aux = loss_and_grad(problem, model, params)
        small = jnp.sqrt(sum(jnp.sum(x * x) for x in g)) <= tols.gtol

        if has_gap:

            def certified():
                gap = optimality_gap(problem, model, aux)
                return gap <= tols.certificate_tol * jnp.maximum(args.gnorm0, 1e-300)

            return jax.lax.cond(small, certified, lambda: jnp.array(False))

        def curvature():
            hvp = lambda v: -jax.jvp(lambda z: vf(t, z, problem), (y,), (v,))[1]
            v0 = jnp.cos(jnp.arange(y.size, dtype=y.dtype) * 0.7548776662 + 0.1)
            lo, _ = lanczos_extremes(hvp, v0, 24)
            return lo >= -tols.curvature_tol

        return jax.lax.cond(
            small & (f < args.loss0 * (1 - 1e-6)),
            lambda: jax.lax.cond(jnp.isinf(tols.curvature_tol), lambda: jnp.array(True), curvature),
            lambda: jnp.array(False),
        )

    return diffrax.Event(cond_fn)
