r"""Greedy Low-Rank Learning (Li, Luo & Lyu, ICLR 2021): the ``eps -> 0`` limit of
gradient flow from a tiny initialization.

Symmetric (PSD) GLRL, for a convex ``f`` of a ``d x d`` matrix::

    W_0 = 0, U = (d x 0)
    for r = 1, 2, ...:
        (lam, u) = top eigenpair of -sym(grad f(W_{r-1}))     # sym(G) = (G + G^T) / 2
        if lam <= tol: stop; W_{r-1} is the limit               # sym(grad f) PSD: KKT
        U <- [U, sqrt(eps) u]                                   # (d x r)
        gradient flow dU/dt = -sym(grad f(U U^T)) U to convergence   # L(U) = 1/2 f(U U^T)
        W_r = U U^T

Asymmetric GLRL (``symmetric=False``): ``W = U V^T``; ``(lam, u, v)`` is the top singular
triple of ``-grad f(W)``; ``sqrt(eps) u`` is appended to ``U`` and ``sqrt(eps) v`` to ``V``,
the flow is that of ``L(U, V) = f(U V^T)`` (the engine's depth-2 ``DeepFactorization``
``W = W_2 W_1`` with ``W_2 = U``, ``W_1 = V^T``); it stops when ``||grad f(W)||_2 <= tol``.

Each phase leaves the saddle ``W_{r-1}`` after about ``log(1/eps) / (2 lam)`` (the new
component of ``W`` grows like ``eps e^{2 lam t}``); that is the phase's *escape time*.

The stopping point satisfies the KKT conditions of ``min_{W PSD} f(W)``:
``sym(grad f(W))`` PSD and ``sym(grad f(W)) W = 0``; both residuals are reported. For a
convex ``f`` this certifies a global minimiser over the PSD cone (asymmetric: of ``f``).

Layout (one job per module; the public names are re-exported here):

- ``_results``: :class:`GLRLResult`, :class:`GLRLPhase`;
- ``_greedy``: :func:`glrl`, validation and the greedy loop;
- ``_directions``: ``-grad f``, its top direction, the KKT residuals, the dense/sparse size;
- ``_factors``: phase starts, the phase model, width padding;
- ``_phase``: the one phase engine (dense and factor-only paths);
- ``_polish``: Newton-CG that finishes factor-only phases;
- ``_alignment``: the mid-level crossing time of a phase;
- ``_replay``: re-running a phase flow at chosen times (used by ``rankbias.compare``).
"""

from __future__ import annotations

import warnings

from ._directions import DENSE_MAX_SIDE, kkt_residuals, top_direction
from ._greedy import glrl
from ._results import GLRLPhase, GLRLResult

__all__ = ["glrl", "GLRLResult", "GLRLPhase", "top_direction", "kkt_residuals"]

_warned: set[str] = set()


def __getattr__(name: str):
    # Deprecated spelling, kept for one release: `DENSE_LIMIT` also names the flow's
    # 3,000-parameter limit (rankbias.dynamics._flow); this one is a side length.
    if name == "DENSE_LIMIT":
        if name not in _warned:
            _warned.add(name)
            warnings.warn(
                "rankbias.glrl.DENSE_LIMIT is deprecated; use rankbias.glrl.DENSE_MAX_SIDE "
                "(the largest max(m, n) that GLRL handles densely)",
                DeprecationWarning,
                stacklevel=2,
            )
        return DENSE_MAX_SIDE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
