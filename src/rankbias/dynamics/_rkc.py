r"""RKC: the damped second-order Runge--Kutta--Chebyshev method, as a diffrax solver.

Why this solver. A gradient flow ``y' = -grad L(y)`` has Jacobian ``-H`` (``H`` the symmetric
Hessian), so its spectrum is real. From a tiny initialization the directions already
learned are stiff (``H`` eigenvalues ~ 10-100) while the next direction grows over a
plateau of length ``log(1/alpha)`` or ``alpha^-(1-2/L)``: explicit solvers (Tsit5) are held
to steps ~ 3/rho over the whole plateau. Implicit solvers need linear solves with
``I + gamma h H``; with dense Newton they cost O(P^3) per Jacobian, and with Krylov solves
the iteration count grows like ``sqrt(h rho)``. RKC reaches the same ``sqrt(h rho)`` cost
with no linear algebra at all: an ``s``-stage Chebyshev recursion is stable on the real
interval ``[-beta(s), 0]`` with ``beta(s) ~ 0.65 s^2``, so a step of size ``h`` over a
spectrum of radius ``rho`` needs only ``s ~ sqrt(1.54 h rho)`` gradient evaluations.
The step is then limited by accuracy on the slow, growing directions alone.

Method (Sommeijer, Shampine, Verwer 1998; damping ``eps = 2/13``):

    w0 = 1 + eps/s^2,  w1 = T_s'(w0) / T_s''(w0),  b_j = T_j''(w0) / T_j'(w0)^2 (b_0=b_1=b_2)
    Y_0 = y_n,  Y_1 = Y_0 + b_1 w1 h F_0
    Y_j = (1 - mu_j - nu_j) Y_0 + mu_j Y_{j-1} + nu_j Y_{j-2} + mut_j h F_{j-1} + gt_j h F_0
    mu_j = 2 b_j w0 / b_{j-1}, nu_j = -b_j / b_{j-2}, mut_j = 2 b_j w1 / b_{j-1},
    gt_j = -(1 - b_{j-1} T_{j-1}(w0)) mut_j,      y_{n+1} = Y_s.

Local error estimate ``0.8 (y_n - y_{n+1}) + 0.4 h (F_n + F_{n+1})`` (O(h^3)), FSAL.
Spectral radius: power iteration on the exact Jacobian-vector product (``jax.jvp``), two
iterations per step warm-started from the previous direction, times a 1.2 safety factor;
the number of stages is ``s = 1 + ceil(sqrt(1 + 1.54 h rho))`` (at most ``max_stages``).
Dense output: cubic Hermite. The recursion runs in a ``lax.while_loop`` with a dynamic
stage count, so it batches under ``vmap``.

Hybrid with Tsit5. Being 2nd order, RKC needs ~20x more steps than a 5th-order method
where the problem is not stiff (the escape from the origin: measured 5016 vs 219 steps at
rtol 1e-8 on a depth-2 escape, with 1000x larger global error). So when ``h rho`` lies
inside Tsit5's stability interval (``h rho <= tsit5_limit``) the step is a Tsit5 step
(7 evaluations, its 4th-order embedded error); otherwise it is the Chebyshev step. The
controller sees error order 3 for both (conservative for the Tsit5 steps).

Steps that know the controller (``rtol``, ``atol`` set: the flow's solvers). The solver then
computes the controller's scaled error norm ``||e / (atol + rtol max(|y_n|, |y_{n+1}|))||_rms``
itself, and so knows which step the controller will accept (``norm < 1``) and which it will
propose next (``0.9 h norm^(-1/3)``). Two things change (issue 30):

* The branch switch. A Tsit5 step's 4th-order error is far below the Chebyshev error at the
  same ``h``: the controller used to grow ``h`` past ``tsit5_limit / rho``, where the
  Chebyshev step then failed (40-44% of the steps rejected at depth 3-4). A Tsit5 step now
  also measures the Chebyshev-type estimate ``e_C = 0.8 (y_n - y_{n+1}) + 0.4 h (F_n +
  F_{n+1})`` (no evaluation: ``F_{n+1}`` is its FSAL stage; ``~ h^3 y''' / 15``, the error a
  Chebyshev step of length ``h`` would report) and reports the norm
  ``R = max(||e_T||, min(A, ||e_C||))`` with ``A = (h rho / tsit5_limit)^3 <= 1``: the
  proposed step ``0.9 h R^(-1/3)`` stays at most ``0.9 tsit5_limit / rho`` (a Tsit5 step,
  with a margin for the next estimate of ``rho``) unless a Chebyshev step of the proposed
  length is predicted to pass (measured at 100 x 100 depth 3: ``e_C`` of a Tsit5 step within
  2x of the Chebyshev step's own estimate at the same ``h``). ``R < 1`` whenever ``||e_T|| < 1`` and
  ``h rho < tsit5_limit``, so no Tsit5 step is rejected for it (one at ``h rho`` equal to the
  limit at most).
* The spectral data. The power iteration runs at the end of a step the controller accepts,
  at ``y_{n+1}`` (its ``v``, ``rho`` carried to the next step), and not at all on a rejected
  attempt: a retry from the same state reuses the estimate (it used to recompute it, 2 JVPs
  per rejection).

Hybrid with Rodas4 (``dense_stages`` set). Where even RKC is too slow, a step needing
more than ``dense_stages`` Chebyshev stages is a Rodas4 step instead (dense Jacobian and
LU, :mod:`rankbias.dynamics._rosenbrock`): the stretch between two escapes of a deep
factorization from a tiny initialization has stiffness ratios ~1e10, where RKC would need
~1e5 stages per step and Rodas4 takes steps limited by the slow direction alone. Its
embedded estimate is O(h^4); the controller still uses order 3 (conservative).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
from diffrax import RESULTS, AbstractAdaptiveSolver, AbstractTerm

from ._rosenbrock import rodas4_krylov_step, rodas4_step

_EPS_DAMP = 2.0 / 13.0
#: After a Tsit5 step the proposed step is held at ``_HOLD * tsit5_limit / rho`` (unless a
#: Chebyshev step of the proposed length is predicted to pass): with the limit itself, the
#: next step's slightly larger ``rho`` made it a Chebyshev step that failed (issue 30).
_HOLD = 0.9

__all__ = ["RKC", "power_iteration", "spectral_radius", "start_vector"]


def start_vector(y: jax.Array) -> jax.Array:
    """The power iteration's deterministic, generic unit start vector for states like ``y``:
    ``v_i ~ cos(1.618... i + 0.3)`` (length ``y.size``, ``y``'s dtype)."""
    v0 = jnp.cos(jnp.arange(y.size, dtype=y.dtype) * 1.618033988749895 + 0.3)
    return v0 / jnp.linalg.norm(v0)


def power_iteration(fun: Callable, y: jax.Array, v: jax.Array, n: int):
    """``n`` power iterations on the Jacobian ``J = d fun / dy`` at ``y`` from the unit vector
    ``v``, by exact Jacobian-vector products (``jax.jvp``); returns ``(v, ||J v_prev||)``: the
    last direction and the last growth factor, an estimate of the spectral radius from below.
    A non-finite or zero product keeps the previous direction and reports 0."""

    def body(_, carry):
        v, _ = carry
        _, w = jax.jvp(fun, (y,), (v,))
        nw = jnp.linalg.norm(w)
        ok = jnp.isfinite(nw) & (nw > 0)
        v = jnp.where(ok, w / jnp.where(ok, nw, 1.0), v)
        return v, jnp.where(ok, nw, 0.0)

    return jax.lax.fori_loop(0, n, body, (v, jnp.zeros((), y.dtype)))


def spectral_radius(fun: Callable, y: jax.Array, iterations: int = 30) -> jax.Array:
    r"""Estimate of the spectral radius ``rho(J)`` of the Jacobian ``J = d fun / dy`` at ``y``
    (``y`` flat, length ``P``; ``fun: (P,) -> (P,)``), from below: ``iterations`` power
    iterations (:func:`power_iteration`) from :func:`start_vector`, as RKC estimates the
    stiffness of a flow (a gradient flow's ``J = -H`` has a real spectrum, so the iteration
    converges to ``max |lambda(H)|``). Costs ``iterations`` JVPs; traceable (``jit``/``vmap``).
    """
    return power_iteration(fun, y, start_vector(y), iterations)[1]


class RKC(AbstractAdaptiveSolver):
    """Damped 2nd-order Runge--Kutta--Chebyshev (stabilised explicit) solver.

    Stable for Jacobians with (near-)real spectra of any stiffness at ``O(sqrt(h rho))``
    vector-field evaluations per step; 2nd order; embedded O(h^3) error estimate; cubic
    Hermite dense output. The state must be a single flat array.

    Arguments:
        max_stages: cap on the number of stages per step (a step needing more is taken with
            the cap and will be rejected by the error control if unstable).
        power_iterations: Jacobian-vector products per step for the spectral radius.
        safety: multiplier on the spectral-radius estimate.
        tsit5_limit: Tsit5 step where ``h rho <= tsit5_limit`` (negative: never).
        dense_stages: Rodas4 step (dense Jacobian, ``O(P^3)``) where a Chebyshev step would
            need more stages than this; ``None``: never. Meant for ``P`` up to a few
            thousand. Under ``vmap`` every branch runs on every step: keep ``None`` there.
        krylov_stages: matrix-free Rodas4 step (:func:`rodas4_krylov_step`) where a Chebyshev
            step would need more stages than this; ``None``: never. ``args[-1]`` must then be
            the basis ``(Vt, theta)`` (``krylov_rank x P``; zeros: none yet; the driver's
            ``FlowArgs.basis``, its last field) that the driver builds when a step asks (``y_error`` all ``-inf``), see
            :mod:`rankbias.dynamics._krylov`.
        krylov_rank, krylov_tol, krylov_maxiter, krylov_rebuild: basis size, GMRES tolerance
            and iteration cap per solve, and the iteration count above which a basis that has
            served an accepted step is rebuilt.
        rtol, atol: the tolerances of the step-size controller (diffrax's ``PIDController``
            with its default ``safety = 0.9`` and I-control on error order 3), scalars or
            traced scalars; ``None`` (both): the solver does not predict the controller
            (power iteration at the start of every attempt, errors reported as measured).
    """

    max_stages: int = 2000
    power_iterations: int = 2
    safety: float = 1.2
    tsit5_limit: float = 2.5
    dense_stages: int | None = None
    krylov_stages: int | None = None
    krylov_rank: int = 1024
    krylov_tol: float = 1e-10
    krylov_maxiter: int = 60
    krylov_rebuild: int = 20
    rtol: float | jax.Array | None = None
    atol: float | jax.Array | None = None

    term_structure: ClassVar = AbstractTerm
    interpolation_cls: ClassVar[Callable] = diffrax.ThirdOrderHermitePolynomialInterpolation

    def order(self, terms):
        return 2

    def error_order(self, terms):
        return 3

    def _power(self, terms, t, y, args, v, n):
        """``n`` power iterations on the Jacobian of ``terms.vf(t, ., args)`` at ``y``
        (:func:`power_iteration`)."""
        return power_iteration(lambda z: terms.vf(t, z, args), y, v, n)

    def init(self, terms, t0, t1, y0, args):
        f0 = terms.vf(t0, y0, args)
        # Deterministic, generic start vector; refined by many iterations once.
        v, rho = self._power(terms, t0, y0, args, start_vector(y0), 20)
        # The evaluation counter starts with f0 and the 20 power iterations.
        state = (f0, v, rho, jnp.asarray(21, jnp.int32))
        if self.krylov_stages is not None:
            state += (jnp.ones((), jnp.int32),)  # accepted steps since the basis was built
        return state

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def _chebyshev(self, terms, t0, t1, h, y0, args, f0, rho):
        s_real = 1.0 + jnp.ceil(jnp.sqrt(1.0 + 1.54 * jnp.abs(h) * rho))
        s = jnp.clip(s_real, 2, self.max_stages).astype(jnp.int32)
        sf = s.astype(y0.dtype)
        w0 = 1.0 + _EPS_DAMP / (sf * sf)

        # Chebyshev values T_s(w0), T_s', T_s'' by the three-term recursions.
        def cheb(j, c):
            t_2, t_1, d_2, d_1, e_2, e_1 = c
            t = 2 * w0 * t_1 - t_2
            d = 2 * t_1 + 2 * w0 * d_1 - d_2
            e = 4 * d_1 + 2 * w0 * e_1 - e_2
            return t_1, t, d_1, d, e_1, e

        one, zero = jnp.ones((), y0.dtype), jnp.zeros((), y0.dtype)
        c1 = (one, w0, zero, one, zero, zero)  # (T0, T1, T0', T1', T0'', T1'')
        cs = jax.lax.fori_loop(2, s + 1, cheb, c1)
        w1 = cs[3] / cs[5]
        # b_2 = T_2''/T_2'^2 with T_2 = 2 w0^2 - 1: T_2' = 4 w0, T_2'' = 4.
        b2 = 4.0 / (16.0 * w0 * w0)
        b0 = b1 = b2
        y1 = y0 + (b1 * w1 * h) * f0
        # Loop state: stage j-1 and j-2 values, b_{j-1}, b_{j-2}, Chebyshev values at j-1, j-2.
        init = (2, y1, y0, b1, b0, c1)

        def body(state):
            j, yjm1, yjm2, bjm1, bjm2, c = state
            t_2, t_1, d_2, d_1, e_2, e_1 = c
            tj = 2 * w0 * t_1 - t_2
            dj = 2 * t_1 + 2 * w0 * d_1 - d_2
            ej = 4 * d_1 + 2 * w0 * e_1 - e_2
            bj = ej / (dj * dj)
            mu = 2 * bj * w0 / bjm1
            nu = -bj / bjm2
            mut = 2 * bj * w1 / bjm1
            ajm1 = 1.0 - bjm1 * t_1
            gt = -ajm1 * mut
            fjm1 = terms.vf(t0, yjm1, args)  # autonomous flow: stage times are irrelevant
            yj = (1 - mu - nu) * y0 + mu * yjm1 + nu * yjm2 + (mut * h) * fjm1 + (gt * h) * f0
            return j + 1, yj, yjm1, bj, bjm1, (t_1, tj, d_1, dj, e_1, ej)

        _, ys, *_ = jax.lax.while_loop(lambda st: st[0] <= s, body, init)
        f1 = terms.vf(t1, ys, args)
        y_error = 0.8 * (y0 - ys) + 0.4 * h * (f0 + f1)
        return ys, f1, y_error, s

    def _rodas(self, terms, t0, h, y0, args, f0):
        fun = lambda z: terms.vf(t0, z, args)  # autonomous flow
        # Count the Jacobian's P JVPs as P evaluations.
        return rodas4_step(fun, y0, f0, h) + (jnp.asarray(6 + y0.size, jnp.int32),)

    def _krylov(self, terms, t0, h, y0, args, f0, since):
        """A Rodas4 step with GMRES solves, preconditioned by the basis ``(Vt, theta)`` (the
        dominant eigenpairs of the Jacobian) that the driver passes as ``args[-1]``. It asks
        for a new basis (``y_error`` all ``-inf``: the step is retried after the rebuild) when
        there is none, or when a solve failed or needed more than ``krylov_rebuild``
        iterations and the basis has served at least one accepted step (a fresh basis that
        still struggles means the step is too long: the error control shrinks it)."""
        Vt, theta = args[-1]
        fun = lambda z: terms.vf(t0, z, args)  # autonomous flow
        ask = lambda: (y0, f0, jnp.full_like(y0, -jnp.inf), jnp.zeros((), jnp.int32))

        def step():
            y1, f1, err, its, ok = rodas4_krylov_step(
                fun, y0, f0, h, Vt, theta, self.krylov_tol, self.krylov_maxiter
            )
            stale = (since > 0) & ((~ok) | (jnp.max(its) > self.krylov_rebuild))
            # A non-finite y1 is rejected by step()'s own check.
            out = (y1, f1, jnp.where(ok, err, jnp.inf), (7 + jnp.sum(its)).astype(jnp.int32))
            return jax.lax.cond(stale, lambda: ask()[:3] + out[3:], lambda: out)

        return jax.lax.cond(jnp.all(theta == 0), ask, step)

    def _tsit5(self, terms, t0, h, y0, args, f0):
        tab = diffrax.Tsit5.tableau
        ks = [f0]
        for i, row in enumerate(tab.a_lower):
            yi = y0 + h * sum(float(a) * k for a, k in zip(row, ks, strict=True))
            ks.append(terms.vf(t0 + float(tab.c[i]) * h, yi, args))
        # FSAL: the last stage is evaluated at the solution itself.
        y1 = y0 + h * sum(float(b) * k for b, k in zip(tab.b_sol, ks, strict=True) if b != 0)
        err = h * sum(float(b) * k for b, k in zip(tab.b_error, ks, strict=True) if b != 0)
        return y1, ks[-1], err

    def _norm(self, e, y0, y1):
        """The controller's scaled error norm ``||e / (atol + rtol max(|y0|, |y1|))||_rms``."""
        assert self.rtol is not None and self.atol is not None  # only where both are set
        scale = self.atol + self.rtol * jnp.maximum(jnp.abs(y0), jnp.abs(y1))
        return jnp.sqrt(jnp.mean(jnp.square(e / scale)))

    def _hold(self, h, rho, y0, y1, f0, f1, err):
        """A Tsit5 step's reported error: its own ``err`` (``e_T``), raised to the norm
        ``min(A, ||e_C||)`` (``e_C`` the Chebyshev-type estimate, ``A = (0.9 h rho /
        tsit5_limit)^3``) where that is larger, so that the controller proposes no step past
        ``tsit5_limit / rho`` that a Chebyshev step would fail (module docstring)."""
        e_c = 0.8 * (y0 - y1) + 0.4 * h * (f0 + f1)
        n_t, n_c = self._norm(err, y0, y1), self._norm(e_c, y0, y1)
        # 0.9: the controller's safety; _HOLD: a margin for the next step's new rho estimate.
        r = jnp.minimum((0.9 * jnp.abs(h) * rho / (_HOLD * self.tsit5_limit)) ** 3, n_c)
        return jnp.where(r > n_t, e_c * (r / jnp.where(n_c > 0, n_c, 1.0)), err)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        f0, v, rho_prev, nfe = solver_state[:4]
        since = solver_state[4:]
        f0 = jax.lax.cond(made_jump, lambda: terms.vf(t0, y0, args), lambda: f0)
        h = t1 - t0
        predict = self.rtol is not None
        if predict:
            # The estimate at y0, made at the end of the step that reached it (or in init).
            rho_new = rho_prev
            rho = self.safety * rho_prev
        else:
            v, rho_new = self._power(terms, t0, y0, args, v, self.power_iterations)
            # Power iteration approaches rho from below: never let one poor estimate undercut
            # the last good one by more than half.
            rho = self.safety * jnp.maximum(rho_new, 0.5 * rho_prev)
        use_rk = jnp.abs(h) * rho <= self.tsit5_limit

        def tsit5():
            y1, f1, err = self._tsit5(terms, t0, h, y0, args, f0)
            if predict:
                err = self._hold(h, rho, y0, y1, f0, f1, err)
            return y1, f1, err, jnp.asarray(6, jnp.int32)

        cheb = lambda: self._chebyshev(terms, t0, t1, h, y0, args, f0, rho)
        stages = 1.0 + jnp.ceil(jnp.sqrt(1.0 + 1.54 * jnp.abs(h) * rho))
        if self.krylov_stages is not None:
            branch = jnp.where(use_rk, 0, jnp.where(stages > self.krylov_stages, 2, 1))
            ys, f1, y_error, s = jax.lax.switch(
                branch, (tsit5, cheb, lambda: self._krylov(terms, t0, h, y0, args, f0, since[0]))
            )
            since = (since[0] + 1,)
        elif self.dense_stages is None:
            ys, f1, y_error, s = jax.lax.cond(use_rk, tsit5, cheb)
        else:
            branch = jnp.where(use_rk, 0, jnp.where(stages > self.dense_stages, 2, 1))
            ys, f1, y_error, s = jax.lax.switch(
                branch, (tsit5, cheb, lambda: self._rodas(terms, t0, h, y0, args, f0))
            )
        dense_info = dict(y0=y0, y1=ys, k0=h * f0, k1=h * f1)
        # -inf errors (a Krylov step asking for a new basis; diffrax turns NaN into +inf)
        # pass: the controller ends the segment on them (rankbias.dynamics.flow.controller).
        finite = jnp.all(jnp.isfinite(ys))
        # A non-finite stage (overflow from a too-long step) or error estimate becomes an
        # infinite error: the controller rejects the step and shrinks it. Only the all -inf
        # of a Krylov request passes as it is.
        ask = jnp.all(y_error == -jnp.inf) if self.krylov_stages is not None else False
        finite = finite & (ask | jnp.all(jnp.isfinite(y_error)))
        y_error = jnp.where(finite, y_error, jnp.inf)
        ys = jnp.where(finite, ys, y0)
        f1 = jnp.where(finite, f1, f0)
        if predict:
            # The spectral data of the next step, at ys: only where the controller will keep
            # the step (a rejected attempt's state is discarded, its retry reuses rho_prev).
            keep = self._norm(y_error, y0, ys) < 1

            def refresh():
                v1, r1 = self._power(terms, t1, ys, args, v, self.power_iterations)
                return v1, jnp.maximum(r1, 0.5 * rho_prev)

            v, rho_next = jax.lax.cond(keep, refresh, lambda: (v, rho_prev))
            power = jnp.where(keep, self.power_iterations, 0).astype(jnp.int32)
        else:
            rho_next = jnp.where(jnp.isfinite(rho_new), rho_new, rho_prev)
            power = self.power_iterations
        new_state = (
            f1,
            v,
            rho_next,
            # s: the step's own evaluations (f1 included; f0 is FSAL unless after a jump).
            nfe + s + power + jnp.asarray(made_jump, jnp.int32),
        ) + since
        return ys, y_error, dense_info, new_state, RESULTS.successful
