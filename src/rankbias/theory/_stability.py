"""The paper's sufficient step-size bound for the decoupled GD, and its warning."""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import check_int, check_positive
from ._targets import _check_eigenvalues


class StabilityWarning(UserWarning):
    """The step size exceeds the paper's sufficient bound (:func:`max_stable_lr`)."""


def max_stable_lr(eigenvalues, depth: int, alpha: float) -> float:
    r"""The paper's sufficient step-size bound for convergence of the decoupled GD.

    Per component, with ``M_i = max(alpha, |lam_i|^{1/N})``:
    ``eta < 1 / (2 N M_i^{2N-2})`` if ``lam_i >= 0`` and ``eta < 1 / ((3N - 2) M_i^{2N-2})`` if
    ``lam_i < 0``; the components decouple, so the bound is the minimum over ``i``. Sufficient
    only: larger steps (e.g. the paper's own ``eta = 0.01`` on Ex.1) may still converge.
    """
    lam = _check_eigenvalues(eigenvalues)
    N = check_int(depth, "depth", minimum=1)
    a = check_positive(alpha, "alpha")
    M = np.maximum(a, np.abs(lam) ** (1.0 / N))
    c = np.where(lam >= 0, 2.0 * N, 3.0 * N - 2.0)
    return float(np.min(1.0 / (c * M ** (2 * N - 2))))


def _warn_lr(lam, depth, alpha, lr):
    bound = max_stable_lr(lam, depth, alpha)
    if lr >= bound:
        warnings.warn(
            f"lr = {lr:g} exceeds the sufficient stability bound max_stable_lr = {bound:.6g} "
            f"(depth {depth}, alpha {alpha:g}, max |lam| {np.max(np.abs(lam)):g}); "
            "convergence is not guaranteed",
            StabilityWarning,
            stacklevel=3,
        )
