"""Growth thresholds ``t_i^+ / t_i^-`` and the time scale ``h(alpha)`` of diagonal networks.

A diagonal network ``k_i = a_{i,1} a_{i,2} ... a_{i,L}`` starts at ``theta(0) = alpha theta*``
on the loss ``1/2 ||X k - y||^2``. While ``k ~ 0`` every coordinate moves at the speed of its
correlation ``u_i = (X^T (y - X k))_i``; coordinate ``i`` reaches size ``O(1)`` with a positive
(negative) sign when its accumulated correlation ``S_i = int u_i dtau`` reaches ``t_i^+``
(``-t_i^-``) in the rescaled time ``tau = t / h(alpha)``. This module computes ``t^+-`` and
``h`` (Zhao, Wang, Yang, Bai, Zhang, ICML 2026, Assumption 4.4 and Sections 5-6; Pesme &
Flammarion, NeurIPS 2023, Theorem 1 for depth 2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate

__all__ = ["growth_thresholds", "diagonal_time_scale", "default_init"]


def default_init(depth: int, dim: int) -> np.ndarray:
    """The default initial direction ``theta*`` of shape ``(depth, dim)``.

    Depth 2: Pesme & Flammarion's ``u = sqrt(2)``, ``v = 0`` (``beta = u * v``). Depth
    ``L >= 3``: layers ``1 .. L-1`` at 1 and layer ``L`` at 0, so that the smallest layer is
    unique (Zhao et al.'s assumption) and ``t^+ = t^-`` (the limit is the min-l1 interpolator).
    """
    init = np.ones((depth, dim))
    init[-1] = 0.0
    if depth == 2:
        init[0] = math.sqrt(2.0)
    return init


def _escape_integral(c0: float, mu: np.ndarray) -> float:
    """``int_{c0}^{inf} dx / prod_j sqrt(x^2 + mu_j^2)`` (``inf`` when the integrand has a
    non-integrable pole at 0 inside the range or does not decay fast enough)."""
    zero = np.sum(mu == 0.0)
    if mu.size < 2 and zero == mu.size:
        return math.inf  # 1/|x| (or 1): not integrable at infinity
    if zero >= 1 and c0 <= 0.0:
        return math.inf  # a pole 1/|x|^m, m >= 1, on the path
    mu2 = mu**2

    def f(x: float) -> float:
        return float(np.prod(1.0 / np.sqrt(x * x + mu2)))

    if c0 < 0.0:  # split at 0 for the quadrature's sake (the integrand peaks there)
        a, _ = integrate.quad(f, c0, 0.0, epsabs=0.0, epsrel=1e-12, limit=200)
        b, _ = integrate.quad(f, 0.0, math.inf, epsabs=0.0, epsrel=1e-12, limit=200)
        return a + b
    val, _ = integrate.quad(f, c0, math.inf, epsabs=0.0, epsrel=1e-12, limit=200)
    return val


def growth_thresholds(init: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The thresholds ``(t^+, t^-)``, each of shape ``(d,)``, of an initial direction.

    ``init`` has shape ``(L, d)``: ``init[j, i] = a*_{i,j}``, layer ``j`` of coordinate ``i``.

    Depth 2 (Zhao et al.'s general two-layer network, Pesme & Flammarion's ``u * v``): the
    Hessian of ``k = a_1 a_2`` at 0 has eigenvalues ``+-1``, so ``t^+ = t^- = 1`` for every
    direction not orthogonal to ``(1, 1)`` or ``(1, -1)`` (i.e. ``|a_1| != |a_2|``), with
    ``h(alpha) = log(1/alpha)``.

    Depth ``L >= 3`` (Zhao et al., Assumption 4.4): let ``m`` be the layer with the smallest
    ``a*_{i,m}^2`` and ``mu_j^2 = a*_{i,j}^2 - a*_{i,m}^2`` (``j != m``, conserved by the flow).
    With ``c0 = sign(prod_j a*_{i,j}) |a*_{i,m}|`` (the paper takes WLOG the other layers'
    product positive, ``c0 = a*_{i,L}``),

    ``t^+ = int_{c0}^{inf} dx / prod_{j != m} sqrt(x^2 + mu_j^2)``,
    ``t^- = int_{-c0}^{inf} (same integrand)``

    by adaptive quadrature (relative tolerance ``1e-12``); ``h(alpha) = alpha^{-(L-2)}``.
    Directions outside the paper's assumption are accepted where the integral still gives the
    escape time: with ties for the smallest layer (e.g. every layer at 1) the integrand has a
    pole ``1/|x|^r`` at 0 and a sign the coordinate cannot reach gets ``t = inf``.
    """
    init = np.asarray(init, dtype=float)
    L, d = init.shape
    if L == 2:
        bad = np.flatnonzero(np.abs(init[0]) == np.abs(init[1]))
        if bad.size:
            raise ValueError(
                f"init: |a_1| = |a_2| at coordinates {bad[:5].tolist()}: the direction is "
                "orthogonal to an eigenvector of the Hessian (1, 1) or (1, -1), outside Zhao "
                "et al.'s assumption (a sign never escapes); use e.g. (sqrt(2), 0)"
            )
        return np.ones(d), np.ones(d)
    # one quadrature per distinct direction (the default init repeats one column d times)
    cols, inverse = np.unique(init.T, axis=0, return_inverse=True)
    tp, tm = np.empty(len(cols)), np.empty(len(cols))
    for i, a in enumerate(cols):
        m = int(np.argmin(a**2))
        mu = np.sqrt(np.maximum(np.delete(a, m) ** 2 - a[m] ** 2, 0.0))
        sign = 1.0 if np.prod(a) >= 0 else -1.0
        c0 = sign * abs(a[m])
        tp[i] = _escape_integral(c0, mu)
        tm[i] = _escape_integral(-c0, mu)
    inverse = np.ravel(inverse)
    return tp[inverse], tm[inverse]


def diagonal_time_scale(alpha: float, depth: int, *, two_branch: bool = False) -> float:
    """``h(alpha)``: flow time ``t`` corresponds to the limit's rescaled time ``t / h(alpha)``.

    For the loss ``1/2 ||X beta - y||^2`` (a loss ``||X beta - y||^2`` without the ``1/2``, as
    in Zhao et al., runs twice as fast: divide ``h`` by 2):

    * depth 2, ``beta = u * v``, ``(u, v)(0) = alpha (u*, v*)`` (Pesme & Flammarion:
      ``u(0) = sqrt(2) alpha, v(0) = 0``): ``h = log(1/alpha)``;
    * depth 2, two branches ``beta = w_+^2 - w_-^2``, ``w_+-(0) = alpha``: ``h = log(1/alpha)/2``
      (the change of variables ``u, v = w_+ +- w_-`` doubles the speed of the flow);
    * depth ``L >= 3``, ``beta = a_1 ... a_L``, ``theta(0) = alpha theta*``:
      ``h = alpha^{-(L-2)}`` (the thresholds carry the dependence on ``theta*``);
    * depth ``L >= 3``, two branches ``beta = u^L - v^L``, ``u(0) = v(0) = alpha``:
      ``h = alpha^{-(L-2)} / (L (L-2))`` with thresholds 1 (``u^{-(L-2)}`` decreases at rate
      ``L (L-2) u_i``: it reaches 0 when ``S_i = alpha^{-(L-2)} / (L (L-2))``).
    """
    if not (isinstance(alpha, (int, float, np.floating)) and 0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be a float in (0, 1), got {alpha!r}")
    if not isinstance(depth, (int, np.integer)) or depth < 2:
        raise ValueError(f"depth must be an integer >= 2, got {depth!r}")
    alpha = float(alpha)
    if depth == 2:
        h = math.log(1.0 / alpha)
        return h / 2.0 if two_branch else h
    h = alpha ** (-(depth - 2))
    return h / (depth * (depth - 2)) if two_branch else h
