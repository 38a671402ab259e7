"""Validation helpers used once, at the public boundary (scikit-learn style).

Every helper raises ``ValueError`` naming the argument, what was expected and what was
received. Code behind the boundary trusts its inputs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

#: Relative tolerance of the symmetry checks: ``max |X_ij - X_ji| <= SYMMETRY_RTOL * max |X|``
#: (a few hundred float64 roundings: ``G @ G.T`` computed by BLAS passes, real asymmetry
#: does not).
SYMMETRY_RTOL = 1e-12


def check_matrix(
    x,
    name: str,
    *,
    shape: tuple[int, int] | None = None,
    square: bool = False,
    symmetric: bool = False,
    dtype=np.float64,
) -> np.ndarray:
    """Return ``x`` as a finite, non-empty, real 2-D float array, or raise a ``ValueError``
    naming ``name`` (complex input is refused: NumPy would drop the imaginary part)."""
    try:
        raw = np.asarray(x)  # a ragged list fails here
    except (TypeError, ValueError) as e:
        raise ValueError(f"`{name}` must be a real 2-D array; could not convert: {e}") from None
    if np.iscomplexobj(raw):
        raise ValueError(
            f"`{name}` must be real (rankbias is real-valued), got a complex array "
            f"(dtype {raw.dtype}); pass its real part explicitly if that is what you mean"
        )
    try:
        arr = np.asarray(raw, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`{name}` must be a real 2-D array; could not convert: {e}") from None
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}, got {arr.shape}")
    if square and arr.shape[0] != arr.shape[1]:
        raise ValueError(f"`{name}` must be square, got shape {arr.shape}")
    check_finite(arr, name)
    if symmetric:
        if arr.shape[0] != arr.shape[1]:
            raise ValueError(f"`{name}` must be symmetric, got a non-square shape {arr.shape}")
        check_symmetric_values(arr, arr.T, name)
    return arr


def check_symmetric_values(a: np.ndarray, a_t: np.ndarray, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` when the values ``a`` and their mirrored
    counterparts ``a_t`` (``X_ij`` and ``X_ji``) differ by more than
    ``SYMMETRY_RTOL * max |a|``; the message gives the largest asymmetry."""
    a, a_t = np.asarray(a, dtype=np.float64), np.asarray(a_t, dtype=np.float64)
    if a.size == 0:
        return
    diff = np.abs(a - a_t)
    worst = float(diff.max())
    scale = float(np.abs(a).max())
    if worst > SYMMETRY_RTOL * scale:
        raise ValueError(
            f"`{name}` must be symmetric: max |X_ij - X_ji| = {worst:.3g} exceeds "
            f"{SYMMETRY_RTOL:g} * max |X| = {SYMMETRY_RTOL * scale:.3g}; symmetrise it "
            f"((X + X.T) / 2) or leave `symmetric` unset"
        )


def check_finite(arr: np.ndarray, name: str) -> None:
    arr = np.asarray(arr)
    if arr.size and not np.all(np.isfinite(arr)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(f"`{name}` contains non-finite values ({n_nan} NaN, {n_inf} inf)")


def _as_int(x) -> int | None:
    """``x`` as an ``int`` when it is an integer (Python or NumPy, not ``bool``) or an
    integral float (``3.0``); ``None`` otherwise (``2.5``, ``"3"``, ``True``, ``nan``)."""
    if hasattr(x, "shape") and getattr(x, "shape", None) == () and hasattr(x, "dtype"):
        x = np.asarray(x).item()  # a 0-d NumPy or JAX array: its scalar
    if isinstance(x, (bool, np.bool_)):
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)) and math.isfinite(x) and float(x).is_integer():
        return int(x)
    return None


def check_shape(shape, name: str = "shape", *, dense: bool = False) -> tuple[int, int]:
    """``shape`` as a pair ``(m, n)`` of positive integers, or a ``ValueError`` naming ``name``.

    Integers (Python or NumPy) and integral floats (``3.0``) are accepted; ``2.5`` (which
    ``int()`` would truncate), strings (``"23"`` would read as ``(2, 3)``) and booleans are
    refused. ``dense``: an ``(m, n)`` float64 matrix will be allocated, so a shape whose
    matrix cannot fit in this machine's memory is refused with its size in GB
    (:func:`check_memory`).
    """
    msg = f"`{name}` must be a pair of positive integers (m, n), got {shape!r}"
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
        raise ValueError(msg)
    try:
        items = list(shape)
    except TypeError:
        raise ValueError(msg) from None
    if len(items) != 2:
        raise ValueError(msg)
    m, n = (_as_int(s) for s in items)
    if m is None or n is None or m < 1 or n < 1:
        raise ValueError(msg)
    if dense:
        check_memory(m * n, f"a dense {m} x {n} matrix (`{name}`)")
    return m, n


