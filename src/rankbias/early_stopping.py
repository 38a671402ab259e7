r"""Early stopping from the effective-rank plateaus of a trajectory (no access to the truth).

Chou et al.: along deep GD/GF from a small init, ``r(W(t))`` (``sum sigma_i / sigma_1``) drops to
about 1 and then rises through plateaus, one per learned singular value, large ones first. On a
denoising problem ``Y = W* + noise`` the signal components are learned before the noise ones, so
stopping on the plateau after the last signal component gives a low-rank estimate of ``W*``.

**Plateau detection** (:func:`detect_plateaus`) is a property of the curve ``r(u)``,
``u = ln t``, not of where it was recorded. The records are interpolated linearly in ``u`` onto
a fixed lattice ``u = k h`` (``h = 0.005``, the same for every record grid). For each lattice
point ``k`` at or after the end of the initial drop (``argmin r``), the *band* ``J(k)`` is the
longest interval around ``k`` on which ``|r - r(k)| <= tol``. Bands are taken longest first
(ties: the earliest); a band that overlaps one already taken is skipped; the taken bands with
``ln(t_end / t_start) >= min_log_duration`` are the plateaus, numbered ``L = 1, 2, ...`` in time
order (deep escapes are sharp in log time, plateaus are long). A plateau's ``level`` (its
effective rank, also ``rank``) is the mean of ``r`` over it in log time. A greedy cut of the
records from ``argmin r`` on (the former rule) let a cut placed by the record positions move
every later band on a slow rise, which changed the chosen plateau with ``n_save``.

The interpolation is trusted only where the records resolve the curve: from ``argmin r`` on,
consecutive records may be at most ``min_log_duration / min_records`` apart in ``ln t`` (GD
records of consecutive steps always pass: they are the solver's own steps), so that every
plateau holds at least ``min_records`` records; sparser records give a
:class:`SparseRecordsWarning` that says how densely to record (the plateaus are still found on
the interpolated curve, but one of about ``min_log_duration`` may come and go with the grid; a
default gradient flow, 200 log-spaced records to ``t_max = 1e8``, is such a case). A record at
``t = 0`` is not judged (it stands at half the first positive time).

**Rules** (:func:`early_stopping`).

* ``rule="plateau", level=L``: stop in plateau ``L``.
* ``rule="auto"``: stop in the plateau of largest log-duration among those the run has left
  (``closed``); a plateau still open at the last record (the fit of the noise, once the run has
  converged) is used only when none closed. Plateaus whose log-duration is within the relative
  ``tie_margin`` (default 0.15) of the longest count as ties, and the earliest of them (the
  lowest effective rank, the estimate that fits the least noise) wins, so that two plateaus of
  about equal length do not swap on a small change of the curve. For ``N >= 3`` escape times
  scale like ``1 / sigma``, so this is the plateau after the largest ratio gap
  ``sigma_L / sigma_{L+1}``.

The stopping record is the record nearest (in ``ln t``) to the point at fraction ``position``
(default 0.5: the geometric middle) of the plateau's log-time interval.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._repr import num, render, render_html
from ._validation import check_choice, check_int, check_matrix, check_positive
from .dynamics._interrupt import raise_interrupts
from .dynamics.descent.api import gradient_descent
from .models import DeepFactorization
from .problems.estimation import MatrixEstimation

if TYPE_CHECKING:
    from .trajectory import Trajectory

__all__ = [
    "SparseRecordsWarning",
    "DetectedPlateau",
    "StoppingResult",
    "detect_plateaus",
    "early_stopping",
    "DenoisingResult",
    "denoise",
]

#: Step of the log-time lattice on which plateaus are detected: ends of plateaus, and so their
#: log-durations, are located to within this, whatever the record grid.
_LOG_TIME_STEP = 0.005


@dataclass(frozen=True)
class DetectedPlateau:
    """Plateau ``L`` of an effective-rank curve.

    ``t_start``, ``t_end``: its ends in time (on the log-time lattice); ``start``, ``end``: the
    first and last record (inclusive indices) inside it; ``level``: its effective rank (mean of
    ``r`` over it in log time, also :attr:`rank`); ``open``: the run ends in it.
    """

    L: int
    start: int
    end: int
    t_start: float
    t_end: float
    level: float
    open: bool

    @property
    def log_duration(self) -> float:
        """``ln(t_end / t_start)``."""
        return math.log(self.t_end / self.t_start)

    @property
    def rank(self) -> float:
        """The plateau's effective rank (the same as ``level``)."""
        return self.level


