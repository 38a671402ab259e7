r"""Rodas4: a stiffly accurate, L-stable Rosenbrock method of order 4 with a dense Jacobian.

Why. Between two escapes of a deep factorization (depth ``L >= 3``) from a tiny
initialization, the directions already learned have Hessian eigenvalues ~1 while the next
direction grows at a rate ~``alpha^(1-2/L)``: a stiffness ratio of 1e10 at ``alpha = 1e-32``.
Explicit and stabilised explicit methods (RKC) pay ``sqrt(h rho)`` gradient evaluations per
step there (~1e5 at ``h = 1e9``). A Rosenbrock method solves linear systems with
``I / (h gamma) - J`` instead and its step is limited by accuracy on the slow direction only:
the stretch takes tens of steps. The Jacobian ``J = -H`` of a gradient flow is the negated
Hessian; it is formed exactly (``jax.jacfwd`` of the vector field, ``P`` JVPs) and
factorised by LU once per step, so this pays ``O(P^3)`` per step and is meant for ``P`` up
to a few thousand parameters (LU of ``P = 1200``: 0.07 s on 2 cores).

Method (Hairer & Wanner, *Solving ODEs II*, Sec. IV.7; the autonomous form)::

    G = I / (h gamma) - J(y_n)
    G K_i = f(y_n + sum_{j<i} a_ij K_j) + sum_{j<i} (c_ij / h) K_j,   i = 1..6
    y_{n+1} = y_n + sum_i m_i K_i,      local error estimate K_6 (embedded order 3).

``gamma = 1/4``; the coefficients below are the published Rodas4 ones in this (a, c, m)
form. Stages 5 and 6 are evaluated at ``t_{n+1}`` (stiffly accurate: ``m = a_6 + e_6``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._krylov import gmres, spectral_inverse

__all__ = ["rodas4_step", "rodas4_krylov_step", "GAMMA"]

GAMMA = 0.25
_A = (
    (),
    (1.544,),
    (0.9466785280815826, 0.2557011698983284),
    (3.314825187068521, 2.896124015972201, 0.9986419139977817),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950, 1.0),
)
_C = (
    (),
    (-5.6688,),
    (-2.430093356833875, -0.2063599157091915),
    (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
    (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
    (
        8.083246795921522,
        -7.981132988064893,
        -31.52159432874371,
        16.31930543123136,
        -6.058818238834054,
    ),
)
_M = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950, 1.0, 1.0)


def _rodas4_stages(fun, y0, f0, h, solve):
    ks = []
    for i in range(6):
        fi = f0 if i == 0 else fun(y0 + sum(a * k for a, k in zip(_A[i], ks, strict=True)))
        rhs = fi + sum((c / h) * k for c, k in zip(_C[i], ks, strict=True)) if i else fi
        ks.append(solve(rhs))
    y1 = y0 + sum(m * k for m, k in zip(_M, ks, strict=True))
    return y1, fun(y1), ks[-1]


def rodas4_step(fun, y0: jax.Array, f0: jax.Array, h):
    r"""One Rodas4 step of ``y' = fun(y)`` (autonomous) from ``y0`` with ``f0 = fun(y0)``.

    Shapes: ``y0``, ``f0`` flat ``(P,)``. The Jacobian is symmetrised (``J = -H`` for a
    gradient flow; this removes the round-off asymmetry of ``jacfwd``); ``G`` is factorised
    by LU once (an eigendecomposition would cost ~5x more on CPU).

    Returns ``(y1, f1, err)``: the new state, ``fun(y1)`` (for FSAL and Hermite dense
    output) and the local error estimate ``K_6``.
    """
    J = jax.jacfwd(fun)(y0)
    J = 0.5 * (J + J.T)
    eye = jnp.eye(y0.size, dtype=y0.dtype)
    lu = jax.scipy.linalg.lu_factor(eye / (h * GAMMA) - J)
    return _rodas4_stages(fun, y0, f0, h, lambda rhs: jax.scipy.linalg.lu_solve(lu, rhs))


def rodas4_krylov_step(
    fun, y0: jax.Array, f0: jax.Array, h, Vt: jax.Array, theta: jax.Array, tol: float, maxiter: int
):
    r"""One Rodas4 step with matrix-free linear solves, for large ``P``.

    Each stage solves ``(I - h gamma J) K = h gamma rhs`` (the same system as the dense step,
    scaled by ``h gamma``) by right-preconditioned GMRES on exact Jacobian-vector products
    (``jax.linearize`` of ``fun`` at ``y0``, once per step); the preconditioner is the exact
    inverse on the approximate eigenpairs ``(Vt, theta)`` of ``J``
    (:mod:`rankbias.dynamics._krylov`). Shapes: ``y0``, ``f0`` ``(P,)``, ``Vt`` ``(k, P)``,
    ``theta`` ``(k,)``.

    Returns ``(y1, f1, err, iters, ok)``: as :func:`rodas4_step`, plus the GMRES iteration
    counts of the six solves ``(6,)`` and whether every solve reached ``tol``.
    """
    _, jvp = jax.linearize(fun, y0)
    hg = h * GAMMA
    matvec = lambda v: v - hg * jvp(v)
    precond = spectral_inverse(Vt, theta, hg)
    stats = []

    def solve(rhs):
        x, it, ok = gmres(matvec, hg * rhs, precond, tol, maxiter)
        stats.append((it, ok))
        return x

    y1, f1, err = _rodas4_stages(fun, y0, f0, h, solve)
    iters = jnp.stack([it for it, _ in stats])
    ok = jnp.all(jnp.stack([ok for _, ok in stats]))
    return y1, f1, err, iters, ok
