"""A flow path from whatever the caller has: arrays ``(times, betas)`` or a Trajectory-like
object (duck-typed: ``.times`` ``(T,)`` and ``.matrices`` ``(T, d)`` or ``(T, d, 1)``), put on
the limit's rescaled clock ``tau = t / h(alpha)``."""

from __future__ import annotations

import numpy as np

from ._thresholds import diagonal_time_scale

__all__ = ["as_path", "rescaled_path"]


def as_path(flow, betas=None) -> tuple[np.ndarray, np.ndarray]:
    """``(times (T,), betas (T, d))`` from ``flow`` = times with ``betas`` given, a pair
    ``(times, betas)``, or an object with ``.times`` and ``.matrices``."""
    if betas is None:
        if hasattr(flow, "times") and hasattr(flow, "matrices"):
            times, betas = flow.times, flow.matrices
            if betas is None:
                raise ValueError(
                    "flow: the trajectory kept no matrices; rerun it with its matrices saved"
                )
        elif isinstance(flow, (tuple, list)) and len(flow) == 2:
            times, betas = flow
        else:
            raise TypeError(
                "flow: pass a trajectory (.times, .matrices), a pair (times, betas), or times "
                f"with betas=...; got {type(flow).__name__}"
            )
    else:
        times = flow
    t = np.asarray(times, dtype=float)
    b = np.asarray(betas, dtype=float)
    if b.ndim == 3 and b.shape[-1] == 1:
        b = b[..., 0]
    if t.ndim != 1 or b.ndim != 2 or b.shape[0] != t.shape[0]:
        raise ValueError(
            f"flow: times must be (T,) and betas (T, d) or (T, d, 1); got {t.shape} and "
            f"{np.shape(betas)}"
        )
    if t.size and (np.any(np.diff(t) < 0) or not np.all(np.isfinite(t))):
        raise ValueError("flow: times must be finite and nondecreasing")
    return t, b


def rescaled_path(
    flow, betas, alpha: float, depth: int, two_branch: bool, d: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`as_path` with the times divided by ``h(alpha)``; ``d``: the expected width."""
    t, b = as_path(flow, betas)
    if d is not None and b.shape[1] != d:
        raise ValueError(f"flow: betas have {b.shape[1]} coordinates, the limit has {d}")
    return t / diagonal_time_scale(alpha, depth, two_branch=two_branch), b
