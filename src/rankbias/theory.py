r"""Decoupled theory of deep matrix factorization on a symmetric target (Chou et al. 2024).

Setting: ``W^ = V diag(lam) V^T`` (``V`` orthogonal, ``lam_i`` of any sign), factors
``W_1 ... W_N`` in ``R^{n x n}``, loss ``1/2 ||W_N ... W_1 - W^||_F^2``, vanilla gradient descent
with step ``eta`` (all factors at once).

* **Identical init** ``W_j(0) = alpha I``: ``V^T W_j(k) V = diag(d(k))`` for every ``j`` and

  ``d_i(k+1) = d_i(k) - eta d_i(k)^{N-1} (d_i(k)^N - lam_i)``, ``d_i(0) = alpha``;

  the product has eigen-components ``p_i(k) = d_i(k)^N``.
* **Perturbed init** ``W_1(0) = (alpha - beta) I``, ``W_j(0) = alpha I`` (``j >= 2``):
  ``W_2 = ... = W_N`` keep one entry ``e_i`` and ``W_1`` another, ``c_i``:

  ``c <- c - eta e^{N-1} (c e^{N-1} - lam)``, ``e <- e - eta c e^{N-2} (c e^{N-1} - lam)``

  (simultaneous update), ``p_i(k) = c_i(k) e_i(k)^{N-1}``.
* **Gradient flow** (``eta -> 0``, ``t = k eta``): the same right-hand sides as ODEs,
  solved with ``scipy.integrate.solve_ivp`` (DOP853, ``rtol = 1e-11``); escape times of the
  identical-init flow are exact quadratures ``t = int_alpha^{(q lam)^{1/N}} dd / (d^{N-1}(lam - d^N))``.

**Escape step at fraction q.** The first step ``k >= 0`` (``W(0)`` is step 0) at which
``p_i(k) / lam_i >= q``; ``-1`` if it never happens within the run (e.g. a negative
``lam_i`` under identical init, whose component only decays to 0). This convention gives the
paper table's integers (Ex.1, ``N = 3``, ``eta = 0.01``: 99, 139, 193).

**Plateaus.** ``r(W(k)) = sum_i |p_i(k)| / max_i |p_i(k)|`` (``W`` is symmetric, so the
singular values are ``|p_i|``). Predicted levels ``r(W^_L) = sum_{i<=L} |lam_(i)| / |lam_(1)|``
with ``|lam_(1)| >= |lam_(2)| >= ...``. ``r`` first drops from ``n`` to about 1 and then rises;
plateaus are searched in the rising phase only, i.e. from ``k_min = argmin_k r(W(k))``: the
``L``-th plateau is the first maximal run of steps ``k >= k_min`` with
``|r(W(k)) - r(W^_L)| < tol``. (Counting from ``k_min`` is the convention of the paper's table:
Ex.1, ``N = 3``: ``[102, 127]``, ``[145, 178]``, from 202; the drop phase crosses the same
levels briefly and is not a plateau.)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import integrate

from ._validation import check_finite, check_int, check_positive
from .metrics import EFFECTIVE_RANKS, effective_ranks_from_sv

__all__ = [
    "DecoupledDynamics",
    "EscapeSteps",
    "Plateau",
    "LayerwiseReport",
    "StabilityWarning",
    "DriftWarning",
    "identical_init",
    "perturbed_init",
    "identical_flow",
    "perturbed_flow",
    "max_stable_lr",
    "plateau_levels",
    "find_plateaus",
    "layerwise_check",
    "paper_basis",
    "EXAMPLE_1",
    "EXAMPLE_2",
]

EXAMPLE_1 = (10.0, 7.0, 5.0, -5.0)
EXAMPLE_2 = (5.0, 3.0, -1.0, -5.0)


class StabilityWarning(UserWarning):
    """The step size exceeds the paper's sufficient bound (:func:`max_stable_lr`)."""


class DriftWarning(UserWarning):
    """Layer-wise gradient descent left the decoupled (diagonal, shared) path."""


def paper_basis() -> np.ndarray:
    """The paper's orthogonal ``V`` (4 x 4) for Ex.1 and Ex.2."""
    return np.array([[0, 1, 1, 1], [1, 0, 1, -1], [1, -1, 0, 1], [1, 1, -1, 0]], float) / np.sqrt(3)


# --------------------------------------------------------------------------- validation
def _check_eigenvalues(eigenvalues) -> np.ndarray:
    """1-D eigenvalues as given, or a symmetric target matrix (its eigenvalues, |lam| descending)."""
    try:
        lam = np.asarray(eigenvalues, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`eigenvalues` must be a 1-D sequence of reals or a symmetric matrix: {e}"
        ) from None
    if lam.ndim == 2:
        check_finite(lam, "eigenvalues")
        if lam.shape[0] != lam.shape[1]:
            raise ValueError(
                f"`eigenvalues`: a target matrix must be square and symmetric, got shape {lam.shape}"
            )
        asym = float(np.max(np.abs(lam - lam.T))) if lam.size else 0.0
        if asym > 1e-10 * max(1.0, float(np.max(np.abs(lam)))):
            raise ValueError(
                "`eigenvalues`: the decoupled theory needs a symmetric target W^ = V diag(lam) V^T; "
                f"got a non-symmetric matrix (max |W - W^T| = {asym:.3g}). For a general target use "
                "rb.gradient_descent with rb.DeepFactorization (no decoupling holds)."
            )
        lam = np.linalg.eigvalsh(0.5 * (lam + lam.T))
        lam = lam[np.argsort(-np.abs(lam), kind="stable")]
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"`eigenvalues` must be a non-empty 1-D sequence, got shape {lam.shape}")
    check_finite(lam, "eigenvalues")
    return lam


