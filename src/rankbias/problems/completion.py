r"""Matrix completion: observe entries ``M_ij`` for ``(i, j)`` in ``Omega``.

``f(W) = c/2 * sum_{(i,j) in Omega} (W_ij - M_ij)^2`` with ``c = 1`` (``normalization="sum"``,
the convention of Li et al.) or ``c = 1/|Omega|`` (``"mean"``); observed entries are stored
as index lists (and, for small dense masks, as a dense mask too).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._validation import (
    SYMMETRY_RTOL,
    check_bool,
    check_choice,
    check_finite,
    check_matrix,
    check_positive,
    check_real_array,
    check_seed,
    check_shape,
    check_symmetric_values,
)
from ._batches import EntryBatch
from .base import LinearMap, ObservedEntries, Problem

__all__ = ["MatrixCompletion"]


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

    # -- the protocol of :class:`~rankbias.problems.base.Problem` ---------------------------

    def observed_entries(self) -> ObservedEntries:
        """The observed entries: ``f(W) = weight/2 sum_e (W[rows_e, cols_e] - values_e)^2``."""
        return ObservedEntries(self.rows, self.cols, self.values, self.weight)

    def linear_map(self) -> LinearMap:
        """``A(X) = X[rows, cols]``, ``b`` the observed values."""
        return LinearMap(
            self.shape,
            np.asarray(self.values, dtype=np.float64),
            rows=np.asarray(self.rows),
            cols=np.asarray(self.cols),
        )

    def measure(self, W):
        return W[self.rows, self.cols]

    @property
    def is_quadratic(self) -> bool:
        return True

    def lipschitz(self) -> float:
        """``c``: ``grad f`` is ``c`` times a projection."""
        return float(self.weight)

    def host_grad(self):
        """``c P_Omega(X - M)`` in NumPy (no JAX dispatch per call, which dominated small
        Soft-Impute runs)."""
        mask = self.mask
        Mv = np.zeros(self.shape)
        Mv[np.asarray(self.rows), np.asarray(self.cols)] = np.asarray(self.values)
        w = float(self.weight)
        return lambda X: w * np.where(mask, X - Mv, 0.0)

    @property
    def num_terms(self) -> int:
        return self.num_observed

    def minibatch(self, idx):
        """The observed entries ``idx``, weight ``c |Omega| / |B|``."""
        N = self.rows.shape[0]
        return EntryBatch(
            self.shape,
            self.rows[idx],
            self.cols[idx],
            self.values[idx],
            self.weight * (N / idx.shape[0]),
        )


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
