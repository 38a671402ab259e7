r"""One GLRL phase: the gradient flow of the factor objective from the phase start, run in
chunks until it is stationary.

One engine for both paths. :class:`PhaseFlow` holds what every chunk shares (the problem,
the model at the padded width, tolerances, solver, records) and :meth:`PhaseFlow.chunk` runs
one chunk:

* dense path: :func:`rankbias.gradient_flow` with the tolerances rescaled for the padding;
* factor-only path (large completions): the flow's sparse backend, which may stop early
  once past the escape, after which :func:`~rankbias.glrl._polish.newton_polish` finishes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..dynamics._common import deliberate_atol
from ..dynamics._rkc import spectral_radius
from ..dynamics._sparse import SparseCompletion, record
from ..dynamics.flow.api import gradient_flow
from ..dynamics.flow.solvers import vector_field as _vector_field
from ..models import Model
from ..problems.base import Problem
from ..trajectory import Trajectory
from ._factors import padded_model, product, unpad, width
from ._polish import POLISH_FACTOR, newton_polish

__all__ = ["PhaseFlow", "run_phase"]


@dataclass(frozen=True)
class PhaseFlow:
    """The flow of one phase at the padded width.

    Attributes:
        problem, model: the problem and the factorization at the padded width.
        rtol, atol: as given to :func:`rankbias.gradient_flow` (dense path: already scaled
            by ``sqrt(r / R)``, see :func:`~rankbias.glrl._replay.replay_flow`).
        solver, n_save, save_matrices: as in :func:`rankbias.gradient_flow`.
        flow_gtol: factor-only path: past the escape a chunk stops as soon as
            ``||grad L|| <= flow_gtol``; ``None``: the dense path (each chunk runs to its
            ``t_max``).
    """

    problem: Problem
    model: Model
    rtol: float
    atol: float
    solver: str
    n_save: int
    save_matrices: bool
    flow_gtol: float | None = None

    def _run(self, params, t_max: float, t_min: float | None, **extra) -> Trajectory:
        with deliberate_atol():
            return gradient_flow(
                self.problem,
                self.model,
                params,
                t_max=t_max,
                rtol=self.rtol,
                atol=self.atol,
                solver=self.solver,
                n_save=self.n_save,
                t_min=t_min,
                save_matrices=self.save_matrices,
                **extra,
            )

    def chunk(self, params, t_max: float, t_min: float | None, hold: float = 0.0) -> Trajectory:
        """One chunk of ``t_max`` from ``params``.

        Dense path: ``gtol=None``, with width ``r < d`` the engine's own steady-state test
        falls back to a Hessian test that the caller's convergence loop replaces.

        Factor-only path: the sparse backend. Past ``hold`` (the escape) it stops as soon as
        ``||grad L|| <= flow_gtol`` after the loss has dropped: cheaper than doubling
        chunks. Before ``hold`` it may not stop (``gtol`` 1e-300, the same compiled solve):
        the gradient is also small, and the loss slightly lower, early in the escape, where
        Newton-CG would start outside the basin. ``curvature_tol=inf``: the end point is a
        minimiser at width ``r`` but a saddle of the padded width (the next phase's
        direction), which the Lanczos test would reject.
        """
        if self.flow_gtol is None:
            return self._run(params, t_max, t_min, gtol=None)
        sparse = dict(curvature_tol=np.inf, backend="sparse")
        if hold <= 0:
            return self._run(params, t_max, t_min, gtol=self.flow_gtol, **sparse)
        if hold >= t_max:
            return self._run(params, t_max, t_min, gtol=1e-300, **sparse)
        first = self._run(params, hold, t_min, gtol=1e-300, **sparse)
        rest = (t_max - hold) / 1e4 if t_min is None else min(t_min, (t_max - hold) / 1e4)
        second = self._run(
            tuple(jnp.asarray(p) for p in first.final_params),
            t_max - hold,
            rest,
            gtol=self.flow_gtol,
            **sparse,
        )
        return concat([first, replace(second, times=second.times + first.times[-1])])


def run_phase(
    problem,
    factors,
    psd: bool,
    t_escape: float,
    lam: float,
    *,
    phase_gtol: float,
    max_time: float,
    n_save: int,
    rtol: float,
    atol: float,
    solver: str,
    record_matrices: bool,
    sparse: bool,
    polish: bool = True,
):
    """Flow a phase from ``factors`` (width ``r``) until ``||grad L|| <= phase_gtol`` or
    ``max_time``; returns ``(trajectory, factors, converged, ||grad L||)`` at width ``r``.

    ``sparse``: the factor-only path, finished by Newton-CG when ``polish``."""
    r = width(factors, psd)
    # Large problems: the flow runs until it is past the escape and within POLISH_FACTOR
    # phase_gtol of stationarity, then Newton-CG polishes to phase_gtol.
    flow_gtol = POLISH_FACTOR * phase_gtol if (sparse and polish) else phase_gtol
    # First chunk: the escape plus a margin of a few local time constants 1/lam; later
    # chunks double.
    t_chunk = 1.5 * t_escape + 20.0 / lam
    model, padded = padded_model(problem.shape, factors, psd)
    if sparse:
        data = SparseCompletion.from_problems(problem, model)
        if solver == "auto":
            solver = _auto_solver(data, model, padded, 4.0 * t_chunk)
        # The factor-only phases keep their tolerances: Newton-CG finishes them, the flow
        # only carries them into the basin.
        flow = PhaseFlow(problem, model, rtol, atol, solver, n_save, record_matrices, flow_gtol)
        hold = 1.2 * t_escape  # the first chunk may not stop before the escape
    else:
        k = float(np.sqrt(max(r, 1) / width(padded, psd)))  # RMS norm over the padding
        solver = "rkc" if solver == "auto" else solver
        flow = PhaseFlow(problem, model, rtol * k, atol * k, solver, n_save, record_matrices)
        hold = 0.0
    params = tuple(jnp.asarray(f) for f in padded)
    pieces, t0 = [], 0.0
    converged = False
    while True:
        t_min = min(1e-2, t_chunk / 1e4) if not pieces else t_chunk / 1e3
        tr = flow.chunk(params, t_chunk, t_min, hold)
        hold = 0.0
        tr = replace(tr, times=tr.times + t0)
        pieces.append(tr)
        t0 += float(tr.times[-1] - t0)
        params = tuple(jnp.asarray(p) for p in tr.final_params)
        gn = float(tr.grad_norm[-1])
        if gn <= flow_gtol:
            converged = gn <= phase_gtol
            break
        if t0 >= max_time:
            break
        t_chunk = min(2.0 * t_chunk, max_time - t0) if t0 < max_time else t_chunk
    traj = concat(pieces)
    if sparse and polish and not converged and gn <= flow_gtol:
        params, gn, nit = newton_polish(problem, params, psd, phase_gtol, data=data)
        converged = gn <= phase_gtol
        last = record(data, model, tuple(jnp.asarray(p) for p in params), False)
        traj = _with_polished_end(traj, last, params, psd, nit)
    params = unpad(params, r, psd)
    traj = replace(traj, final_params=unpad(traj.final_params, r, psd))
    return traj, tuple(np.asarray(p, dtype=np.float64) for p in params), converged, gn


def _with_polished_end(traj: Trajectory, last: dict, params, psd: bool, nit: int):
    """``traj`` with its last record replaced by the polished point (a new Trajectory).
    ``effective_ranks`` and ``matrices`` stay those of the flow's last record, as they
    always were."""
    loss, grad_norm, sv = traj.loss.copy(), traj.grad_norm.copy(), traj.singular_values.copy()
    loss[-1], grad_norm[-1] = float(last["loss"]), float(last["grad_norm"])
    sv[-1] = np.asarray(last["sv"])
    final_params = tuple(np.asarray(p, dtype=np.float64) for p in params)
    return replace(
        traj,
        loss=loss,
        grad_norm=grad_norm,
        singular_values=sv,
        final_params=final_params,
        final_matrix=product(final_params, psd),
        info={**traj.info, "polish_iterations": nit},
    )


@eqx.filter_jit
def _sparse_rho(data, model, y0, iters: int = 30):
    """Spectral radius of the factor objective's Hessian at ``y0``: the RKC solver's own
    power iteration (:func:`~rankbias.dynamics.spectral_radius`) on exact JVPs of the sparse
    backend's vector field."""
    vf = _vector_field(model)
    return spectral_radius(lambda y: vf(0.0, y, data), y0, iters)


