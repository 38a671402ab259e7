"""Validation helpers used once, at the public boundary (scikit-learn style).

Every helper raises ``ValueError`` naming the argument, what was expected and what was
received. Code behind the boundary trusts its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_matrix(
    x,
    name: str,
    *,
    shape: tuple[int, int] | None = None,
    square: bool = False,
    symmetric: bool = False,
    dtype=np.float64,
) -> np.ndarray:
    """Return ``x`` as a finite 2-D float array, or raise a ``ValueError`` naming ``name``."""
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`{name}` must be a real 2-D array; could not convert: {e}") from None
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array, got an array of shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}, got {arr.shape}")
    if square and arr.shape[0] != arr.shape[1]:
        raise ValueError(f"`{name}` must be square, got shape {arr.shape}")
    check_finite(arr, name)
    if symmetric:
        scale = max(1.0, float(np.max(np.abs(arr)))) if arr.size else 1.0
        if arr.shape[0] != arr.shape[1] or not np.allclose(arr, arr.T, atol=1e-10 * scale, rtol=0):
            raise ValueError(
                f"`{name}` must be symmetric (max |X - X^T| = "
                f"{float(np.max(np.abs(arr - arr.T))) if arr.shape[0] == arr.shape[1] else 'n/a'})"
            )
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    arr = np.asarray(arr)
    if arr.size and not np.all(np.isfinite(arr)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(f"`{name}` contains non-finite values ({n_nan} NaN, {n_inf} inf)")


def check_shape(shape, name: str = "shape") -> tuple[int, int]:
    try:
        m, n = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a pair of positive integers (m, n), got {shape!r}"
        ) from None
    if m < 1 or n < 1:
        raise ValueError(f"`{name}` must be a pair of positive integers (m, n), got {shape!r}")
    return m, n


def check_positive(x, name: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {v}")
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}, got {v}")
    return v


def check_int(x, name: str, *, minimum: int | None = None) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer, got {x!r}")
    if minimum is not None and x < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {x}")
    return int(x)


def check_choice(x, name: str, choices: Sequence[str]) -> str:
    if x not in choices:
        raise ValueError(f"unknown `{name}` {x!r}; expected one of {', '.join(map(repr, choices))}")
    return x


def check_seed(seed, name: str = "seed"):
    """A seed for ``numpy.random.default_rng``: a non-negative integer (or a NumPy
    ``Generator``/``SeedSequence``, passed through); raises ``ValueError`` naming ``name``."""
    if isinstance(seed, (np.random.Generator, np.random.SeedSequence)):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`{name}` must be a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {seed}")
    return int(seed)


def check_real_array(x, name: str) -> np.ndarray:
    """``x`` as a real float64 array (any shape); complex or non-numeric input raises a
    ``ValueError`` naming ``name`` (NumPy would drop the imaginary part with a warning)."""
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise ValueError(f"`{name}` must be real, got a complex array (dtype {arr.dtype})")
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}") from None
