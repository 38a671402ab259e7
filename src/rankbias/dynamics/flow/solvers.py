"""The flow's solvers by name, the vector field ``-grad L`` they integrate, and the arguments
every solver and the steady-state event receive.

Solvers built on :class:`~rankbias.dynamics.RKC` (``"hybrid"``, ``"rkc"``, ``"rodas4"``,
``"krylov"``) count their own evaluations and carry a state across segments; diffrax's
``"tsit5"``, ``"dopri5"``, ``"dopri8"`` and ``"kvaerno5"`` are there for reference.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._krylov import dominant_eigenpairs
from .._rkc import RKC
from .._sparse import loss_and_grad

#: ``"hybrid"`` takes Rodas4 steps (dense Jacobian: ``P`` JVPs and an ``O(P^3)`` LU) only
#: for at most this many parameters; above it, it is ``"rkc"``.
DENSE_LIMIT = 3000
#: ``"hybrid"`` switches from an RKC step to a Rodas4 step above this many stages.
DENSE_STAGES = 100
#: ``"krylov"``'s Rodas4 steps solve by GMRES, preconditioned by the exact inverse on this
#: many dominant eigenvectors of the Jacobian (``min(KRYLOV_RANK, P)``).
KRYLOV_RANK = 1024

#: Solvers built on RKC, which count their evaluations and carry a state over segments.
OWN = ("hybrid", "rkc", "rodas4", "krylov")
#: Stages of diffrax's explicit Runge-Kutta solvers (all FSAL: a step evaluates ``stages - 1``
#: of them, the first step all of them).
RK_STAGES = {"tsit5": 7, "dopri5": 7, "dopri8": 14}


class FlowArgs(NamedTuple):
    """The ``args`` of every solve: the data, the stopping test's references (``loss0``,
    ``gnorm0 = ||grad f(W(0))||`` of the flow's start), its traced tolerances, and the Krylov
    basis ``(Vt, theta)`` of ``"krylov"`` (``None`` for other solvers). ``basis`` is the last
    field: :class:`~rankbias.dynamics.RKC` reads it as ``args[-1]``."""

    problem: Any
    loss0: jax.Array
    gnorm0: jax.Array
    tols: Any  # settings.Tolerances
    basis: tuple[jax.Array, jax.Array] | None = None


def make_solver(name: str, size: int | None = None, tols: Any = None):
    """The diffrax solver for ``name``; ``size`` (the state's length) decides whether
    ``"hybrid"`` may take dense Rodas4 steps. ``tols`` (the controller's ``rtol``, ``atol``:
    a ``settings.Tolerances``) lets the RKC-based solvers predict the controller: they hold
    the step at the Tsit5/Chebyshev switch and skip the spectral estimate on rejected
    attempts (:class:`~rankbias.dynamics.RKC`, issue 30); ``None``: they do not."""
    ctl = {} if tols is None else dict(rtol=tols.rtol, atol=tols.atol)
    if name == "hybrid":
        dense = size is not None and size <= DENSE_LIMIT
        return RKC(dense_stages=DENSE_STAGES if dense else None, **ctl)
    if name == "krylov":
        return RKC(krylov_stages=DENSE_STAGES, krylov_rank=KRYLOV_RANK, **ctl)
    if name == "rodas4":
        return RKC(tsit5_limit=-1.0, dense_stages=0, **ctl)
    if name == "rkc":
        return RKC(**ctl)
    if name == "tsit5":
        return diffrax.Tsit5()
    if name == "dopri5":
        return diffrax.Dopri5()
    if name == "dopri8":
        return diffrax.Dopri8()
    return diffrax.Kvaerno5()


def vector_field(model):
    """``f(t, y, problem) = -grad L(y)`` on the flat parameter vector ``y`` (length ``P``)."""

    def vf(t, y, problem):
        _, g, _ = loss_and_grad(problem, model, model.unflatten(y))
        return -model.flatten(g)

    return vf


def krylov_rank(solver, size: int) -> int:
    """``k`` of the Krylov basis that ``solver`` uses at this size (0: none)."""
    if isinstance(solver, RKC) and solver.krylov_stages is not None:
        return min(solver.krylov_rank, size)
    return 0


def no_basis(k: int, y: jax.Array):
    """The placeholder Krylov basis: zeros (``theta == 0`` makes a Krylov step ask for one)."""
    return jnp.zeros((k, y.size), y.dtype), jnp.zeros((k,), y.dtype)


@eqx.filter_jit
def build_basis(problem, y, model, k: int):
    """``(Vt, theta)``: ``k`` dominant eigenpairs of the flow's Jacobian ``-H`` at ``y``
    (``Vt`` ``(k, P)``)."""
    vf = vector_field(model)
    _, jvp = jax.linearize(lambda z: vf(0.0, z, problem), y)
    return dominant_eigenpairs(jvp, y.size, k, y.dtype)
