"""What :func:`rankbias.glrl` returns: the result and its phases."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._deprecation import warn_renamed
from .._repr import num, render, render_html
from ..plots.glrl import plot_glrl
from ..trajectory import Trajectory

__all__ = ["GLRLPhase", "GLRLResult"]


@dataclass
class GLRLPhase:
    """One GLRL phase ``r``: escape from ``W_{r-1}`` along ``direction`` to ``W_r``.

    Attributes:
        rank: ``r`` (number of columns of the factor after this phase).
        lam: top eigenvalue (asymmetric: singular value) of ``-grad f(W_{r-1})``.
        direction: unit escape direction ``u`` (``(d,)``), or the pair ``(u, v)``.
        escape_time: ``log(1/eps) / (2 lam)``, the predicted time to leave ``W_{r-1}``.
        W: the converged ``W_r`` (``(m, n)``); ``loss = f(W_r)``.
        factors: ``(U,)`` (``(d, r)``) or ``(V^T, U)`` (``(r, n)``, ``(m, r)``) at ``W_r``.
        trajectory: the phase's gradient flow (time from the phase start), a
            :class:`~rankbias.Trajectory`; ``matrices`` are kept for ``d <= 200``.
        t_mid: phase-clock time at which ``f`` crosses ``(f(W_{r-1}) + f(W_r)) / 2`` (used to
            align GF trajectories with this phase).
        converged: whether ``||grad L|| <= phase_gtol`` was reached.
        grad_norm: ``||grad L||`` at the end of the phase.
    """

    rank: int
    lam: float
    direction: np.ndarray | tuple[np.ndarray, np.ndarray]
    escape_time: float
    W: np.ndarray
    loss: float
    loss_before: float
    factors: tuple[np.ndarray, ...]
    trajectory: Trajectory
    t_mid: float
    converged: bool
    grad_norm: float
    wall_time: float

    def _title(self) -> str:
        return f"GLRLPhase(rank={self.rank}, converged={self.converged})"

    def _rows(self):
        return [
            ("lam", num(self.lam, 6)),
            ("escape time", num(self.escape_time)),
            ("t_mid", num(self.t_mid)),
            ("loss", f"{num(self.loss_before)} -> {num(self.loss)}"),
            ("grad norm", num(self.grad_norm)),
            (
                "W",
                f"{tuple(np.shape(self.W))}, factors {[tuple(np.shape(f)) for f in self.factors]}",
            ),
            (
                "trajectory",
                f"{len(self.trajectory)} records, t in [0, {num(self.trajectory.times[-1])}]",
            ),
            ("wall time", f"{num(self.wall_time, 3)} s"),
        ]

    def __repr__(self) -> str:
        return render(self._title(), self._rows())

    def _repr_html_(self) -> str:
        return render_html(self._title(), self._rows())


@dataclass
class GLRLResult:
    """Output of :func:`glrl`.

    Attributes:
        phases: list of :class:`GLRLPhase`, in order.
        matrix: the GLRL limit ``W`` (``(m, n)``); ``loss = f(matrix)``.
        factors: final factor(s).
        final_lambda: top eigenvalue (singular value) of ``-grad f`` at the limit (``<= tol``
            when ``status == "kkt"``).
        kkt: residuals at the limit, see :func:`kkt_residuals`.
        status: ``"kkt"`` (stopped by the eigenvalue test), ``"max_rank"``, ``"interrupted"``
            (Ctrl-C: the phases finished before it).
        eps, tol: the arguments of :func:`glrl`.
        psd: PSD GLRL (``W = U U^T``) or asymmetric (``W = U V^T``); ``symmetric`` is its
            deprecated spelling (a read-only property that warns once).
        info: ``wall_time``, ``phase_gtol``, ``grad0_norm`` and ``replay``, the settings the
            phase flows ran with (``rtol`` and ``atol`` as given to them before the padding's
            rescaling, ``padded``, ``solver``): what a replay of a phase needs
            (:func:`rankbias.glrl._replay.replay_phase_matrices`).
    """

    phases: list[GLRLPhase]
    matrix: np.ndarray
    factors: tuple[np.ndarray, ...]
    loss: float
    final_lambda: float
    kkt: dict
    status: str
    eps: float
    tol: float
    psd: bool
    info: dict = field(default_factory=dict)

    @property
    def symmetric(self) -> bool:
        """Deprecated spelling of :attr:`psd` (warns once)."""
        warn_renamed("GLRLResult", "symmetric", "psd")
        return self.psd

    @property
    def rank(self) -> int:
        return len(self.phases)

    @property
    def levels(self) -> np.ndarray:
        """Loss plateaus ``f(W_0), f(W_1), ..., f(W_R)``."""
        if not self.phases:
            return np.array([self.loss])
        return np.array([self.phases[0].loss_before] + [p.loss for p in self.phases])

    def _title(self) -> str:
        return (
            f"GLRLResult({'PSD' if self.psd else 'asymmetric'}, status={self.status!r}, "
            f"rank={self.rank})"
        )

    def _rows(self):
        rows = [
            ("W", f"{tuple(np.shape(self.matrix))}"),
            ("loss", num(self.loss)),
            ("final lambda", f"{num(self.final_lambda)} (tol {num(self.tol)})"),
            (
                "kkt",
                ", ".join(
                    f"{k} {num(v, 3)}"
                    for k, v in self.kkt.items()
                    if not k.endswith("_rel") and k != "grad0_norm"
                ),
            ),
            ("eps", num(self.eps)),
        ]
        shown = self.phases[:8]
        for p in shown:
            rows.append(
                (
                    f"phase {p.rank}",
                    f"lam {num(p.lam)}, escape {num(p.escape_time)}, "
                    f"f {num(p.loss)}" + ("" if p.converged else ", NOT converged"),
                )
            )
        if len(self.phases) > len(shown):
            rows.append(("...", f"{len(self.phases) - len(shown)} more phases"))
        if "wall_time" in self.info:
            rows.append(("wall time", f"{num(self.info['wall_time'], 3)} s"))
        return rows

    def __repr__(self) -> str:
        return render(self._title(), self._rows())

    def _repr_html_(self) -> str:
        return render_html(self._title(), self._rows())

    def plot(self, axes=None):
        """Loss staircase with the phase levels (labelled right of the axes) and the singular
        values per phase, rounding noise grey (see :func:`rankbias.plots.plot_glrl`); returns
        the two Axes."""
        return plot_glrl(self, axes)

    def summary(self) -> dict:
        """JSON-able numbers: per-phase ``lam``, loss, escape time; KKT residuals."""
        return dict(
            status=self.status,
            rank=self.rank,
            loss=self.loss,
            final_lambda=self.final_lambda,
            kkt=self.kkt,
            eps=self.eps,
            tol=self.tol,
            phases=[
                dict(
                    rank=p.rank,
                    lam=p.lam,
                    loss=p.loss,
                    escape_time=p.escape_time,
                    t_mid=p.t_mid,
                    converged=p.converged,
                    grad_norm=p.grad_norm,
                    wall_time=p.wall_time,
                )
                for p in self.phases
            ],
        )
