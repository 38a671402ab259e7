r"""Factorizations ``W = W_L ... W_1`` and ``W = P P^T`` (``P = U_L ... U_1``), and their
initializations.

Conventions (tested in ``tests/test_models.py``):

* **Product order.** ``params`` is a tuple ``(W_1, ..., W_L)``; ``W_1`` acts first:
  ``W = W_L @ ... @ W_1``. Shapes: ``W_1: (k_1, n)``, ``W_j: (k_j, k_{j-1})``,
  ``W_L: (m, k_{L-1})`` for a target of shape ``(m, n)`` and hidden widths ``k_j``.
* **Objective.** Deep models minimise ``L(params) = f(W_L ... W_1)``. The symmetric model
  minimises ``L(U) = 1/2 f(U U^T)`` (Li et al.), so that ``dU/dt = -grad f(W) U`` and
  ``dW/dt = -(grad f(W) W + W grad f(W))``: the same flow as the depth-2 model
  ``W_2 W_1`` from a balanced start ``W_2 = W_1^T = U^T``. The deep symmetric model
  ``W = P P^T``, ``P = U_L ... U_1``, minimises ``1/2 f(P P^T)`` too: its flow is that of
  ``W_{2L} ... W_1`` from the mirrored start ``(U_L^T, ..., U_1^T, U_1, ..., U_L)`` (each
  ``U_j`` appears twice, which doubles its gradient; the weight 1/2 undoes it).
* **Scale.** ``scale`` is the scale of the end-to-end product. Each of the ``L`` factors
  gets ``scale ** (1/L)`` (for ``W = P P^T`` of depth ``2L``: each ``U_j`` gets
  ``scale ** (1/(2L))``, so ``W(0)`` has scale ``scale``; see
  :class:`SymmetricFactorization`):

  - ``"gaussian"``: entries of ``W_j`` are N(0, scale^(2/L) / k_{j-1}) (fan-in ``k_0 = n``),
    the convention of Arora et al. 2019; ``W(0)`` is ``scale`` times an O(1) random matrix.
  - ``"identity"``: ``W_j = scale^(1/L) I`` (rectangular identity), so ``W(0) = scale I``.
  - ``"perturbed_identity"``: as identity but ``W_1 = (a - beta) I`` with ``a = scale^(1/L)``
    (Chou et al.); ``beta`` is a per-factor quantity, ``0 < beta < a``.
  - ``"orthogonal"``: ``W_j = scale^(1/L) Q_j`` with Haar-random semi-orthogonal ``Q_j``.
  - ``"balanced"``: ``W_j = Q_j S^(1/L) Q_{j-1}^T`` from the SVD of a Gaussian matrix
    ``A = Q_L S Q_0^T`` scaled to ``||A||_2 = scale``, so ``W(0) = A`` and
    ``W_{j+1}^T W_{j+1} = W_j W_j^T`` (requires widths >= min(m, n)).

  With ``per_factor=True`` the given ``scale`` is the per-factor value ``a`` itself
  (``W_j(0) = a I`` in Chou et al.), and the product has scale ``a^L``.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._spectrum import record_spectrum
from ._validation import (
    check_bool,
    check_choice,
    check_float_dtype,
    check_int,
    check_memory,
    check_positive,
    check_seed,
    check_shape,
)

__all__ = ["Model", "DeepFactorization", "SymmetricFactorization", "INITS"]

INITS = ("gaussian", "identity", "perturbed_identity", "balanced", "orthogonal")

Params = tuple[jax.Array, ...]


class Model(eqx.Module):
    """Base class: maps a tuple of factor arrays to a matrix ``W`` of shape ``self.shape``.

    A subclass defines the field ``shape`` (``(m, n)``, static) and its own static fields,
    and implements :attr:`depth`, :attr:`param_shapes` and :meth:`product`; with these it runs
    through ``gradient_flow``, ``gradient_flow_batch``, ``gradient_descent`` and ``train``
    (dense backend). Everything else has a default here. Optional, for the engines that work
    on factors:

    * :attr:`factor_form` (default ``None``): ``"symmetric"`` or ``"product"`` when ``W`` is
      ``A B^T`` of two factors (then also :meth:`factors` and :meth:`factors_vjp`): the sparse
      backend and GLRL use it; ``None`` keeps the model on the dense backend.
    * :attr:`max_rank` (default ``min(m, n)``): a bound on ``rank W`` from the widths.
    * :meth:`objective_weight` (default 1), :meth:`optimality_gap` (default ``None``).
    """

    shape: tuple[int, int] = eqx.field(static=True)

    @property
    def depth(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def param_shapes(self) -> tuple[tuple[int, int], ...]:  # pragma: no cover
        raise NotImplementedError

    def product(self, params: Params) -> jax.Array:  # pragma: no cover
        raise NotImplementedError

    def objective_weight(self) -> float:
        """``L(params) = objective_weight * f(product(params))``."""
        return 1.0

    def objective(self, problem, params: Params) -> jax.Array:
        return self.objective_weight() * problem.loss(self.product(params))

    def loss_and_grad(self, problem, params: Params):
        """``(f(W), grad L(params), W)`` with one forward product and one backward pass.

        The backward pass is the VJP of the product map, which reuses the prefix products
        ``W_j ... W_1`` of the forward pass: about 3 matrix products per factor.
        """
        W, vjp = jax.vjp(self.product, params)
        f, G = problem.loss_and_grad(W)
        (g,) = vjp(self.objective_weight() * G)
        return f, g, W

    def grad(self, problem, params: Params) -> Params:
        return self.loss_and_grad(problem, params)[1]

    def optimality_gap(self, G: jax.Array) -> jax.Array | None:
        """First-order optimality residual of ``W`` over the model's class, from ``G = grad f(W)``.

        ``None`` when the class has a rank constraint (a width below ``min(m, n)``), where
        no such certificate is cheap. Used by the gradient-flow stopping test: a small
        parameter gradient alone cannot tell a minimum from the high-order saddles that
        deep flows cross.
        """
        return None

    def num_params(self) -> int:
        return int(sum(a * b for a, b in self.param_shapes))

    def spectrum(self, params: Params, W: jax.Array | None = None) -> jax.Array:
        """The values a trajectory records as ``singular_values``, descending (jittable): every
        engine's record asks this hook.

        Arguments:
            params: the factors.
            W: ``product(params)`` (``(m, n)``) when the caller has it (dense backend);
                ``None`` in factor form (sparse backend: from :meth:`factors`).

        Default: the ``min(m, n)`` singular values of ``W``, computed so that they scale
        (:func:`rankbias._spectrum.record_spectrum`): the exact SVD up to ``min(m, n) = 500``
        or from thin factors ``A B^T`` (a ``w x w`` SVD), above that the top 100 by
        randomized subspace iteration and NaN for the others. A model whose ``W`` stands
        for another linear map overrides it: :class:`~rankbias.DiagonalNetwork`'s ``W`` is
        the column ``beta`` of ``diag(beta)``, whose singular values are the sorted
        ``|beta_i|`` (``d`` of them)."""
        return record_spectrum(self, params, W)

    def init(
        self,
        name: str = "gaussian",
        scale: float = 1e-3,
        seed: int = 0,
        *,
        per_factor: bool = False,
        beta: float | None = None,
        dtype=jnp.float64,
    ) -> Params:
        """Initial factors (``(W_1, ..., W_L)``, or ``(U_1, ..., U_L)`` for ``W = P P^T``); see the
        module docstring for what ``scale`` means for each model.

        Arguments:
            name: one of ``"gaussian", "identity", "perturbed_identity", "balanced",
               "orthogonal"``.
            scale: end-to-end scale (> 0), or the per-factor value with ``per_factor``.
            seed: random seed (numpy ``default_rng``).
            beta: per-factor perturbation of ``W_1`` for ``"perturbed_identity"``
               (``DeepFactorization`` only).
            dtype: ``float64`` (default) or ``float32``; integer (factors rounded to 0),
               float16 and complex dtypes raise a ``ValueError``.

        Raises:
            ValueError: a bad argument, or factors larger than this machine's memory.

        A model of your own gets this method by defining ``_init_factors(name, s,
        per_factor, beta, rng)`` (``s`` the validated ``scale``, ``rng`` a NumPy
        generator) that returns the factors as NumPy arrays; without it, build the
        parameter tuple yourself (any tuple of arrays of shapes :attr:`param_shapes`).
        """
        check_choice(name, "init", INITS)
        s = check_positive(scale, "scale")
        per_factor = check_bool(per_factor, "per_factor")
        dtype = check_float_dtype(dtype)
        check_memory(self.num_params(), f"initialising factors of shapes {self.param_shapes}")
        rng = np.random.default_rng(check_seed(seed))
        factors = self._init_factors(name, s, per_factor, beta, rng)
        return tuple(jnp.asarray(p, dtype=dtype) for p in factors)

    def _init_factors(self, name: str, s: float, per_factor: bool, beta, rng) -> list:
        raise NotImplementedError(
            f"{type(self).__name__} defines no initialization (`_init_factors`); pass "
            f"the factors as a tuple of arrays of shapes {self.param_shapes}"
        )

    @property
    def factor_chain(self) -> bool:
        """``True`` when ``params`` are the chain ``(W_1, ..., W_L)`` of ``W = W_L ... W_1``:
        the gradient flow then conserves each imbalance ``W_{j+1}^T W_{j+1} - W_j W_j^T``,
        which bounds the Hessian radius from below (the flow's pre-check of a large init
        uses it). ``False`` (default): no such invariant is assumed."""
        return False

    # -- factor form (optional) -----------------------------------------------------------

    @property
    def factor_form(self) -> str | None:
        """How ``W`` splits into two factors ``W = A B^T`` (``A`` ``(m, k)``, ``B`` ``(n, k)``):

        * ``"symmetric"``: ``W = P P^T`` (``A = B = P``; ``P = U`` and ``params == (U,)`` at
          depth 2), objective ``1/2 f(W)``: GLRL's PSD variant;
        * ``"product"``: ``W = A B^T`` with ``B = W_1^T`` and ``A`` the product of the other
          factors: GLRL's asymmetric variant (the sparse backend needs depth >= 2);
        * ``None`` (default): no factor form (dense backend only, no GLRL variant).
        """
        return None

    @property
    def max_rank(self) -> int:
        """An upper bound on ``rank W`` over all parameters: ``min(m, n)`` (default) or a
        smaller hidden width (a width-limited model)."""
        return min(self.shape)

    def factors(self, params: Params) -> tuple[jax.Array, jax.Array]:
        """``(A, B)`` with ``W = A B^T`` (see :attr:`factor_form`)."""
        raise NotImplementedError(f"{type(self).__name__} has no factor form W = A B^T")

    def factors_vjp(self, params: Params):
        """``(A, B, back)``: :meth:`factors` and ``back(G B, G^T A) -> grad L(params)``,
        the parameter gradient of ``L = objective_weight * f(A B^T)`` from the two products
        with ``G = grad f(W)``. For ``"symmetric"``, ``G^T A`` may be ``None`` (``G``
        symmetric: ``G B`` serves both)."""
        raise NotImplementedError(f"{type(self).__name__} has no factor form W = A B^T")

    def flatten(self, params: Params) -> jax.Array:
        """Concatenate the factors into one vector of length :meth:`num_params`."""
        return jnp.concatenate([jnp.ravel(p) for p in params])

    def unflatten(self, y: jax.Array) -> Params:
        """Inverse of :meth:`flatten` (static offsets, so it is free under ``jit``)."""
        out, i = [], 0
        for a, b in self.param_shapes:
            out.append(jnp.reshape(y[i : i + a * b], (a, b)))
            i += a * b
        return tuple(out)

    def check_params(self, params, name: str = "params") -> Params:
        """Validate a user-given parameter tuple (shapes, finiteness) and return it as arrays."""
        if isinstance(params, (np.ndarray, jax.Array)):
            params = (params,)
        if not isinstance(params, (tuple, list)):
            raise ValueError(
                f"`{name}` must be a tuple of {len(self.param_shapes)} factor array(s) "
                f"(as `model.init(...)` returns), got {type(params).__name__}"
            )
        params = tuple(params)
        if len(params) != len(self.param_shapes):
            raise ValueError(
                f"`{name}` must hold {len(self.param_shapes)} factor(s), got {len(params)}"
            )
        out = []
        for j, (p, s) in enumerate(zip(params, self.param_shapes, strict=True)):
            p = jnp.asarray(p)
            if p.shape != s:
                raise ValueError(f"`{name}[{j}]` must have shape {s}, got {p.shape}")
            if not bool(jnp.all(jnp.isfinite(p))):
                raise ValueError(f"`{name}[{j}]` contains non-finite values")
            out.append(p)
        return tuple(out)


def _chain(ps):
    """``W_L ... W_2`` (``ps = (W_2, ..., W_L)``), ``(m, k_1)``."""
    A = ps[0]
    for P in ps[1:]:
        A = P @ A
    return A


def _haar(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Haar-random matrix with orthonormal columns (rows >= cols) or rows (rows < cols)."""
    if rows >= cols:
        q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
        return q * np.sign(np.diag(r))
    return _haar(rng, cols, rows).T


