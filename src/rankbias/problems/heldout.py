r"""Held-out ratings and their root mean squared error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_matrix

__all__ = ["HeldOut", "heldout_rmse"]


@dataclass(frozen=True)
class HeldOut:
    """Held-out ratings: ``rows``, ``cols`` (0-based, ``(k,)`` int arrays) and ``values``
    (``(k,)`` floats) of a matrix of shape ``shape``.

    :meth:`rmse` scores a prediction ``W`` (``(m, n)`` array, a :class:`~rankbias.Trajectory`
    (its final matrix) or anything ``np.asarray`` turns into one):
    ``sqrt(mean_k (W[rows_k, cols_k] - values_k)^2)``.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.values.size)

    def rmse(self, W) -> float:
        return heldout_rmse(W, self)


def heldout_rmse(W, heldout: HeldOut) -> float:
    r"""``sqrt(1/k sum_{(i,j) in heldout} (W_ij - R_ij)^2)``; ``W`` an ``(m, n)`` array, a
    trajectory (its ``final_matrix``) or a ``ConvexSolution``.

    Raises:
        ValueError: ``W`` of another shape than ``heldout.shape``, or an empty ``heldout``.
    """
    if hasattr(W, "final_matrix"):
        W = W.final_matrix
    W = check_matrix(np.asarray(W), "W", shape=heldout.shape)
    if len(heldout) == 0:
        raise ValueError("`heldout` holds no entry: nothing to score")
    r = W[heldout.rows, heldout.cols] - heldout.values
    return float(np.sqrt(np.mean(r * r)))
