r"""Convex and rank-constrained baselines for the implicit bias of gradient flow.

* :func:`min_nuclear_norm`: ``min ||X||_*`` (PSD: ``min tr X`` over ``X >= 0``) subject to
  exact data constraints ``A(X) = b`` (completion: ``X_ij = M_ij`` on ``Omega``; sensing:
  ``<A_k, X> = y_k``): Clarabel (cvxpy) for ``m + n <= 60``, above a first-order
  augmented Lagrangian on the factors (:mod:`rankbias._nuclear`); SCS on request. The
  answer carries the solver status and a duality gap computed here from the constraint
  multipliers, so an instance is certified by a number, not by the solver's word.
* :func:`soft_impute`, :func:`soft_impute_path`: ``min f(X) + lam ||X||_*`` (PSD:
  ``+ lam tr X`` over ``X >= 0``) by accelerated proximal gradient (restarted FISTA) with
  step ``1 / Lip(grad f)``. For
  completion with ``normalization="sum"`` the step is 1 and the iteration is exactly
  Soft-Impute (Mazumder, Hastie & Tibshirani 2010): ``X <- S_lam(P_Omega(M) + P_Omega^perp(X))``.
* :func:`best_rank_fit`: ``min f(X)`` over ``rank(X) <= r`` (PSD: ``X = U U^T``, ``U`` of
  shape ``(d, r)``), by L-BFGS on the factor from several random starts: the "rank
  minimisation" reference.
* :func:`mean_baseline`, :func:`bias_baseline`: the simple rating predictors (global, user
  or item mean; mean plus regularised user and item biases), the baselines a factorization
  must beat on real ratings.

Layout: :mod:`.solution` (:class:`ConvexSolution`, :func:`nuclear_norm`), :mod:`.nuclear`
(:func:`min_nuclear_norm`), :mod:`.proximal` (Soft-Impute), :mod:`.rank_fit`
(:func:`best_rank_fit`), :mod:`.predictors` (:class:`MeanPredictor`, :func:`mean_baseline`,
:func:`bias_baseline`); the numerical engines are in :mod:`rankbias._nuclear`.
"""

from .nuclear import min_nuclear_norm
from .predictors import MeanPredictor, bias_baseline, mean_baseline
from .proximal import soft_impute, soft_impute_path
from .rank_fit import best_rank_fit
from .solution import ConvexSolution, nuclear_norm

__all__ = [
    "ConvexSolution",
    "min_nuclear_norm",
    "soft_impute",
    "soft_impute_path",
    "best_rank_fit",
    "nuclear_norm",
    "MeanPredictor",
    "mean_baseline",
    "bias_baseline",
]
