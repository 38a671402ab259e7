"""Boundary checks of the settings that gradient descent and :func:`rankbias.train` share.

:meth:`LoopSettings.check` validates ``steps``, ``n_save``, ``divergence_factor`` and
``save_at`` once, with messages naming the argument; the engine then trusts the object. The
bounds are the constants of :mod:`rankbias.options` (``MAX_STEPS``, ``MAX_SAVE``).

Why not :class:`rankbias.options.DescentOptions` itself: its checks are the sweep schema's
(``steps >= 1``, ``divergence_factor > 0``, plain ``<= 100000000`` messages) while the
library accepts ``steps = 0``, requires ``divergence_factor > 1`` and its messages name
``MAX_STEPS`` (tests match them); building it here would change what users get. Once the two
agree, :meth:`LoopSettings.check` can build the option object instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..._validation import check_int, check_positive
from ...options import MAX_SAVE, MAX_STEPS
from .grid import check_save_steps, record_steps

__all__ = ["LoopSettings", "check_steps", "check_lr", "check_on_divergence"]


def check_steps(steps, name: str = "steps") -> int:
    """``steps`` as an int in ``[0, MAX_STEPS]``; raises ``ValueError`` naming ``name``."""
    steps = check_int(steps, name, minimum=0)
    if steps > MAX_STEPS:
        raise ValueError(
            f"`{name}` must be <= {MAX_STEPS:_} (MAX_STEPS: at >= ~10 us per step such a run "
            f"would not finish), got {steps:_}; run fewer steps, or chain runs from "
            f"the previous run's final_params"
        )
    return steps


def check_lr(lr) -> None:
    """``lr``: a positive number, or (batches) one per run; raises ``ValueError``."""
    try:
        lrs = np.atleast_1d(np.asarray(lr, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"`lr` must be a positive number (or one per run), got {lr!r}") from None
    for v in lrs:
        check_positive(v, "lr")


def check_on_divergence(on_divergence: str) -> str:
    """``"raise"`` or ``"return"`` (what a batch does with a diverged run)."""
    if on_divergence not in ("raise", "return"):
        raise ValueError(f"`on_divergence` must be 'raise' or 'return', got {on_divergence!r}")
    return on_divergence


@dataclass(frozen=True, eq=False)
class LoopSettings:
    """The validated settings of one run (or a batch): ``steps`` (``0 <= steps <= MAX_STEPS``),
    ``n_save`` (``2 <= n_save <= MAX_SAVE``), ``divergence_factor`` (``> 1``) and
    ``save_at`` (sorted int64 steps in ``[0, steps]``, or ``None``)."""

    steps: int
    n_save: int
    divergence_factor: float
    save_at: np.ndarray | None

    @classmethod
    def check(cls, steps, n_save, divergence_factor, save_at) -> LoopSettings:
        """Validate at the boundary; raises ``ValueError`` naming the argument."""
        steps = check_steps(steps)
        n_save = check_int(n_save, "n_save", minimum=2)
        if n_save > MAX_SAVE:
            raise ValueError(
                f"`n_save` must be <= {MAX_SAVE} (each record holds the loss, the "
                f"gradient norm and all singular values), got {n_save}"
            )
        divergence_factor = check_positive(divergence_factor, "divergence_factor")
        if divergence_factor <= 1:
            raise ValueError(
                f"`divergence_factor` must be > 1 (a growth factor of the loss), got "
                f"{divergence_factor}"
            )
        if save_at is not None:
            save_at = check_save_steps(save_at, steps)
        return cls(steps, n_save, divergence_factor, save_at)

    def record_steps(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rec_steps, padded)``: :func:`~.grid.record_steps` of these settings."""
        return record_steps(self.steps, self.n_save, self.save_at)
