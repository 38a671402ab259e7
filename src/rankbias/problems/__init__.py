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
* :class:`LinearRegression`:  ``f(beta) = c/2 ||X beta - y||^2`` (``c = 1``, ``"sum"``, or
  ``1/n``, ``"mean"``) on a vector ``beta``, the problem's ``(d, 1)`` matrix (diagonal
  networks); :func:`sparse_recovery` draws ``X`` with ``N(0, 1/n)`` entries and a ``k``-sparse
  ``+-1`` truth.

Every problem is an ``equinox.Module`` (a pytree): its arrays are traced, so a jitted solver
compiled for one problem is reused for any other problem of the same shapes.

Layout (one job per module): :mod:`.base` (the :class:`Problem` base and the optional
methods the engines ask a problem through), :mod:`.completion`, :mod:`.sensing`,
:mod:`.estimation`, :mod:`.custom`,
:mod:`.regression` (one problem type each), :mod:`.matrices` (ground truths),
:mod:`.heldout` (held-out ratings), :mod:`.splits` (reading and splitting ratings). A new
problem type is one new module with a subclass of :class:`Problem`.
"""

from .base import Problem
from .completion import MatrixCompletion
from .custom import CustomLoss
from .estimation import MatrixEstimation
from .heldout import HeldOut, heldout_rmse
from .matrices import matrix_from_spectrum, random_low_rank
from .regression import LinearRegression, sparse_recovery
from .sensing import MatrixSensing
from .splits import load_ratings

__all__ = [
    "Problem",
    "MatrixCompletion",
    "MatrixSensing",
    "MatrixEstimation",
    "CustomLoss",
    "LinearRegression",
    "sparse_recovery",
    "random_low_rank",
    "matrix_from_spectrum",
    "load_ratings",
    "HeldOut",
    "heldout_rmse",
]