@dataclass(frozen=True)
class StoppingResult:
    """The chosen stopping point.

    ``index`` (record index into the trajectory), ``step`` (GD step or ``None`` for flow),
    ``time``, ``level`` (plateau number ``L``), ``rank`` (``r`` at the stop), ``plateau``
    (:class:`DetectedPlateau`; its effective rank is ``plateau_rank``), ``interval``
    (``(first, last)`` step, or time for flow, of the records in the plateau), ``plateaus``
    (all detected), ``matrix`` (``W`` at the stop when matrices were saved, else ``None``),
    ``rule``.
    """

    index: int
    step: int | None
    time: float
    level: int
    rank: float
    plateau: DetectedPlateau
    interval: tuple
    plateaus: tuple
    matrix: np.ndarray | None
    rule: str

    @property
    def plateau_rank(self) -> float:
        """The effective rank of the chosen plateau (``plateau.level``)."""
        return self.plateau.level

    def _rows(self):
        where = f"step {self.step}, " if self.step is not None else ""
        return [
            ("stop", f"{where}t = {num(self.time)} (record {self.index}), r = {num(self.rank, 4)}"),
            (
                "plateau",
                f"L = {self.level} at r = {num(self.plateau_rank, 4)}, interval "
                f"({', '.join(num(x) for x in self.interval)}), log-duration "
                f"{num(self.plateau.log_duration, 3)}",
            ),
            (
                "plateaus",
                f"{len(self.plateaus)} found, at r = "
                f"{[round(p.level, 3) for p in self.plateaus][:8]}",
            ),
            ("matrix", "-" if self.matrix is None else f"{tuple(np.shape(self.matrix))}"),
        ]

    def _title(self) -> str:
        return (
            f"StoppingResult(rule={self.rule!r}, level={self.level}, "
            f"plateau r = {self.plateau_rank:.3f})"
        )

    def __repr__(self) -> str:
        return render(self._title(), self._rows())

    def _repr_html_(self) -> str:
        return render_html(self._title(), self._rows())


def _positive_times(times: np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64).copy()
    pos = t[t > 0]
    floor = pos.min() / 2 if pos.size else 1.0
    return np.maximum(t, floor)  # t = 0 has no logarithm; half the first positive time stands in


def _band_ends(r: np.ndarray, tol: float) -> np.ndarray:
    """For every ``k``, the last ``j >= k`` with ``|r[i] - r[k]| <= tol`` for all ``i`` in
    ``k..j``: binary lifting over sparse tables of range max/min, ``O(n log n)`` and vectorized
    over ``k`` (a loop over ``k`` costs ``O(n^2)`` on a lattice of thousands of points)."""
    n = r.size
    highs, lows = [r], [r]  # level j: max/min of r[i : i + 2^j]
    while 2 ** len(highs) <= n:
        w = 2 ** (len(highs) - 1)
        highs.append(np.maximum(highs[-1][:-w], highs[-1][w:]))
        lows.append(np.minimum(lows[-1][:-w], lows[-1][w:]))
    end = np.arange(n)
    for j in range(len(highs) - 1, -1, -1):
        w = 2**j
        nxt = end + 1
        fits = nxt + w <= n
        at = np.where(fits, nxt, 0)
        fits &= (highs[j][at] <= r + tol) & (lows[j][at] >= r - tol)
        end = np.where(fits, end + w, end)
    return end


class SparseRecordsWarning(RuntimeWarning):
    """The records are sparser than the plateaus they are asked to resolve: a plateau of
    about ``min_log_duration`` may be missed or merged, so the stop may depend on the grid."""