def _per_factor_pow(scale: float, depth: int) -> float:
    # Computed in log space so that scale = 1e-300 at depth 5 neither under- nor overflows.
    return float(np.exp(np.log(scale) / depth))


class DeepFactorization(Model):
    r"""``W = W_L ... W_1`` of shape ``(m, n)``, depth ``L >= 1``, hidden widths ``k_j``.

    Arguments:
        shape: ``(m, n)``.
        depth: number of factors ``L`` (``L = 1`` is plain gradient descent on ``W``).
        width: one hidden width for all layers, or a list of ``L - 1`` widths. Default
           ``min(m, n)``: full rank (``rank W`` is at most ``min(m, n)`` anyway, so no rank
           constraint) with the fewest parameters; the hidden sizes of Arora et al.'s
           reference code. Results of non-square default-width runs stored before this
           default (``max(m, n)``) are recomputed (:func:`rankbias.store.results_version`).
    """

    widths: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, shape, depth: int, width: int | Sequence[int] | None = None):
        m, n = check_shape(shape)
        depth = check_int(depth, "depth", minimum=1)
        if width is None:
            widths = (min(m, n),) * (depth - 1)
        elif isinstance(width, (int, np.integer)) and not isinstance(width, (bool, np.bool_)):
            widths = (check_int(width, "width", minimum=1),) * (depth - 1)
        elif not isinstance(width, (Sequence, np.ndarray)) or isinstance(width, str):
            # a float, bool or string: not iterable as widths (2.5 would fail in the loop)
            raise ValueError(
                f"`width` must be a positive integer or a sequence of depth - 1 = "
                f"{depth - 1} positive integers, got {width!r}"
            )
        else:
            widths = tuple(check_int(w, "width", minimum=1) for w in width)
            if len(widths) != depth - 1:
                raise ValueError(
                    f"`width` must list depth - 1 = {depth - 1} hidden widths, got {len(widths)}"
                )
        self.shape = (m, n)
        self.widths = widths

    @property
    def depth(self) -> int:
        return len(self.widths) + 1

    @property
    def dims(self) -> tuple[int, ...]:
        """``(k_0 = n, k_1, ..., k_{L-1}, k_L = m)``."""
        return (self.shape[1], *self.widths, self.shape[0])

    @property
    def param_shapes(self):
        d = self.dims
        return tuple((d[j + 1], d[j]) for j in range(self.depth))

    def optimality_gap(self, G):
        """``||grad f(W)||_F`` (stationarity of f) when no width constrains the rank."""
        if min(self.widths, default=min(self.shape)) < min(self.shape):
            return None
        return jnp.linalg.norm(G)

    def product(self, params: Params) -> jax.Array:
        W = params[0]
        for P in params[1:]:
            W = P @ W
        return W

    @property
    def factor_form(self) -> str:
        """``"product"``: ``A = W_L ... W_2`` (``(m, k_1)``), ``B = W_1^T`` (``(n, k_1)``)."""
        return "product"

    @property
    def factor_chain(self) -> bool:
        """``True``: ``params = (W_1, ..., W_L)``, ``W = W_L ... W_1``."""
        return True

    @property
    def max_rank(self) -> int:
        return min(*self.widths, *self.shape)

    def factors(self, params: Params):
        return _chain(tuple(params[1:])), params[0].T

    def factors_vjp(self, params: Params):
        """``grad_{W_1} L = A^T G = (G^T A)^T``; ``grad_{W_j} L`` (``j >= 2``) the backward
        pass of ``(W_2, ..., W_L) -> A`` applied to ``G B``."""
        A, vjp = jax.vjp(_chain, tuple(params[1:]))

        def back(GB, GtA):
            assert GtA is not None  # a product form always gets G^T A
            (g_upper,) = vjp(GB)
            return (GtA.T, *g_upper)

        return A, params[0].T, back

    def _init_factors(self, name, s, per_factor, beta, rng):
        """The factors of :meth:`Model.init` (see the module docstring for ``scale``)."""
        shapes = self.param_shapes
        a = s if per_factor else _per_factor_pow(s, self.depth)
        if name == "gaussian":
            ps = [a * rng.standard_normal(sh) / np.sqrt(sh[1]) for sh in shapes]
        elif name == "identity":
            ps = [a * np.eye(*sh) for sh in shapes]
        elif name == "perturbed_identity":
            if beta is None:
                raise ValueError("`beta` is required for init 'perturbed_identity'")
            b = check_positive(beta, "beta")
            if b >= a:
                raise ValueError(
                    f"`beta` must be smaller than the per-factor scale {a:g}, got {b:g}"
                )
            ps = [a * np.eye(*sh) for sh in shapes]
            ps[0] = (a - b) * np.eye(*shapes[0])
        elif name == "orthogonal":
            ps = [a * _haar(rng, *sh) for sh in shapes]
        else:  # balanced
            m, n = self.shape
            r = min(m, n)
            if any(k < r for k in self.widths):
                raise ValueError(
                    f"init 'balanced' needs every width >= min(m, n) = {r}, got widths {self.widths}"
                )
            G = rng.standard_normal((m, n))
            U, S, Vt = np.linalg.svd(G, full_matrices=False)
            total = a**self.depth if per_factor else s
            S = total * S / S[0]
            Sp = S ** (1.0 / self.depth)
            Q = [Vt.T] + [_haar(rng, k, r) for k in self.widths] + [U]
            ps = [(Q[j + 1] * Sp) @ Q[j].T for j in range(self.depth)]
        if beta is not None and name != "perturbed_identity":
            raise ValueError(f"`beta` is only used by init 'perturbed_identity', not {name!r}")
        return ps


