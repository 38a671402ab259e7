r"""Minibatch losses (:meth:`~rankbias.problems.base.Problem.minibatch`): the loss restricted
to a sample ``B`` of its terms, rescaled so that it and its gradient are unbiased estimates of
the full ones. Built inside a jitted step from traced indices, so they skip validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .base import Problem


class EntryBatch(Problem):
    """``f_B(W) = 1/2 * scale * sum_{b in B} (W[r_b, c_b] - v_b)^2``."""

    rows: jax.Array
    cols: jax.Array
    values: jax.Array
    scale: jax.Array

    def __init__(self, shape, rows, cols, values, scale):
        self.shape, self.rows, self.cols, self.values, self.scale = shape, rows, cols, values, scale

    def loss_and_grad(self, W):
        r = W[self.rows, self.cols] - self.values
        g = jnp.zeros(self.shape, W.dtype).at[self.rows, self.cols].add(self.scale * r)
        return 0.5 * self.scale * jnp.sum(r * r), g

    def loss(self, W):
        return self.loss_and_grad(W)[0]


class MeasurementBatch(Problem):
    """``f_B(W) = 1/(2 |B|) * sum_{b in B} (<A_b, W> - y_b)^2``."""

    A: jax.Array
    y: jax.Array

    def __init__(self, shape, A, y):
        self.shape, self.A, self.y = shape, A, y

    def loss_and_grad(self, W):
        r = jnp.tensordot(self.A, W, axes=([1, 2], [0, 1])) - self.y
        return 0.5 * jnp.mean(r * r), jnp.tensordot(r, self.A, axes=(0, 0)) / r.shape[0]

    def loss(self, W):
        return self.loss_and_grad(W)[0]
