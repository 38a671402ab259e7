"""Layer-wise gradient descent (the core engine) against the decoupled recursion: where
round-off pushes the factors off the decoupled path."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._repr import num, nums, render
from .._validation import check_int
from ..dynamics._interrupt import raise_interrupts
from ..dynamics.descent.api import gradient_descent
from ..models import DeepFactorization
from ..problems.estimation import MatrixEstimation
from ._decoupled import DecoupledDynamics
from ._targets import paper_basis


class DriftWarning(UserWarning):
    """Layer-wise gradient descent left the decoupled (diagonal, shared) path."""


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


@raise_interrupts()  # a run cut short would be a wrong result: Ctrl-C propagates
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
