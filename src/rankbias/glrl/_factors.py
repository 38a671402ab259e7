r"""The factors of a GLRL iterate: ``(U,)`` with ``W = U U^T`` (PSD) or ``(V^T, U)`` with
``W = U V^T`` (asymmetric, the engine's depth-2 ``W = W_2 W_1``, ``W_1 = V^T``, ``W_2 = U``).

How a phase starts (:func:`append_direction`), its model, and the padding of the width to a
multiple of :data:`WIDTH_BLOCK` (one compilation serves eight phases).
"""

from __future__ import annotations

import numpy as np

from ..models import DeepFactorization, Model, SymmetricFactorization

__all__ = [
    "WIDTH_BLOCK",
    "zero_factors",
    "width",
    "product",
    "append_direction",
    "phase_model",
    "padded_model",
    "unpad",
]

#: Phase widths are padded up to a multiple of this: one compiled flow serves 8 phases (and
#: every later GLRL call of the same shape) instead of one compilation per rank.
WIDTH_BLOCK = 8


def zero_factors(shape, psd: bool) -> tuple[np.ndarray, ...]:
    """The factors of ``W_0 = 0``: width 0."""
    m, n = shape
    # tuple(): typed tuple[ndarray, ...], not narrowed to a 1-tuple (pyright)
    return tuple((np.zeros((m, 0)),) if psd else (np.zeros((0, n)), np.zeros((m, 0))))


def width(factors, psd: bool) -> int:
    """The rank ``r`` of the factors: columns of ``U``."""
    return factors[0].shape[1] if psd else factors[0].shape[0]


def product(factors, psd: bool) -> np.ndarray:
    """``W = U U^T`` or ``W = U V^T``."""
    if psd:
        (U,) = factors
        return U @ U.T
    V1, U2 = factors
    return U2 @ V1


def append_direction(factors, direction, eps: float, psd: bool) -> tuple[np.ndarray, ...]:
    """The start of a phase: ``U <- [U, sqrt(eps) u]`` (and ``V <- [V, sqrt(eps) v]``)."""
    s = np.sqrt(eps)
    if psd:
        return (np.concatenate([factors[0], s * direction[:, None]], axis=1),)
    u, v = direction
    return (
        np.concatenate([factors[0], s * v[None, :]], axis=0),
        np.concatenate([factors[1], s * u[:, None]], axis=1),
    )


def phase_model(shape, psd: bool, r: int) -> Model:
    """The factorization of width ``r`` whose flow is the phase flow."""
    if psd:
        return SymmetricFactorization(shape[0], width=r)
    return DeepFactorization(shape, depth=2, width=r)


def padded_width(r: int, shape) -> int:
    return max(min(-(-max(r, 1) // WIDTH_BLOCK) * WIDTH_BLOCK, min(shape)), r)


def padded_model(shape, factors, psd: bool):
    """A phase's model and factors at the width padded to a multiple of 8 (one compilation
    serves 8 phases, and every later GLRL call of the same shape). Zero columns of ``U``
    (rows of ``W_1`` / columns of ``W_2``) stay exactly zero under the flow and the Newton
    polish (their gradient is ``sym(G) 0``), so the trajectory is that of width ``r``."""
    r = width(factors, psd)
    R = padded_width(r, shape)
    if psd:
        padded = (np.pad(np.asarray(factors[0], dtype=np.float64), ((0, 0), (0, R - r))),)
    else:
        padded = (
            np.pad(np.asarray(factors[0], dtype=np.float64), ((0, R - r), (0, 0))),
            np.pad(np.asarray(factors[1], dtype=np.float64), ((0, 0), (0, R - r))),
        )
    return phase_model(shape, psd, R), padded


def unpad(params, r: int, psd: bool) -> tuple[np.ndarray, ...]:
    """The first ``r`` columns of ``U`` (rows of ``V^T``), as float64 NumPy."""
    if psd:
        return (np.asarray(params[0], dtype=np.float64)[:, :r],)
    return (
        np.asarray(params[0], dtype=np.float64)[:r],
        np.asarray(params[1], dtype=np.float64)[:, :r],
    )
