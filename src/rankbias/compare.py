r"""Gradient flow from a small initialization vs the GLRL trajectory (its ``alpha -> 0`` limit).

Time alignment. In the limit every GLRL phase is infinitely long, so the GLRL trajectory is
defined up to one time shift per phase. Phase ``r`` is aligned by the moment the loss
crosses the mid level ``(f(W_{r-1}) + f(W_r)) / 2``: ``shift_r = t_GF(mid) - t_GLRL_r(mid)``.
The GLRL phase flow is then re-evaluated at exactly the GF record times minus the shift
(no interpolation), and

    phase distance_r = max_k ||W_GF(t_k) - W_GLRL,r(t_k - shift_r)||_F

over the GF records ``t_k`` between the midpoints of the neighbouring crossings, up to the
phase horizon ``t_max`` (:func:`default_t_max`);
``end distance = ||W_GF(t_final) - W_GLRL||_F`` at a *certified steady state*: the same run
continues past ``t_max`` (up to ``end_t_max``) until gradient flow's own certificate stops it
(``||grad L|| <= gtol`` at a point with ``grad f(W) ~ 0``, see
:func:`rankbias.gradient_flow`). The slowest directions of the minimiser converge far
later than the phases end (30x30 depth-2 completion, alpha = 1e-8: phases done by
t ~ 500, steady state at t = 1.76e6, end distance 6.4e-3 at t = 506 against 3.2e-3 at the
steady state). Each run's ``status`` and ``t_final`` are kept; a run not certified by
``end_t_max`` is marked (``certified`` False), left out of the power-law fit, and warned about.

Reference. GLRL in the variant that matches the model: PSD GLRL (``W = U U^T``) for
:class:`~rankbias.models.SymmetricFactorization`, asymmetric GLRL (``W = U V^T``, singular
triples) for :class:`~rankbias.models.DeepFactorization` (``info["glrl_variant"]``).

Power law (derived; ``lam_1 > lam_2`` the top eigenvalues of ``-grad f(0)``, depth 2): with
``U(t) = e^{Gt} sqrt(alpha) U0`` in the linear regime, when the top component of ``W`` reaches
O(1) the second eigenvalue of ``W`` is ``alpha^c``, ``c = 1 - lam_2/lam_1``, but the cross term
``v1 v2^T`` is ``alpha^(c/2)`` and dominates the Frobenius distance: ``||W_GF - W_GLRL||``
decays like ``alpha^(c/2)``. :func:`fit_power_law` measures the exponent.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from . import _repr
from ._quiet import quietly
from ._validation import check_positive
from .dynamics.flow.api import gradient_flow_batch
from .dynamics.flow.save import save_times
from .glrl._alignment import mid_time
from .glrl._greedy import glrl
from .glrl._replay import ESCAPE_ATOL, replay_phase_matrices
from .glrl._results import GLRLResult
from .models import DeepFactorization, Model, SymmetricFactorization
from .plots.glrl import plot_comparison
from .problems.base import Problem
from .trajectory import Trajectory

__all__ = [
    "compare_with_glrl",
    "GLRLComparison",
    "fit_power_law",
    "default_t_max",
    "glrl_variant_for",
    "glrl_distance_metric",
]


def glrl_variant_for(model) -> bool:
    """``psd`` argument of :func:`rankbias.glrl` that matches ``model``, from its factor form:
    ``True`` (PSD GLRL, ``W = U U^T``) for a ``"symmetric"`` one (:class:`SymmetricFactorization`
    of any depth), ``False`` (asymmetric GLRL, ``W = U V^T``) for a ``"product"`` one
    (:class:`DeepFactorization`, any depth). Raises ``TypeError`` for anything else (a model
    without a factor form, or not a model)."""
    form = model.factor_form if isinstance(model, Model) else None
    if form is not None:
        return form == "symmetric"
    raise TypeError(
        f"no GLRL variant for model {type(model).__name__}; expected a model with a factor form "
        "(SymmetricFactorization, DeepFactorization, or your own Model defining factor_form)"
    )


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
            ``end`` is measured at each run's last time, a certified steady state unless
            ``certified`` says otherwise.
        shifts: ``(A, S, R)`` time shifts ``t_GF(mid) - t_GLRL(mid)``.
        fit: power-law fit of the median end distance over the certified runs (see
            :func:`fit_power_law`), with ``prediction = (1 - lam_2/lam_1)/2`` and
            ``phase1_at_mid``, the fit of the phase-1 distance at its mid crossing, the
            quantity that prediction is about.
        info: ``depth``, ``init``, ``glrl_variant`` (``"PSD"`` or ``"asymmetric"``), ``model``,
            ``t_max`` and ``end_t_max`` (phase and end horizons per alpha), ``gtol``.
        status: ``(A, S)`` each run's gradient-flow status (``"steady_state"``: certified).
        t_final: ``(A, S)`` each run's last time (where ``distances["end"]`` is measured).

    Properties :attr:`certified`, :attr:`table` (one row per alpha) and :attr:`runs` (one row
    per run); :meth:`plot` draws the distances against alpha.
    """

    alphas: list[float]
    seeds: list[int]
    glrl: GLRLResult
    trajectories: dict
    distances: dict
    shifts: np.ndarray
    fit: dict
    info: dict = field(default_factory=dict)
    status: np.ndarray | None = None
    t_final: np.ndarray | None = None

    def __post_init__(self):
        A, S = self.distances["end"].shape
        if self.status is None:
            self.status = np.full((A, S), "unknown", dtype=object)
        if self.t_final is None:
            self.t_final = np.array(
                [
                    [
                        float(self.trajectories[(a, s)].times[-1])
                        if (a, s) in self.trajectories
                        else np.nan
                        for s in self.seeds
                    ]
                    for a in self.alphas
                ]
            ).reshape(A, S)

    @property
    def certified(self) -> np.ndarray:
        """``(A, S)`` bool: the run ended at a certified steady state (its end distance is
        that of the limit, not of a point still on its way)."""
        return np.asarray(self.status == "steady_state", dtype=bool)

    @property
    def table(self) -> list[dict]:
        """One row per alpha: median/max end distance, median phase distances, how many runs
        are certified, their statuses and final times (a property, like ``runs``)."""
        rows = []
        assert self.status is not None and self.t_final is not None  # set in __post_init__
        for i, a in enumerate(self.alphas):
            e = self.distances["end"][i]
            ph = self.distances["phase"][i]
            rows.append(
                dict(
                    alpha=a,
                    end_median=float(np.median(e)),
                    end_max=float(np.max(e)),
                    phase_median=[
                        float(np.nanmedian(ph[:, r]))
                        if np.any(np.isfinite(ph[:, r]))
                        else float("nan")
                        for r in range(ph.shape[1])
                    ],
                    certified=int(self.certified[i].sum()),
                    runs=len(self.seeds),
                    status=[str(x) for x in self.status[i]],
                    t_final=[float(x) for x in self.t_final[i]],
                )
            )
        return rows

    @property
    def runs(self) -> list[dict]:
        """One row per run ``(alpha, seed)``: status, certified, final time, end distance and
        the phase distances."""
        out = []
        assert self.status is not None and self.t_final is not None  # set in __post_init__
        for i, a in enumerate(self.alphas):
            for j, s in enumerate(self.seeds):
                out.append(
                    dict(
                        alpha=a,
                        seed=s,
                        status=str(self.status[i, j]),
                        certified=bool(self.certified[i, j]),
                        t_final=float(self.t_final[i, j]),
                        end=float(self.distances["end"][i, j]),
                        phase=[float(x) for x in self.distances["phase"][i, j]],
                    )
                )
        return out

    def _title(self) -> str:
        return (
            f"GLRLComparison({self.info.get('model', 'model')} depth "
            f"{self.info.get('depth', '?')} vs {self.info.get('glrl_variant', '?')} GLRL, "
            f"{len(self.alphas)} alphas x {len(self.seeds)} seeds)"
        )

    def _rows(self):
        num = _repr.num
        cert = self.certified
        rows = [
            (
                "certified",
                f"{int(cert.sum())}/{cert.size} runs at a steady state"
                + ("" if cert.all() else " (end distances of the others are not limits)"),
            ),
            (
                "GLRL",
                f"rank {self.glrl.rank}, status {self.glrl.status!r}, loss {num(self.glrl.loss)}",
            ),
        ]
        for r in self.table[:8]:
            rows.append(
                (
                    f"alpha {r['alpha']:.0e}",
                    f"end median {num(r['end_median'], 3)} (max {num(r['end_max'], 3)}), "
                    f"certified {r['certified']}/{r['runs']}, t_final <= "
                    f"{num(max(r['t_final']), 3)}",
                )
            )
        if len(self.alphas) > 8:
            rows.append(("...", f"{len(self.alphas) - 8} more alphas"))
        f = self.fit
        rows.append(("fit end", f"c = {num(f.get('c'), 3)} over {f.get('used', 0)} alphas"))
        if "phase1_at_mid" in f:
            rows.append(
                (
                    "fit phase 1",
                    f"c = {num(f['phase1_at_mid'].get('c'), 3)}, predicted "
                    f"{num(f.get('prediction'), 3)}",
                )
            )
        return rows

    def __repr__(self) -> str:
        return _repr.render(self._title(), self._rows())

    def _repr_html_(self) -> str:
        return _repr.render_html(self._title(), self._rows())

    def plot(self, ax=None):
        """Distance against alpha: end distances per seed (certified or not), their median,
        the phase-1 distance at its mid crossing, the fitted power laws and the predicted
        exponent (see :func:`rankbias.plots.plot_comparison`); returns the Axes."""
        return plot_comparison(self, ax)


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
    return dict(c=float(c), b=float(b), used=int(keep.sum()), alphas_used=a[keep].tolist())


