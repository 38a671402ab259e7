r"""Linear regression ``y = X beta + noise`` on a vector ``beta``: the problem of diagonal networks.

``f(beta) = c/2 * ||X beta - y||^2`` with ``c = 1`` (``normalization="sum"``, the convention
of Woodworth et al. and Pesme & Flammarion) or ``c = 1/n`` (``normalization="mean"``),
``X`` of shape ``(n, d)``.

**A vector as the problem's matrix.** The engines work on a matrix ``W`` of shape
``self.shape``; here ``W`` is the column ``beta`` of shape ``(d, 1)`` (``beta = W[:, 0]``), so
every engine, record and store runs unchanged. A :class:`~rankbias.DiagonalNetwork` records,
in a trajectory's ``singular_values``, the singular values of ``diag(beta)``: the sorted
``|beta_i|`` (see :meth:`rankbias.models.Model.spectrum`), so effective ranks are sparsity
measures.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import (
    check_choice,
    check_finite,
    check_int,
    check_memory,
    check_positive,
    check_real_array,
    check_seed,
)
from .base import LinearMap, Problem

__all__ = ["LinearRegression", "sparse_recovery"]


class LinearRegression(Problem):
    r"""``f(beta) = c/2 ||X beta - y||^2``, ``X`` of shape ``(n, d)``, ``y`` of shape ``(n,)``.

    ``beta`` is the problem's matrix ``W`` of shape ``(d, 1)``. ``grad f(beta) = c X^T (X beta
    - y)``, shape ``(d, 1)``.

    Arguments:
        X: the design, ``(n, d)``, finite.
        y: the responses, ``(n,)`` (or ``(n, 1)``), finite.
        normalization: ``"sum"`` (default, ``c = 1``) or ``"mean"`` (``c = 1/n``).
        truth: the ground truth ``beta*`` (``(d,)`` or ``(d, 1)``), when known.
    """

    X: jax.Array
    y: jax.Array
    weight: jax.Array
    truth: jax.Array | None

    def __init__(self, X, y, normalization: str = "sum", *, truth=None):
        X = check_real_array(X, "X")
        if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"`X` must have shape (n, d) with n, d >= 1, got {X.shape}")
        check_finite(X, "X")
        y = check_real_array(y, "y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (X.shape[0],):
            raise ValueError(f"`y` must have shape ({X.shape[0]},) to match `X`, got {y.shape}")
        check_finite(y, "y")
        check_choice(normalization, "normalization", ("sum", "mean"))
        n, d = X.shape
        self.shape = (d, 1)
        self.X = jnp.asarray(X)
        self.y = jnp.asarray(y)
        self.weight = jnp.asarray(1.0 if normalization == "sum" else 1.0 / n)
        if truth is None:
            self.truth = None
        else:
            t = check_real_array(truth, "truth").reshape(-1)
            if t.shape != (d,):
                raise ValueError(f"`truth` must have d = {d} entries, got shape {np.shape(truth)}")
            check_finite(t, "truth")
            self.truth = jnp.asarray(t.reshape(d, 1))

    @property
    def num_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def target(self):
        return self.truth

    def residual(self, W):
        """``X beta - y``, shape ``(n,)``, for ``W = beta`` of shape ``(d, 1)``."""
        return self.X @ W[:, 0] - self.y

    def loss(self, W):
        r = self.residual(W)
        return 0.5 * self.weight * jnp.sum(r * r)

    def grad(self, W):
        return (self.weight * (self.X.T @ self.residual(W)))[:, None]

    def loss_and_grad(self, W):
        r = self.residual(W)
        return 0.5 * self.weight * jnp.sum(r * r), (self.weight * (self.X.T @ r))[:, None]

    # -- the protocol of :class:`~rankbias.problems.base.Problem` ---------------------------

    def linear_map(self) -> LinearMap:
        """``A(beta) = X beta`` (the ``(n, d)`` matrix of the ``(d, 1)`` column), ``b = y``."""
        return LinearMap(
            self.shape, np.asarray(self.y, dtype=np.float64), matrix=np.asarray(self.X, np.float64)
        )

    def measure(self, W):
        """``X beta``, shape ``(n,)``."""
        return self.X @ W[:, 0]

    @property
    def is_quadratic(self) -> bool:
        return True

    def lipschitz(self) -> float:
        """``c ||X||_2^2``."""
        return float(self.weight) * float(np.linalg.norm(np.asarray(self.X), 2) ** 2)

    @property
    def num_terms(self) -> int:
        return self.num_samples

    def minibatch(self, idx):
        """The samples ``idx``: ``c n / (2 |B|) sum_{b in B} (x_b^T beta - y_b)^2``."""
        scale = self.weight * self.X.shape[0] / idx.shape[0]
        return _RowBatch(self.shape, self.X[idx], self.y[idx], scale)


class _RowBatch(Problem):
    """``f_B(beta) = scale/2 * sum_{b in B} (x_b^T beta - y_b)^2`` (traced, unvalidated)."""

    X: jax.Array
    y: jax.Array
    scale: jax.Array

    def __init__(self, shape, X, y, scale):
        self.shape, self.X, self.y, self.scale = shape, X, y, scale

    def loss_and_grad(self, W):
        r = self.X @ W[:, 0] - self.y
        return 0.5 * self.scale * jnp.sum(r * r), (self.scale * (self.X.T @ r))[:, None]

    def loss(self, W):
        return self.loss_and_grad(W)[0]


def sparse_recovery(
    n: int,
    d: int,
    k: int,
    noise: float = 0.0,
    seed: int = 0,
    *,
    normalization: str = "sum",
) -> LinearRegression:
    r"""A sparse-recovery instance: ``y = X beta* + noise``.

    ``X`` has i.i.d. ``N(0, 1/n)`` entries (columns of norm about 1, the compressed-sensing
    scaling), ``beta*`` is ``k``-sparse with its support drawn uniformly and entries ``+-1``
    (random signs), and the noise is i.i.d. ``N(0, noise^2)``. The truth is the problem's
    :attr:`~LinearRegression.target`, shape ``(d, 1)``.

    Arguments:
        n: number of samples (rows of ``X``), >= 1.
        d: dimension (columns of ``X``), >= 1.
        k: sparsity, ``0 <= k <= d``.
        noise: standard deviation of the additive noise, >= 0.
        seed: NumPy ``default_rng`` seed.
        normalization: as :class:`LinearRegression`.
    """
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    k = check_int(k, "k", minimum=0, maximum=d)
    noise = check_positive(noise, "noise", allow_zero=True)
    check_memory(n * d, f"a design X of shape ({n}, {d})")
    rng = np.random.default_rng(check_seed(seed))
    X = rng.standard_normal((n, d)) / np.sqrt(n)
    beta = np.zeros(d)
    support = rng.choice(d, size=k, replace=False)
    beta[support] = rng.choice([-1.0, 1.0], size=k)
    y = X @ beta + noise * rng.standard_normal(n)
    return LinearRegression(X, y, normalization, truth=beta)