def _check_resolution(u, steps, k0, min_log_duration, min_records, zero_first) -> None:
    """Warn (:class:`SparseRecordsWarning`) unless the records from ``k0`` on resolve
    plateaus of ``min_log_duration``. A record at ``t = 0`` stands at half the first positive
    time (``_positive_times``): its gap is no record density, so it is not judged."""
    if zero_first:
        k0 = max(k0, 1)
    if min_log_duration == 0 or u.size - k0 < 2:
        return  # no resolution claimed: plateaus of any length, kept if they hold min_records
    gaps = np.diff(u[k0:])
    if steps is not None:
        # consecutive solver steps cannot be recorded more densely
        gaps = np.where(np.diff(np.asarray(steps)[k0:]) <= 1, 0.0, gaps)
    limit = min_log_duration / min_records
    i = int(np.argmax(gaps))
    if gaps[i] > limit:
        a, b = math.exp(u[k0 + i]), math.exp(u[k0 + i + 1])
        span = u[-1] - u[1]  # ln(t_end / t_1), t_1 the first positive record time
        # 25 % above span / limit: GD rounds log-spaced records to whole steps, which widens
        # some gaps (at n_save = span / limit + 2 they still fail by ~5 %)
        need = math.ceil(1.25 * span / limit) + 2
        # A warning, not an error: the plateaus of a coarse grid are still found on the
        # interpolated curve, only those near min_log_duration may come and go with the grid.
        warnings.warn(
            f"the records are too sparse to resolve plateaus of log-duration "
            f"`min_log_duration` = {min_log_duration:g}: records {k0 + i} and {k0 + i + 1} "
            f"(t = {a:.4g} and {b:.4g}) are ln(t2/t1) = {gaps[i]:.3g} apart, more than "
            f"min_log_duration / min_records = {limit:.3g}, so a plateau of about that length "
            f"may be missed and the stop may depend on the record grid; record more densely "
            f"(log-spaced records need about n_save >= {need}) or raise `min_log_duration`",
            SparseRecordsWarning,
            stacklevel=3,
        )


def detect_plateaus(
    r,
    times,
    *,
    tol: float = 0.05,
    min_log_duration: float = 0.2,
    min_records: int = 3,
    steps=None,
) -> list[DetectedPlateau]:
    """Plateaus of an effective-rank curve ``r`` (``(T,)``) recorded at ``times`` (``(T,)``).

    See the module docstring: ``tol`` is the half-width of a plateau's band (``r`` units), a
    plateau lasts at least ``min_log_duration`` in ``ln t`` and holds at least ``min_records``
    records. ``steps`` (``(T,)``, optional): the GD step of each record; records of consecutive
    steps count as resolved in the density check. Warns (:class:`SparseRecordsWarning`) when the
    records are too sparse for ``min_log_duration`` (see the module docstring).
    """
    r = np.asarray(r, dtype=np.float64)
    t = _positive_times(times)
    if r.ndim != 1 or r.shape != t.shape:
        raise ValueError(
            f"`r` and `times` must be 1-D of equal length, got {r.shape} and {t.shape}"
        )
    if steps is not None and np.shape(steps) != r.shape:
        raise ValueError(
            f"`steps` must have the shape of `r` {r.shape} (the GD step of each record) or be "
            f"None, got shape {np.shape(steps)}"
        )
    tol = check_positive(tol, "tol")
    min_log_duration = check_positive(min_log_duration, "min_log_duration", allow_zero=True)
    min_records = check_int(min_records, "min_records", minimum=1)
    if r.size == 0:
        return []
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        i = int(back[0])
        raise ValueError(
            f"`times` must be non-decreasing (records in time order), got t = {t[i]:.6g} at "
            f"record {i} then {t[i + 1]:.6g}; pass the records sorted by time"
        )
    bad = np.flatnonzero(~np.isfinite(r))
    if bad.size:
        raise ValueError(
            f"`r` must be finite at every record, got {r[bad[0]]} at record {int(bad[0])} "
            f"({bad.size} non-finite in all; a diverged run?); stop on the records before "
            f"the first non-finite one"
        )
    u_rec = np.log(t)
    zero_first = bool(np.asarray(times, dtype=np.float64)[0] <= 0)
    _check_resolution(u_rec, steps, int(np.argmin(r)), min_log_duration, min_records, zero_first)

    # The lattice u = k h, with the first and last record times: the same points for every
    # record grid of the same run, so the bands below depend on the curve only.
    u, first = np.unique(u_rec, return_index=True)  # repeated times (padding) record one state
    h = _LOG_TIME_STEP
    lattice = np.arange(math.ceil(u[0] / h), math.floor(u[-1] / h) + 1) * h
    grid = np.unique(np.concatenate([u[:1], lattice, u[-1:]]))
    rg = np.interp(grid, u, r[first])
    right = _band_ends(rg, tol)
    left = grid.size - 1 - _band_ends(rg[::-1], tol)[::-1]
    length = grid[right] - grid[left]
    k0 = int(np.argmin(rg))
    ks = np.arange(k0, grid.size)
    order = ks[np.lexsort((ks, -length[ks]))]  # longest band first, ties: the earliest
    taken = np.zeros(grid.size, dtype=bool)
    bands = []
    for k in order:
        if length[k] < min_log_duration:
            break
        a, b = int(left[k]), int(right[k])
        if taken[a : b + 1].any():
            continue
        taken[a : b + 1] = True
        start = int(np.searchsorted(u_rec, grid[a], side="left"))
        end = int(np.searchsorted(u_rec, grid[b], side="right")) - 1
        if end - start + 1 >= min_records:
            bands.append((a, b, start, end))
    out: list[DetectedPlateau] = []
    for a, b, start, end in sorted(bands):
        du = np.diff(grid[a : b + 1])
        seg = rg[a : b + 1]
        # mean over log time (trapezoid), not over lattice points
        level = float(np.sum(du * (seg[1:] + seg[:-1]) / 2) / du.sum()) if b > a else float(seg[0])
        out.append(
            DetectedPlateau(
                len(out) + 1,
                start,
                end,
                float(math.exp(grid[a])),
                float(math.exp(grid[b])),
                level,
                open=bool(b == grid.size - 1),
            )
        )
    return out


