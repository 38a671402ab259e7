r"""Gradient flow from a small initialization vs the GLRL trajectory (its ``alpha -> 0`` limit).

Time alignment. In the limit every GLRL phase is infinitely long, so the GLRL trajectory is
defined up to one time shift per phase. Phase ``r`` is aligned by the moment the loss
crosses the mid level ``(f(W_{r-1}) + f(W_r)) / 2``: ``shift_r = t_GF(mid) - t_GLRL_r(mid)``.
The GLRL phase flow is then re-evaluated at exactly the GF record times minus the shift
(no interpolation), and

    phase distance_r = max_k ||W_GF(t_k) - W_GLRL,r(t_k - shift_r)||_F

over the GF records ``t_k`` between the midpoints of the neighbouring crossings;
``end distance = ||W_GF(t_final) - W_GLRL||_F``.

Power law (derived; ``lam_1 > lam_2`` the top eigenvalues of ``-grad f(0)``, depth 2): with
``U(t) = e^{Gt} sqrt(alpha) U0`` in the linear regime, when the top component of ``W`` reaches
O(1) the second eigenvalue of ``W`` is ``alpha^c``, ``c = 1 - lam_2/lam_1``, but the cross term
``v1 v2^T`` is ``alpha^(c/2)`` and dominates the Frobenius distance: ``||W_GF - W_GLRL||``
decays like ``alpha^(c/2)``. :func:`fit_power_law` measures the exponent.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from ._validation import check_positive
from .dynamics import gradient_flow, gradient_flow_batch
from .glrl import GLRLResult, _mid_time, glrl
from .models import Model, SymmetricFactorization
from .problems import Problem
from .trajectory import Trajectory

__all__ = ["compare_with_glrl", "GLRLComparison", "fit_power_law", "default_t_max"]


@dataclass
class GLRLComparison:
    """Output of :func:`compare_with_glrl`.

    Attributes:
        alphas, seeds: the grid.
        glrl: the reference :class:`~rankbias.glrl.GLRLResult`.
        trajectories: ``{(alpha, seed): Trajectory}`` of the GF runs (matrices saved).
        distances: ``{"end": (A, S), "phase": (A, S, R), "phase_at_mid": (A, S, R)}`` arrays
            (NaN where GF never crossed a phase's mid level: it did not follow that phase).
            ``phase`` is the largest distance over the phase's window (up to halfway to the
            next crossing, where the next direction has grown: at depth 2 it decays like
            ``alpha^(c/2)``); ``phase_at_mid`` is the distance at the phase's own mid crossing
            (decays like ``alpha^(c/2)``, ``c = 1 - lam_2/lam_1`` for phase 1: the cross term
            ``v1 v2^T`` of ``W`` dominates, while ``sigma_2(W)`` itself is ``alpha^c``).
        shifts: ``(A, S, R)`` time shifts ``t_GF(mid) - t_GLRL(mid)``.
        fit: power-law fit of the median end distance (see :func:`fit_power_law`), with
            ``prediction = (1 - lam_2/lam_1)/2`` and ``phase1_at_mid``, the fit of the phase-1
            distance at its mid crossing, the quantity that prediction is about.
    """

    alphas: list[float]
    seeds: list[int]
    glrl: GLRLResult
    trajectories: dict
    distances: dict
    shifts: np.ndarray
    fit: dict
    info: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        """One row per alpha: median/max end distance and median phase distances."""
        rows = []
        for i, a in enumerate(self.alphas):
            e = self.distances["end"][i]
            ph = self.distances["phase"][i]
            rows.append(dict(alpha=a, end_median=float(np.median(e)), end_max=float(np.max(e)),
                             phase_median=[float(np.nanmedian(ph[:, r])) if np.any(np.isfinite(ph[:, r]))
                                           else float("nan") for r in range(ph.shape[1])]))
        return rows


def fit_power_law(alphas, dist, floor: float = 1e-9) -> dict:
    """Least-squares fit ``log dist = c log alpha + b`` over points with ``floor < dist < 0.5``.

    Points at the numerical floor (integration tolerance) or at O(1) (GF landed elsewhere)
    carry no exponent information. Returns ``c``, ``b`` and the points used.
    """
    a = np.asarray(alphas, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    keep = np.isfinite(d) & (d > floor) & (d < 0.5)
    if keep.sum() < 2:
        return dict(c=float("nan"), b=float("nan"), used=int(keep.sum()))
    c, b = np.polyfit(np.log(a[keep]), np.log(d[keep]), 1)
    return dict(c=float(c), b=float(b), used=int(keep.sum()),
                alphas_used=a[keep].tolist())


def default_t_max(res: GLRLResult, alpha: float, depth: int) -> float:
    """Enough time for every phase: ``4 sum_r (log(1/alpha)/(2 lam_r) [+ alpha^-(1-2/L)/lam_r])``."""
    lams = [p.lam for p in res.phases] or [1.0]
    base = sum(np.log(1 / alpha) / (2 * lam) for lam in lams)
    if depth >= 3:
        base += sum(alpha ** (-(1 - 2 / depth)) / lam for lam in lams)
    return float(4 * base + 50 / min(lams))


def _glrl_at(problem, res: GLRLResult, r: int, times: np.ndarray) -> np.ndarray:
    """``W`` of GLRL phase ``r`` (1-based) at the given phase-clock times (exact, by re-running
    the phase flow with these save times)."""
    ph = res.phases[r - 1]
    d = problem.shape[0]
    start = (np.concatenate([res.phases[r - 2].factors[0] if r > 1 else np.zeros((d, 0)),
                             np.sqrt(res.eps) * ph.direction[:, None]], axis=1),)
    model = SymmetricFactorization(d, width=r)
    times = np.asarray(times, dtype=np.float64)
    tmax = float(max(times.max(), 1e-6))
    # The same absolute tolerance as the GLRL phase itself (glrl.py): the appended column has
    # entries ~sqrt(eps), and a larger atol would let its escape time drift from the t_mid
    # used for the alignment.
    tr = gradient_flow(problem, model, start, t_max=tmax, gtol=None, rtol=1e-10,
                       atol=min(1e-14, 1e-3 * np.sqrt(res.eps)), n_save=2, save_at=times,
                       save_matrices=True)
    idx = np.searchsorted(tr.times, times)
    idx = np.clip(idx, 0, len(tr.times) - 1)
    return tr.matrices[idx]


def compare_with_glrl(problem: Problem, model: Model, alphas: Sequence[float],
                      seeds: Sequence[int] = range(5), *, glrl_result: GLRLResult | None = None,
                      eps: float = 1e-30, init: str = "gaussian", t_max: float | None = None,
                      n_save: int = 400, rtol: float = 1e-10, atol: float = 1e-14) -> GLRLComparison:
    r"""Run gradient flow from ``model.init(init, scale=alpha, seed)`` for every alpha and seed
    and measure its time-aligned distance to the symmetric GLRL trajectory.

    Arguments:
        problem: a square problem (the reference is PSD GLRL).
        model: :class:`SymmetricFactorization` (depth 2) or :class:`DeepFactorization`.
        alphas: end-to-end init scales (``W(0) = alpha * O(1)``).
        glrl_result: a precomputed reference (default: ``glrl(problem, eps)``).
        t_max: flow time (default :func:`default_t_max` per alpha).

    Returns:
        :class:`GLRLComparison` with ``distances["end"]`` ``(A, S)`` and ``distances["phase"]``
        ``(A, S, R)``.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    if not isinstance(model, Model):
        raise ValueError(f"`model` must be a rankbias Model, got {type(model).__name__}")
    if problem.shape[0] != problem.shape[1]:
        raise ValueError(f"`problem` must be square (PSD GLRL reference), got {problem.shape}")
    alphas = [check_positive(a, "alphas") for a in alphas]
    seeds = [int(s) for s in seeds]
    if not alphas or not seeds:
        raise ValueError("`alphas` and `seeds` must be non-empty")
    res = glrl(problem, eps=eps) if glrl_result is None else glrl_result
    R = len(res.phases)
    depth = model.depth
    A, S = len(alphas), len(seeds)
    end = np.full((A, S), np.nan)
    phase = np.full((A, S, R), np.nan)
    at_mid = np.full((A, S, R), np.nan)
    shifts = np.full((A, S, R), np.nan)
    trajs = {}
    levels = res.levels
    for i, a in enumerate(alphas):
        tm = default_t_max(res, a, depth) if t_max is None else check_positive(t_max, "t_max")
        params = [model.init(init, scale=a, seed=s) for s in seeds]
        # The factors start at alpha^(1/L): the absolute tolerance must sit below that, or
        # the small directions (whose relative sizes decide the limit) are not resolved.
        atol_a = min(atol, 1e-4 * a ** (1.0 / depth))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            runs = gradient_flow_batch(problem, model, params, t_max=tm, rtol=rtol, atol=atol_a,
                                       n_save=n_save, save_matrices=True)
        # Second pass: the same runs recorded densely around each phase's loss drop, so
        # that the mid-level crossings (the alignment) are accurate to far below 1/lam.
        extra = []
        for tr in runs:
            mids = _mids(tr, levels, R)
            pts = [m + np.linspace(-4.0, 4.0, 81) / res.phases[r].lam
                   for r, m in enumerate(mids) if np.isfinite(m)]
            extra.append(np.concatenate(pts) if pts else np.zeros(0))
        grid = np.unique(np.clip(np.concatenate(extra), 0, tm)) if extra else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            runs = gradient_flow_batch(problem, model, params, t_max=tm, rtol=rtol, atol=atol_a,
                                       n_save=n_save, save_at=grid, save_matrices=True)
        for j, (s, tr) in enumerate(zip(seeds, runs)):
            trajs[(a, s)] = tr
            end[i, j] = float(np.linalg.norm(tr.final_matrix - res.matrix))
            mids = _mids(tr, levels, R)
            for r in range(1, R + 1):
                if not np.isfinite(mids[r - 1]):
                    continue
                shift = mids[r - 1] - res.phases[r - 1].t_mid
                lo = 0.5 * ((mids[r - 2] if r > 1 else 0.0) + mids[r - 1])
                hi = 0.5 * (mids[r - 1] + mids[r]) if r < R and np.isfinite(mids[r]) else tr.times[-1]
                sel = (tr.times >= lo) & (tr.times <= hi) & (tr.times - shift >= 0)
                if not sel.any():
                    continue
                ref = _glrl_at(problem, res, r, tr.times[sel] - shift)
                dist = np.linalg.norm(tr.matrices[sel] - ref, axis=(1, 2))
                phase[i, j, r - 1] = float(np.max(dist))
                at_mid[i, j, r - 1] = float(dist[np.argmin(np.abs(tr.times[sel] - mids[r - 1]))])
                shifts[i, j, r - 1] = shift
    negG0 = -np.asarray(problem.grad(jnp.zeros(problem.shape)))
    w = np.linalg.eigvalsh(0.5 * (negG0 + negG0.T))[::-1]
    fit = fit_power_law(alphas, np.median(end, axis=1))
    # Linear regime: U(t) = e^{Gt} sqrt(alpha) U0, G = -grad f(0). When the top component of W
    # reaches O(1) (t = log(1/alpha)/(2 lam_1)) the v2 v2^T component is alpha^(1-lam_2/lam_1)
    # but the cross term v1 v2^T is alpha^((1-lam_2/lam_1)/2), and it dominates ||W - W_GLRL||.
    c = float(1 - w[1] / w[0]) if w[0] > 0 else float("nan")
    fit["prediction"] = c / 2
    fit["prediction_second_singular_value"] = c
    fit["lam"] = w[:3].tolist()
    if R >= 1 and np.any(np.isfinite(at_mid[:, :, 0])):
        # The derived law is about this quantity: phase 1 at its mid crossing (top direction
        # O(1)), where the second direction has grown to alpha^(1 - lam_2/lam_1).
        fit["phase1_at_mid"] = fit_power_law(alphas, np.nanmedian(at_mid[:, :, 0], axis=1))
    return GLRLComparison(alphas=alphas, seeds=seeds, glrl=res, trajectories=trajs,
                          distances=dict(end=end, phase=phase, phase_at_mid=at_mid),
                          shifts=shifts, fit=fit,
                          info=dict(depth=depth, init=init))


