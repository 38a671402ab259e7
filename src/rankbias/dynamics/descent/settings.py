"""The settings that gradient descent and :func:`rankbias.train` share, validated once.

The checks are those of :class:`rankbias.options.DescentOptions` and
:class:`~rankbias.options.TrainOptions` (one definition of each option's bound and message,
shared with the sweep schema): :meth:`LoopSettings.from_options` takes the validated object
and adds the record steps (``save_at``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...options import DescentOptions, TrainOptions, check_lr, check_steps
from .grid import check_save_steps, record_steps

__all__ = ["LoopSettings", "check_steps", "check_lr"]


@dataclass(frozen=True, eq=False)
class LoopSettings:
    """The validated settings of one run (or a batch): ``steps`` (``0 <= steps <= MAX_STEPS``),
    ``n_save`` (``2 <= n_save <= MAX_SAVE``), ``divergence_factor`` (``> 1``) and
    ``save_at`` (sorted int64 steps in ``[0, steps]``, or ``None``)."""

    steps: int
    n_save: int
    divergence_factor: float
    save_at: np.ndarray | None
    spacing: str = "log"

    @classmethod
    def from_options(cls, o: DescentOptions | TrainOptions, save_at) -> LoopSettings:
        """The loop settings of validated options, with ``save_at`` checked against
        ``o.steps``; raises ``ValueError`` naming ``save_at``."""
        if save_at is not None:
            save_at = check_save_steps(save_at, o.steps)
        return cls(o.steps, o.n_save, o.divergence_factor, save_at, o.save_spacing)

    def record_steps(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rec_steps, padded)``: :func:`~.grid.record_steps` of these settings."""
        return record_steps(self.steps, self.n_save, self.save_at, self.spacing)