class SymmetricFactorization(Model):
    r"""``W = P P^T`` with ``P = U_L ... U_1`` of shape ``(d, k)``; objective
    ``L(U_1, ..., U_L) = 1/2 f(P P^T)``.

    ``params`` is ``(U_1, ..., U_L)`` with ``L = depth / 2``: ``U_1, ..., U_{L-1}`` of shape
    ``(k, k)`` and ``U_L`` of shape ``(d, k)`` (``U_1`` acts first, as in
    :class:`DeepFactorization`). At the default ``depth = 2`` this is ``W = U U^T`` with
    ``params == (U,)``, ``U`` of shape ``(d, k)`` (Li et al.). ``depth`` counts the factors of
    the end-to-end product ``W = U_L ... U_1 U_1^T ... U_L^T``, like
    :attr:`DeepFactorization.depth`, so depth-``N`` results (escape times ``~ alpha^(2/N - 2)``
    for ``N >= 3``) apply with ``N = depth``: the flow of this model from ``(U_1, ..., U_L)``
    is that of ``DeepFactorization((d, d), depth)`` from the mirrored factors
    ``(U_L^T, ..., U_1^T, U_1, ..., U_L)``.

    Arguments:
        size: ``d`` (``W`` is ``(d, d)``).
        width: ``k``, the number of columns of ``P`` and the size of the inner factors
           (one width for all; default ``d``, no rank constraint).
        depth: an even number ``>= 2`` of factors of ``W``; an odd depth raises a
           ``ValueError`` (use :class:`DeepFactorization` with a symmetric problem).

    Init ``scale`` is that of ``W(0) = P P^T``: each of the ``depth`` factors of ``W`` gets
    ``a = scale^(1/depth)`` (``per_factor=True``: ``scale`` is ``a``), so ``U_j`` gets ``a``
    (``"gaussian"``: entries N(0, a^2 / k); ``"identity"``: ``a I``; ``"orthogonal"``:
    ``a Q``, ``Q`` Haar semi-orthogonal). ``"balanced"`` gives ``U_{j+1}^T U_{j+1} = U_j
    U_j^T`` with all nonzero singular values ``a`` (at depth 2 it is ``"orthogonal"``:
    ``U U^T`` is balanced by construction), so ``W(0) = scale Q Q^T``;
    ``"perturbed_identity"`` is rejected.
    """

    width: int = eqx.field(static=True)
    # `depth` is the base class's property; this field holds its value (2: W = U U^T).
    _depth: int = eqx.field(static=True)

    def __init__(self, size: int, width: int | None = None, depth: int = 2):
        d = check_int(size, "size", minimum=1)
        depth = check_int(depth, "depth", minimum=2)
        if depth % 2:
            raise ValueError(
                f"`depth` must be even for SymmetricFactorization, got {depth}: W = P P^T has "
                f"two factors per factor of P; for an odd depth use "
                f"DeepFactorization(({d}, {d}), depth={depth}) with a symmetric problem"
            )
        self.shape = (d, d)
        self.width = d if width is None else check_int(width, "width", minimum=1)
        self._depth = depth

    def __repr__(self) -> str:
        # Today's repr at depth 2 (no `_depth=2`): printed models in logs and docs keep theirs.
        extra = "" if self._depth == 2 else f", depth={self._depth}"
        return f"SymmetricFactorization(shape={self.shape}, width={self.width}{extra})"

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def param_shapes(self):
        d, k = self.shape[0], self.width
        return ((k, k),) * (self._depth // 2 - 1) + ((d, k),)

    def product(self, params: Params) -> jax.Array:
        P = _chain(params)
        return P @ P.T

    def objective_weight(self) -> float:
        return 0.5

    @property
    def factor_form(self) -> str:
        """``"symmetric"``: ``A = B = P``."""
        return "symmetric"

    @property
    def max_rank(self) -> int:
        return min(self.width, self.shape[0])

    def factors(self, params: Params):
        P = _chain(params)
        return P, P

    def factors_vjp(self, params: Params):
        """``grad_P L = 1/2 (G P + G^T P) = sym(G) P`` (``G P`` when ``G^T P`` is ``None``),
        then the backward pass of ``(U_1, ..., U_L) -> P`` (depth > 2)."""
        if self._depth == 2:
            (U,) = params
            return U, U, lambda GB, GtA: (GB if GtA is None else 0.5 * (GB + GtA),)
        P, vjp = jax.vjp(_chain, tuple(params))

        def back(GB, GtA):
            (g,) = vjp(GB if GtA is None else 0.5 * (GB + GtA))
            return g

        return P, P, back

    def optimality_gap(self, G):
        """``max(0, -lambda_min(sym grad f(W)))``: with ``||grad_P L|| = ||grad f(W) P||`` small
        this is the KKT residual of ``min f`` over the PSD cone (width >= size only)."""
        if self.width < self.shape[0]:
            return None
        S = 0.5 * (G + G.T)
        return jnp.maximum(0.0, -jnp.linalg.eigvalsh(S)[0])

    def _init_factors(self, name, s, per_factor, beta, rng):
        """``(U_1, ..., U_L)``; ``scale`` is that of ``P P^T`` (``per_factor``: of each
        ``U_j``)."""
        if name == "perturbed_identity":
            raise ValueError("init 'perturbed_identity' is defined for DeepFactorization only")
        if beta is not None:
            raise ValueError("`beta` is not used by SymmetricFactorization")
        # depth 2 keeps sqrt (not exp(log(s) / 2), which can differ in the last bit): the
        # same factors as before depth was added.
        root = float(np.sqrt(s)) if self._depth == 2 else _per_factor_pow(s, self._depth)
        a = s if per_factor else root
        shapes = self.param_shapes
        if name == "gaussian":
            return [a * rng.standard_normal(sh) / np.sqrt(sh[1]) for sh in shapes]
        if name == "identity":
            return [a * np.eye(*sh) for sh in shapes]
        if name == "orthogonal" or self._depth == 2:  # balanced at depth 2: any U is
            return [a * _haar(rng, *sh) for sh in shapes]
        return [a * Q for Q in _balanced_chain(rng, *shapes[-1], len(shapes))]


def _balanced_chain(rng: np.random.Generator, d: int, k: int, L: int) -> list[np.ndarray]:
    """``(Q_1, ..., Q_L)`` with ``Q_L`` Haar ``(d, k)`` and ``Q_{j+1}^T Q_{j+1} = Q_j Q_j^T``
    (``(k, k)``), every nonzero singular value 1.

    ``Q_L^T Q_L = V V^T`` with ``V`` the orthonormal basis of its row space (``I_k`` when
    ``k <= d``); each factor below is ``V R^T`` with ``R`` Haar ``(k, r)``, ``r = min(d, k)``,
    whose row space ``R`` is the next ``V``. (Square orthogonal factors, the ``"orthogonal"``
    init, are balanced only when ``k <= d``.)"""
    top = _haar(rng, d, k)
    V = top.T if k > d else np.eye(k)
    below = []
    for _ in range(L - 1):
        R = _haar(rng, k, min(d, k))
        below.append(V @ R.T)
        V = R
    return [*below[::-1], top]
