r"""Replaying a GLRL phase: its gradient flow re-run from the phase start with the records
at chosen times, exact at those times (no interpolation).

The one mechanism behind the refinement of each phase's mid-level crossing
(:func:`rankbias.glrl._alignment.refine_mid`) and the GLRL side of
:func:`rankbias.compare_with_glrl`, which evaluates phase ``r`` at the gradient-flow record
times minus the alignment shift.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..dynamics._common import deliberate_atol
from ..dynamics.flow.api import gradient_flow
from ..problems.base import Problem
from ..trajectory import Trajectory
from ._factors import append_direction, padded_model, phase_model, width, zero_factors
from ._results import GLRLResult

__all__ = ["ESCAPE_ATOL", "phase_start", "replay_flow", "replay_phase_matrices"]

#: The phases' absolute tolerance is at most ``ESCAPE_ATOL * sqrt(eps)``: the appended column
#: starts with entries ``~sqrt(eps)``, so while it is tiny the error control is relative to
#: ``ESCAPE_ATOL``, and a relative error of the growing column stays a shift of the escape
#: time, ``~ ESCAPE_ATOL / lam`` at most. ``1e-3`` (until issue 30) allowed a shift of 6.0e-4
#: on the 12 x 12 case of ``tests/test_glrl.py`` (phase 1, ``eps = 1e-30``; against Tsit5 at
#: ``rtol = 1e-13``, ``atol = 1e-22``; the RKC flow before issue 30 stayed at 4.9e-5 only
#: through its rejected steps), and the shift depends on where a run's records clip its steps:
#: the alignment's run and a replay with other record times crossed the mid level 1.2e-4
#: apart, enough to measure distances of 1e-4 between gradient flow and GLRL where the law
#: predicts 1e-5 (benchmarks/RESULTS.md, section 19). With ``1e-5``: 1.2e-6 and 4e-7.
ESCAPE_ATOL = 1e-5


def phase_start(res: GLRLResult, r: int, shape) -> tuple[np.ndarray, ...]:
    """Factors at the start of phase ``r`` (1-based): those of ``W_{r-1}`` with
    ``sqrt(eps)`` times the phase's direction appended."""
    ph = res.phases[r - 1]
    before = res.phases[r - 2].factors if r > 1 else zero_factors(shape, res.psd)
    return append_direction(before, ph.direction, res.eps, res.psd)


def replay_flow(
    problem: Problem,
    start,
    psd: bool,
    times: np.ndarray,
    *,
    t_max: float,
    rtol: float,
    atol: float,
    padded: bool,
    save_matrices: bool,
    solver: str = "rkc",
) -> Trajectory:
    """The phase flow from ``start`` to ``t_max``, recorded at ``times`` (plus the two records
    that :func:`rankbias.dynamics.save_times` adds, ``t = 0`` and the first step).

    ``padded``: at the width of the phase flows, padded to a multiple of
    :data:`~rankbias.glrl._factors.WIDTH_BLOCK` (the same compiled program as the phases).
    The error norm is an RMS over the state: the padding's exact zeros would loosen it by
    ``sqrt(R / r)``, so ``rtol`` and ``atol`` are then scaled by ``sqrt(r / R)``; the padded
    run takes the same steps as the unpadded one (measured on the 8 x 8 case of
    ``tests/test_glrl.py``, phase 1: 739 steps, 129 rejected, either way). Otherwise at the
    phase's own width ``r`` with the tolerances as given. ``solver``: as in
    :func:`rankbias.gradient_flow` (``"rkc"``, what the dense phases run by default).
    """
    r = width(start, psd)
    if padded:
        model, params = padded_model(problem.shape, start, psd)
        k = float(np.sqrt(max(r, 1) / width(params, psd)))
    else:
        model, params, k = phase_model(problem.shape, psd, r), start, 1.0
    # atol below the learned factors' rounding on purpose: the new column is ~sqrt(eps)
    with deliberate_atol():
        return gradient_flow(
            problem,
            model,
            tuple(jnp.asarray(f) for f in params),
            t_max=t_max,
            gtol=None,
            rtol=rtol * k,
            atol=atol * k,
            solver=solver,
            n_save=2,
            save_at=times,
            save_matrices=save_matrices,
        )


def replay_phase_matrices(
    problem: Problem,
    res: GLRLResult,
    r: int,
    times,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    padded: bool | None = None,
    solver: str | None = None,
) -> np.ndarray:
    """``W`` of GLRL phase ``r`` (1-based) at the phase-clock ``times`` (``(K,)``), as a
    ``(K, m, n)`` array. ``rtol``, ``atol``, ``padded``, ``solver``: see
    :func:`replay_flow`; ``None`` takes the setting the phase ran with
    (``res.info["replay"]``; its ``"auto"`` solver is ``"rkc"`` on the dense path)."""
    ran = res.info.get("replay", {})
    rtol = ran["rtol"] if rtol is None else rtol
    atol = ran["atol"] if atol is None else atol
    padded = ran["padded"] if padded is None else padded
    solver = ran.get("solver", "auto") if solver is None else solver
    times = np.asarray(times, dtype=np.float64)
    tr = replay_flow(
        problem,
        phase_start(res, r, problem.shape),
        res.psd,
        times,
        t_max=float(max(times.max(), 1e-6)),
        rtol=rtol,
        atol=atol,
        padded=padded,
        save_matrices=True,
        solver="rkc" if solver == "auto" else solver,
    )
    idx = np.clip(np.searchsorted(tr.times, times), 0, len(tr.times) - 1)
    assert tr.matrices is not None  # save_matrices=True
    return tr.matrices[idx]