def early_stopping(
    trajectory,
    rule: str = "auto",
    level: int | None = None,
    *,
    kind: str = "ratio",
    tol: float = 0.05,
    min_log_duration: float = 0.2,
    position: float = 0.5,
    tie_margin: float = 0.15,
) -> StoppingResult:
    r"""Choose a stopping time on ``trajectory`` (a :class:`rankbias.Trajectory`) from its
    effective-rank plateaus; see the module docstring for ``rule``, ``level``, ``position``
    and ``tie_margin`` (relative, in ``[0, 1)``: plateaus at least ``1 - tie_margin`` times as
    long as the longest tie with it under ``rule="auto"``, and the earliest of them wins).

    Raises ``ValueError`` when no plateau (or no plateau ``level``) is found; warns
    (:class:`SparseRecordsWarning`) when the records are too sparse to resolve plateaus of
    ``min_log_duration``: record more densely
    (``n_save``), run longer, or lower ``min_log_duration``.
    """
    check_choice(rule, "rule", ("plateau", "auto"))
    position = float(position)
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"`position` must be in [0, 1], got {position}")
    tie_margin = check_positive(tie_margin, "tie_margin", allow_zero=True)
    if tie_margin >= 1:
        raise ValueError(
            f"`tie_margin` must be in [0, 1) (a fraction of the longest plateau's "
            f"log-duration), got {tie_margin}"
        )
    if not hasattr(trajectory, "effective_rank") or not hasattr(trajectory, "times"):
        raise ValueError("`trajectory` must be a rankbias Trajectory (times, effective_rank)")
    if rule == "plateau":
        if level is None:
            raise ValueError("`level` (the plateau number L >= 1) is required for rule='plateau'")
        level = check_int(level, "level", minimum=1)
    r = np.asarray(trajectory.effective_rank(kind))
    times = np.asarray(trajectory.times, dtype=np.float64)
    steps = trajectory.steps
    found = detect_plateaus(r, times, tol=tol, min_log_duration=min_log_duration, steps=steps)
    if not found:
        raise ValueError(
            "no effective-rank plateau found: record more densely (n_save), run longer, "
            "or lower `min_log_duration`/raise `tol`"
        )
    if rule == "plateau":
        assert level is not None  # checked above for rule='plateau'
        if level > len(found):
            raise ValueError(
                f"`level` {level} requested but only {len(found)} plateau(s) found "
                f"(levels r = {[round(p.level, 3) for p in found]})"
            )
        p = found[level - 1]
    else:
        pool = [q for q in found if not q.open] or found
        longest = max(q.log_duration for q in pool)
        p = next(q for q in pool if q.log_duration >= (1 - tie_margin) * longest)
    u = np.log(_positive_times(times))
    target = (1 - position) * math.log(p.t_start) + position * math.log(p.t_end)
    idx = p.start + int(np.argmin(np.abs(u[p.start : p.end + 1] - target)))
    if steps is not None:
        interval = (int(steps[p.start]), int(steps[p.end]))
    else:
        interval = (float(times[p.start]), float(times[p.end]))
    mats = trajectory.matrices
    return StoppingResult(
        index=idx,
        step=None if steps is None else int(steps[idx]),
        time=float(times[idx]),
        level=p.L,
        rank=float(r[idx]),
        plateau=p,
        interval=interval,
        plateaus=tuple(found),
        matrix=None if mats is None else np.asarray(mats[idx]),
        rule=rule,
    )


