"""The paper's symmetric targets and the check of a user's eigenvalues or target matrix."""

from __future__ import annotations

import numpy as np

from .._validation import check_finite

EXAMPLE_1 = (10.0, 7.0, 5.0, -5.0)
EXAMPLE_2 = (5.0, 3.0, -1.0, -5.0)


def paper_basis() -> np.ndarray:
    """The paper's orthogonal ``V`` (4 x 4) for Ex.1 and Ex.2."""
    return np.array([[0, 1, 1, 1], [1, 0, 1, -1], [1, -1, 0, 1], [1, 1, -1, 0]], float) / np.sqrt(3)


def _check_eigenvalues(eigenvalues) -> np.ndarray:
    """1-D eigenvalues as given, or a symmetric target matrix (its eigenvalues, |lam| descending)."""
    try:
        lam = np.asarray(eigenvalues, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`eigenvalues` must be a 1-D sequence of reals or a symmetric matrix: {e}"
        ) from None
    if lam.ndim == 2:
        check_finite(lam, "eigenvalues")
        if lam.shape[0] != lam.shape[1]:
            raise ValueError(
                f"`eigenvalues`: a target matrix must be square and symmetric, got shape {lam.shape}"
            )
        asym = float(np.max(np.abs(lam - lam.T))) if lam.size else 0.0
        if asym > 1e-10 * max(1.0, float(np.max(np.abs(lam)))):
            raise ValueError(
                "`eigenvalues`: the decoupled theory needs a symmetric target W^ = V diag(lam) V^T; "
                f"got a non-symmetric matrix (max |W - W^T| = {asym:.3g}). For a general target use "
                "rb.gradient_descent with rb.DeepFactorization (no decoupling holds)."
            )
        lam = np.linalg.eigvalsh(0.5 * (lam + lam.T))
        lam = lam[np.argsort(-np.abs(lam), kind="stable")]
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"`eigenvalues` must be a non-empty 1-D sequence, got shape {lam.shape}")
    check_finite(lam, "eigenvalues")
    return lam
