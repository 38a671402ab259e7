r"""Matrix estimation (full observation, denoising): ``f(W) = 1/2 ||W - Y||_F^2``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_matrix
from ._batches import EntryBatch
from .base import Problem

__all__ = ["MatrixEstimation"]


class MatrixEstimation(Problem):
    r"""Full observation: ``f(W) = 1/2 ||W - Y||_F^2``, ``grad f(W) = W - Y`` (denoising)."""

    Y: jax.Array
    truth: jax.Array | None

    def __init__(self, Y, *, truth=None):
        Y = check_matrix(Y, "Y")
        self.shape = Y.shape
        self.Y = jnp.asarray(Y)
        self.truth = (
            None if truth is None else jnp.asarray(check_matrix(truth, "truth", shape=Y.shape))
        )

    @property
    def target(self):
        return self.truth if self.truth is not None else self.Y

    def loss(self, W):
        r = W - self.Y
        return 0.5 * jnp.sum(r * r)

    def grad(self, W):
        return W - self.Y

    def loss_and_grad(self, W):
        r = W - self.Y
        return 0.5 * jnp.sum(r * r), r

    # -- the protocol of :class:`~rankbias.problems.base.Problem` ---------------------------

    def interpolant(self) -> np.ndarray:
        """``Y``: full observation determines the fit."""
        return np.asarray(self.Y, dtype=np.float64)

    @property
    def is_quadratic(self) -> bool:
        return True

    def lipschitz(self) -> float:
        return 1.0

    @property
    def num_terms(self) -> int:
        return int(self.shape[0] * self.shape[1])

    def minibatch(self, idx):
        """The entries ``idx`` (row-major positions), weight ``m n / |B|``."""
        m, n = self.shape
        rows, cols = idx // n, idx % n
        return EntryBatch(
            self.shape,
            rows,
            cols,
            self.Y[rows, cols],
            jnp.asarray(m * n / idx.shape[0], self.Y.dtype),
        )
