"""Runs that did not end well (:func:`rankbias.status.ended_well`): which they are, how many a
figure shows, and the ``x`` marking where each stopped."""

from __future__ import annotations

import numpy as np

from ..status import ended_well


def _run_statuses(st, seeds: list[str]) -> np.ndarray:
    """The ``status`` strings of ``st`` in the run order of :func:`_summary` (``(n_runs,
    ...)``; one run without seed axes)."""
    seeds = [s for s in seeds if s in st.dims]
    if not seeds:
        return np.asarray(st.values, dtype=object)[None]
    return np.asarray(st.stack(_run=seeds).transpose("_run", ...).values, dtype=object)


def not_ended_well(statuses: np.ndarray) -> np.ndarray:
    """Which entries are runs that are done ("" is a run not done) and did not end well."""
    flat = [bool(s) and not ended_well(str(s)) for s in np.ravel(statuses)]
    return np.asarray(flat, dtype=bool).reshape(np.shape(statuses))


class _Marks:
    """Counts of the runs a figure marks (did not end well) and of the done runs it shows."""

    def __init__(self):
        self.bad: dict[str, int] = {}
        self.shown = 0

    def count(self, statuses: np.ndarray) -> None:
        for s in np.ravel(statuses):
            if s:
                self.shown += 1
        for s in np.ravel(statuses)[np.ravel(not_ended_well(statuses))]:
            self.bad[str(s)] = self.bad.get(str(s), 0) + 1

    def note(self) -> str:
        if not self.bad:
            return ""
        k = sum(self.bad.values())
        what = ", ".join(f"{n} {s}" for s, n in sorted(self.bad.items()))
        return f"x: a run that did not end well ({k} of {self.shown} runs: {what})"


def _mark_ends(ax, x, vals: np.ndarray, statuses: np.ndarray, color, logy: bool) -> None:
    """An ``x`` at the last finite point of each run (row of ``vals``) that did not end well:
    where a run cut short by ``max_steps``/``t_max`` or gone wrong stopped."""
    for y, bad in zip(vals, not_ended_well(statuses), strict=True):
        ok = np.isfinite(y) & ((y > 0) if logy else True)
        if bad and ok.any():
            i = np.flatnonzero(ok)[-1]
            ax.plot(x[i], y[i], ls="none", marker="x", ms=7, mew=1.5, color=color, zorder=5)
