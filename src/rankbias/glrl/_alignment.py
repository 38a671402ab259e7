r"""Aligning a flow with a GLRL phase: the time at which the loss crosses the phase's mid
level ``(f(W_{r-1}) + f(W_r)) / 2``.

GLRL's phase clocks and gradient flow's clock differ by one shift per phase; each is
measured at this crossing (:attr:`rankbias.glrl.GLRLPhase.t_mid`, and the crossings of the
gradient-flow records in :func:`rankbias.compare_with_glrl`).
"""

from __future__ import annotations

import numpy as np

from ..problems.base import Problem
from ..trajectory import Trajectory
from ._replay import replay_flow

__all__ = ["mid_time", "refine_mid", "MID_GRID_MIN_RECORDS"]

#: Fewest records of a refinement: 161 save times across ``crude +- 4 / lam`` (one every
#: ``0.05 / lam``, a twentieth of the phase's local time constant, so that the cubic in
#: ``logit q`` of :func:`mid_time` interpolates between close records) plus the two that
#: :func:`rankbias.dynamics.save_times` adds (``t = 0`` and ``t_min``).
MID_GRID_MIN_RECORDS = 163


def mid_time(traj: Trajectory, f_before: float, f_after: float, after: float = 0.0) -> float:
    """Time ``>= after`` where ``f`` crosses ``(f_before + f_after) / 2`` (NaN if never).

    The drop is close to a logistic ``q = 1 / (1 + e^{2 lam (t - t_mid)})`` in the
    normalised loss ``q = (f - f_after) / (f_before - f_after)``, so we interpolate
    ``logit q`` (cubic through up to 4 records around the crossing), not ``f``.
    """
    span = f_before - f_after
    if not span > 0:
        return float("nan")
    sel = traj.times >= after
    idx = np.nonzero(sel & (traj.loss - f_after <= 0.5 * span))[0]
    if idx.size == 0:
        return float("nan")
    i = int(idx[0])
    if i == 0 or not sel[i - 1]:
        return float(traj.times[i])
    lo, hi = max(i - 2, 0), min(i + 2, len(traj.times))
    t = traj.times[lo:hi]
    q = np.clip((traj.loss[lo:hi] - f_after) / span, 1e-300, 1 - 1e-16)
    z = np.log(q) - np.log1p(-q)
    ok = np.isfinite(z) & (np.abs(z) < 30)
    a, b = traj.times[i - 1], traj.times[i]
    if ok.sum() < 2:
        return float(b)
    t, z = t[ok], z[ok]
    c = np.polyfit(t - a, z, min(3, t.size - 1))
    roots = np.roots(c) + a
    roots = roots[np.isreal(roots)].real
    roots = roots[(roots >= a - 1e-12) & (roots <= b + 1e-12)]
    if roots.size == 0:
        za, zb = np.interp([a, b], t, z)
        return float(a + za / (za - zb) * (b - a)) if za != zb else float(b)
    return float(roots[0])


def refine_mid(
    problem: Problem,
    start,
    psd: bool,
    crude: float,
    lam: float,
    f_before: float,
    f_after: float,
    rtol: float,
    atol: float,
    n_save: int,
    save_matrices: bool,
) -> float:
    """Re-run the phase flow to just past ``crude`` with a dense save grid around it.

    At the padded width of the phases (:func:`~rankbias.glrl._replay.replay_flow`), with as
    many records as the phase flows (``n_save``, at least :data:`MID_GRID_MIN_RECORDS`:
    ``n_save - 2`` times in ``crude +- 4 / lam``) and the same ``save_matrices``: the
    refinement is the phases' own compiled flow (one program instead of two: the first
    30 x 30 call in a fresh process went from 9.1 to 6.1 s). A rank-``k`` truth compiled
    ``k`` refinements at the phases' own widths before the padding. The padded run takes the
    same steps as the unpadded one (zero columns stay exactly zero; RMS tolerances are
    rescaled): measured on the 8 x 8 case of ``tests/test_glrl.py``, phase 1: 739 steps (129
    rejected) either way, ``t_mid`` equal to 1e-14 and ``W`` to 6e-17."""
    k = max(int(n_save), MID_GRID_MIN_RECORDS) - 2  # save_times adds 0 and t_min
    grid = crude + np.linspace(-4.0, 4.0, k) / lam
    if grid[0] <= 1e-3 * grid[-1]:  # an early crossing: same length, positive times
        grid = np.linspace(1e-3 * grid[-1], grid[-1], k)
    tr = replay_flow(
        problem,
        start,
        psd,
        grid,
        t_max=float(grid[-1]),
        rtol=rtol,
        atol=atol,
        padded=True,
        save_matrices=save_matrices,
    )
    return mid_time(tr, f_before, f_after)