def memory_limit_bytes() -> int | None:
    """This machine's physical memory in bytes (``None`` where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(num_values: int, what: str, *, itemsize: int = 8) -> None:
    """Refuse ``num_values`` float64 values (``itemsize`` bytes each) that exceed this
    machine's physical memory: a ``ValueError`` that gives the size in GB, instead of a
    ``MemoryError`` traceback (or swapping) later."""
    limit = memory_limit_bytes()
    need = int(num_values) * itemsize
    if limit is not None and need > limit:
        raise ValueError(
            f"{what} needs {need / 1e9:.1f} GB, more than this machine's memory "
            f"({limit / 1e9:.1f} GB); use a smaller shape (or a sparse completion problem "
            f"with a narrow model)"
        )


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


def check_int(x, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``x`` as an ``int`` in ``[minimum, maximum]``, or a ``ValueError`` naming ``name``.

    Python and NumPy integers only: ``2.5``, ``3.0``, ``"3"`` and booleans are refused.
    """
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer, got {x!r}")
    if minimum is not None and x < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {x}")
    if maximum is not None and x > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {x}")
    return int(x)


def check_bool(x, name: str) -> bool:
    """``x`` as a ``bool``; anything but ``True``/``False`` (NumPy's included) raises a
    ``ValueError`` naming ``name``: ``bool("no")`` is ``True``, so a string is never read
    as a flag."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    raise ValueError(f"`{name}` must be True or False, got {x!r}")


def check_float_dtype(dtype, name: str = "dtype"):
    """``dtype`` as a NumPy dtype, float32 or float64 only (rankbias is real-valued and its
    solvers need at least single precision): float16, complex and integer dtypes raise a
    ``ValueError`` naming ``name`` that says what to pass instead."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(
            f"`{name}` must be float64 (the default) or float32, got {dtype!r}"
        ) from None
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        why = (
            "integer factors round to 0"
            if dt.kind in "iub"
            else "rankbias is real-valued"
            if dt.kind == "c"
            else "too coarse for the solvers"
            if dt.kind == "f" or "float" in dt.name
            else "not a floating dtype"
        )
        raise ValueError(
            f"`{name}` must be float64 (the default) or float32, got {dt} ({why}); "
            f"pass {name}='float64' or 'float32'"
        )
    return dt


def check_choice(x, name: str, choices: Sequence[str]) -> str:
    if x not in choices:
        raise ValueError(f"unknown `{name}` {x!r}; expected one of {', '.join(map(repr, choices))}")
    return x


def check_seed(seed, name: str = "seed"):
    """A seed for ``numpy.random.default_rng``: a non-negative integer (or a NumPy
    ``Generator``/``SeedSequence``, passed through); raises ``ValueError`` naming ``name``."""
    if isinstance(seed, (np.random.Generator, np.random.SeedSequence)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`{name}` must be a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {seed}")
    return int(seed)


def check_int_seed(seed, name: str = "seed") -> int:
    """A seed that must be a plain non-negative integer (it is stored, or offset per
    phase): a NumPy ``Generator`` is refused too; raises ``ValueError`` naming ``name``."""
    s = check_seed(seed, name)
    if not isinstance(s, int):
        raise ValueError(f"`{name}` must be a non-negative integer, got {seed!r}")
    return s


def check_real_array(x, name: str) -> np.ndarray:
    """``x`` as a real float64 array (any shape); complex or non-numeric input raises a
    ``ValueError`` naming ``name`` (NumPy would drop the imaginary part with a warning)."""
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise ValueError(
            f"`{name}` must be real (rankbias is real-valued), got a complex array "
            f"(dtype {arr.dtype})"
        )
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real numeric array, got dtype {arr.dtype}") from None
