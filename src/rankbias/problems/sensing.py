r"""Matrix sensing: linear measurements ``y_k = <A_k, W*> + noise_k``.

``f(W) = 1/(2 k) * sum_k (<A_k, W> - y_k)^2`` with ``A_k`` of i.i.d. N(0, 1) entries
(symmetrised ``(G + G^T)/2`` if ``symmetric``), so that ``E f(W) = 1/2 ||W - W*||_F^2 + noise``
(restricted isometry scaling).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import (
    check_bool,
    check_finite,
    check_int,
    check_matrix,
    check_memory,
    check_positive,
    check_real_array,
    check_seed,
)
from ._batches import MeasurementBatch
from .base import LinearMap, Problem

__all__ = ["MatrixSensing"]


class MatrixSensing(Problem):
    r"""Linear measurements ``y_k = <A_k, W*> + noise_k``, ``k = 1..m``.

    ``f(W) = 1/(2 m) sum_k (<A_k, W> - y_k)^2``; ``grad f(W) = 1/m sum_k (<A_k, W> - y_k) A_k``.

    ``A`` has shape ``(num_measurements, m, n)``.
    """

    A: jax.Array
    y: jax.Array
    truth: jax.Array | None

    def __init__(self, A, y, *, truth=None):
        A = check_real_array(A, "A")
        if A.ndim != 3:
            raise ValueError(f"`A` must have shape (num_measurements, m, n), got {A.shape}")
        if A.shape[0] < 1:
            raise ValueError("`A` holds no measurement")
        if A.shape[1] < 1 or A.shape[2] < 1:
            raise ValueError(f"`A` holds empty matrices, got shape {A.shape}")
        check_finite(A, "A")
        y = check_real_array(y, "y").ravel()
        if y.shape != (A.shape[0],):
            raise ValueError(f"`y` must have shape ({A.shape[0]},) to match `A`, got {y.shape}")
        check_finite(y, "y")
        self.shape = (A.shape[1], A.shape[2])
        self.A = jnp.asarray(A)
        self.y = jnp.asarray(y)
        self.truth = (
            None if truth is None else jnp.asarray(check_matrix(truth, "truth", shape=self.shape))
        )

    @classmethod
    def gaussian(
        cls, M, num_measurements: int, seed: int = 0, *, symmetric: bool = False, noise: float = 0.0
    ) -> MatrixSensing:
        """I.i.d. N(0,1) sensing matrices (symmetrised ``(G + G^T)/2`` if ``symmetric``)
        and additive N(0, noise^2) measurement noise."""
        symmetric = check_bool(symmetric, "symmetric")
        M = check_matrix(M, "M", square=symmetric)
        k = check_int(num_measurements, "num_measurements", minimum=1)
        check_memory(k * M.size, f"`num_measurements`={k} sensing matrices of shape {M.shape}")
        noise = check_positive(noise, "noise", allow_zero=True)
        rng = np.random.default_rng(check_seed(seed))
        A = rng.standard_normal((k, *M.shape))
        if symmetric:
            A = 0.5 * (A + np.swapaxes(A, 1, 2))
        y = np.einsum("kij,ij->k", A, M) + noise * rng.standard_normal(k)
        return cls(A, y, truth=M)

    @property
    def num_measurements(self) -> int:
        return int(self.A.shape[0])

    @property
    def target(self):
        return self.truth

    def _residual(self, W):
        return self.measure(W) - self.y

    def loss(self, W):
        r = self._residual(W)
        return 0.5 * jnp.mean(r * r)

    def grad(self, W):
        r = self._residual(W)
        return jnp.tensordot(r, self.A, axes=(0, 0)) / r.shape[0]

    def loss_and_grad(self, W):
        r = self._residual(W)
        return 0.5 * jnp.mean(r * r), jnp.tensordot(r, self.A, axes=(0, 0)) / r.shape[0]

    # -- the protocol of :class:`~rankbias.problems.base.Problem` ---------------------------

    def linear_map(self) -> LinearMap:
        """``A(X)_k = <A_k, X>`` as a ``(k, m n)`` matrix, ``b = y``."""
        A = np.asarray(self.A, dtype=np.float64)
        return LinearMap(
            self.shape, np.asarray(self.y, dtype=np.float64), matrix=A.reshape(A.shape[0], -1)
        )

    def measure(self, W):
        """``(<A_k, W>)_k``, shape ``(k,)``."""
        return jnp.tensordot(self.A, W, axes=([1, 2], [0, 1]))

    @property
    def is_quadratic(self) -> bool:
        return True

    def lipschitz(self) -> float:
        """``||A||_2^2 / k`` with ``A`` the ``(k, m n)`` measurement matrix."""
        A = np.asarray(self.A).reshape(self.A.shape[0], -1)
        return float(np.linalg.norm(A, 2) ** 2 / A.shape[0])

    @property
    def num_terms(self) -> int:
        return self.num_measurements

    def minibatch(self, idx):
        """The measurements ``idx``: ``1/(2 |B|) sum_{b in B} (<A_b, W> - y_b)^2``."""
        return MeasurementBatch(self.shape, self.A[idx], self.y[idx])
