"""Comparisons of a flow with a :class:`DiagonalLimit`, on plain arrays (any engine's output)
or a Trajectory-like object: distance to the limit path, measured against predicted jump
times, the order in which coordinates activate, and a fitted rate of the distance in alpha."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._paths import rescaled_path

__all__ = [
    "limit_path_distance",
    "measured_jump_times",
    "activation_order",
    "fit_distance_rate",
    "RateFit",
]


def _check_margin(margin) -> float:
    if not isinstance(margin, (int, float)) or not 0.0 <= float(margin) < 0.5:
        raise ValueError(f"margin: expected a float in [0, 0.5), got {margin!r}")
    return float(margin)


def limit_path_distance(
    limit,
    flow,
    betas=None,
    *,
    alpha: float,
    depth: int | None = None,
    two_branch: bool = False,
    margin: float = 0.05,
) -> float:
    """``sup_t max_i |beta_i(t) - beta*_i(t / h(alpha))|`` over the flow's records, away from
    the jumps.

    ``beta*`` is ``limit.beta_at``; ``h`` is :func:`rankbias.diagonal_time_scale`
    (``depth`` defaults to ``limit.depth``). Records whose rescaled time lies within
    ``margin * tau_P`` of a jump time ``tau_p`` (``tau_P``: the last one) are left out: at a
    jump the limit is discontinuous and the flow crosses over in a window that shrinks like
    ``1/h(alpha)``. ``flow``: a Trajectory-like object (``.times``, ``.matrices`` ``(T, d)``
    or ``(T, d, 1)``), a pair ``(times, betas)``, or times ``(T,)`` with ``betas`` ``(T, d)``.
    Returns ``nan`` when no record is left."""
    margin = _check_margin(margin)
    tau, b = rescaled_path(
        flow, betas, alpha, limit.depth if depth is None else depth, two_branch,
        limit.betas.shape[1],
    )  # fmt: skip
    jumps = limit.times[1:]
    width = margin * (float(jumps[-1]) if jumps.size else 1.0)
    keep = np.ones(tau.shape, bool)
    for tj in jumps:
        keep &= np.abs(tau - tj) > width
    if not keep.any():
        return math.nan
    return float(np.max(np.abs(b[keep] - limit.beta_at(tau[keep]))))


def measured_jump_times(
    limit,
    flow,
    betas=None,
    *,
    alpha: float,
    depth: int | None = None,
    two_branch: bool = False,
) -> np.ndarray:
    """``(P,)``: for each jump ``p`` of ``limit`` (coordinate ``j = limit.entering[p-1]``
    entering with plateau value ``b = limit.betas[p, j]``), the first rescaled time after
    ``(tau_{p-1} + tau_p) / 2`` at which the flow's ``beta_j`` crosses ``b / 2``
    (``sign(b) beta_j >= |b| / 2``), linearly interpolated between records; ``nan`` when it
    never does. Compare with ``limit.times[1:]``; the resolution is the spacing of the
    flow's records around the jump (a jump is ``O(1/h(alpha))`` wide on this clock)."""
    tau, b = rescaled_path(
        flow, betas, alpha, limit.depth if depth is None else depth, two_branch,
        limit.betas.shape[1],
    )  # fmt: skip
    out = np.full(len(limit.entering), np.nan)
    for p, j in enumerate(limit.entering, start=1):
        target = limit.betas[p, j]
        start = 0.5 * (limit.times[p - 1] + limit.times[p])
        g = np.sign(target) * b[:, j] - 0.5 * abs(target)  # crosses 0 upward at the jump
        idx = np.flatnonzero((tau >= start) & (g >= 0))
        if idx.size == 0 or target == 0:
            continue
        k = int(idx[0])
        if k == 0 or tau[k - 1] < start or g[k - 1] >= 0:
            out[p - 1] = tau[k]
        else:
            w = -g[k - 1] / (g[k] - g[k - 1])
            out[p - 1] = tau[k - 1] + w * (tau[k] - tau[k - 1])
    return out


def activation_order(limit, flow, betas=None) -> tuple[list[int], list[int]]:
    """``(predicted, measured)``: the coordinates in the order of their first activation in
    ``limit`` (``limit.entering`` without repeats), and in the order in which the flow's
    ``|beta_j|`` first reaches half of ``|limit.betas[p, j]|``, ``p`` the jump at which ``j``
    first enters (the coordinates of ``predicted`` only; one never reaching it is left out of
    ``measured``). Time units do not matter here: only the order is compared."""
    t, b = rescaled_path(flow, betas, 0.5, 2, False, limit.betas.shape[1])
    predicted = list(dict.fromkeys(int(j) for j in limit.entering))
    first = {}
    for j in predicted:
        p = 1 + int(np.flatnonzero(limit.entering == j)[0])
        level = 0.5 * abs(float(limit.betas[p, j]))
        hit = np.flatnonzero(np.abs(b[:, j]) >= level)
        if hit.size:
            first[j] = int(hit[0])
    measured = sorted(first, key=lambda j: (first[j], predicted.index(j)))
    return predicted, measured


@dataclass(frozen=True)
class RateFit:
    """A least-squares line ``log(distance) = slope * log(x) + intercept``, ``x = alpha``
    (``against="alpha"``: ``distance ~ alpha^slope``) or ``x = 1 / log(1/alpha)``
    (``against="inv_log"``: ``distance ~ (1/log(1/alpha))^slope``); ``r2``: its coefficient of
    determination; ``n``: the points used (finite, positive distances)."""

    slope: float
    intercept: float
    r2: float
    against: str
    n: int

    def predict(self, alpha) -> np.ndarray:
        """The fitted distance at ``alpha``."""
        a = np.asarray(alpha, dtype=float)
        x = a if self.against == "alpha" else 1.0 / np.log(1.0 / a)
        return np.exp(self.intercept + self.slope * np.log(x))


def fit_distance_rate(alphas, distances, *, against: str = "inv_log") -> RateFit:
    """Fit ``log(distance)`` linearly in ``log(x)``: ``x = 1/log(1/alpha)`` (``"inv_log"``,
    the depth-2 rate: the bias differs from l1 by terms of relative size ``1/log(1/alpha)``)
    or ``x = alpha`` (``"alpha"``, a power law, e.g. at depth ``>= 3``). ``alphas``,
    ``distances``: ``(k,)``, ``alphas`` in ``(0, 1)``; needs two points with a positive finite
    distance."""
    if against not in ("inv_log", "alpha"):
        raise ValueError(f"against: expected 'inv_log' or 'alpha', got {against!r}")
    a = np.asarray(alphas, dtype=float).ravel()
    dist = np.asarray(distances, dtype=float).ravel()
    if a.shape != dist.shape:
        raise ValueError(f"alphas, distances: shapes differ ({a.shape} vs {dist.shape})")
    if np.any(~(a > 0) | ~(a < 1)):
        raise ValueError("alphas: every alpha must lie in (0, 1)")
    ok = np.isfinite(dist) & (dist > 0)
    if ok.sum() < 2:
        raise ValueError("distances: need at least two finite positive distances to fit")
    x = a[ok] if against == "alpha" else 1.0 / np.log(1.0 / a[ok])
    lx, ly = np.log(x), np.log(dist[ok])
    slope, intercept = np.polyfit(lx, ly, 1)
    res = ly - (slope * lx + intercept)
    ss = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum(res**2)) / ss if ss > 0 else 1.0
    return RateFit(float(slope), float(intercept), r2, against, int(ok.sum()))
