r"""Diagonal linear networks: ``beta = u_1 * ... * u_L`` or ``beta = u^L - v^L`` (entrywise).

The commuting special case of deep matrix factorization: ``diag(beta) = diag(u_L) ...
diag(u_1)``, so rank becomes sparsity. The problem is a :class:`~rankbias.LinearRegression`
(or any problem of shape ``(d, 1)``), whose matrix ``W`` is the column ``beta``.

Conventions (tested in ``tests/test_diagonal.py``):

* **Parameters.** ``params`` is a tuple of ``(d, 1)`` columns: ``(u_1, ..., u_L)`` for
  ``form="product"``, ``(u, v)`` for ``form="two_branch"``. The objective is
  ``L(params) = f(beta(params))`` (weight 1): with ``f = 1/2 ||X beta - y||^2`` the depth-2
  two-branch flow is ``dw_+/dt = -2 w_+ * X^T r``, ``dw_-/dt = +2 w_- * X^T r``, ``r = X beta
  - y`` (Woodworth et al.).
* **Scale.** ``scale`` (``alpha``) is **per weight**: every entry of every layer is of size
  ``alpha`` at initialization, so ``beta(0)`` is of size ``alpha^L`` (``0`` for the
  two-branch form). This differs from the matrix models, where ``scale`` is the end-to-end
  product's: ``DiagonalNetwork(d, L).init(scale=a)`` corresponds to a matrix ``scale`` of
  ``a^L``. Inits (``kind``):

  - ``"uniform"`` (default): two-branch ``u = v = alpha`` (``beta(0) = 0``; Woodworth et
    al.'s ``w_+(0) = w_-(0) = alpha``); product of depth 2 ``u = sqrt(2) alpha, v = 0``
    (Pesme & Flammarion; the two-branch flow from ``w_+- = alpha / sqrt(2)`` at half
    speed, ``w_+- = (u +- v) / 2``); product of depth ``L >= 3``: every layer ``alpha``
    (``beta`` then stays ``>= 0``: the layers stay balanced and cannot change sign).
  - ``"zhao"`` (product form): Zhao et al.'s direction with a unique smallest layer,
    ``u_j = alpha`` for ``j < L`` and ``u_L = smallest * alpha`` (``0 < smallest < 1``), or
    ``u_j = alpha * direction[j]`` for a given ``(L, d)`` (or ``(L,)``) ``direction`` whose
    smallest ``|direction[j, i]|`` is unique for each coordinate ``i``.
  - ``"gaussian"``: every weight i.i.d. ``N(0, alpha^2)``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._validation import (
    check_choice,
    check_float_dtype,
    check_int,
    check_memory,
    check_positive,
    check_real_array,
    check_seed,
)
from .models import Model

__all__ = ["DiagonalNetwork", "DIAGONAL_FORMS", "DIAGONAL_INITS"]

DIAGONAL_FORMS = ("product", "two_branch")
DIAGONAL_INITS = ("uniform", "zhao", "gaussian")

Params = tuple[jax.Array, ...]


class DiagonalNetwork(Model):
    r"""A diagonal linear network of dimension ``d`` and depth ``L``.

    * ``form="product"``: ``beta = u_1 * u_2 * ... * u_L`` (entrywise), ``L`` parameters;
    * ``form="two_branch"``: ``beta = u^L - v^L`` (Woodworth et al.; depth 2: ``w_+^2 -
      w_-^2``), two parameters.

    Each parameter is a ``(d, 1)`` column and ``W = beta`` has shape ``(d, 1)``: the model runs
    on a :class:`~rankbias.LinearRegression` through every dense engine. A trajectory records
    the singular values of ``diag(beta)`` (:meth:`spectrum`: the sorted ``|beta_i|``, ``d`` of
    them). ``optimality_gap(G) = ||G||``: the network reaches every ``beta``, so ``grad f = 0``
    is a minimum for a convex ``f``.

    Arguments:
        dim: ``d >= 1``.
        depth: ``L >= 1`` (``L = 1`` is gradient flow on ``beta`` itself for the product form).
        form: ``"product"`` (default) or ``"two_branch"``.
    """

    dim: int = eqx.field(static=True)
    layers: int = eqx.field(static=True)
    form: str = eqx.field(static=True)

    def __init__(self, dim: int, depth: int, form: str = "product"):
        self.dim = check_int(dim, "dim", minimum=1)
        self.layers = check_int(depth, "depth", minimum=1)
        self.form = check_choice(form, "form", DIAGONAL_FORMS)
        self.shape = (self.dim, 1)

    @property
    def depth(self) -> int:
        return self.layers

    @property
    def param_shapes(self) -> tuple[tuple[int, int], ...]:
        n = 2 if self.form == "two_branch" else self.layers
        return ((self.dim, 1),) * n

    def product(self, params: Params) -> jax.Array:
        """``beta``, shape ``(d, 1)``."""
        if self.form == "two_branch":
            u, v = params
            return u**self.layers - v**self.layers
        out = params[0]
        for p in params[1:]:
            out = out * p
        return out

    def spectrum(self, params: Params, W: jax.Array | None = None) -> jax.Array:
        """The singular values of ``diag(beta)``: ``|beta_i|`` sorted descending, ``(d,)``
        (``W = beta``, ``product(params)`` when not given)."""
        beta = self.product(params) if W is None else W
        return -jnp.sort(-jnp.abs(beta[:, 0]))

    def optimality_gap(self, G: jax.Array) -> jax.Array:
        """``||grad f(beta)||``: every ``beta`` is reachable, so 0 only at minima of ``f``."""
        return jnp.linalg.norm(G)

    def init(  # type: ignore[override]  # the kinds of a vector model, not a matrix's
        self,
        kind: str = "uniform",
        scale: float = 1e-3,
        seed: int = 0,
        *,
        smallest: float = 0.5,
        direction=None,
        dtype=jnp.float64,
    ) -> Params:
        """Initial parameters, a tuple of ``(d, 1)`` columns (see the module docstring).

        Arguments:
            kind: ``"uniform"`` (default), ``"zhao"`` (product form) or ``"gaussian"``.
            scale: ``alpha > 0``, the size of every weight (not of ``beta``).
            seed: NumPy ``default_rng`` seed (``"gaussian"`` only).
            smallest: ``"zhao"``: the last layer's ratio to the others, in ``(0, 1)``.
            direction: ``"zhao"``: the direction ``theta*``, ``(L,)`` (the same for every
               coordinate) or ``(L, d)``; layer ``j`` starts at ``alpha * direction[j]``.
            dtype: ``float64`` (default) or ``float32``.

        Raises:
            ValueError: a bad argument (the message names it).
        """
        kind = check_choice(kind, "kind", DIAGONAL_INITS)
        a = check_positive(scale, "scale")
        dtype = check_float_dtype(dtype)
        check_memory(
            self.num_params(), f"initialising a diagonal network of {self.dim} x {self.layers}"
        )
        d, L = self.dim, self.layers
        n = len(self.param_shapes)
        if kind == "gaussian":
            rng = np.random.default_rng(check_seed(seed))
            cols = [a * rng.standard_normal(d) for _ in range(n)]
        elif kind == "uniform":
            if self.form == "two_branch":
                cols = [np.full(d, a), np.full(d, a)]
            elif L == 2:
                cols = [np.full(d, np.sqrt(2.0) * a), np.zeros(d)]
            else:
                cols = [np.full(d, a) for _ in range(L)]
        else:
            cols = self._zhao(a, smallest, direction)
        return tuple(jnp.asarray(c.reshape(d, 1), dtype=dtype) for c in cols)

    def _zhao(self, a: float, smallest: float, direction) -> list[np.ndarray]:
        d, L = self.dim, self.layers
        if self.form != "product":
            raise ValueError(
                "`kind`='zhao' is an init of the product form (beta = u_1 * ... * u_L); "
                "build DiagonalNetwork(dim, depth, form='product')"
            )
        if direction is None:
            s = check_positive(smallest, "smallest")
            if not s < 1.0:
                raise ValueError(f"`smallest` must be in (0, 1), got {smallest!r}")
            return [np.full(d, a) for _ in range(L - 1)] + [np.full(d, s * a)]
        th = check_real_array(direction, "direction")
        if th.shape == (L,):
            th = np.repeat(th[:, None], d, axis=1)
        if th.shape != (L, d):
            raise ValueError(f"`direction` must have shape ({L},) or ({L}, {d}), got {th.shape}")
        if not np.all(np.isfinite(th)):
            raise ValueError("`direction` contains non-finite values")
        sq = np.sort(th**2, axis=0)
        if L >= 2 and np.any(sq[0] == sq[1]):
            bad = int(np.argmax(sq[0] == sq[1]))
            raise ValueError(
                f"`direction`: the smallest |direction[j, i]| must be unique for every "
                f"coordinate i (Zhao et al.'s assumption); coordinate {bad} has a tie"
            )
        return [a * th[j] for j in range(L)]