def _mids(tr: Trajectory, levels, R: int) -> list[float]:
    mids = []
    for r in range(1, R + 1):
        prev = mids[-1] if mids and np.isfinite(mids[-1]) else 0.0
        mids.append(_mid_time(tr, levels[r - 1], levels[r], prev))
    return mids


def _gf_mid(tr: Trajectory, f_before: float, f_after: float, after: float) -> float:
    """First time ``>= after`` at which the GF loss crosses the phase's mid level (NaN if never)."""
    level = 0.5 * (f_before + f_after)
    sel = tr.times >= after
    idx = np.nonzero(sel & (tr.loss <= level))[0]
    if idx.size == 0:
        return float("nan")
    i = int(idx[0])
    if i == 0 or not sel[i - 1]:
        return float(tr.times[i])
    sub = Trajectory(times=tr.times[i - 1:i + 1], loss=tr.loss[i - 1:i + 1],
                     grad_norm=tr.grad_norm[i - 1:i + 1],
                     singular_values=tr.singular_values[i - 1:i + 1], final_params=(),
                     final_matrix=tr.final_matrix)
    return _mid_time(sub, f_before, f_after)


_GLRL_LIMITS: dict[str, np.ndarray] = {}


def glrl_distance_metric(trajectory: Trajectory, problem: Problem, run_config: dict) -> dict:
    """Sweep metric (``record.custom = ["rankbias.compare:glrl_distance_metric"]``):
    ``glrl_distance = ||W(t_final) - W_GLRL||_F`` with the PSD GLRL limit (``eps = 1e-30``) of
    the run's problem, computed once per problem in each worker process. NaN for a
    non-square problem."""
    import hashlib

    import jax

    if problem.shape[0] != problem.shape[1]:
        return {"glrl_distance": float("nan")}
    h = hashlib.sha256(type(problem).__name__.encode())
    for leaf in jax.tree_util.tree_leaves(problem):
        a = np.asarray(leaf)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    key = h.hexdigest()
    if key not in _GLRL_LIMITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _GLRL_LIMITS[key] = glrl(problem, eps=1e-30).matrix
    return {"glrl_distance": float(np.linalg.norm(trajectory.final_matrix - _GLRL_LIMITS[key]))}