def max_stable_lr(eigenvalues, depth: int, alpha: float) -> float:
    r"""The paper's sufficient step-size bound for convergence of the decoupled GD.

    Per component, with ``M_i = max(alpha, |lam_i|^{1/N})``:
    ``eta < 1 / (2 N M_i^{2N-2})`` if ``lam_i >= 0`` and ``eta < 1 / ((3N - 2) M_i^{2N-2})`` if
    ``lam_i < 0``; the components decouple, so the bound is the minimum over ``i``. Sufficient
    only: larger steps (e.g. the paper's own ``eta = 0.01`` on Ex.1) may still converge.
    """
    lam = _check_eigenvalues(eigenvalues)
    N = check_int(depth, "depth", minimum=1)
    a = check_positive(alpha, "alpha")
    M = np.maximum(a, np.abs(lam) ** (1.0 / N))
    c = np.where(lam >= 0, 2.0 * N, 3.0 * N - 2.0)
    return float(np.min(1.0 / (c * M ** (2 * N - 2))))


def _warn_lr(lam, depth, alpha, lr):
    bound = max_stable_lr(lam, depth, alpha)
    if lr >= bound:
        warnings.warn(
            f"lr = {lr:g} exceeds the sufficient stability bound max_stable_lr = {bound:.6g} "
            f"(depth {depth}, alpha {alpha:g}, max |lam| {np.max(np.abs(lam)):g}); "
            "convergence is not guaranteed",
            StabilityWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- results
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
        from ._repr import nums, render

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


@dataclass(frozen=True)
class Plateau:
    """Plateau ``L``: steps ``start..end`` (inclusive) with ``|r(W(k)) - level| < tol``.

    ``open`` is True when the run ends inside the plateau (``end`` is then the last step:
    "from ``start``").
    """

    L: int
    level: float
    start: int
    end: int
    open: bool

    def __contains__(self, k) -> bool:
        return self.start <= k <= self.end

    def as_tuple(self) -> tuple[int, int | None]:
        return (self.start, None if self.open else self.end)


def plateau_levels(eigenvalues) -> np.ndarray:
    """``r(W^_L) = sum_{i<=L} |lam_(i)| / |lam_(1)|`` for ``L = 1..n`` (``|lam|`` descending)."""
    a = np.sort(np.abs(_check_eigenvalues(eigenvalues)))[::-1]
    if a[0] == 0:
        raise ValueError("`eigenvalues` are all zero: no plateau levels")
    return np.cumsum(a) / a[0]


def find_plateaus(r, levels, tol: float = 0.05, steps=None) -> list[Plateau]:
    """Plateaus of an effective-rank curve ``r`` (``(T,)``) at the given ``levels``.

    Rising phase only: from ``argmin r``; the ``L``-th plateau is the first maximal run of
    records with ``|r - levels[L-1]| < tol`` (see the module docstring). ``steps`` (``(T,)``)
    labels the records (default ``0..T-1``). Levels never reached give no entry.
    """
    r = np.asarray(r, dtype=np.float64)
    steps = np.arange(r.size) if steps is None else np.asarray(steps)
    tol = check_positive(tol, "tol")
    k0 = int(np.nanargmin(r))
    out = []
    for L, lev in enumerate(np.asarray(levels, dtype=float), start=1):
        inside = np.abs(r[k0:] - lev) < tol
        if not inside.any():
            continue
        i = int(np.argmax(inside))
        j = i + (int(np.argmin(inside[i:])) if not inside[i:].all() else inside[i:].size)
        out.append(
            Plateau(
                L,
                float(lev),
                int(steps[k0 + i]),
                int(steps[k0 + j - 1]),
                open=bool(k0 + j == r.size),
            )
        )
    return out


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
        from ._repr import num, nums, render

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


# --------------------------------------------------------------------------- layer-wise check
@dataclass
class LayerwiseReport:
    """Layer-wise GD (core engine) against the decoupled recursion.

    Attributes:
        steps: ``(T,)`` recorded steps.
        components: ``(T, n)`` ``diag(V^T W(k) V)``.
        off_diagonal: ``(T,)`` ``||offdiag(V^T W(k) V)||_F``.
        deviation: ``(T,)`` ``max_i |components - p_i(k)|`` (recursion).
        drift_step: first recorded step with ``deviation > drift_tol``, or ``None``.
        drift_tol: the threshold used.
        final_components: ``(n,)`` eigen-components at the last step.
        trajectory: the core :class:`~rankbias.Trajectory`.
    """

    steps: np.ndarray
    components: np.ndarray
    off_diagonal: np.ndarray
    deviation: np.ndarray
    drift_step: int | None
    drift_tol: float
    final_components: np.ndarray
    trajectory: object

    @property
    def drifted(self) -> bool:
        return self.drift_step is not None

    def __repr__(self) -> str:
        from ._repr import num, nums, render

        return render(
            f"LayerwiseReport(drifted={self.drifted})",
            [
                (
                    "records",
                    f"{self.steps.size}, steps {int(self.steps[0])}..{int(self.steps[-1])}"
                    if self.steps.size
                    else "0",
                ),
                (
                    "drift step",
                    "-"
                    if self.drift_step is None
                    else f"{self.drift_step} (tol {num(self.drift_tol)})",
                ),
                ("max deviation", f"{num(self.max_deviation_before_drift)} before drift"),
                ("final comps", nums(self.final_components)),
            ],
        )

    @property
    def max_deviation_before_drift(self) -> float:
        k = (
            self.deviation.size
            if self.drift_step is None
            else int(np.searchsorted(self.steps, self.drift_step))
        )
        return float(np.max(self.deviation[:k])) if k else 0.0


def layerwise_check(
    theory: DecoupledDynamics, V=None, *, every: int = 1, drift_tol: float = 1e-6, warn: bool = True
) -> LayerwiseReport:
    r"""Run layer-wise GD with the core engine and compare with the decoupled recursion.

    ``rb.gradient_descent`` on ``rb.MatrixEstimation(V diag(lam) V^T)`` with
    ``rb.DeepFactorization((n, n), depth=N).init("identity" | "perturbed_identity", scale=alpha,
    per_factor=True, beta=beta)``, recording ``W(k)`` every ``every`` steps. ``V`` defaults to
    :func:`paper_basis` for ``n = 4`` and a seeded Haar-random orthogonal matrix otherwise.
    Round-off can push layer-wise GD off the decoupled path (with negative ``lam_i`` the
    decoupled path is unstable); the first step where ``max_i |(V^T W V)_ii - p_i| > drift_tol``
    is reported as ``drift_step`` and, with ``warn``, a :class:`DriftWarning` is raised.
    """
    from .dynamics import gradient_descent
    from .models import DeepFactorization
    from .problems import MatrixEstimation

    if not isinstance(theory, DecoupledDynamics) or theory.method != "gd":
        raise ValueError(
            "`theory` must be a DecoupledDynamics from identical_init or perturbed_init"
        )
    every = check_int(every, "every", minimum=1)
    lam, n = theory.eigenvalues, theory.eigenvalues.size
    if V is None:
        V = (
            paper_basis()
            if n == 4
            else np.linalg.qr(np.random.default_rng(0).standard_normal((n, n)))[0]
        )
    V = np.asarray(V, dtype=np.float64)
    if V.shape != (n, n) or not np.allclose(V.T @ V, np.eye(n), atol=1e-10):
        raise ValueError(f"`V` must be an orthogonal ({n}, {n}) matrix")
    target = (V * lam) @ V.T
    model = DeepFactorization((n, n), depth=theory.depth)
    if theory.init == "identical":
        params = model.init("identity", scale=theory.alpha, per_factor=True)
    else:
        params = model.init(
            "perturbed_identity", scale=theory.alpha, per_factor=True, beta=theory.beta
        )
    rec = np.unique(np.concatenate([np.arange(0, theory.steps + 1, every), [theory.steps]]))
    traj = gradient_descent(
        MatrixEstimation(target),
        model,
        params,
        theory.lr,
        theory.steps,
        n_save=2,
        save_at=rec,
        save_matrices=True,
    )
    steps = np.asarray(traj.steps)
    M = np.einsum("ij,tjk,kl->til", V.T, np.asarray(traj.matrices), V)
    comp = np.diagonal(M, axis1=1, axis2=2).copy()
    off = np.linalg.norm(
        M * (1.0 - np.eye(n)), axis=(1, 2)
    )  # direct: a difference of squares cancels
    dev = np.max(np.abs(comp - theory.product_eigenvalues[steps]), axis=1)
    bad = np.flatnonzero(dev > drift_tol)
    drift = int(steps[bad[0]]) if bad.size else None
    if drift is not None and warn:
        warnings.warn(
            f"layer-wise GD left the decoupled path at step {drift} (max |V^T W V - diag(p)| = "
            f"{dev[bad[0]]:.3g} > {drift_tol:g}); final eigen-components {np.round(comp[-1], 4).tolist()} "
            f"vs recursion {np.round(theory.product_eigenvalues[-1], 4).tolist()}. Use the recursion "
            "for theory curves.",
            DriftWarning,
            stacklevel=2,
        )
    return LayerwiseReport(steps, comp, off, dev, drift, drift_tol, comp[-1].copy(), traj)
