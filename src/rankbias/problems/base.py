r"""The base class of every problem, and the protocol the engines ask it through.

A problem is a loss ``f(W)`` of a matrix ``W`` of shape ``(m, n)``. Beyond :meth:`Problem.loss`
(and optionally a closed-form :meth:`Problem.grad`), a problem *may* describe the structure
the engines can exploit; each such method has a default here that either works for any loss
or says clearly that the structure is absent, so a problem type added in one file either runs
everywhere or gets a clear error:

* :meth:`~Problem.observed_entries` (default ``None``: no entry form): the sparse backend,
  GLRL's sparse gradient, the fast adjoint of the ALM baseline, the rating baselines;
* :meth:`~Problem.linear_map` (default ``None``: no exact constraints) and
  :meth:`~Problem.measure` (default: ``NotImplementedError``): ``min_nuclear_norm``;
* :meth:`~Problem.interpolant` (default ``None``): ``min_nuclear_norm``'s closed form;
* :attr:`~Problem.is_quadratic` (default ``False``), :meth:`~Problem.lipschitz` (default:
  power iteration), :meth:`~Problem.host_grad` (default: the compiled gradient): Soft-Impute;
* :attr:`~Problem.num_terms` (default ``None``), :meth:`~Problem.minibatch` (default:
  ``NotImplementedError``): ``train(batch_size=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Problem", "ObservedEntries", "LinearMap"]


class ObservedEntries(NamedTuple):
    r"""The entry form of a loss: ``f(W) = weight/2 * sum_e (W[rows_e, cols_e] - values_e)^2``.

    ``rows``, ``cols``: ``(k,)`` int32 arrays (0-based, no repeats); ``values``: ``(k,)``;
    ``weight``: a scalar array (``c`` above). ``grad f(W)`` is supported on these entries,
    which is what the sparse backend and GLRL's sparse gradient rely on.
    """

    rows: jax.Array
    cols: jax.Array
    values: jax.Array
    weight: jax.Array

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Dense boolean ``(m, n)`` mask of the observed entries."""
        out = np.zeros(shape, bool)
        out[np.asarray(self.rows), np.asarray(self.cols)] = True
        return out


@dataclass(frozen=True)
class LinearMap:
    r"""Exact data constraints ``A(X) = b`` on host (NumPy) arrays, ``A: R^{m x n} -> R^k``.

    Either an entry selection ``A(X) = X[rows, cols]`` (``rows``, ``cols`` given) or a dense
    map ``A(X) = matrix @ vec(X)`` (``matrix`` of shape ``(k, m n)``, ``vec`` row-major).
    ``b``: ``(k,)`` float64. :meth:`adjoint` is ``A^*(y)``, ``(m, n)``.
    """

    shape: tuple[int, int]
    b: np.ndarray
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    matrix: np.ndarray | None = None

    def apply(self, X) -> np.ndarray:
        """``A(X)``, shape ``(k,)``."""
        if self.rows is not None:
            return np.asarray(X)[self.rows, self.cols]
        assert self.matrix is not None  # one of the two forms is given
        return self.matrix @ np.asarray(X).ravel()

    def adjoint(self, y) -> np.ndarray:
        """``A^*(y) = sum_k y_k A_k``, shape ``(m, n)``."""
        if self.rows is not None and self.cols is not None:  # given together
            out = np.zeros(self.shape)
            np.add.at(out, (self.rows, self.cols), y)
            return out
        assert self.matrix is not None
        return (self.matrix.T @ y).reshape(self.shape)


@eqx.filter_jit
def _jit_grad(problem: Problem, X: jax.Array) -> jax.Array:
    return problem.grad(X)


class Problem(eqx.Module):
    """Base class: a loss ``f`` of a matrix ``W`` of shape ``self.shape``.

    Subclasses implement :meth:`loss`; :meth:`grad` defaults to ``jax.grad(loss)`` and is
    overridden with a closed form where one is cheaper. The other methods are optional
    (see the module docstring): their defaults serve any loss or refuse clearly.
    """

    shape: tuple[int, int] = eqx.field(static=True)

    def loss(self, W: jax.Array | np.ndarray) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, W: jax.Array | np.ndarray) -> jax.Array:
        """``grad f(W)``, shape ``(m, n)``."""
        return jax.grad(self.loss)(W)

    def loss_and_grad(self, W: jax.Array | np.ndarray) -> tuple[jax.Array, jax.Array]:
        return self.loss(W), self.grad(W)

    @property
    def is_convex(self) -> bool:
        """Whether ``f`` is known to be convex (KKT certificates of GLRL rely on it)."""
        return True

    @property
    def target(self) -> jax.Array | None:
        """The ground truth, when the problem was built from one."""
        return None

    def astype(self, dtype) -> Problem:
        """A copy with every floating array cast to ``dtype``."""
        return jax.tree_util.tree_map(
            lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, self
        )

    # -- optional structure ---------------------------------------------------------------

    def observed_entries(self) -> ObservedEntries | None:
        """The entry form ``f(W) = c/2 sum_e (W[r_e, c_e] - v_e)^2`` of this loss, or ``None``
        (default) when ``f`` is not of that form."""
        return None

    def linear_map(self) -> LinearMap | None:
        """The exact data constraints ``A(X) = b`` this loss fits (a :class:`LinearMap`), or
        ``None`` (default) when it has none."""
        return None

    def measure(self, W: jax.Array) -> jax.Array:
        """``A(W)`` of :meth:`linear_map`, shape ``(k,)``, traced (jittable)."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no linear measurement map A(W) (`measure`)"
        )

    def interpolant(self) -> np.ndarray | None:
        """The one ``(m, n)`` matrix that fits the data exactly when the data determine it
        (full observation), else ``None`` (default)."""
        return None

    @property
    def is_quadratic(self) -> bool:
        """Whether ``f`` is a quadratic (its value follows from its gradients:
        ``f(X) - f(0) = <g_0, X> + <X, grad f(X) - g_0> / 2``). Default ``False``."""
        return False

    def lipschitz(self) -> float:
        """A Lipschitz constant of ``grad f`` (the proximal step is its inverse).

        Default: 50 steps of power iteration on the Hessian-vector product at ``0`` (exact for
        a quadratic, an estimate otherwise), at least ``1e-12``."""
        g = jax.grad(self.loss)
        v = jnp.asarray(np.random.default_rng(0).standard_normal(self.shape))
        lam = 1.0
        for _ in range(50):
            hv = jax.jvp(g, (jnp.zeros(self.shape),), (v,))[1]
            lam = float(jnp.linalg.norm(hv))
            v = hv / max(lam, 1e-300)
        return max(lam, 1e-12)

    def host_grad(self) -> Callable[[np.ndarray], np.ndarray]:
        """``grad f`` as a function of a NumPy ``(m, n)`` array returning a float64 one.
        Default: the compiled :meth:`grad`."""
        return lambda X: np.asarray(_jit_grad(self, jnp.asarray(X)), dtype=np.float64)

    @property
    def num_terms(self) -> int | None:
        """How many terms ``f`` sums over, that a minibatch samples from (observed entries,
        measurements, entries); ``None`` (default) when ``f`` is not such a sum."""
        return None

    def minibatch(self, idx: jax.Array) -> Problem:
        """The loss on the terms ``idx`` (``(B,)`` distinct ints below :attr:`num_terms`),
        rescaled so that it and its gradient are unbiased estimates of the full ones
        (traced: ``idx`` may be a tracer)."""
        raise NotImplementedError(f"{type(self).__name__} defines no minibatch loss")
