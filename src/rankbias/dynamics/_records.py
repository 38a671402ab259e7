r"""The BLAS thread limit an engine runs under when its records decompose large matrices
(:func:`lapack_threads`). The records' singular values themselves are asked of the model:
:meth:`rankbias.models.Model.spectrum`, whose default is
:func:`rankbias._spectrum.record_spectrum` (exact when that is cheap, the top ``k`` above a
size).
"""

from __future__ import annotations

import contextlib

from .._spectrum import EXACT_SV_MAX

__all__ = ["lapack_threads"]


def lapack_threads(shape):
    """Context for running an engine on a problem of ``shape``: one BLAS thread for JAX's
    CPU LAPACK kernels (QR, SVD: scipy's OpenBLAS) when ``min(m, n) > EXACT_SV_MAX``, where
    the records' decompositions are of tall-skinny blocks; nothing otherwise.

    Measured at 943 x 1682 on the shared 2-core machine at load 7 (2026-12-07): a full SVD
    27.8 s with OpenBLAS's 2 threads against 2.3 s on one, the top-k of :func:`rankbias._spectrum.top_k` 35.9 s
    against 1.4 s (OpenBLAS threads spin against the other processes). XLA's own matrix
    products (the steps) do not use this pool."""
    if min(shape) <= EXACT_SV_MAX:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a listed dependency
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")
