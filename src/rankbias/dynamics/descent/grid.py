"""Record steps of a gradient-descent or optimizer run: ``0``, ``n_save - 1`` log-spaced steps
and the user's ``save_at``, padded to a length the compiled loop can share between runs."""

from __future__ import annotations

import numpy as np

from .._common import check_record_points

__all__ = ["save_steps", "check_save_steps", "record_steps"]


def save_steps(steps: int, n_save: int, extra=None, spacing: str = "log") -> np.ndarray:
    """``0``, ``n_save - 1`` log-spaced step indices up to ``steps`` (rounded), plus ``extra``;
    with ``spacing="linear"``: ``round(steps j / (n_save - 1))``, ``j = 0 .. n_save - 1``
    (distinct ones: fewer when ``steps < n_save - 1``)."""
    if spacing == "linear":
        inner = np.round(np.linspace(0, steps, max(n_save, 2)))
    else:
        inner = np.unique(np.round(np.geomspace(1, max(steps, 1), max(n_save - 1, 1))))
    grid = np.concatenate([[0], inner, [steps]]).astype(np.int64)
    if extra is not None:
        extra = check_save_steps(extra, steps)
        grid = np.concatenate([grid, extra])
    return np.unique(grid[grid <= steps])


def check_save_steps(save_at, steps: int) -> np.ndarray:
    """``save_at`` (integer steps in any order) as a sorted int64 vector in ``[0, steps]``;
    raises ``ValueError`` for non-integer or out-of-range steps."""
    return check_record_points(save_at, steps, steps=True)


def _padded(rec_steps: np.ndarray, n_save: int, n_extra: int) -> np.ndarray:
    """``rec_steps`` padded with copies of its last step to the most that ``n_save`` and
    ``len(save_at)`` allow: the number of distinct rounded log-spaced steps depends on
    ``steps``, the scan's length must not (a repeated end is an empty segment)."""
    n = n_save + 1 + n_extra
    return np.concatenate([rec_steps, np.full(n - rec_steps.size, rec_steps[-1])])


def record_steps(
    steps: int, n_save: int, save_at, spacing: str = "log"
) -> tuple[np.ndarray, np.ndarray]:
    """The record steps and the same padded to a length that depends on ``n_save`` and
    ``len(save_at)`` only (what the compiled loop sees)."""
    rec_steps = save_steps(steps, n_save, save_at, spacing)
    return rec_steps, _padded(rec_steps, n_save, 0 if save_at is None else len(save_at))
