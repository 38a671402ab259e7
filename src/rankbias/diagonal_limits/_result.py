"""What :func:`rankbias.saddle_to_saddle` and :func:`rankbias.diagonal_limit` return."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._repr import num, nums, render, render_html
from ..plots.diagonal import plot_diagonal_limit
from ._paths import rescaled_path

__all__ = ["DiagonalLimit"]


@dataclass(frozen=True, repr=False, eq=False)
class DiagonalLimit:
    """The ``alpha -> 0`` limit of a diagonal network's gradient flow: a piecewise-constant
    path in the rescaled time ``tau = t / h(alpha)`` (see :func:`rankbias.diagonal_time_scale`).

    The path sits at the saddle ``betas[p]`` for ``times[p] <= tau < times[p + 1]`` and at
    ``betas[-1]`` (the limit, a minimiser of ``sum_i t_i^+ beta_i^+ + t_i^- beta_i^-`` over
    ``X beta = y`` when ``X beta = y`` is consistent) after the last jump.

    Attributes:
        times: ``(P+1,)`` jump times ``tau_0 = 0 < tau_1 < ... < tau_P`` (rescaled).
        betas: ``(P+1, d)`` saddles; ``betas[0] = 0``.
        s: ``(P+1, d)`` accumulated correlations ``S_i(tau_p) = int_0^tau_p u_i`` at each jump,
            in ``[-t_i^-, t_i^+]`` (Pesme & Flammarion's ``s``, Zhao et al.'s ``s^(p)``).
        entering: ``(P,)`` the coordinate that activates at jump ``p`` (``1 .. P``).
        t_plus, t_minus: ``(d,)`` the growth thresholds (all 1 at depth 2).
        depth: the network's depth ``L`` (the time scale's exponent); ``algorithm``: its name.
        well_posed: the argmin of every step was unique (the papers' assumption).
        converged: the recursion reached ``X^T (y - X beta) = 0``.
    """

    times: np.ndarray
    betas: np.ndarray
    s: np.ndarray
    entering: np.ndarray
    t_plus: np.ndarray
    t_minus: np.ndarray
    depth: int
    algorithm: str
    well_posed: bool
    converged: bool

    @property
    def limit(self) -> np.ndarray:
        """``(d,)`` the end point ``betas[-1]``."""
        return self.betas[-1]

    @property
    def signs(self) -> np.ndarray:
        """``(P+1, d)`` signs of the saddles (-1, 0, +1)."""
        return np.sign(self.betas).astype(int)

    @property
    def active_sets(self) -> list[tuple[int, ...]]:
        """The support of each saddle ``betas[p]`` (coordinates, increasing)."""
        return [tuple(int(i) for i in np.flatnonzero(b)) for b in self.betas]

    @property
    def deactivations(self) -> list[tuple[int, ...]]:
        """Per jump ``p = 1 .. P``: the coordinates that left the support (were nonzero at
        ``p - 1``, are zero at ``p``)."""
        nz = self.betas != 0
        return [tuple(int(i) for i in np.flatnonzero(nz[p - 1] & ~nz[p])) for p in
                range(1, len(self.times))]  # fmt: skip

    def beta_at(self, tau) -> np.ndarray:
        """The limit path at rescaled time(s) ``tau`` (scalar -> ``(d,)``, ``(T,)`` ->
        ``(T, d)``): ``betas[p]`` with ``p`` the last jump at or before ``tau`` (right-continuous;
        ``0`` for ``tau < tau_1``)."""
        t = np.asarray(tau, dtype=float)
        if np.any(np.isnan(t)):
            raise ValueError("tau: contains NaN; pass rescaled times t / h(alpha)")
        p = np.searchsorted(self.times, t, side="right") - 1
        return self.betas[np.maximum(p, 0)]

    def objective(self, beta=None) -> float:
        """``sum_i t_i^+ beta_i^+ + t_i^- beta_i^-`` at ``beta`` (default: the limit)."""
        b = self.limit if beta is None else np.asarray(beta, dtype=float)
        with np.errstate(invalid="ignore"):  # inf * 0 -> 0 below
            terms = np.where(b > 0, self.t_plus * b, 0.0) + np.where(b < 0, -self.t_minus * b, 0.0)
        return float(np.sum(terms))

    def to_xarray(self):
        """An ``xarray.Dataset`` over ``(step, coord)``: ``beta``, ``s``, ``sign``, with the
        coordinates ``time`` (rescaled, on ``step``) and ``entering`` (``-1`` at step 0), and
        ``t_plus``/``t_minus`` on ``coord``."""
        import xarray as xr  # heavy; only here

        P1, d = self.betas.shape
        entering = np.concatenate([[-1], self.entering]).astype(int)
        return xr.Dataset(
            {
                "beta": (("step", "coord"), self.betas),
                "s": (("step", "coord"), self.s),
                "sign": (("step", "coord"), self.signs),
                "t_plus": (("coord",), self.t_plus),
                "t_minus": (("coord",), self.t_minus),
            },
            coords={
                "step": np.arange(P1),
                "coord": np.arange(d),
                "time": ("step", self.times),
                "entering": ("step", entering),
            },
            attrs={
                "algorithm": self.algorithm,
                "depth": self.depth,
                "well_posed": int(self.well_posed),
                "converged": int(self.converged),
            },
        )

    def plot(self, ax=None, *, flow=None, alpha: float | None = None, two_branch: bool = False,
             max_labels: int = 8):  # fmt: skip
        """Coordinates against rescaled time: the limit path as steps (solid), jumps dotted.

        ``flow``: optionally a flow to overlay (a Trajectory-like object with ``.times`` and
        ``.matrices`` ``(T, d)`` or ``(T, d, 1)``, or a pair ``(times, betas)``), drawn thin on
        the rescaled time ``t / h(alpha)`` (``alpha`` then required; ``two_branch`` as in
        :func:`rankbias.diagonal_time_scale`). The ``max_labels`` largest coordinates of the
        limit are named in the legend. Returns the Axes."""
        path = None
        if flow is not None:
            if alpha is None:
                raise ValueError("alpha: required with flow= (to rescale its time)")
            path = rescaled_path(flow, None, alpha, self.depth, two_branch, self.betas.shape[1])
        return plot_diagonal_limit(self, ax=ax, flow=path, max_labels=max_labels)

    def _title(self) -> str:
        return f"DiagonalLimit({self.algorithm}, depth={self.depth}, {len(self.entering)} jumps)"

    def _rows(self):
        t = self.t_plus
        return [
            ("jump times", nums(self.times[1:])),
            ("entering", nums(list(self.entering))),
            ("support", f"{np.count_nonzero(self.limit)} of {self.limit.size}"),
            ("objective", num(self.objective())),
            (
                "thresholds",
                "1"
                if np.all(t == 1) and np.all(self.t_minus == 1)
                else f"t+ in [{num(t.min())}, {num(t.max())}], t- in [{num(self.t_minus.min())}, "
                f"{num(self.t_minus.max())}]",
            ),  # fmt: skip
            ("well posed", num(self.well_posed)),
            ("converged", num(self.converged)),
        ]

    def __repr__(self) -> str:
        return render(self._title(), self._rows())

    def _repr_html_(self) -> str:
        return render_html(self._title(), self._rows())