# --------------------------------------------------------------------------- denoising
@dataclass
class DenoisingResult:
    """Errors ``||W - W*||_F / ||W*||_F`` of the estimates of one denoising run.

    ``stopped`` (early stopping), ``final`` (last iterate), ``svd`` (truncated SVD of ``Y`` at the
    true rank), ``oracle`` (best recorded iterate; ``oracle_step``), ``stop``
    (:class:`StoppingResult`), ``trajectory``, ``Y``, ``truth``.
    """

    stopped: float
    final: float
    svd: float
    oracle: float
    oracle_index: int
    oracle_step: int | None
    stop: StoppingResult
    trajectory: Trajectory
    Y: np.ndarray
    truth: np.ndarray

    def __repr__(self) -> str:
        return render(
            f"DenoisingResult({tuple(np.shape(self.Y))}, stop on plateau {self.stop.level} "
            f"at r = {self.stop.plateau_rank:.3f})",
            [
                (
                    "relative error",
                    f"stopped {num(self.stopped)}, final {num(self.final)}, "
                    f"svd {num(self.svd)}, oracle {num(self.oracle)}",
                ),
                ("steps", f"stop {self.stop.step}, oracle {self.oracle_step}"),
                ("trajectory", f"{len(self.trajectory)} records"),
            ],
        )

    def row(self) -> dict:
        """The errors and the stop as one flat dict (a table row)."""
        return {
            "stopped": self.stopped,
            "final": self.final,
            "svd": self.svd,
            "oracle": self.oracle,
            "stop_step": self.stop.step,
            "oracle_step": self.oracle_step,
            "stop_level": self.stop.level,
            "stop_rank": self.stop.rank,
            "stop_plateau_rank": self.stop.plateau_rank,
        }


@raise_interrupts()  # a run cut short would be a wrong result: Ctrl-C propagates
def denoise(
    truth,
    Y,
    depth: int,
    *,
    alpha: float = 0.1,
    lr: float = 0.01,
    steps: int = 20000,
    init: str = "identity",
    seed: int = 0,
    n_save: int = 400,
    rank: int | None = None,
    rule: str = "auto",
    level: int | None = None,
    tol: float = 0.05,
) -> DenoisingResult:
    r"""Deep GD on ``f(W) = 1/2 ||W - Y||_F^2``, early-stopped on the effective-rank plateau.

    ``truth`` (``W*``, ``(m, n)``) is used only to score the estimates and for the true
    ``rank`` (default: its numerical rank) of the truncated-SVD baseline; the stopping rule sees
    the trajectory alone. Model: ``rb.DeepFactorization((m, n), depth)`` with ``init`` at
    per-factor scale ``alpha``; ``n_save`` log-spaced records with matrices.
    """
    W = check_matrix(truth, "truth")
    Y = check_matrix(Y, "Y", shape=W.shape)
    depth = check_int(depth, "depth", minimum=1)
    if rank is None:
        s = np.linalg.svd(W, compute_uv=False)
        rank = int(np.sum(s > 1e-10 * s[0]))
    rank = check_int(rank, "rank", minimum=1)
    model = DeepFactorization(W.shape, depth=depth)
    params = model.init(init, scale=alpha, seed=seed, per_factor=True)
    traj = gradient_descent(
        MatrixEstimation(Y, truth=W), model, params, lr, steps, n_save=n_save, save_matrices=True
    )
    stop = early_stopping(traj, rule=rule, level=level, tol=tol)
    norm = np.linalg.norm(W)
    errs = np.linalg.norm(np.asarray(traj.matrices) - W, axis=(1, 2)) / norm
    U, s, Vt = np.linalg.svd(Y)
    svd = np.linalg.norm((U[:, :rank] * s[:rank]) @ Vt[:rank] - W) / norm
    o = int(np.argmin(errs))
    return DenoisingResult(
        stopped=float(errs[stop.index]),
        final=float(np.linalg.norm(traj.final_matrix - W) / norm),
        svd=float(svd),
        oracle=float(errs[o]),
        oracle_index=o,
        oracle_step=None if traj.steps is None else int(traj.steps[o]),
        stop=stop,
        trajectory=traj,
        Y=Y,
        truth=W,
    )