def default_t_max(res: GLRLResult, alpha: float, depth: int) -> float:
    """Enough time for every phase: ``4 sum_r (log(1/alpha)/(2 lam_r) [+ alpha^-(1-2/L)/lam_r])``."""
    lams = [p.lam for p in res.phases] or [1.0]
    base = sum(np.log(1 / alpha) / (2 * lam) for lam in lams)
    if depth >= 3:
        base += sum(alpha ** (-(1 - 2 / depth)) / lam for lam in lams)
    return float(4 * base + 50 / min(lams))


def _glrl_at(problem, res: GLRLResult, r: int, times: np.ndarray) -> np.ndarray:
    """``W`` of GLRL phase ``r`` (1-based) at the given phase-clock times (exact, by re-running
    the phase flow with these save times).

    With the settings this comparison has always used, not those the phase ran with
    (``res.info["replay"]``: padded width, tolerances rescaled by ``sqrt(r / R)``, the
    user's ``rtol``): width ``r``, ``rtol = 1e-10`` and the phases' default absolute
    tolerance ``min(1e-14, ESCAPE_ATOL sqrt(eps))`` (the appended column has entries
    ``~sqrt(eps)``; a larger atol would let its escape time drift from the ``t_mid`` used
    for the alignment). The published distances were measured so (with ``1e-3 sqrt(eps)``
    before issue 30).
    """
    eps_atol = min(1e-14, ESCAPE_ATOL * np.sqrt(res.eps))
    return replay_phase_matrices(
        problem, res, r, times, rtol=1e-10, atol=eps_atol, padded=False, solver="rkc"
    )


