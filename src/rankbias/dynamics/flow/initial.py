"""Refusing, before anything is compiled, an initial state from which no flow can be computed:
factors too large for the dtype, a non-finite loss or gradient, or a stiffness that no run
could integrate within ``max_steps``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._common import check_initial_loss


def check_initial_state(
    problem,
    model,
    params,
    dtype,
    t_max: float,
    max_steps: int,
    solver: str = "rkc",
    name: str = "params",
) -> None:
    """Fail before compiling when the flow from ``params`` cannot be computed.

    * ``||W(0)||`` too large for the dtype: ``(sqrt(width) max|params|)^L`` (a bound on
      ``||W(0)||_2``) above :data:`MAX_INIT_SCALE`;
    * ``f(W(0))`` or ``grad f(W(0))`` not finite;
    * (``DeepFactorization``, stability-limited solvers) more than ``EVALS_PER_STEP *
      max_steps`` gradient evaluations needed:
      gradient flow conserves the imbalances ``D_j = W_{j+1}^T W_{j+1} - W_j W_j^T``, so the
      factors never shrink below ``||D_j||`` and the Hessian radius stays ``>~ c delta^(L-1)``
      (``delta = max_j ||D_j||_2``, ``c`` the curvature of ``f`` along ``W(0)``). RKC's
      ``s``-stage step is stable for ``h rho <= 0.65 s^2`` (``s <= 2000``), an explicit
      Runge--Kutta step for ``h rho <~ 3.3`` with 6: at least ``t_max rho / 1300``
      (resp. ``t_max rho / 0.55``) evaluations. On the 8 x 8, depth-2, ``t_max = 100``
      completion from a gaussian init of scale ``alpha`` (end-to-end), ``delta ~ 2 alpha``
      and ``c ~ 0.67``: ``alpha = 1e6`` needs >= 1e5 (it runs: 1,087 steps, loss 5e-17),
      ``alpha = 1e10`` >= 1e9 (refused; it ran for hours).
    """
    top = max(
        (float(np.max(np.abs(np.asarray(p, dtype=np.float64)))) if np.size(p) else 0.0)
        for p in params
    )
    depth = len(params)
    dname = jnp.dtype(dtype).name
    limit = MAX_INIT_SCALE[dname]
    width = max(max(np.shape(p)) for p in params)
    # W is a product of model.depth factors of size max|params| (U U^T: two of U).
    w_bound = (np.sqrt(width) * top) ** max(model.depth, 2)
    if w_bound > limit:
        raise ValueError(
            f"`{name}`: the initial factors are too large for {dname} (init scale max|{name}| = "
            f"{top:.3g}, so ||W(0)|| is up to ~{w_bound:.3g} > {limit:.3g}: the loss ~ ||W||^2 "
            f"and the flow's stiffness overflow); use a smaller init `scale`"
        )
    W0, f, G = check_initial_loss(problem, model, params, name)
    if depth < 2 or not model.factor_chain or solver in ("rodas4", "kvaerno5", "hybrid", "krylov"):
        return
    Ws = [np.asarray(p, dtype=np.float64) for p in params]
    delta = max(
        float(np.linalg.norm(Ws[j + 1].T @ Ws[j + 1] - Ws[j] @ Ws[j].T, 2))
        for j in range(depth - 1)
    )
    nW = float(jnp.linalg.norm(W0))
    if not delta > 0 or not nW > 0:
        return
    G2 = problem.grad(2.0 * W0)
    c = float(jnp.linalg.norm(G2 - G)) / nW
    rho = c * delta ** (depth - 1)
    # Evaluations per unit of t * rho at the cheapest stable schedule: RKC with s = 2000
    # stages covers h rho = 0.65 s^2 with s + 3 evaluations; Tsit5-like methods 3.3 with 6.
    per_eval = 0.65 * 2000.0 if solver == "rkc" else 3.3 / 6
    need = t_max * rho / per_eval
    if need > EVALS_PER_STEP * max_steps:
        raise ValueError(
            f"`{name}`: init scale max|{name}| = {top:.3g} is too large to integrate: the flow "
            f"conserves the factor imbalance (||W_(j+1)^T W_(j+1) - W_j W_j^T|| = {delta:.3g}), "
            f"so the Hessian radius stays >~ {rho:.3g}, and solver {solver!r} needs at least "
            f"~{need:.3g} gradient evaluations to reach t_max = {t_max:g}, more than "
            f"{EVALS_PER_STEP} x max_steps = {EVALS_PER_STEP * max_steps:.3g}; use a smaller "
            f"init `scale` (or a shorter `t_max`, or a larger `max_steps`)"
        )


#: A stability-limited flow is refused when it needs more than this many gradient
#: evaluations per allowed step (``max_steps``): 1e8 evaluations at the default ``max_steps``
#: (an 8 x 8 evaluation costs ~10 us, a 100 x 100 one ~1 ms).
EVALS_PER_STEP = 100

#: Largest ``(sqrt(width) max|params(0)|)^L`` (a bound on ``||W(0)||_2``) accepted per dtype:
#: ``1e30`` in float64 (the loss ``~||W||^2 = 1e60`` stays far from overflow at 1e308, and the
#: flow from ``||W|| = 1e30`` shrinks in ~one time unit but needs steps ``~1/||W||^(2-2/L)``:
#: there is no useful run beyond), ``1e12`` in float32 (overflow at 3.4e38).
MAX_INIT_SCALE = {"float64": 1e30, "float32": 1e12}
