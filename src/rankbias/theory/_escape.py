"""Escape steps: the first step at which a component reaches a fraction of its target, and
the gradient-flow predictions of it (exact quadrature, the perturbed ODE's event, the paper's
small-``alpha`` asymptotics)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate

from .._repr import nums, render


@dataclass(frozen=True)
class EscapeSteps:
    """Escape steps at ``fraction`` q: first ``k`` with ``p_i(k) / lam_i >= q``.

    ``simulated``: ``(n,)`` int, from the recursion (``-1``: not reached within the run).
    ``flow``: ``(n,)`` float, exact gradient-flow time divided by ``eta`` (``nan``: never).
    ``asymptotic``: ``(n,)`` float, the paper's small-``alpha`` formula divided by ``eta``
    (identical init, ``lam_i > 0``): ``N >= 3``: blow-up time ``1 / ((N-2) lam alpha^{N-2})``;
    ``N = 2``: ``(ln(lam / alpha^2 - 1) - ln(1/q - 1)) / (2 lam)`` (logistic; at q = 1/2 the
    paper's ``ln(lam/alpha^2) / (2 lam)`` up to ``O(alpha^2/lam)``); ``N = 1``: exact
    ``ln((lam - alpha) / ((1 - q) lam))``. ``nan`` where it does not apply.
    """

    fraction: float
    eigenvalues: np.ndarray
    simulated: np.ndarray
    flow: np.ndarray
    asymptotic: np.ndarray

    def __repr__(self) -> str:
        return render(
            f"EscapeSteps(fraction={self.fraction:g}, n={np.size(self.eigenvalues)})",
            [
                ("eigenvalues", nums(self.eigenvalues)),
                ("simulated", nums(self.simulated)),
                ("flow", nums(self.flow)),
                ("asymptotic", nums(self.asymptotic)),
            ],
        )

    def relative_error(self, which: str = "flow") -> np.ndarray:
        """``|prediction - simulated| / simulated`` per component (``nan`` where undefined)."""
        pred = self.flow if which == "flow" else self.asymptotic
        sim = np.where(self.simulated > 0, self.simulated, np.nan).astype(float)
        return np.abs(pred - sim) / sim


def _identical_flow_time(lam, N, alpha, q) -> float:
    """Exact flow time for ``d^N`` to reach ``q lam`` from ``alpha`` (quadrature in ``s = ln d``)."""
    if lam <= 0:
        return math.nan
    if alpha**N >= q * lam:
        return 0.0
    s0, s1 = math.log(alpha), math.log(q * lam) / N
    # dt = dd / (d^{N-1}(lam - d^N)) = e^{(2-N)s} / (lam - e^{Ns}) ds: smooth on [s0, s1].
    val, _ = integrate.quad(
        lambda s: math.exp((2 - N) * s) / (lam - math.exp(N * s)),
        s0,
        s1,
        epsabs=0.0,
        epsrel=1e-12,
        limit=200,
    )
    return float(val)


def _asymptotic_time(lam, N, alpha, q) -> float:
    if lam <= 0 or alpha**N >= q * lam:
        return math.nan
    if N >= 3:
        return 1.0 / ((N - 2) * lam * alpha ** (N - 2))
    if N == 2:
        return (math.log(lam / alpha**2 - 1.0) - math.log(1.0 / q - 1.0)) / (2.0 * lam)
    return math.log((lam - alpha) / ((1.0 - q) * lam))


def _perturbed_flow_time(lam, N, alpha, beta, q, horizon) -> float:
    if lam == 0:
        return math.nan
    y0 = np.array([alpha - beta, alpha])
    if y0[0] * y0[1] ** (N - 1) / lam >= q:
        return 0.0

    def rhs(_, y):
        res = y[0] * y[1] ** (N - 1) - lam
        return [-(y[1] ** (N - 1)) * res, -y[0] * y[1] ** (N - 2) * res]

    def event(_, y):
        return y[0] * y[1] ** (N - 1) / lam - q

    event.terminal, event.direction = True, 1
    sol = integrate.solve_ivp(
        rhs, (0.0, horizon), y0, method="DOP853", events=event, rtol=1e-11, atol=1e-14
    )
    return float(sol.t_events[0][0]) if sol.t_events[0].size else math.nan
