r"""Spectral metrics of a matrix or a stack of singular-value vectors.

Effective-rank definitions (``sigma_1 >= sigma_2 >= ... >= 0`` the singular values):

* ``"ratio"``   ``r(W) = ||W||_* / ||W||_2 = sum_i sigma_i / sigma_1`` (Chou et al.);
  ``1 <= r <= rank(W)``.
* ``"entropy"`` ``exp(H(p))``, ``p_i = sigma_i / sum_j sigma_j``, ``H(p) = -sum p_i log p_i``
  with ``0 log 0 = 0`` (Roy & Vetterli 2007); ``1 <= r <= rank(W)``.
* ``"stable"``  ``||W||_F^2 / ||W||_2^2 = sum sigma_i^2 / sigma_1^2``.
* ``"numerical"`` ``#{i : sigma_i > tol * sigma_1}`` with ``tol`` default ``1e-6``.

The zero matrix has effective rank 0 under every definition. All functions accept a
matrix ``W`` (``(m, n)``), or singular values (``(..., k)``) with ``from_singular_values``.

Top-``k`` records: above a size a trajectory records only the ``k`` largest singular values
and NaN for the others (:mod:`rankbias._spectrum`). NaN entries of ``sv`` count as
not computed: the ranks are then those of ``W_k``, the best rank-``k`` approximation of
``W``. ``"ratio"``, ``"stable"`` and ``"numerical"`` of ``W_k`` are lower bounds of those of
``W`` (equal when ``rank W <= k``; ``"numerical"`` also when fewer than ``k`` values exceed
``tol * sigma_1``); ``"entropy"`` of ``W_k`` renormalises over the ``k`` values.
"""

from __future__ import annotations

import numpy as np

from ._validation import (
    check_bool,
    check_choice,
    check_finite,
    check_positive,
    check_real_array,
)

__all__ = ["effective_rank", "singular_values", "EFFECTIVE_RANKS", "effective_ranks_from_sv"]

EFFECTIVE_RANKS = ("ratio", "entropy", "stable", "numerical")


def singular_values(W) -> np.ndarray:
    """Singular values of ``W`` (``(..., m, n)``) in descending order, ``(..., min(m, n))``."""
    W = check_real_array(W, "W")
    if W.ndim < 2:
        raise ValueError(f"`W` must be at least 2-D, got shape {W.shape}")
    if W.shape[-1] == 0 or W.shape[-2] == 0:
        raise ValueError(f"`W` must not be empty, got shape {W.shape}")
    check_finite(W, "W")
    return np.linalg.svd(W, compute_uv=False)


def effective_ranks_from_sv(sv, kind: str = "ratio", *, tol: float = 1e-6) -> np.ndarray:
    """Effective rank from singular values ``sv`` of shape ``(..., k)`` (any order).

    NaN entries are values not computed (a top-``k`` record): they are left out, and the
    result is the effective rank of the best rank-``k`` approximation (module docstring); a
    row of NaN only gives NaN. Infinite entries raise ``ValueError``."""
    check_choice(kind, "kind", EFFECTIVE_RANKS)
    s = check_real_array(sv, "sv")
    if s.ndim < 1 or s.shape[-1] == 0:
        raise ValueError(f"`sv` must hold at least one singular value, got shape {s.shape}")
    if np.any(np.isinf(s)):
        raise ValueError("`sv` must be finite (NaN marks a value not computed), got inf")
    check_positive(tol, "tol")
    missing = np.isnan(s)
    none = missing.all(axis=-1)
    s = np.where(missing, 0.0, np.abs(s))
    top = s.max(axis=-1)
    safe = np.where(top > 0, top, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ratio":
            r = s.sum(axis=-1) / safe
        elif kind == "stable":
            r = (s / safe[..., None]) ** 2
            r = r.sum(axis=-1)
        elif kind == "numerical":
            r = (s > tol * safe[..., None]).sum(axis=-1).astype(np.float64)
        else:
            total = s.sum(axis=-1)
            p = s / np.where(total > 0, total, 1.0)[..., None]
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
            r = np.exp(-plogp.sum(axis=-1))
    return np.where(none, np.nan, np.where(top > 0, r, 0.0))


def effective_rank(
    W, kind: str = "ratio", *, tol: float = 1e-6, from_singular_values: bool = False
):
    """Effective rank of ``W`` (see the module docstring for ``kind``).

    Returns a float for one matrix, an array for a stack.

    Raises:
        ValueError: ``W`` complex, empty or with NaN/inf entries (NumPy's SVD would return
            garbage and this function 0.0), negative singular values (with
            ``from_singular_values``: ``[1, -2]`` is no list of singular values; pass
            ``np.abs`` of eigenvalues explicitly), or an unknown ``kind``.
    """
    if check_bool(from_singular_values, "from_singular_values"):
        sv = check_real_array(W, "sv")
        # NaN ("not computed", a top-k record) only through effective_ranks_from_sv
        check_finite(sv, "sv")
        if np.any(sv < 0):
            raise ValueError(
                f"`W` holds singular values (from_singular_values=True), which are >= 0; "
                f"got min {float(np.min(sv)):g} (pass np.abs(...) of eigenvalues)"
            )
    else:
        sv = singular_values(W)
    r = effective_ranks_from_sv(sv, kind, tol=tol)
    return float(r) if np.ndim(r) == 0 else r
