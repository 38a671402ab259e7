r"""Validation early stopping: stop a run when its held-out RMSE has stopped improving.

Rule (at records ``i = 0, 1, ...`` of ``v_i``, the held-out RMSE of ``heldout=``): the best
value so far is ``b``, first ``v_0``; a record *improves* when ``v_i < b - min_delta`` (then
``b = v_i``, at record ``best``); the run stops at the first record ``i`` with ``i - best >=
patience``, the ``patience``-th record in a row without improvement. With ``restore_best`` the
run returns the parameters of record ``best`` as ``final_params``.

Gradient descent and ``train`` stop exactly at that record (the host replays the chunk that
crossed it from its start); ``info["early_stopping"]`` holds ``best_record``, ``best_step``,
``best_heldout_rmse``, ``stop_record`` and ``stop_step``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["EarlyStopping", "Monitor", "check_early_stopping"]


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when the held-out RMSE (``heldout=``) has not improved by more than
    ``min_delta`` for ``patience`` records; ``restore_best``: return the best record's
    parameters.

    Arguments:
        patience: records without improvement before the stop (an int ``>= 1``).
        min_delta: the least decrease that counts as an improvement (``>= 0``).
        restore_best: ``final_params`` of the best record (else of the stopping record).
    """

    patience: int
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self):
        p = self.patience
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
            raise ValueError(f"`patience` must be an integer >= 1, got {p!r}")
        d = self.min_delta
        if isinstance(d, bool) or not isinstance(d, (int, float, np.floating, np.integer)):
            raise TypeError(f"`min_delta` must be a number >= 0, got {d!r}")
        if not (math.isfinite(float(d)) and d >= 0):
            raise ValueError(f"`min_delta` must be a finite number >= 0, got {d!r}")
        if not isinstance(self.restore_best, bool):
            raise TypeError(f"`restore_best` must be True or False, got {self.restore_best!r}")


def check_early_stopping(early_stopping, heldout) -> EarlyStopping | None:
    """``early_stopping`` checked at the boundary: ``None`` or an :class:`EarlyStopping`,
    which needs ``heldout``."""
    if early_stopping is None:
        return None
    if not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            f"`early_stopping` must be a rankbias.EarlyStopping(patience=...), "
            f"got {type(early_stopping).__name__}"
        )
    if heldout is None:
        raise ValueError(
            "`early_stopping` watches the held-out RMSE: pass `heldout=` (a HeldOut) too"
        )
    return early_stopping


class Monitor:
    """The rule of :class:`EarlyStopping` fed record by record (:meth:`feed`)."""

    def __init__(self, rule: EarlyStopping):
        self.rule = rule
        self.best = math.inf
        self.best_record = -1
        self.seen = 0

    def feed(self, values) -> int | None:
        """Feed the next records' values; the index of the stopping record, or ``None``."""
        for v in np.asarray(values, dtype=np.float64):
            i = self.seen
            self.seen += 1
            if self.best_record < 0 or v < self.best - self.rule.min_delta:
                self.best, self.best_record = float(v), i
            elif i - self.best_record >= self.rule.patience:
                return i
        return None
