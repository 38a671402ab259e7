r"""Ground-truth matrices: random low-rank ones and ones with a given spectrum (NumPy)."""

from __future__ import annotations

import numpy as np

from .._validation import (
    check_bool,
    check_finite,
    check_int,
    check_memory,
    check_real_array,
    check_seed,
    check_shape,
)

__all__ = ["random_low_rank", "matrix_from_spectrum"]


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
