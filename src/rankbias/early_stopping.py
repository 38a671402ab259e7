r"""Early stopping from the effective-rank plateaus of a trajectory (no access to the truth).

Chou et al.: along deep GD/GF from a small init, ``r(W(t))`` (``sum sigma_i / sigma_1``) drops to
about 1 and then rises through plateaus, one per learned singular value, large ones first. On a
denoising problem ``Y = W* + noise`` the signal components are learned before the noise ones, so
stopping on the plateau after the last signal component gives a low-rank estimate of ``W*``.

**Plateau detection** (:func:`detect_plateaus`). Let ``k_min = argmin r`` (end of the initial
drop). From ``k_min`` on, the records are cut greedily into maximal runs on which
``max r - min r <= 2 tol``; a run is a plateau when it lasts at least ``min_log_duration`` in log
time, ``ln(t_end / t_start) >= min_log_duration`` (deep escapes are sharp in log time, plateaus
are long). Plateau ``L`` is the ``L``-th one found (``L = 1``: the rank-1 plateau).

**Rules** (:func:`early_stopping`).

* ``rule="plateau", level=L``: stop in plateau ``L``.
* ``rule="auto"``: stop in the plateau of largest log-duration among those the run has left
  (``closed``); a plateau still open at the last record (the fit of the noise, once the run has
  converged) is used only when none closed. For ``N >= 3`` escape times scale like
  ``1 / sigma``, so this is the plateau after the largest ratio gap ``sigma_L / sigma_{L+1}``.

The stopping record is the point at fraction ``position`` (default 0.5: the geometric middle)
of the plateau's log-time interval, snapped to the nearest record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._validation import check_choice, check_int, check_matrix, check_positive

if TYPE_CHECKING:
    from .trajectory import Trajectory

__all__ = [
    "DetectedPlateau",
    "StoppingResult",
    "detect_plateaus",
    "early_stopping",
    "DenoisingResult",
    "denoise",
]


@dataclass(frozen=True)
class DetectedPlateau:
    """Records ``start..end`` (inclusive indices) of a plateau; ``level`` = mean ``r`` on it."""

    L: int
    start: int
    end: int
    t_start: float
    t_end: float
    level: float
    open: bool

    @property
    def log_duration(self) -> float:
        return math.log(self.t_end / self.t_start)


@dataclass(frozen=True)
class StoppingResult:
    """The chosen stopping point.

    ``index`` (record index into the trajectory), ``step`` (GD step or ``None`` for flow),
    ``time``, ``level`` (plateau number ``L``), ``rank`` (``r`` at the stop), ``plateau``
    (:class:`DetectedPlateau`), ``interval`` (``(first, last)`` step, or time for flow, of the
    plateau), ``plateaus`` (all detected), ``matrix`` (``W`` at the stop when matrices were saved,
    else ``None``), ``rule``.
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

    def _rows(self):
        from ._repr import num

        where = f"step {self.step}, " if self.step is not None else ""
        return [
            ("stop", f"{where}t = {num(self.time)} (record {self.index})"),
            (
                "plateau",
                f"L = {self.level}, r = {num(self.rank, 4)}, interval "
                f"({', '.join(num(x) for x in self.interval)})",
            ),
            (
                "plateaus",
                f"{len(self.plateaus)} found, levels "
                f"{[round(p.level, 3) for p in self.plateaus][:8]}",
            ),
            ("matrix", "-" if self.matrix is None else f"{tuple(np.shape(self.matrix))}"),
        ]

    def __repr__(self) -> str:
        from ._repr import render

        return render(f"StoppingResult(rule={self.rule!r}, level={self.level})", self._rows())

    def _repr_html_(self) -> str:
        from ._repr import render_html

        return render_html(f"StoppingResult(rule={self.rule!r}, level={self.level})", self._rows())


def _positive_times(times: np.ndarray) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64).copy()
    pos = t[t > 0]
    floor = pos.min() / 2 if pos.size else 1.0
    return np.maximum(t, floor)  # t = 0 has no logarithm; half the first positive time stands in


def detect_plateaus(
    r, times, *, tol: float = 0.05, min_log_duration: float = 0.2, min_records: int = 3
) -> list[DetectedPlateau]:
    """Plateaus of an effective-rank curve ``r`` (``(T,)``) recorded at ``times`` (``(T,)``).

    See the module docstring; ``tol`` is the half-width of the band (``r`` units).
    """
    r = np.asarray(r, dtype=np.float64)
    t = _positive_times(times)
    if r.ndim != 1 or r.shape != t.shape:
        raise ValueError(
            f"`r` and `times` must be 1-D of equal length, got {r.shape} and {t.shape}"
        )
    tol = check_positive(tol, "tol")
    min_log_duration = check_positive(min_log_duration, "min_log_duration", allow_zero=True)
    out: list[DetectedPlateau] = []
    T = r.size
    i = int(np.nanargmin(r)) if T else 0
    while i < T:
        lo = hi = r[i]
        j = i + 1
        while j < T and max(hi, r[j]) - min(lo, r[j]) <= 2 * tol:
            lo, hi = min(lo, r[j]), max(hi, r[j])
            j += 1
        if j - i >= min_records and math.log(t[j - 1] / t[i]) >= min_log_duration:
            out.append(
                DetectedPlateau(
                    len(out) + 1,
                    i,
                    j - 1,
                    float(t[i]),
                    float(t[j - 1]),
                    float(np.mean(r[i:j])),
                    open=bool(j == T),
                )
            )
        i = j
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
) -> StoppingResult:
    r"""Choose a stopping time on ``trajectory`` (a :class:`rankbias.Trajectory`) from its
    effective-rank plateaus; see the module docstring for ``rule``, ``level`` and ``position``.

    Raises ``ValueError`` when no plateau (or no plateau ``level``) is found: record more
    densely (``n_save``), run longer, or lower ``min_log_duration``.
    """
    check_choice(rule, "rule", ("plateau", "auto"))
    position = float(position)
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"`position` must be in [0, 1], got {position}")
    if not hasattr(trajectory, "effective_rank") or not hasattr(trajectory, "times"):
        raise ValueError("`trajectory` must be a rankbias Trajectory (times, effective_rank)")
    if rule == "plateau":
        if level is None:
            raise ValueError("`level` (the plateau number L >= 1) is required for rule='plateau'")
        level = check_int(level, "level", minimum=1)
    r = np.asarray(trajectory.effective_rank(kind))
    times = np.asarray(trajectory.times, dtype=np.float64)
    found = detect_plateaus(r, times, tol=tol, min_log_duration=min_log_duration)
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
        closed = [q for q in found if not q.open]
        p = max(closed or found, key=lambda q: q.log_duration)
    t = _positive_times(times)
    target = math.exp((1 - position) * math.log(p.t_start) + position * math.log(p.t_end))
    idx = p.start + int(np.argmin(np.abs(np.log(t[p.start : p.end + 1]) - math.log(target))))
    steps = trajectory.steps
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
        from ._repr import num, render

        return render(
            f"DenoisingResult({tuple(np.shape(self.Y))}, stop level {self.stop.level})",
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
        return {
            "stopped": self.stopped,
            "final": self.final,
            "svd": self.svd,
            "oracle": self.oracle,
            "stop_step": self.stop.step,
            "oracle_step": self.oracle_step,
            "stop_level": self.stop.level,
            "stop_rank": self.stop.rank,
        }


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
    from .dynamics import gradient_descent
    from .models import DeepFactorization
    from .problems import MatrixEstimation

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
