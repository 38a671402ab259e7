"""The recursion shared by both limits: Zhao et al.'s Algorithm 1 with thresholds ``t^+-``
(Pesme & Flammarion's Algorithm 1 when every threshold is 1).

Loop, from ``k = 0``, ``s = 0``, ``tau = 0`` (``u = X^T (y - X k)``, the negative gradient of
``1/2 ||X k - y||^2``):

1. For each zero coordinate ``i`` with ``u_i != 0``: ``delta_i = (t_i^+ - s_i) / u_i`` if
   ``u_i > 0``, ``(t_i^- + s_i) / |u_i|`` if ``u_i < 0``; ``j = argmin delta_i``.
2. ``tau += delta_j``, ``s += delta_j u``.
3. ``k <- argmin ||X k - y||^2`` with ``k_i >= 0`` on positive coordinates, ``k_i <= 0`` on
   negative ones, ``sign(k_j) = sign(u_j)`` (Zhao et al. leave ``k_j`` free; its optimal
   sign is ``sign(u_j)`` anyway, since ``-u_j`` is the derivative of the partially minimised
   convex loss in ``k_j`` at 0, so the constraint changes nothing and is Pesme & Flammarion's
   ``s_j = +-1``), every other coordinate 0. With signs fixed this is a nonnegative least
   squares problem, solved exactly by Lawson-Hanson (``scipy.optimize.nnls``): coordinates
   that leave the support come out exactly 0.

until ``u = 0`` on every coordinate (Pesme & Flammarion's ``grad L(beta) = 0``; Zhao et al.'s
``X k = y`` when the system is consistent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

__all__ = ["Steps", "run"]


@dataclass(frozen=True)
class Steps:
    """The raw recursion: ``times`` ``(P+1,)``, ``betas`` ``(P+1, d)``, ``s`` ``(P+1, d)`` (the
    accumulated correlations at each jump), ``entering`` ``(P,)``, ``unique`` (the argmin was
    unique at every step: Zhao et al.'s well-posedness assumption), ``converged``."""

    times: np.ndarray
    betas: np.ndarray
    s: np.ndarray
    entering: np.ndarray
    unique: bool
    converged: bool


def _signed_nnls(X: np.ndarray, y: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """``argmin ||X k - y||`` over ``k`` with ``sign(k_i) in {0, signs_i}`` (``signs`` in
    ``{-1, 0, +1}``; 0: ``k_i = 0``)."""
    d = X.shape[1]
    k = np.zeros(d)
    idx = np.flatnonzero(signs)
    if idx.size == 0:
        return k
    x, _ = nnls(X[:, idx] * signs[idx], y, maxiter=50 * max(idx.size, 10))
    k[idx] = signs[idx] * x
    k[k == 0.0] = 0.0  # no -0.0 in the saddles
    return k


def run(
    X: np.ndarray,
    y: np.ndarray,
    t_plus: np.ndarray,
    t_minus: np.ndarray,
    tol: float,
    max_steps: int,
) -> Steps:
    """Run the recursion (see the module docstring); ``tol``: a correlation ``|u_i|`` below
    ``tol * max|X^T y|`` counts as 0, a ``delta`` within ``tol`` of the minimum as a tie."""
    n, d = X.shape
    k = np.zeros(d)
    s = np.zeros(d)
    tau = 0.0
    u0 = X.T @ y
    utol = tol * max(float(np.max(np.abs(u0))), np.finfo(float).tiny)
    times, betas, ss, entering = [0.0], [k.copy()], [s.copy()], []
    unique = True
    for _ in range(max_steps):
        u = X.T @ (y - X @ k)
        zero = k == 0.0
        live = zero & (np.abs(u) > utol)
        if not live.any():
            return Steps(
                np.array(times), np.array(betas), np.array(ss), np.array(entering, int),
                unique, True,
            )  # fmt: skip
        delta = np.full(d, np.inf)
        pos = live & (u > 0)
        neg = live & (u < 0)
        delta[pos] = (t_plus[pos] - s[pos]) / u[pos]
        delta[neg] = (t_minus[neg] + s[neg]) / np.abs(u[neg])
        delta = np.maximum(delta, 0.0)  # rounding may leave s a hair past a threshold
        j = int(np.argmin(delta))
        dj = float(delta[j])
        if not np.isfinite(dj):  # every live coordinate has an infinite threshold
            break
        if np.sum(delta <= dj + tol * max(dj, 1.0)) > 1:
            unique = False
        tau += dj
        s = s + dj * u
        s[j] = t_plus[j] if u[j] > 0 else -t_minus[j]  # exactly on its threshold
        s = np.clip(s, -t_minus, t_plus)
        signs = np.sign(k)
        signs[j] = np.sign(u[j])
        k = _signed_nnls(X, y, signs)
        times.append(tau)
        betas.append(k.copy())
        ss.append(s.copy())
        entering.append(j)
    return Steps(
        np.array(times), np.array(betas), np.array(ss), np.array(entering, int), unique, False
    )
