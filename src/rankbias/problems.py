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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._validation import (
    SYMMETRY_RTOL,
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_matrix,
    check_memory,
    check_positive,
    check_real_array,
    check_seed,
    check_shape,
    check_symmetric_values,
)

if TYPE_CHECKING:
    from .splits import RatingsSplit

__all__ = [
    "Problem",
    "MatrixCompletion",
    "MatrixSensing",
    "MatrixEstimation",
    "CustomLoss",
    "random_low_rank",
    "matrix_from_spectrum",
    "load_ratings",
    "HeldOut",
    "heldout_rmse",
]


class Problem(eqx.Module):
    """Base class: a loss ``f`` of a matrix ``W`` of shape ``self.shape``.

    Subclasses implement :meth:`loss`; :meth:`grad` defaults to ``jax.grad(loss)`` and is
    overridden with a closed form where one is cheaper.
    """

    shape: tuple[int, int] = eqx.field(static=True)

    def loss(self, W: jax.Array | np.ndarray) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, W: jax.Array | np.ndarray) -> jax.Array:
        """``grad f(W)``, shape ``(m, n)``."""
        return jax.grad(self.loss)(W)

    def loss_and_grad(self, W: jax.Array | np.ndarray) -> tuple[jax.Array, jax.Array]:
        return self.loss(W), self.grad(W)

    @property
    def is_convex(self) -> bool:
        """Whether ``f`` is known to be convex (KKT certificates of GLRL rely on it)."""
        return True

    @property
    def target(self) -> jax.Array | None:
        """The ground truth, when the problem was built from one."""
        return None

    def astype(self, dtype) -> Problem:
        """A copy with every floating array cast to ``dtype``."""
        return jax.tree_util.tree_map(
            lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, self
        )


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
        symmetric: a symmetric completion (the PSD baselines' default). ``True`` requires a
           square ``M``, a mask that observes ``(j, i)`` with every ``(i, j)`` and
           ``max |M_ij - M_ji| <= 1e-12 max |M|`` over the observed entries; ``None``
           (default) detects exactly that.

    Raises:
        ValueError: ``M`` complex, empty or not finite; mask indices that are not integers
            (``1.7`` is not truncated) or out of range; a mask that observes nothing;
            ``symmetric=True`` on asymmetric data (the message gives the largest asymmetry).
    """

    rows: jax.Array
    cols: jax.Array
    values: jax.Array
    weight: jax.Array
    dense_mask: jax.Array | None
    dense_values: jax.Array | None
    truth: jax.Array | None
    symmetric: bool = eqx.field(static=True)

    def __init__(
        self,
        M,
        mask,
        *,
        normalization: str = "sum",
        dense: bool | None = None,
        truth=None,
        symmetric: bool | None = None,
    ):
        M = check_matrix(M, "M")
        m, n = M.shape
        dense = None if dense is None else check_bool(dense, "dense")
        symmetric = None if symmetric is None else check_bool(symmetric, "symmetric")
        if isinstance(mask, tuple) and len(mask) == 2:
            rows = _check_indices(mask[0], "mask[0]")
            cols = _check_indices(mask[1], "mask[1]")
            if rows.shape != cols.shape:
                raise ValueError(
                    f"`mask` index arrays differ in length: {rows.shape} vs {cols.shape}"
                )
            if rows.size and (
                rows.min() < 0 or rows.max() >= m or cols.min() < 0 or cols.max() >= n
            ):
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
        self.truth = (
            None if truth is None else jnp.asarray(check_matrix(truth, "truth", shape=(m, n)))
        )
        sym_mask = m == n and np.array_equal(np.sort(rows * n + cols), np.sort(cols * n + rows))
        if symmetric:
            # A symmetric problem is solved as one (PSD baselines, symmetric models): data
            # that is not would be fitted off by its asymmetry, silently.
            if not sym_mask:
                raise ValueError(
                    "`symmetric=True` needs a square `M` whose `mask` observes (j, i) "
                    f"whenever it observes (i, j); got shape {(m, n)}"
                    + ("" if m != n else " and an asymmetric mask")
                )
            check_symmetric_values(M[rows, cols], M[cols, rows], "M")
        elif symmetric is None:
            # same tolerance as symmetric=True: np.allclose (rtol 1e-5) called data with a
            # 1e-6 asymmetry symmetric, and the PSD baselines then fit it off by that much
            symmetric = False
            if sym_mask:
                vals, mirrored = M[rows, cols], M[cols, rows]
                worst = np.max(np.abs(vals - mirrored))
                symmetric = bool(worst <= SYMMETRY_RTOL * np.max(np.abs(vals)))
        self.symmetric = bool(symmetric)

    @classmethod
    def uniform(
        cls,
        M,
        fraction: float,
        seed: int = 0,
        *,
        symmetric: bool | None = None,
        psd: bool | None = None,
        normalization: str = "sum",
        dense: bool | None = None,
    ) -> MatrixCompletion:
        """Observe each entry independently with probability ``fraction``.

        With ``symmetric=True`` (alias ``psd=True``, the name :func:`random_low_rank` uses;
        give either, or both with the same value) the mask is symmetric (entry ``(i, j)``
        and ``(j, i)`` are observed together; the diagonal with probability ``fraction``);
        ``M`` must be square. The full ``M`` is kept as :attr:`target`.

        Raises:
            ValueError: ``symmetric`` and ``psd`` both given and different, ``fraction``
                outside ``(0, 1]``, a mask that observes nothing.
        """
        symmetric = None if symmetric is None else check_bool(symmetric, "symmetric")
        psd = None if psd is None else check_bool(psd, "psd")
        if symmetric is not None and psd is not None and symmetric != psd:
            raise ValueError(
                f"`symmetric`={symmetric} and its alias `psd`={psd} disagree; give one of them"
            )
        symmetric = bool(symmetric if symmetric is not None else (psd or False))
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
            raise ValueError(
                f"`fraction`={frac} observed no entry of a {m}x{n} matrix with seed {seed}"
            )
        return cls(
            M, mask, normalization=normalization, dense=dense, truth=M, symmetric=symmetric or None
        )

    @classmethod
    def from_triplets(
        cls,
        rows,
        cols,
        values,
        shape,
        *,
        duplicates: str = "error",
        normalization: str = "sum",
        dense: bool | None = None,
        truth=None,
        symmetric: bool | None = None,
    ) -> MatrixCompletion:
        """Observe ``values[k]`` at entry ``(rows[k], cols[k])`` (0-based) of a matrix of
        shape ``shape`` (``(k,)`` arrays, integer indices, finite values).

        ``duplicates``: an entry given twice is an error (``"error"``, default), or takes
        the mean (``"mean"``) or the last value (``"last"``) of its repeats.

        Raises:
            ValueError: indices that are not integers or out of range, lengths that differ,
                non-finite values, a repeated entry with ``duplicates="error"``.
        """
        return _from_triplets(
            cls,
            rows,
            cols,
            values,
            shape,
            duplicates=duplicates,
            normalization=normalization,
            dense=dense,
            truth=truth,
            symmetric=symmetric,
        )

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
        if self.dense_mask is not None and self.dense_values is not None:  # set together
            r = self.dense_mask * W - self.dense_values
            return 0.5 * self.weight * jnp.sum(r * r)
        r = W[self.rows, self.cols] - self.values
        return 0.5 * self.weight * jnp.sum(r * r)

    def grad(self, W):
        if self.dense_mask is not None and self.dense_values is not None:  # set together
            return self.weight * (self.dense_mask * W - self.dense_values)
        r = self.weight * (W[self.rows, self.cols] - self.values)
        return jnp.zeros(self.shape, W.dtype).at[self.rows, self.cols].add(r)

    def loss_and_grad(self, W):
        if self.dense_mask is not None and self.dense_values is not None:  # set together
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
        self.shape = check_shape(shape, dense=True)  # W is dense in every solver
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


def matrix_from_spectrum(
    spectrum, shape=None, *, seed: int = 0, psd: bool = False, symmetric: bool | None = None
) -> np.ndarray:
    r"""``U diag(spectrum) V^T`` with Haar-random orthonormal ``U`` (m x r), ``V`` (n x r).

    With ``symmetric`` (or ``psd``) the result is ``U diag(spectrum) U^T`` (square); ``psd``
    requires a non-negative spectrum. ``shape`` defaults to ``(r, r)``.

    Raises:
        ValueError: a complex, non-finite, empty or all-zero ``spectrum`` (the zero matrix
            is no spectrum), more values than ``min(shape)``, a non-square ``shape`` with
            ``symmetric``/``psd``, or a matrix larger than this machine's memory.
    """
    s = check_real_array(spectrum, "spectrum").ravel()
    check_finite(s, "spectrum")
    r = s.size
    if r == 0:
        raise ValueError("`spectrum` is empty")
    if not np.any(s):
        raise ValueError(
            f"`spectrum` must hold at least one non-zero value, got {s.tolist()} (the zero matrix)"
        )
    m, n = check_shape(shape, dense=True) if shape is not None else (r, r)
    if shape is None:
        check_memory(r * r, f"a dense {r} x {r} matrix (`spectrum` of {r} values)")
    psd = check_bool(psd, "psd")
    symmetric = psd if symmetric is None else (check_bool(symmetric, "symmetric") or psd)
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


def random_low_rank(
    shape, rank: int, *, psd: bool = False, seed: int = 0, spectrum=None, normalize: bool = True
) -> np.ndarray:
    r"""A random rank-``rank`` matrix of shape ``shape``.

    * ``spectrum`` given: ``matrix_from_spectrum(spectrum, shape, psd=psd)``.
    * otherwise ``psd``: ``G G^T`` with ``G`` of shape ``(d, rank)``, i.i.d. N(0, 1);
      rectangular: ``G H^T``. With ``normalize`` (default) the result is scaled to
      ``||W||_F = sqrt(rank)`` (average squared singular value 1), a scale at which unit
      step sizes behave.

    Raises:
        ValueError: a ``shape`` that is not a pair of positive integers (``2.5``, ``"23"``;
            integral floats such as ``3.0`` are accepted) or whose matrix exceeds this
            machine's memory, ``rank`` outside ``[1, min(shape)]``, a ``spectrum`` that is
            complex or holds a zero (fewer than ``rank`` non-zero values).
    """
    m, n = check_shape(shape, dense=True)
    rank = check_int(rank, "rank", minimum=1)
    psd = check_bool(psd, "psd")
    normalize = check_bool(normalize, "normalize")
    if rank > min(m, n):
        raise ValueError(f"`rank`={rank} exceeds min(shape)={min(m, n)}")
    if spectrum is not None:
        s = check_real_array(spectrum, "spectrum").ravel()
        if s.size != rank:
            raise ValueError(f"`spectrum` has {s.size} values, expected `rank`={rank}")
        if s.size and not np.all(s):
            raise ValueError(
                f"`spectrum` must hold `rank`={rank} non-zero values for a rank-{rank} "
                f"matrix, got {s.tolist()}"
            )
        return matrix_from_spectrum(s, (m, n), seed=seed, psd=psd)
    if psd and m != n:
        raise ValueError(f"a PSD matrix must be square, got shape {(m, n)}")
    rng = np.random.default_rng(check_seed(seed))
    G = rng.standard_normal((m, rank))
    W = G @ G.T if psd else G @ rng.standard_normal((n, rank)).T
    if normalize:
        W *= np.sqrt(rank) / np.linalg.norm(W)
    return W


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


def _check_indices(x, name: str) -> np.ndarray:
    """``x`` as a flat int64 index array: integers, or integral floats (``1.0``); ``1.7``
    (which ``astype`` would truncate to 1), booleans and strings raise a ``ValueError``."""
    a = np.asarray(x).ravel()
    if a.size and not (
        (np.issubdtype(a.dtype, np.integer) and a.dtype != bool)
        or (
            np.issubdtype(a.dtype, np.floating)
            and np.all(np.isfinite(a))
            and np.all(a == np.round(a))
        )
    ):
        bad = a[0] if a.dtype.kind != "f" else a[~(np.isfinite(a) & (a == np.round(a)))][0]
        bad = bad.tolist()  # a Python scalar: prints as 1.7, not np.float64(1.7)
        raise ValueError(
            f"`{name}` must hold integer indices, got dtype {a.dtype} (e.g. {bad!r}); "
            f"pass integers (non-integral indices would be truncated)"
        )
    return a.astype(np.int64)


def _check_triplets(rows, cols, values, shape):
    m, n = check_shape(shape, dense=True)  # the observed matrix is stored dense
    r, c = _check_indices(rows, "rows"), _check_indices(cols, "cols")
    v = check_real_array(values, "values").ravel()
    if not (r.size == c.size == v.size):
        raise ValueError(
            f"`rows`, `cols` and `values` must have the same length, got "
            f"{r.size}, {c.size}, {v.size}"
        )
    check_finite(v, "values")
    for name, a, hi in (("rows", r, m), ("cols", c, n)):
        if a.size and (a.min() < 0 or a.max() >= hi):
            raise ValueError(
                f"`{name}` must lie in [0, {hi - 1}] for shape {(m, n)}, got "
                f"range [{a.min()}, {a.max()}]"
            )
    return r, c, v, (m, n)


def _from_triplets(
    cls,
    rows,
    cols,
    values,
    shape,
    *,
    duplicates="error",
    normalization="sum",
    dense=None,
    truth=None,
    symmetric=None,
):
    r, c, v, (m, n) = _check_triplets(rows, cols, values, shape)
    check_choice(duplicates, "duplicates", ("error", "mean", "last"))
    key = r * n + c
    uniq, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    if uniq.size < key.size:
        if duplicates == "error":
            k = int(uniq[np.argmax(counts > 1)])
            raise ValueError(
                f"entry ({k // n}, {k % n}) is given {int(counts.max())} times; pass "
                f"duplicates='mean' or 'last' to merge repeated entries"
            )
        if duplicates == "mean":
            v = np.bincount(inv, weights=v) / counts
        else:
            last = np.zeros(uniq.size, np.int64)
            last[inv] = np.arange(key.size)  # later indices overwrite earlier ones
            v = v[last]
        r, c = uniq // n, uniq % n
    M = np.zeros((m, n))
    M[r, c] = v
    return cls(
        M, (r, c), normalization=normalization, dense=dense, truth=truth, symmetric=symmetric
    )


def load_ratings(
    path,
    *,
    test_fraction: float = 0.1,
    seed: int | np.random.Generator = 0,
    shape=None,
    one_based: bool = True,
    duplicates: str = "error",
    normalization: str = "sum",
    delimiter: str | None = None,
    columns=None,
    header: bool | None = None,
    ids="auto",
) -> RatingsSplit:
    r"""Read a ratings file and split it at random into ``(train, heldout)``.

    The file is read by :func:`rankbias.ratings.read_ratings` (whitespace/tab, ``::`` or
    CSV with a header; ``delimiter``, ``columns``, ``header``, ``ids``, ``one_based``,
    ``shape`` are its arguments): by default a ``user item rating [timestamp]`` line
    (MovieLens ``u.data``) puts the rating at entry ``(user - 1, item - 1)`` of an
    ``(num_users, num_items)`` matrix; string ids are numbered in sorted order. A seeded
    permutation puts ``round(test_fraction * k)`` of the ``k`` ratings in the held-out set;
    the rest make the training :class:`MatrixCompletion` (:func:`rankbias.splits.random_split`;
    other splits are in :mod:`rankbias.splits`). Blank lines and lines starting with ``#``
    are skipped.

    Arguments:
        path: the text file.
        test_fraction: in ``[0, 1)``; ``seed``: of the split.
        shape: ``(num_users, num_items)``; default: what the ids need.
        duplicates: ``"error"``, ``"mean"`` or ``"last"`` (see
            :meth:`MatrixCompletion.from_triplets`).

    Returns:
        A :class:`~rankbias.splits.RatingsSplit`: it unpacks as ``(train, heldout)``, the
        training problem and a :class:`HeldOut` (score a prediction with
        ``heldout.rmse(W)``), and keeps the id mapping (``.ratings.user_ids``,
        ``.ratings.item_ids``) and the split (``.info``).

    Raises:
        ValueError: a malformed line (its number is given, its text never is: the file may
            be any file), a file that is not UTF-8 text, a non-integer id (integer ids from
            the first line on; ``ids="map"`` for strings), an id below the base, a
            non-finite rating, ``test_fraction`` outside ``[0, 1)``, or a split that leaves
            no training entry.
    """
    from .ratings import read_ratings
    from .splits import random_split

    tf = check_positive(test_fraction, "test_fraction", allow_zero=True)
    if tf >= 1:  # before reading: a bad argument is named before a large file is parsed
        raise ValueError(f"`test_fraction` must be in [0, 1), got {tf}")
    check_seed(seed)
    ratings = read_ratings(
        path, delimiter=delimiter, columns=columns, header=header, ids=ids,
        one_based=one_based, shape=shape,
    )  # fmt: skip
    return random_split(ratings, tf, seed, duplicates=duplicates, normalization=normalization)
