"""The exact decoupled dynamics of one symmetric instance: the GD recursions from an identical
or perturbed init, their gradient-flow limits, and the result that holds either."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import integrate

from .._repr import num, nums, render
from .._validation import check_int, check_positive
from ..metrics import EFFECTIVE_RANKS, effective_ranks_from_sv
from ._escape import EscapeSteps, _asymptotic_time, _identical_flow_time, _perturbed_flow_time
from ._plateaus import Plateau, find_plateaus, plateau_levels
from ._stability import StabilityWarning, _warn_lr, max_stable_lr
from ._targets import _check_eigenvalues


@dataclass
class DecoupledDynamics:
    """Exact decoupled GD (or gradient flow) of one symmetric instance.

    Attributes:
        eigenvalues: ``(n,)`` target eigenvalues ``lam``.
        depth, alpha, beta (``None`` for identical init), lr, steps, init (``"identical"``,
        ``"perturbed"``), method (``"gd"`` or ``"flow"``).
        factors: ``(steps+1, n)`` shared factor entry ``d`` (identical) or ``(steps+1, 2, n)``
            with ``[:, 0] = c`` (``W_1``) and ``[:, 1] = e`` (``W_2..W_N``) (perturbed).
        product_eigenvalues: ``(steps+1, n)`` ``p_i(k)`` (flow: at ``t = k lr``).
        diverged_at: first step with a non-finite or exploding value, or ``None``.
    """

    eigenvalues: np.ndarray
    depth: int
    alpha: float
    beta: float | None
    lr: float
    steps: int
    init: str
    method: str
    factors: np.ndarray
    product_eigenvalues: np.ndarray
    diverged_at: int | None = None
    _ranks: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        p = self.product_eigenvalues
        return render(
            f"DecoupledDynamics({self.method}, init={self.init!r}, depth={self.depth})",
            [
                ("eigenvalues", nums(self.eigenvalues)),
                (
                    "settings",
                    f"alpha={num(self.alpha)}, beta={num(self.beta)}, lr={num(self.lr)}, "
                    f"steps={self.steps}",
                ),
                ("final p_i", nums(p[-1]) if p.size else "-"),
                ("distance", num(self.distance_to_target()[-1]) if p.size else "-"),
                ("diverged at", "-" if self.diverged_at is None else str(self.diverged_at)),
                (
                    "arrays",
                    f"factors {tuple(self.factors.shape)}, product_eigenvalues {tuple(p.shape)}",
                ),
            ],
        )

    @property
    def times(self) -> np.ndarray:
        """``(steps+1,)`` continuous time ``k lr``."""
        return np.arange(self.steps + 1) * self.lr

    @property
    def step_index(self) -> np.ndarray:
        return np.arange(self.steps + 1)

    def effective_rank(self, kind: str = "ratio") -> np.ndarray:
        """``(steps+1,)`` effective rank of ``W(k)`` (singular values ``|p_i(k)|``)."""
        if kind not in self._ranks:
            if kind not in EFFECTIVE_RANKS:
                raise ValueError(f"unknown `kind` {kind!r}; expected one of {EFFECTIVE_RANKS}")
            self._ranks[kind] = effective_ranks_from_sv(np.abs(self.product_eigenvalues), kind)
        return self._ranks[kind]

    def distance_to_target(self) -> np.ndarray:
        """``(steps+1,)`` ``||W(k) - W^||_F = ||p(k) - lam||_2``."""
        return np.linalg.norm(self.product_eigenvalues - self.eigenvalues, axis=1)

    def plateau_levels(self) -> np.ndarray:
        return plateau_levels(self.eigenvalues)

    def plateaus(self, tol: float = 0.05) -> list[Plateau]:
        """Plateaus of ``r(W(k))`` at the predicted levels ``r(W^_L)`` (module docstring)."""
        return find_plateaus(self.effective_rank("ratio"), self.plateau_levels(), tol)

    def escape_steps(self, fraction: float = 0.5) -> EscapeSteps:
        """Simulated and predicted escape steps at ``fraction`` (see :class:`EscapeSteps`)."""
        q = check_positive(fraction, "fraction")
        if q >= 1:
            raise ValueError(f"`fraction` must be in (0, 1), got {q}")
        lam = self.eigenvalues
        with np.errstate(divide="ignore", invalid="ignore"):
            hit = (self.product_eigenvalues / np.where(lam != 0, lam, np.nan)) >= q
        sim = np.where(hit.any(axis=0), np.argmax(hit, axis=0), -1).astype(np.int64)
        if self.init == "identical":
            flow = np.array([_identical_flow_time(l, self.depth, self.alpha, q) for l in lam])
            asym = np.array([_asymptotic_time(l, self.depth, self.alpha, q) for l in lam])
        else:
            horizon = max(10.0 * self.steps * self.lr, 1.0)
            flow = np.array(
                [
                    _perturbed_flow_time(l, self.depth, self.alpha, self.beta, q, horizon)
                    for l in lam
                ]
            )
            asym = np.full(lam.shape, np.nan)
        return EscapeSteps(q, lam.copy(), sim, flow / self.lr, asym / self.lr)

    def flow(self) -> DecoupledDynamics:
        """The gradient-flow limit of this run, sampled at ``t = k lr``, ``k = 0..steps``."""
        if self.method == "flow":
            return self
        if self.init == "identical":
            return identical_flow(self.eigenvalues, self.depth, self.alpha, self.times)
        assert self.beta is not None  # a perturbed run carries its beta
        return perturbed_flow(self.eigenvalues, self.depth, self.alpha, self.beta, self.times)

    def limit(self) -> np.ndarray:
        """Predicted limit eigen-components: ``max(lam, 0)`` (identical, odd or even N) or
        ``lam`` (perturbed); identical init with even ``N`` also cannot go negative."""
        return (
            np.maximum(self.eigenvalues, 0.0)
            if self.init == "identical"
            else self.eigenvalues.copy()
        )


# --------------------------------------------------------------------------- recursions
def _common(eigenvalues, depth, alpha, lr, steps, min_depth):
    lam = _check_eigenvalues(eigenvalues)
    N = check_int(depth, "depth", minimum=min_depth)
    a = check_positive(alpha, "alpha")
    eta = check_positive(lr, "lr")
    K = check_int(steps, "steps", minimum=0)
    return lam, N, a, eta, K


def _divergence(p: np.ndarray, lam: np.ndarray) -> int | None:
    bad = ~np.isfinite(p) | (np.abs(p) > 1e6 * max(1.0, float(np.max(np.abs(lam)))))
    rows = np.flatnonzero(bad.any(axis=1))
    return int(rows[0]) if rows.size else None


def identical_init(
    eigenvalues, depth: int, alpha: float, lr: float, steps: int
) -> DecoupledDynamics:
    r"""Exact GD eigen-dynamics from ``W_j(0) = alpha I`` (all ``N`` factors).

    ``d_i(k+1) = d_i(k) - lr d_i(k)^{N-1} (d_i(k)^N - lam_i)``, ``p_i(k) = d_i(k)^N``; float64,
    ``steps`` updates, so arrays have ``steps + 1`` rows. ``eigenvalues``: ``(n,)``, or a
    symmetric target matrix (non-symmetric -> ``ValueError``). Warns
    (:class:`StabilityWarning`) when ``lr >= max_stable_lr``.
    """
    lam, N, a, eta, K = _common(eigenvalues, depth, alpha, lr, steps, 1)
    _warn_lr(lam, N, a, eta)
    d = np.empty((K + 1, lam.size))
    d[0] = a
    x = d[0].copy()
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(K):
            x = x - eta * x ** (N - 1) * (x**N - lam)
            d[k + 1] = x
        p = d**N
    return _finish(lam, N, a, None, eta, K, "identical", "gd", d, p)


def perturbed_init(
    eigenvalues, depth: int, alpha: float, beta: float, lr: float, steps: int
) -> DecoupledDynamics:
    r"""Exact GD eigen-dynamics from ``W_1(0) = (alpha - beta) I``, ``W_j(0) = alpha I`` (j >= 2).

    ``c <- c - lr e^{N-1} (c e^{N-1} - lam)``, ``e <- e - lr c e^{N-2} (c e^{N-1} - lam)``
    (simultaneous), ``p = c e^{N-1}``. Requires ``depth >= 2`` and ``0 < beta < alpha``.
    """
    lam, N, a, eta, K = _common(eigenvalues, depth, alpha, lr, steps, 2)
    b = check_positive(beta, "beta")
    if b >= a:
        raise ValueError(f"`beta` must be smaller than `alpha` = {a:g}, got {b:g}")
    _warn_lr(lam, N, a, eta)
    f = np.empty((K + 1, 2, lam.size))
    c = np.full(lam.size, a - b)
    e = np.full(lam.size, a)
    f[0, 0], f[0, 1] = c, e
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(K):
            res = c * e ** (N - 1) - lam
            c, e = c - eta * e ** (N - 1) * res, e - eta * c * e ** (N - 2) * res
            f[k + 1, 0], f[k + 1, 1] = c, e
        p = f[:, 0] * f[:, 1] ** (N - 1)
    return _finish(lam, N, a, b, eta, K, "perturbed", "gd", f, p)


def _finish(lam, N, a, b, eta, K, init, method, factors, p):
    div = _divergence(p, lam) if method == "gd" else None
    if div is not None:
        warnings.warn(
            f"the decoupled {init}-init GD diverged at step {div} (lr = {eta:g}; "
            f"sufficient bound {max_stable_lr(lam, N, a):.6g})",
            StabilityWarning,
            stacklevel=3,
        )
    return DecoupledDynamics(lam, N, a, b, eta, K, init, method, factors, p, div)


# --------------------------------------------------------------------------- gradient flow
def _identical_rhs(N, lam):
    def rhs(_, d):
        return -(d ** (N - 1)) * (d**N - lam)

    return rhs


def _perturbed_rhs(N, lam):
    n = lam.size

    def rhs(_, y):
        c, e = y[:n], y[n:]
        res = c * e ** (N - 1) - lam
        return np.concatenate([-(e ** (N - 1)) * res, -c * e ** (N - 2) * res])

    return rhs


def _solve(rhs, y0, times):
    sol = integrate.solve_ivp(
        rhs,
        (0.0, float(times[-1]) if times[-1] > 0 else 1e-12),
        y0,
        method="DOP853",
        t_eval=times,
        rtol=1e-11,
        atol=1e-14,
    )
    if not sol.success:
        raise RuntimeError(f"gradient-flow ODE solver failed: {sol.message}")
    return sol.y.T


def _flow_times(times):
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or t.size < 1 or t[0] != 0 or np.any(np.diff(t) <= 0):
        raise ValueError("`times` must be a strictly increasing 1-D array starting at 0")
    return t


def _uniform(t):
    lr = float(t[1] - t[0]) if t.size > 1 else 1.0
    return lr, (np.allclose(np.diff(t), lr, rtol=1e-9, atol=0) if t.size > 1 else True)


def identical_flow(eigenvalues, depth: int, alpha: float, times) -> DecoupledDynamics:
    r"""Gradient-flow limit ``d' = -d^{N-1} (d^N - lam)``, ``d(0) = alpha``, at ``times`` (``(T,)``,
    from 0). Uniform ``times = k eta`` give a result whose step ``k`` means ``t = k eta``."""
    lam = _check_eigenvalues(eigenvalues)
    N = check_int(depth, "depth", minimum=1)
    a = check_positive(alpha, "alpha")
    t = _flow_times(times)
    d = _solve(_identical_rhs(N, lam), np.full(lam.size, a), t)
    lr, _ = _uniform(t)
    return DecoupledDynamics(lam, N, a, None, lr, t.size - 1, "identical", "flow", d, d**N)


def perturbed_flow(eigenvalues, depth: int, alpha: float, beta: float, times) -> DecoupledDynamics:
    r"""Gradient-flow limit of the perturbed recursion (2 coupled ODEs per component)."""
    lam = _check_eigenvalues(eigenvalues)
    N = check_int(depth, "depth", minimum=2)
    a = check_positive(alpha, "alpha")
    b = check_positive(beta, "beta")
    if b >= a:
        raise ValueError(f"`beta` must be smaller than `alpha` = {a:g}, got {b:g}")
    t = _flow_times(times)
    n = lam.size
    y = _solve(_perturbed_rhs(N, lam), np.concatenate([np.full(n, a - b), np.full(n, a)]), t)
    f = np.stack([y[:, :n], y[:, n:]], axis=1)
    lr, _ = _uniform(t)
    return DecoupledDynamics(
        lam, N, a, b, lr, t.size - 1, "perturbed", "flow", f, f[:, 0] * f[:, 1] ** (N - 1)
    )
