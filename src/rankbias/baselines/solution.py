r"""What the convex baselines return: :class:`ConvexSolution` (the matrix, its status and
certificate) and :func:`nuclear_norm`, the objective it certifies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._repr import num, render, render_html
from .._validation import check_matrix

__all__ = ["ConvexSolution", "nuclear_norm"]


def nuclear_norm(W) -> float:
    """``||W||_* = sum_i sigma_i(W)`` of a real, finite ``(m, n)`` matrix ``W``.

    Raises:
        ValueError: ``W`` not 2-D (a vector has no nuclear norm), empty, complex or with
            NaN/inf entries (the SVD would fail with an unnamed ``LinAlgError``).
    """
    W = check_matrix(W, "W")
    return float(np.sum(np.linalg.svd(W, compute_uv=False)))


@dataclass
class ConvexSolution:
    """A baseline's answer: ``matrix`` plus how well it was solved.

    ``np.asarray(sol)`` gives the matrix. ``objective`` is ``||X||_*`` (``tr X`` for PSD),
    ``dual_objective`` a certified lower bound (from a dual-feasible rescaling of the
    solver's multipliers), ``duality_gap = max(0, objective - dual_objective)`` (the raw,
    possibly slightly negative difference is ``info["duality_gap_raw"]``: ``X`` fits the
    data only up to ``constraint_residual = max |A(X) - b|``).

    ``status``: ``"optimal"`` (the solver's tolerance met), ``"optimal_inaccurate"`` (not met:
    the certificate says how far), ``"time_budget"`` (stopped at the caller's
    ``time_budget``: the point at the stop, certified the same way) or ``"closed_form"``
    (the data determine the matrix).
    """

    matrix: np.ndarray
    objective: float
    status: str
    solver: str
    psd: bool
    dual_objective: float = np.nan
    duality_gap: float = np.nan
    constraint_residual: float = np.nan
    info: dict = field(default_factory=dict)

    def __array__(self, dtype=None, copy=None):
        return self.matrix if dtype is None else self.matrix.astype(dtype)

    @property
    def shape(self):
        return self.matrix.shape

    def _rows(self):
        return [
            ("matrix", f"{self.matrix.shape}" + (" PSD" if self.psd else "")),
            ("objective", num(self.objective, 8)),
            ("dual objective", num(self.dual_objective, 8)),
            ("duality gap", num(self.duality_gap, 3)),
            ("constraint residual", num(self.constraint_residual, 3)),
        ] + [(k, num(v)) for k, v in self.info.items() if isinstance(v, (int, float, str))][:6]

    def __repr__(self) -> str:
        return render(
            f"ConvexSolution(status={self.status!r}, solver={self.solver!r})", self._rows()
        )

    def _repr_html_(self) -> str:
        return render_html(
            f"ConvexSolution(status={self.status!r}, solver={self.solver!r})", self._rows()
        )

    def summary(self) -> dict:
        return dict(
            objective=self.objective,
            dual_objective=self.dual_objective,
            duality_gap=self.duality_gap,
            constraint_residual=self.constraint_residual,
            status=self.status,
            solver=self.solver,
            psd=self.psd,
            **self.info,
        )


def default_psd(problem) -> bool:
    """The PSD variant a problem asks for by default: ``problem.symmetric`` (symmetric
    completion), else ``False``."""
    return bool(getattr(problem, "symmetric", False))