def _auto_solver(data, model, params, horizon) -> str:
    """Tsit5 when the phase is not stiff, RKC otherwise: with Hessian spectral radius
    ``rho`` (twice its value at the phase start: the learned direction adds curvature),
    an explicit 5th-order method needs about ``rho T / 3.3`` steps for stability alone
    over a phase of length ``T``; below ~3000 such steps it beats RKC, which pays two
    Jacobian-vector products per step for its spectral-radius estimate."""
    y0 = model.flatten(tuple(jnp.asarray(p) for p in params))
    rho = 2.0 * float(_sparse_rho(data, model, y0))
    return "tsit5" if rho * horizon / 3.3 <= 3000.0 else "rkc"


def concat(pieces: list[Trajectory]) -> Trajectory:
    """Consecutive chunks as one trajectory (times already on one clock)."""
    if len(pieces) == 1:
        return pieces[0]
    first = pieces[0]
    # Drop each later piece's t = 0 record (it repeats the previous piece's end).
    cat = lambda name: np.concatenate(
        [getattr(first, name)] + [getattr(p, name)[1:] for p in pieces[1:]]
    )
    mats = None if first.matrices is None else cat("matrices")
    info = dict(pieces[-1].info)
    info["num_steps"] = sum(p.info.get("num_steps", 0) for p in pieces)
    info["wall_time"] = sum(p.info.get("wall_time", 0.0) for p in pieces)
    info["chunks"] = len(pieces)
    return Trajectory(
        times=cat("times"),
        loss=cat("loss"),
        grad_norm=cat("grad_norm"),
        singular_values=cat("singular_values"),
        final_params=pieces[-1].final_params,
        final_matrix=pieces[-1].final_matrix,
        matrices=mats,
        info=info,
    )
