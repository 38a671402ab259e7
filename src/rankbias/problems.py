r"""Problems: convex losses ``f(W)`` of a matrix ``W`` of shape ``(m, n)`` and their gradients.

Normalisations (tested in ``tests/test_problems.py``):

* :class:`MatrixCompletion`:  ``f(W) = 1/2 * sum_{(i,j) in Omega} (W_ij - M_ij)^2``
  (``normalization="sum"``, the convention of Li et al.) or divided by ``|Omega|``
  (``normalization="mean"``). Observed entries are stored as index lists.
* :class:`MatrixSensing`:  ``f(W) = 1/(2 m) * sum_k (<A_k, W> - y_k)^2`` with ``A_k`` of
  i.i.d. N(0, 1) entries (symmetrised ``(G + G^T)/2`` if ``symmetric``), so that
  ``E f(W) = 1/2 ||W - W*||_F^2 + noise`` (restricted isometry scaling).
* :class:`MatrixEstimation`:  ``f(W) = 1/2 ||W - Y||_F^2`` (full observation / denoising).
* :class:`CustomLoss`:  any differentiable JAX function ``f(W) -> scalar``.

Every problem is an ``equinox.Module`` (a pytree): its arrays are traced, so a jitted solver
compiled for one problem is reused for any other problem of the same shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._validation import (check_choice, check_finite, check_int, check_matrix, check_positive,
                          check_seed, check_shape)

__all__ = [
    "Problem", "MatrixCompletion", "MatrixSensing", "MatrixEstimation", "CustomLoss",
    "random_low_rank", "matrix_from_spectrum",
]


class Problem(eqx.Module):
    """Base class: a loss ``f`` of a matrix ``W`` of shape ``self.shape``.

    Subclasses implement :meth:`loss`; :meth:`grad` defaults to ``jax.grad(loss)`` and is
    overridden with a closed form where one is cheaper.
    """

    shape: tuple[int, int] = eqx.field(static=True)

    def loss(self, W: jax.Array) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, W: jax.Array) -> jax.Array:
        """``grad f(W)``, shape ``(m, n)``."""
        return jax.grad(self.loss)(W)

    def loss_and_grad(self, W: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.loss(W), self.grad(W)

    @property
    def is_convex(self) -> bool:
        """Whether ``f`` is known to be convex (KKT certificates of GLRL rely on it)."""
        return True

    @property
    def target(self) -> jax.Array | None:
        """The ground truth, when the problem was built from one."""
        return None

    def astype(self, dtype) -> "Problem":
        """A copy with every floating array cast to ``dtype``."""
        return jax.tree_util.tree_map(
            lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, self)


class MatrixCompletion(Problem):
    r"""Observe entries ``M_ij`` for ``(i, j)`` in ``Omega``.

    ``f(W) = c/2 * sum_{(i,j) in Omega} (W_ij - M_ij)^2`` with ``c = 1`` (``"sum"``) or
    ``c = 1/|Omega|`` (``"mean"``); ``grad f(W)`` is ``c (W - M)`` on ``Omega``, 0 elsewhere.

    Arguments:
        M: ``(m, n)`` array with the values (only observed entries are read), or ``None``
           together with ``values``.
        mask: boolean ``(m, n)`` array, or a pair of index arrays ``(rows, cols)``.
        normalization: ``"sum"`` (default) or ``"mean"``.
        dense: evaluate through a dense ``(m, n)`` mask (faster on CPU for dense masks of
           small matrices) instead of gathers/scatters over the index lists. ``None``
           chooses dense when ``m * n <= 250_000`` and at least 5% is observed.
    """

    rows: jax.Array
    cols: jax.Array
    values: jax.Array
    weight: jax.Array
    dense_mask: jax.Array | None
    dense_values: jax.Array | None
    truth: jax.Array | None
    symmetric: bool = eqx.field(static=True)

    def __init__(self, M, mask, *, normalization: str = "sum", dense: bool | None = None,
                 truth=None, symmetric: bool | None = None):
        M = check_matrix(M, "M")
        m, n = M.shape
        if isinstance(mask, tuple) and len(mask) == 2:
            rows = np.asarray(mask[0]).astype(np.int64).ravel()
            cols = np.asarray(mask[1]).astype(np.int64).ravel()
            if rows.shape != cols.shape:
                raise ValueError(f"`mask` index arrays differ in length: {rows.shape} vs {cols.shape}")
            if rows.size and (rows.min() < 0 or rows.max() >= m or cols.min() < 0 or cols.max() >= n):
                raise ValueError(f"`mask` indices out of range for shape {(m, n)}")
            keep = np.zeros((m, n), bool)
            keep[rows, cols] = True
            rows, cols = np.nonzero(keep)  # sorted, de-duplicated
        else:
            mask = np.asarray(mask)
            if mask.shape != (m, n):
                raise ValueError(f"`mask` must have the shape of `M` {(m, n)}, got {mask.shape}")
            if mask.dtype != bool:
                if not np.all(np.isin(mask, [0, 1])):
                    raise ValueError("`mask` must be boolean (or 0/1)")
                mask = mask.astype(bool)
            rows, cols = np.nonzero(mask)
        if rows.size == 0:
            raise ValueError("`mask` observes no entry: a completion problem needs at least one")
        check_choice(normalization, "normalization", ("sum", "mean"))
        self.shape = (m, n)
        self.rows = jnp.asarray(rows, dtype=jnp.int32)
        self.cols = jnp.asarray(cols, dtype=jnp.int32)
        self.values = jnp.asarray(M[rows, cols])
        self.weight = jnp.asarray(1.0 if normalization == "sum" else 1.0 / rows.size)
        if dense is None:
            dense = m * n <= 250_000 and rows.size >= 0.05 * m * n
        if dense:
            dm = np.zeros((m, n))
            dm[rows, cols] = 1.0
            dv = np.zeros((m, n))
            dv[rows, cols] = M[rows, cols]
            self.dense_mask, self.dense_values = jnp.asarray(dm), jnp.asarray(dv)
        else:
            self.dense_mask = self.dense_values = None
        self.truth = None if truth is None else jnp.asarray(check_matrix(truth, "truth", shape=(m, n)))
        if symmetric is None:
            sym_mask = m == n and np.array_equal(np.sort(rows * n + cols), np.sort(cols * n + rows))
            symmetric = bool(sym_mask and np.allclose(M[rows, cols], M[cols, rows]))
        self.symmetric = bool(symmetric)

    @classmethod
    def uniform(cls, M, fraction: float, seed: int = 0, *, symmetric: bool = False,
                normalization: str = "sum", dense: bool | None = None) -> "MatrixCompletion":
        """Observe each entry independently with probability ``fraction``.

        With ``symmetric=True`` the mask is symmetric (entry ``(i, j)`` and ``(j, i)`` are
        observed together; the diagonal with probability ``fraction``); ``M`` must be square.
        The full ``M`` is kept as :attr:`target`.
        """
        M = check_matrix(M, "M", square=symmetric)
        frac = check_positive(fraction, "fraction")
        if frac > 1:
            raise ValueError(f"`fraction` must be in (0, 1], got {frac}")
        rng = np.random.default_rng(check_seed(seed))
        m, n = M.shape
        mask = rng.random((m, n)) < frac
        if symmetric:
            mask = np.triu(mask)
            mask = mask | mask.T
        if not mask.any():
            raise ValueError(f"`fraction`={frac} observed no entry of a {m}x{n} matrix with seed {seed}")
        return cls(M, mask, normalization=normalization, dense=dense, truth=M,
                   symmetric=symmetric or None)

    @property
    def num_observed(self) -> int:
        return int(self.rows.shape[0])

    @property
    def mask(self) -> np.ndarray:
        """Dense boolean mask (built on demand)."""
        out = np.zeros(self.shape, bool)
        out[np.asarray(self.rows), np.asarray(self.cols)] = True
        return out

    @property
    def target(self):
        return self.truth

    def loss(self, W):
        if self.dense_mask is not None:
            r = self.dense_mask * W - self.dense_values
            return 0.5 * self.weight * jnp.sum(r * r)
        r = W[self.rows, self.cols] - self.values
        return 0.5 * self.weight * jnp.sum(r * r)

    def grad(self, W):
        if self.dense_mask is not None:
            return self.weight * (self.dense_mask * W - self.dense_values)
        r = self.weight * (W[self.rows, self.cols] - self.values)
        return jnp.zeros(self.shape, W.dtype).at[self.rows, self.cols].add(r)

    def loss_and_grad(self, W):
        if self.dense_mask is not None:
            r = self.dense_mask * W - self.dense_values
            return 0.5 * self.weight * jnp.sum(r * r), self.weight * r
        r = W[self.rows, self.cols] - self.values
        g = jnp.zeros(self.shape, W.dtype).at[self.rows, self.cols].add(self.weight * r)
        return 0.5 * self.weight * jnp.sum(r * r), g


class MatrixSensing(Problem):
    r"""Linear measurements ``y_k = <A_k, W*> + noise_k``, ``k = 1..m``.

    ``f(W) = 1/(2 m) sum_k (<A_k, W> - y_k)^2``; ``grad f(W) = 1/m sum_k (<A_k, W> - y_k) A_k``.

    ``A`` has shape ``(num_measurements, m, n)``.
    """

    A: jax.Array
    y: jax.Array
    truth: jax.Array | None

    def __init__(self, A, y, *, truth=None):
        A = np.asarray(A, dtype=np.float64)
        if A.ndim != 3:
            raise ValueError(f"`A` must have shape (num_measurements, m, n), got {A.shape}")
        if A.shape[0] < 1:
            raise ValueError("`A` holds no measurement")
        check_finite(A, "A")
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.shape != (A.shape[0],):
            raise ValueError(f"`y` must have shape ({A.shape[0]},) to match `A`, got {y.shape}")
        check_finite(y, "y")
        self.shape = (A.shape[1], A.shape[2])
        self.A = jnp.asarray(A)
        self.y = jnp.asarray(y)
        self.truth = None if truth is None else jnp.asarray(check_matrix(truth, "truth", shape=self.shape))

    @classmethod
    def gaussian(cls, M, num_measurements: int, seed: int = 0, *, symmetric: bool = False,
                 noise: float = 0.0) -> "MatrixSensing":
        """I.i.d. N(0,1) sensing matrices (symmetrised ``(G + G^T)/2`` if ``symmetric``)
        and additive N(0, noise^2) measurement noise."""
        M = check_matrix(M, "M", square=symmetric)
        k = check_int(num_measurements, "num_measurements", minimum=1)
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
        return jnp.tensordot(self.A, W, axes=([1, 2], [0, 1])) - self.y

    def loss(self, W):
        r = self._residual(W)
        return 0.5 * jnp.mean(r * r)

    def grad(self, W):
        r = self._residual(W)
        return jnp.tensordot(r, self.A, axes=(0, 0)) / r.shape[0]

    def loss_and_grad(self, W):
        r = self._residual(W)
        return 0.5 * jnp.mean(r * r), jnp.tensordot(r, self.A, axes=(0, 0)) / r.shape[0]


class MatrixEstimation(Problem):
    r"""Full observation: ``f(W) = 1/2 ||W - Y||_F^2``, ``grad f(W) = W - Y`` (denoising)."""

    Y: jax.Array
    truth: jax.Array | None

    def __init__(self, Y, *, truth=None):
        Y = check_matrix(Y, "Y")
        self.shape = Y.shape
        self.Y = jnp.asarray(Y)
        self.truth = None if truth is None else jnp.asarray(check_matrix(truth, "truth", shape=Y.shape))

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


class CustomLoss(Problem):
    """Any differentiable JAX function ``f(W) -> scalar`` of a matrix of shape ``shape``.

    ``convex`` states whether ``f`` is convex (default ``False``: GLRL then warns that its
    KKT stop certifies stationarity only). ``f`` is a static field: a new function object
    triggers a recompilation.
    """

    f: Callable = eqx.field(static=True)
    convex: bool = eqx.field(static=True)

    def __init__(self, f: Callable, shape, *, convex: bool = False):
        if not callable(f):
            raise ValueError(f"`f` must be callable, got {type(f).__name__}")
        self.shape = check_shape(shape)
        probe = jax.eval_shape(f, jax.ShapeDtypeStruct(self.shape, jnp.float64))
        if probe.shape != ():
            raise ValueError(f"`f` must return a scalar, got an array of shape {probe.shape}")
        self.f = f
        self.convex = bool(convex)

    @property
    def is_convex(self) -> bool:
        return self.convex

    def loss(self, W):
        return self.f(W)


def matrix_from_spectrum(spectrum, shape=None, *, seed: int = 0, psd: bool = False,
                         symmetric: bool | None = None) -> np.ndarray:
    r"""``U diag(spectrum) V^T`` with Haar-random orthonormal ``U`` (m x r), ``V`` (n x r).

    With ``symmetric`` (or ``psd``) the result is ``U diag(spectrum) U^T`` (square); ``psd``
    requires a non-negative spectrum. ``shape`` defaults to ``(r, r)``.
    """
    s = np.asarray(spectrum, dtype=np.float64).ravel()
    check_finite(s, "spectrum")
    r = s.size
    if r == 0:
        raise ValueError("`spectrum` is empty")
    m, n = check_shape(shape) if shape is not None else (r, r)
    symmetric = psd if symmetric is None else (symmetric or psd)
    if psd and np.any(s < 0):
        raise ValueError(f"`spectrum` must be non-negative for psd=True, got min {s.min()}")
    if symmetric and m != n:
        raise ValueError(f"a symmetric/PSD matrix must be square, got shape {(m, n)}")
    if r > min(m, n):
        raise ValueError(f"`spectrum` has {r} values but shape {(m, n)} allows rank <= {min(m, n)}")
    rng = np.random.default_rng(check_seed(seed))
    U = np.linalg.qr(rng.standard_normal((m, r)))[0]
    if symmetric:
        return (U * s) @ U.T
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    return (U * s) @ V.T


def random_low_rank(shape, rank: int, *, psd: bool = False, seed: int = 0,
                    spectrum=None, normalize: bool = True) -> np.ndarray:
    r"""A random rank-``rank`` matrix of shape ``shape``.

    * ``spectrum`` given: ``matrix_from_spectrum(spectrum, shape, psd=psd)``.
    * otherwise ``psd``: ``G G^T`` with ``G`` of shape ``(d, rank)``, i.i.d. N(0, 1);
      rectangular: ``G H^T``. With ``normalize`` (default) the result is scaled to
      ``||W||_F = sqrt(rank)`` (average squared singular value 1), a scale at which unit
      step sizes behave.
    """
    m, n = check_shape(shape)
    rank = check_int(rank, "rank", minimum=1)
    if rank > min(m, n):
        raise ValueError(f"`rank`={rank} exceeds min(shape)={min(m, n)}")
    if spectrum is not None:
        s = np.asarray(spectrum, dtype=np.float64).ravel()
        if s.size != rank:
            raise ValueError(f"`spectrum` has {s.size} values, expected `rank`={rank}")
        return matrix_from_spectrum(s, (m, n), seed=seed, psd=psd)
    if psd and m != n:
        raise ValueError(f"a PSD matrix must be square, got shape {(m, n)}")
    rng = np.random.default_rng(check_seed(seed))
    G = rng.standard_normal((m, rank))
    W = G @ G.T if psd else G @ rng.standard_normal((n, rank)).T
    if normalize:
        W *= np.sqrt(rank) / np.linalg.norm(W)
    return W
