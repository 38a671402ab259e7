"""The times at which a flow records: a log-spaced grid plus the user's ``save_at``."""

from __future__ import annotations

import numpy as np

from .._common import check_record_points


def save_times(
    t_max: float, n_save: int, t_min: float | None = None, extra=None, spacing: str = "log"
) -> np.ndarray:
    """``0``, then ``n_save - 1`` log-spaced times from ``t_min`` to ``t_max``, plus ``extra``;
    with ``spacing="linear"``: ``n_save`` evenly spaced times ``t_max j / (n_save - 1)``,
    ``j = 0 .. n_save - 1`` (``t_min`` unused).

    ``t_min`` defaults to ``min(1e-2, t_max / 1e4)``; the result is sorted and has no
    duplicates (float64, at most ``n_save + len(extra)`` times in ``[0, t_max]``)."""
    if spacing == "linear":
        grid = np.linspace(0.0, t_max, max(n_save, 2))
    else:
        t_min = min(1e-2, t_max / 1e4) if t_min is None else t_min
        grid = np.concatenate([[0.0], np.geomspace(t_min, t_max, max(n_save - 1, 1))])
    if extra is not None:
        extra = np.asarray(extra, dtype=np.float64).ravel()
        if np.any(~np.isfinite(extra)) or np.any(extra < 0) or np.any(extra > t_max):
            raise ValueError(f"`save_at` times must lie in [0, t_max={t_max:g}]")
        grid = np.concatenate([grid, extra])
    return np.unique(grid)


def check_save_at(save_at, t_max: float) -> np.ndarray:
    """``save_at`` (times in any order) as a sorted float64 vector in ``[0, t_max]``; raises
    ``ValueError`` for non-finite or out-of-range times, or more than ``MAX_SAVE``."""
    return check_record_points(save_at, t_max, steps=False)
