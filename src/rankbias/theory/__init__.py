r"""Decoupled theory of deep matrix factorization on a symmetric target (Chou et al. 2024).

Setting: ``W^ = V diag(lam) V^T`` (``V`` orthogonal, ``lam_i`` of any sign), factors
``W_1 ... W_N`` in ``R^{n x n}``, loss ``1/2 ||W_N ... W_1 - W^||_F^2``, vanilla gradient descent
with step ``eta`` (all factors at once).

* **Identical init** ``W_j(0) = alpha I``: ``V^T W_j(k) V = diag(d(k))`` for every ``j`` and

  ``d_i(k+1) = d_i(k) - eta d_i(k)^{N-1} (d_i(k)^N - lam_i)``, ``d_i(0) = alpha``;

  the product has eigen-components ``p_i(k) = d_i(k)^N``.
* **Perturbed init** ``W_1(0) = (alpha - beta) I``, ``W_j(0) = alpha I`` (``j >= 2``):
  ``W_2 = ... = W_N`` keep one entry ``e_i`` and ``W_1`` another, ``c_i``:

  ``c <- c - eta e^{N-1} (c e^{N-1} - lam)``, ``e <- e - eta c e^{N-2} (c e^{N-1} - lam)``

  (simultaneous update), ``p_i(k) = c_i(k) e_i(k)^{N-1}``.
* **Gradient flow** (``eta -> 0``, ``t = k eta``): the same right-hand sides as ODEs,
  solved with ``scipy.integrate.solve_ivp`` (DOP853, ``rtol = 1e-11``); escape times of the
  identical-init flow are exact quadratures ``t = int_alpha^{(q lam)^{1/N}} dd / (d^{N-1}(lam - d^N))``.

**Escape step at fraction q.** The first step ``k >= 0`` (``W(0)`` is step 0) at which
``p_i(k) / lam_i >= q``; ``-1`` if it never happens within the run (e.g. a negative
``lam_i`` under identical init, whose component only decays to 0). This convention gives the
paper table's integers (Ex.1, ``N = 3``, ``eta = 0.01``: 99, 139, 193).

**Plateaus.** ``r(W(k)) = sum_i |p_i(k)| / max_i |p_i(k)|`` (``W`` is symmetric, so the
singular values are ``|p_i|``). Predicted levels ``r(W^_L) = sum_{i<=L} |lam_(i)| / |lam_(1)|``
with ``|lam_(1)| >= |lam_(2)| >= ...``. ``r`` first drops from ``n`` to about 1 and then rises;
plateaus are searched in the rising phase only, i.e. from ``k_min = argmin_k r(W(k))``: the
``L``-th plateau is the first maximal run of steps ``k >= k_min`` with
``|r(W(k)) - r(W^_L)| < tol``. (Counting from ``k_min`` is the convention of the paper's table:
Ex.1, ``N = 3``: ``[102, 127]``, ``[145, 178]``, from 202; the drop phase crosses the same
levels briefly and is not a plateau.)
"""

from ._decoupled import (
    DecoupledDynamics,
    identical_flow,
    identical_init,
    perturbed_flow,
    perturbed_init,
)
from ._escape import EscapeSteps
from ._layerwise import DriftWarning, LayerwiseReport, layerwise_check
from ._plateaus import Plateau, find_plateaus, plateau_levels
from ._stability import StabilityWarning, max_stable_lr
from ._targets import EXAMPLE_1, EXAMPLE_2, paper_basis

__all__ = [
    "DecoupledDynamics",
    "EscapeSteps",
    "Plateau",
    "LayerwiseReport",
    "StabilityWarning",
    "DriftWarning",
    "identical_init",
    "perturbed_init",
    "identical_flow",
    "perturbed_flow",
    "max_stable_lr",
    "plateau_levels",
    "find_plateaus",
    "layerwise_check",
    "paper_basis",
    "EXAMPLE_1",
    "EXAMPLE_2",
]