def compare_with_glrl(
    problem: Problem,
    model: DeepFactorization | SymmetricFactorization,
    alphas: Sequence[float],
    seeds: Sequence[int] = range(5),
    *,
    glrl_result: GLRLResult | None = None,
    eps: float = 1e-30,
    init: str = "gaussian",
    t_max: float | None = None,
    n_save: int = 400,
    rtol: float = 1e-10,
    atol: float = 1e-14,
    end_t_max: float | None = None,
    gtol: float = 1e-10,
) -> GLRLComparison:
    r"""Run gradient flow from ``model.init(init, scale=alpha, seed)`` for every alpha and seed
    and measure its time-aligned distance to the GLRL trajectory (module docstring).

    Arguments:
        problem: a rankbias problem (square for a :class:`SymmetricFactorization`).
        model: :class:`SymmetricFactorization` (depth 2) or :class:`DeepFactorization`.
        alphas: end-to-end init scales (``W(0) = alpha * O(1)``).
        glrl_result: a precomputed reference (default: ``glrl(problem, eps, psd=...)``
            in the variant of :func:`glrl_variant_for`; a given result is used as is and its
            variant recorded in ``info["glrl_variant"]``).
        t_max: horizon of the phase distances (default :func:`default_t_max` per alpha).
        end_t_max: how long a run may go on to reach a certified steady state, where the end
            distance is measured (default ``max(1e8, 1e3 t_max)``; the flow stops at the
            certificate, usually much earlier).
        gtol: the steady-state gradient tolerance of that certificate (see
            :func:`rankbias.gradient_flow`).

    Returns:
        :class:`GLRLComparison` with ``distances["end"]`` ``(A, S)``, ``distances["phase"]``
        ``(A, S, R)``, ``status`` and ``t_final`` ``(A, S)``.

    Raises:
        ValueError: bad arguments (non-square problem with a symmetric model, empty grids,
            non-positive alphas or times). Warns (``RuntimeWarning``) when some runs end
            without a certified steady state.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    if not isinstance(model, Model):
        raise ValueError(f"`model` must be a rankbias Model, got {type(model).__name__}")
    psd = glrl_variant_for(model)
    if glrl_result is not None:
        if not isinstance(glrl_result, GLRLResult):
            raise ValueError(
                f"`glrl_result` must be a GLRLResult, got {type(glrl_result).__name__}"
            )
        psd = glrl_result.psd
    if psd and problem.shape[0] != problem.shape[1]:
        raise ValueError(f"`problem` must be square for PSD GLRL, got {problem.shape}")
    alphas = [check_positive(a, "alphas") for a in alphas]
    seeds = [int(s) for s in seeds]
    if not alphas or not seeds:
        raise ValueError("`alphas` and `seeds` must be non-empty")
    gtol = check_positive(gtol, "gtol")
    if end_t_max is not None:
        end_t_max = check_positive(end_t_max, "end_t_max")
    res = glrl(problem, eps=eps, psd=psd) if glrl_result is None else glrl_result
    R = len(res.phases)
    depth = model.depth
    A, S = len(alphas), len(seeds)
    end = np.full((A, S), np.nan)
    phase = np.full((A, S, R), np.nan)
    at_mid = np.full((A, S, R), np.nan)
    shifts = np.full((A, S, R), np.nan)
    status = np.full((A, S), "unknown", dtype=object)
    t_final = np.full((A, S), np.nan)
    horizons, end_horizons = [], []
    trajs = {}
    levels = res.levels
    for i, a in enumerate(alphas):
        tm = default_t_max(res, a, depth) if t_max is None else check_positive(t_max, "t_max")
        te = max(1e8, 1e3 * tm) if end_t_max is None else max(end_t_max, tm)
        horizons.append(tm)
        end_horizons.append(te)
        params = [model.init(init, scale=a, seed=s) for s in seeds]
        # The factors start at alpha^(1/L): the absolute tolerance must sit below that, or
        # the small directions (whose relative sizes decide the limit) are not resolved.
        atol_a = min(atol, 1e-4 * a ** (1.0 / depth))
        flows = dict(rtol=rtol, atol=atol_a, gtol=gtol)
        runs = _flow_runs(problem, model, params, t_max=tm, n_save=n_save, **flows)
        # Second pass: the same runs recorded densely around each phase's loss drop, so
        # that the mid-level crossings (the alignment) are accurate to far below 1/lam.
        extra = []
        for tr in runs:
            mids = _mids(tr, levels, R)
            pts = [
                m + np.linspace(-4.0, 4.0, 81) / res.phases[r].lam
                for r, m in enumerate(mids)
                if np.isfinite(m)
            ]
            extra.append(np.concatenate(pts) if pts else np.zeros(0))
        grid = np.unique(np.clip(np.concatenate(extra), 0, tm)) if extra else None
        # It also goes on past the phase horizon `tm` to the certified steady state (the end
        # distance): the records up to `tm` are those of the first pass plus the dense ones,
        # then `n_end` log-spaced ones up to the stop.
        grid = np.union1d(save_times(tm, n_save), grid if grid is not None else [])
        n_end = max(50, n_save // 4)
        runs = _flow_runs(problem, model, params, t_max=te, n_save=n_end, save_at=grid, **flows)
        for j, (s, tr) in enumerate(zip(seeds, runs, strict=True)):
            trajs[(a, s)] = tr
            end[i, j] = float(np.linalg.norm(tr.final_matrix - res.matrix))
            status[i, j] = tr.status
            t_final[i, j] = float(tr.times[-1])
            # Phase distances keep their own horizon: crossings after `tm` do not count.
            mids = [m if m <= tm else float("nan") for m in _mids(tr, levels, R)]
            for r in range(1, R + 1):
                if not np.isfinite(mids[r - 1]):
                    continue
                shift = mids[r - 1] - res.phases[r - 1].t_mid
                lo = 0.5 * ((mids[r - 2] if r > 1 else 0.0) + mids[r - 1])
                hi = (
                    0.5 * (mids[r - 1] + mids[r])
                    if r < R and np.isfinite(mids[r])
                    else min(tr.times[-1], tm)
                )
                sel = (tr.times >= lo) & (tr.times <= hi) & (tr.times - shift >= 0)
                if not sel.any():
                    continue
                ref = _glrl_at(problem, res, r, tr.times[sel] - shift)
                dist = np.linalg.norm(tr.matrices[sel] - ref, axis=(1, 2))
                phase[i, j, r - 1] = float(np.max(dist))
                at_mid[i, j, r - 1] = float(dist[np.argmin(np.abs(tr.times[sel] - mids[r - 1]))])
                shifts[i, j, r - 1] = shift
    cert = status == "steady_state"
    if not cert.all():
        bad = [(alphas[i], seeds[j]) for i, j in zip(*np.nonzero(~cert), strict=True)]
        warnings.warn(
            f"{len(bad)} of {cert.size} runs did not reach a certified steady state "
            f"by end_t_max (alpha, seed: {bad[:6]}{' ...' if len(bad) > 6 else ''}; "
            f"statuses {sorted(set(status[~cert].tolist()))}): their end distances "
            "are not those of the limit; they are marked (`certified`) and left out "
            "of the fit. Raise `end_t_max` or loosen `gtol`.",
            RuntimeWarning,
            stacklevel=2,
        )
    negG0 = -np.asarray(problem.grad(jnp.zeros(problem.shape)))
    # Growth rates of the linear regime: eigenvalues of sym(-grad f(0)) (PSD GLRL) or its
    # singular values (asymmetric: (U, V) grows by [[0, G], [G^T, 0]], eigenvalues +- sigma).
    w = (
        np.linalg.eigvalsh(0.5 * (negG0 + negG0.T))[::-1]
        if res.psd
        else np.linalg.svd(negG0, compute_uv=False)
    )
    with quietly(RuntimeWarning):  # alphas without a certified run: NaN
        fit = fit_power_law(alphas, np.nanmedian(np.where(cert, end, np.nan), axis=1))
    fit["certified_only"] = True
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
    return GLRLComparison(
        alphas=alphas,
        seeds=seeds,
        glrl=res,
        trajectories=trajs,
        distances=dict(end=end, phase=phase, phase_at_mid=at_mid),
        shifts=shifts,
        fit=fit,
        info=dict(
            depth=depth,
            init=init,
            model=type(model).__name__,
            glrl_variant="PSD" if res.psd else "asymmetric",
            t_max=horizons,
            end_t_max=end_horizons,
            gtol=gtol,
        ),
        status=status,
        t_final=t_final,
    )


def _flow_runs(problem, model, params, *, t_max, rtol, atol, n_save, gtol, save_at=None):
    """The comparison's gradient-flow runs, ``W`` recorded. Their statuses are read from the
    runs (``status``, ``certified``) and warned about once, by :func:`compare_with_glrl`."""
    with quietly(RuntimeWarning):
        return gradient_flow_batch(
            problem,
            model,
            params,
            t_max=t_max,
            rtol=rtol,
            atol=atol,
            n_save=n_save,
            save_at=save_at,
            gtol=gtol,
            save_matrices=True,
        )


def _mids(tr: Trajectory, levels, R: int) -> list[float]:
    mids = []
    for r in range(1, R + 1):
        prev = mids[-1] if mids and np.isfinite(mids[-1]) else 0.0
        mids.append(mid_time(tr, levels[r - 1], levels[r], prev))
    return mids


#: GLRL limits of the problems met in this process, most recently used last: a sweep
#: worker meets each problem once per run of it. Bounded: a limit is a dense ``(m, n)``
#: matrix and a long-lived process meets many problems.
_GLRL_LIMITS: OrderedDict[str, np.ndarray] = OrderedDict()
_GLRL_LIMITS_MAX = 16


def glrl_distance_metric(trajectory: Trajectory, problem: Problem, run_config: dict) -> dict:
    """Sweep metric (``record.custom = ["rankbias.compare:glrl_distance_metric"]``):
    ``glrl_distance = ||W(t_final) - W_GLRL||_F`` against the GLRL limit (``eps = 1e-30``) in
    the variant that matches the run's model (:func:`glrl_variant_for`): PSD GLRL for
    ``model.type = "symmetric"``, asymmetric GLRL for ``"deep"``. The variant is recorded as
    ``glrl_symmetric`` (1.0: PSD, 0.0: asymmetric), a dataset variable that the figures
    read. Without a model in ``run_config`` the variant is inferred from the trajectory (one
    factor ``U`` with ``W = U U^T``: symmetric). Computed once per problem and variant in
    each worker process (the last 16 problems and variants)."""
    mtype = (run_config or {}).get("model", {}).get("type")
    if mtype is not None:
        psd = mtype == "symmetric"
    else:
        psd = _looks_symmetric(trajectory)
    if psd and problem.shape[0] != problem.shape[1]:
        return {"glrl_distance": float("nan"), "glrl_symmetric": 1.0}
    h = hashlib.sha256(f"{type(problem).__name__}:{psd}".encode())
    for leaf in jax.tree_util.tree_leaves(problem):
        a = np.asarray(leaf)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    key = h.hexdigest()
    if key in _GLRL_LIMITS:
        _GLRL_LIMITS.move_to_end(key)
    else:
        with quietly(RuntimeWarning):  # GLRL's own notes (gap, max_rank) are not the run's
            _GLRL_LIMITS[key] = glrl(problem, eps=1e-30, psd=psd).matrix
        if len(_GLRL_LIMITS) > _GLRL_LIMITS_MAX:
            _GLRL_LIMITS.popitem(last=False)
    return {
        "glrl_distance": float(np.linalg.norm(trajectory.final_matrix - _GLRL_LIMITS[key])),
        "glrl_symmetric": float(psd),  # stored in sweeps: the name stays
    }


def _looks_symmetric(trajectory: Trajectory) -> bool:
    """One factor ``U`` (``(d, r)``) whose ``U U^T`` is ``W`` (and ``W != U``: depth 1)."""
    ps = trajectory.final_params
    W = np.asarray(trajectory.final_matrix)
    if len(ps) != 1:
        return False
    U = np.asarray(ps[0])
    if U.ndim != 2 or U.shape[0] != W.shape[0] or W.shape[0] != W.shape[1]:
        return False
    scale = max(float(np.abs(W).max()), 1e-300)
    same = U.shape == W.shape and np.allclose(U, W, rtol=0, atol=1e-12 * scale)
    return bool(np.allclose(U @ U.T, W, rtol=0, atol=1e-10 * scale) and not same)
