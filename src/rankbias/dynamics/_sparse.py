r"""The sparse backend: the objective of a matrix completion evaluated in factor form.

For :class:`~rankbias.MatrixCompletion` with observed set ``Omega`` (``|Omega|`` entries,
weight ``c``) the gradient ``G = grad f(W) = c (W - M)`` is supported on ``Omega``. Write the
product of a width-limited model as ``W = A B^T`` with ``A`` ``(m, k)`` and ``B`` ``(n, k)``:

* ``SymmetricFactorization``: ``A = B = U`` (``(d, k)``), ``L(U) = 1/2 f(U U^T)``,
  ``grad L = sym(G) U`` (``G U`` when ``Omega`` and ``M`` are symmetric);
* ``DeepFactorization`` depth ``L >= 2``: ``A = W_L ... W_2`` (``(m, k_1)``), ``B = W_1^T``
  (``(n, k_1)``), ``L = f(A B^T)``, ``grad_{W_1} L = A^T G = (G^T A)^T`` and
  ``grad_{W_j} L`` (``j >= 2``) the backward pass of ``(W_2, ..., W_L) -> A`` applied to
  ``G B``.

The residuals ``r_ij = c (<A_i, B_j> - M_ij)`` on ``Omega``, ``f = 1/2 sum r^2 / c``, ``G B``
and ``G^T A`` cost ``O(|Omega| k)``, and ``A`` costs ``O(m sum_j k_j k_{j+1})``: no ``(m, n)``
array is formed. The singular values of ``W`` come from the factors (``W = Q_A (R_A R_B^T)
Q_B^T``, QR of ``A`` and ``B``, ``O((m + n) k^2)``; symmetric: ``sigma_i(U)^2``); the
``min(m, n) - k`` others are exactly 0 (:mod:`._records`).

The observed entries are held in padded row tables (ELL format: ``(m, K_r)`` column indices,
values and a 0/1 mask, ``K_r`` the largest row count rounded up to a multiple of
:data:`ELL_BLOCK`) and the matching column tables: every product with ``G`` is then a gather
and a dense reduction (scatter-adds, ``segment_sum``, are slow on CPU). Rounding ``K_r``
keeps one compilation for masks of the same size whose largest row counts differ a little.

Rating data are skewed (MovieLens: 1 to ~600 ratings per item), and a padded table of
width ``K_r`` = the largest count then holds several times the entries. A problem whose
padded tables would hold more than :data:`COO_PADDING` times its entries (and at least
:data:`COO_MIN_ENTRIES` entries) gets the COO layout instead: the entry list ``(rows, cols,
vals)``, residuals ``(|Omega|,)`` and ``G B``, ``G^T A`` by ``jax.ops.segment_sum`` over the
entries, ``O(|Omega| k)`` with no padding. The layout is a static field (it keys
compilation); uniform random patterns keep the padded layout.

The engines (:mod:`._flow`, :mod:`._gd`) call the dispatchers :func:`loss_and_grad`,
:func:`record`, :func:`loss_and_grad_norm` and :func:`optimality_gap`: with a
:class:`SparseCompletion` as ``problem`` they run in factor form, with any other problem
through the dense product (``model.loss_and_grad``), so both backends share one engine.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..problems.base import Problem

__all__ = ["BACKENDS", "SparseCompletion", "batch_backend", "choose_backend", "sparse_supported"]

#: The values of the `backend` argument of the flow and GD drivers.
BACKENDS = ("auto", "dense", "sparse")

#: Row/column table widths are rounded up to a multiple of this (fewer compilations).
ELL_BLOCK = 8

#: A problem gets the COO layout when its padded tables (row tables, and column tables where
#: they are needed, at the rounded widths) would hold more than this many times its entries.
COO_PADDING = 3.0
#: ... and it has at least this many entries (small problems keep the padded layout).
COO_MIN_ENTRIES = 1_000

#: ``backend="auto"`` takes the sparse backend when ``m n >= SPARSE_RATIO |Omega|`` (and
#: ``m n >= SPARSE_MIN_ENTRIES``). One dense evaluation costs ~``3 m n k`` flops at matmul
#: speed, one sparse evaluation ~``4 |Omega| k`` gathers, several times slower per flop;
#: a dense record adds a full SVD of ``W`` (``O(m n min(m, n))``), a sparse one QRs of the
#: factors. Measured (gradient of ``SymmetricFactorization`` width 10, CPU, 2 shared cores):
#: dense/sparse time 1.3-3.0 at 5% observed (d = 100-400), 0.7-1.0 at 20%, 0.5-1.0 at 50%.
SPARSE_RATIO = 10.0
#: Below this many entries of ``W``, ``"auto"`` keeps the dense backend.
SPARSE_MIN_ENTRIES = 10_000


class SparseCompletion(eqx.Module):
    """A :class:`~rankbias.MatrixCompletion` as padded row/column tables (the sparse
    backend's ``problem``).

    ``ridx``, ``rval``, ``rmask``: ``(m, K_r)`` column index, value and 0/1 mask of the
    observed entries of each row. ``cidx``, ``cperm``, ``cmask``: ``(n, K_c)`` row index,
    flat position in the row tables and mask of each column's entries; ``None`` when only
    the row tables are needed (symmetric model, symmetric pattern and values: ``G`` is
    symmetric, ``sym(G) U = G U``). Build with :meth:`from_problems`.

    With ``layout == "coo"`` (skewed patterns, see :data:`COO_PADDING`) the tables are
    ``None`` and ``rows``, ``cols``, ``vals``, ``mask`` (``(|Omega|,)``; ``mask`` is 0 on
    the entries that pad a stacked batch to one length) hold the entries; ``row_only``
    plays the role of ``cidx is None``.
    """

    ridx: jax.Array | None
    rval: jax.Array | None
    rmask: jax.Array | None
    cidx: jax.Array | None
    cperm: jax.Array | None
    cmask: jax.Array | None
    weight: jax.Array
    shape: tuple[int, int] = eqx.field(static=True)
    rows: jax.Array | None = None
    cols: jax.Array | None = None
    vals: jax.Array | None = None
    mask: jax.Array | None = None
    layout: str = eqx.field(static=True, default="ell")
    row_only: bool = eqx.field(static=True, default=False)

    @classmethod
    def from_problems(cls, problems, model) -> SparseCompletion:
        """Tables for ``problems`` (one :class:`MatrixCompletion` or a list of them, of one
        shape), stacked along a leading axis for a list; every problem of a list gets the
        same (largest) table widths."""
        single = isinstance(problems, Problem)
        if single:
            key = _cache_key(problems, model)
            hit = _TABLES.get(key)
            if hit is not None:
                return hit[1]
        plist = [problems] if single else list(problems)
        m, n = plist[0].shape
        ents = [_observed(p) for p in plist]
        raw = [_entries(e) for e in ents]
        row_only = model.factor_form == "symmetric" and all(
            _symmetric_pattern(r, c, v, n) for r, c, v in raw
        )
        Kr = _block(max(int(np.bincount(r, minlength=m).max()) for r, _, _ in raw))
        Kc = _block(max(int(np.bincount(c, minlength=n).max()) for _, c, _ in raw))
        dtype = ents[0].values.dtype
        if coo_layout(m, n, Kr, Kc, [r.size for r, _, _ in raw], row_only):
            pairs = zip(ents, raw, strict=True)
            out = [_coo(e, r, c, v, m, n, dtype, row_only) for e, (r, c, v) in pairs]
            out = _pad_coo(out) if not single else out
        else:
            out = cls._ell(ents, raw, m, n, Kr, Kc, row_only, dtype)
        if single:
            _remember(key, problems, out[0])
            return out[0]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *out)

    @classmethod
    def _ell(cls, ents, raw, m, n, Kr, Kc, row_only, dtype) -> list[SparseCompletion]:
        tables = [_tables(r, c, v, m, n, Kr, Kc, row_only) for r, c, v in raw]
        out = []
        for e, (ridx, rval, rmask, cidx, cperm, cmask) in zip(ents, tables, strict=True):
            cast = lambda a, dt: None if a is None else jnp.asarray(a, dt)
            out.append(
                cls(
                    ridx=jnp.asarray(ridx),
                    rval=jnp.asarray(rval, dtype),
                    rmask=jnp.asarray(rmask, dtype),
                    cidx=cast(cidx, jnp.int32),
                    cperm=cast(cperm, jnp.int32),
                    cmask=cast(cmask, dtype),
                    weight=jnp.asarray(e.weight, dtype),
                    shape=(m, n),
                )
            )
        return out

    # -- factor-form kernels (jittable) ---------------------------------------------------

    def gather(self, B):
        """``B`` at the row tables' columns, ``(m, K_r, k)``: the one gather an evaluation
        needs for ``r`` and ``G B``. Gathered once and passed to both: XLA did not merge
        two equal gathers inside the solver's loop, and a tsit5 step of a 1000 x 1000 GLRL
        phase cost 25 ms instead of 12 (the gathers are most of an evaluation)."""
        if self.layout == "coo":
            assert self.cols is not None
            return B[self.cols]
        assert self.ridx is not None
        return B[self.ridx]

    def residuals(self, A, Bg):
        """``r = c (A_i . B_j - M_ij)`` on the row tables (``(m, K_r)``, 0 on padding), with
        ``Bg = gather(B)``."""
        if self.layout == "coo":
            assert self.rows is not None and self.vals is not None and self.mask is not None
            return self.weight * self.mask * (jnp.sum(A[self.rows] * Bg, axis=1) - self.vals)
        assert self.rmask is not None and self.rval is not None
        return self.weight * self.rmask * (jnp.einsum("ikr,ir->ik", Bg, A) - self.rval)

    def products(self, res, A, Bg):
        """``(G B, G^T A)`` from the residuals and ``Bg = gather(B)`` (``G^T A`` is ``None``
        with row tables only, where ``G`` is symmetric and ``G B`` serves both)."""
        if self.layout == "coo":
            assert self.rows is not None and self.cols is not None
            m, n = self.shape
            GB = jax.ops.segment_sum(
                res[:, None] * Bg, self.rows, num_segments=m, indices_are_sorted=True
            )
            if self.row_only:
                return GB, None
            GtA = jax.ops.segment_sum(res[:, None] * A[self.rows], self.cols, num_segments=n)
            return GB, GtA
        GB = jnp.einsum("ik,ikr->ir", res, Bg)
        if self.cidx is None:
            return GB, None
        assert self.cperm is not None and self.cmask is not None  # built together
        GtA = jnp.einsum("jk,jkr->jr", res.ravel()[self.cperm] * self.cmask, A[self.cidx])
        return GB, GtA

    def residuals_at(self, model, params):
        """:meth:`residuals` at ``params`` (without the gradient)."""
        A, B = self.factors(model, params)
        return self.residuals(A, self.gather(B))

    def loss(self, res):
        """``f = 1/2 sum r^2 / c``."""
        return 0.5 * jnp.sum(res * res) / self.weight

    def dense_grad(self, res):
        """``G = grad f(W)`` as an ``(m, n)`` array (only for certificates that need it)."""
        if self.layout == "coo":
            assert self.rows is not None and self.cols is not None
            return jnp.zeros(self.shape, res.dtype).at[self.rows, self.cols].add(res)
        assert self.ridx is not None
        m, _ = self.shape
        rows = jnp.broadcast_to(jnp.arange(m)[:, None], self.ridx.shape)
        return jnp.zeros(self.shape, res.dtype).at[rows, self.ridx].add(res)

    def loss_and_grad(self, model, params):
        """``(f(W), grad L(params), residuals)`` in ``O(|Omega| k + m k^2 L)``; the
        gradient from ``G B`` and ``G^T A`` by the model's :meth:`~rankbias.models.Model.
        factors_vjp`."""
        A, B, back = model.factors_vjp(params)
        Bg = self.gather(B)
        res = self.residuals(A, Bg)
        GB, GtA = self.products(res, A, Bg)
        return self.loss(res), back(GB, GtA), res

    def factors(self, model, params):
        """``(A, B)`` with ``W = A B^T`` (:meth:`~rankbias.models.Model.factors`)."""
        return model.factors(params)


#: The tables of the last few problems, keyed by the identity of their (immutable) entry
#: arrays, which are kept alive with them so that the ids stay unique: GLRL calls the flow
#: several times per phase on one problem, and ``Problem.astype`` keeps those arrays.
_TABLES: dict = {}
_TABLES_KEPT = 4


def _observed(problem: Problem):
    entries = problem.observed_entries()
    if entries is None:  # choose_backend refuses such a problem before tables are built
        raise ValueError(f"the sparse backend needs observed entries, got {type(problem).__name__}")
    return entries


def _cache_key(problem: Problem, model):
    e = _observed(problem)
    return (
        id(e.rows),
        id(e.cols),
        id(e.values),
        float(e.weight),
        str(e.values.dtype),
        model.factor_form == "symmetric",
    )


def _remember(key, problem: Problem, tables: SparseCompletion) -> None:
    while len(_TABLES) >= _TABLES_KEPT:
        _TABLES.pop(next(iter(_TABLES)))  # the oldest
    e = _observed(problem)
    _TABLES[key] = ((e.rows, e.cols, e.values), tables)


def coo_layout(m: int, n: int, Kr: int, Kc: int, counts: list[int], row_only: bool) -> bool:
    """Whether problems of shape ``(m, n)`` with ``counts`` entries each (padded table widths
    ``Kr``, ``Kc``) take the COO layout: the padded tables would hold ``m K_r`` (plus ``n
    K_c`` without ``row_only``) slots, more than :data:`COO_PADDING` times the entries of
    the same tables, ``|Omega|`` (``2 |Omega|``), and ``|Omega| >= COO_MIN_ENTRIES``."""
    nnz = min(counts)
    if nnz < COO_MIN_ENTRIES:
        return False
    slots, used = (m * Kr, nnz) if row_only else (m * Kr + n * Kc, 2 * nnz)
    return slots > COO_PADDING * used


def _coo(e, rows, cols, vals, m, n, dtype, row_only) -> SparseCompletion:
    """The COO layout of one entry list (sorted by row, then column)."""
    order = np.lexsort((cols, rows))
    return SparseCompletion(
        ridx=None,
        rval=None,
        rmask=None,
        cidx=None,
        cperm=None,
        cmask=None,
        weight=jnp.asarray(e.weight, dtype),
        shape=(m, n),
        rows=jnp.asarray(rows[order], jnp.int32),
        cols=jnp.asarray(cols[order], jnp.int32),
        vals=jnp.asarray(vals[order], dtype),
        mask=jnp.ones(rows.size, dtype),
        layout="coo",
        row_only=row_only,
    )


def _pad_coo(out: list[SparseCompletion]) -> list[SparseCompletion]:
    """Entry lists of one length (for stacking): extra entries at ``(m - 1, 0)`` with mask
    0 (the rows stay sorted, which :meth:`SparseCompletion.products` assumes)."""
    size = max(int(t.mask.shape[0]) for t in out if t.mask is not None)

    def pad(t: SparseCompletion) -> SparseCompletion:
        extra = size - int(t.mask.shape[0]) if t.mask is not None else 0
        grow = lambda a, fill=0: jnp.concatenate([a, jnp.full(extra, fill, a.dtype)])
        assert t.rows is not None and t.cols is not None and t.vals is not None
        return eqx.tree_at(
            lambda s: (s.rows, s.cols, s.vals, s.mask),
            t,
            (grow(t.rows, t.shape[0] - 1), grow(t.cols), grow(t.vals), grow(t.mask)),
        )

    return [pad(t) for t in out]


def _block(k: int) -> int:
    return max(-(-max(k, 1) // ELL_BLOCK) * ELL_BLOCK, ELL_BLOCK)


def _entries(entries):
    rows, cols = np.asarray(entries.rows), np.asarray(entries.cols)
    return rows.astype(np.int64), cols.astype(np.int64), np.asarray(entries.values)


def _tables(rows, cols, vals, m: int, n: int, Kr: int, Kc: int, row_only: bool):
    """ELL tables of one entry list (rows sorted by row, then column)."""
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    cnt_r = np.bincount(rows, minlength=m)
    start = np.concatenate([[0], np.cumsum(cnt_r)[:-1]])
    slot = np.arange(rows.size) - start[rows]
    ridx = np.zeros((m, Kr), np.int32)
    rval = np.zeros((m, Kr))
    rmask = np.zeros((m, Kr))
    ridx[rows, slot], rval[rows, slot], rmask[rows, slot] = cols, vals, 1.0
    if row_only:
        return ridx, rval, rmask, None, None, None
    flat = rows * Kr + slot
    cnt_c = np.bincount(cols, minlength=n)
    oc = np.lexsort((rows, cols))
    cstart = np.concatenate([[0], np.cumsum(cnt_c)[:-1]])
    cslot = np.arange(cols.size) - cstart[cols[oc]]
    cidx = np.zeros((n, Kc), np.int32)
    cperm = np.zeros((n, Kc), np.int32)
    cmask = np.zeros((n, Kc))
    cidx[cols[oc], cslot], cperm[cols[oc], cslot], cmask[cols[oc], cslot] = rows[oc], flat[oc], 1.0
    return ridx, rval, rmask, cidx, cperm, cmask


def _symmetric_pattern(rows, cols, vals, n) -> bool:
    """Whether the observed entries are closed under transposition with equal values.
    Duplicated entries count as not symmetric."""
    key = rows.astype(np.int64) * n + cols
    o = np.argsort(key)
    key, vals = key[o], vals[o]
    if np.any(np.diff(key) <= 0):
        return False
    tkey = (key % n) * n + key // n
    o = np.argsort(tkey)
    return bool(np.array_equal(tkey[o], key) and np.array_equal(vals[o], vals))


# -- backend choice ---------------------------------------------------------------------


def sparse_supported(problem, model) -> str | None:
    """``None`` when the sparse backend can run ``model`` on ``problem``, else the reason.

    It needs a problem with observed entries (:meth:`~rankbias.problems.base.Problem.
    observed_entries`) and a model with a factor form ``W = A B^T``
    (:attr:`~rankbias.models.Model.factor_form`; a ``"product"`` of depth >= 2)."""
    if problem.observed_entries() is None:
        return f"it needs a MatrixCompletion problem, got {type(problem).__name__}"
    form = model.factor_form
    if form is None:
        return (
            f"it supports SymmetricFactorization and DeepFactorization, got {type(model).__name__}"
        )
    if form == "product" and model.depth < 2:
        return f"it needs a factorization (depth >= 2), got a depth-1 {type(model).__name__}"
    return None


def choose_backend(backend: str, problem, model) -> str:
    """``"dense"`` or ``"sparse"`` for ``backend`` (``"auto"``, ``"dense"``, ``"sparse"``).

    ``"auto"`` is ``"sparse"`` for a :class:`MatrixCompletion` with a width-limited model
    (``SymmetricFactorization`` of width ``k < d``, ``DeepFactorization`` of depth ``>= 2``
    with a hidden width ``< min(m, n)``) when ``m n >= SPARSE_RATIO |Omega|`` and
    ``m n >= SPARSE_MIN_ENTRIES``; otherwise ``"dense"``.

    Raises:
        ValueError: an unknown ``backend``, or ``"sparse"`` for a problem or model it does
            not support.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown `backend` {backend!r}; expected one of {', '.join(map(repr, BACKENDS))}"
        )
    if backend == "dense":
        return "dense"
    why = sparse_supported(problem, model)
    if backend == "sparse":
        if why is not None:
            raise ValueError(f"`backend`='sparse' is not available here: {why}")
        return "sparse"
    if why is not None:
        return "dense"
    m, n = problem.shape
    if model.max_rank >= min(m, n):
        return "dense"
    num_observed = int(_observed(problem).rows.shape[0])
    big = m * n >= SPARSE_MIN_ENTRIES and m * n >= SPARSE_RATIO * num_observed
    return "sparse" if big else "dense"


def batch_backend(backend: str, problem, model, batch_size: int | None) -> str:
    """:func:`choose_backend` for an optimizer run: with minibatches (``batch_size`` not
    None) the step evaluates ``problem.minibatch``, a dense problem, so ``"auto"`` is
    ``"dense"`` and ``"sparse"`` raises ``ValueError``."""
    if batch_size is None:
        return choose_backend(backend, problem, model)
    if backend == "sparse":
        raise ValueError(
            "`backend`='sparse' is not available with `batch_size` (minibatches are "
            "evaluated densely); use backend='auto' or 'dense', or a full batch"
        )
    choose_backend(backend, problem, model)  # validates the name
    return "dense"


# -- dispatch: one engine, two evaluations ---------------------------------------------


def backend_data(problem, model, backend: str):
    """What the engines take as ``problem`` for a resolved ``backend``: the tables of
    ``problem`` (:class:`SparseCompletion`) for ``"sparse"``, ``problem`` itself otherwise."""
    return SparseCompletion.from_problems(problem, model) if backend == "sparse" else problem


def loss_and_grad(problem, model, params):
    """``(f(W), grad L(params), aux)``; ``aux`` is ``W`` (dense) or the residuals (sparse)."""
    if isinstance(problem, SparseCompletion):
        return problem.loss_and_grad(model, params)
    return model.loss_and_grad(problem, params)


def loss(problem, model, params):
    """``f(W)``."""
    if isinstance(problem, SparseCompletion):
        return problem.loss(problem.residuals_at(model, params))
    return problem.loss(model.product(params))


def loss_and_grad_norm(problem, model, params):
    """``(f(W), ||grad f(W)||_F)`` (the flow's stopping references)."""
    if isinstance(problem, SparseCompletion):
        res = problem.residuals_at(model, params)
        return problem.loss(res), jnp.linalg.norm(res)
    f, G = problem.loss_and_grad(model.product(params))
    return f, jnp.linalg.norm(G)


def optimality_gap(problem, model, aux):
    """``model.optimality_gap(grad f(W))`` from :func:`loss_and_grad`'s ``aux`` (``None``
    for width-limited models, which need no ``G``)."""
    if isinstance(problem, SparseCompletion):
        return model.optimality_gap(problem.dense_grad(aux))
    return model.optimality_gap(problem.grad(aux))


def record(problem, model, params, save_matrices: bool, heldout=None):
    """What a trajectory stores at a recorded time: ``loss``, ``grad_norm``, ``sv`` (the
    values the model's :meth:`~rankbias.models.Model.spectrum` gives; by default the
    ``min(m, n)`` singular values, exact up to ``EXACT_SV_MAX`` or from thin factors, else
    the top ``TOP_K`` and NaN), with ``save_matrices`` ``W``, and with
    ``heldout`` (``(rows, cols, values)`` arrays of :func:`heldout_tables`) ``heldout_rmse``
    ``sqrt(mean_k (W[rows_k, cols_k] - values_k)^2)`` (jittable; the factor form gathers rows
    of its factors, ``W`` is not formed)."""
    ev = loss_and_grad(problem, model, params)
    return record_from(problem, model, params, ev, save_matrices, heldout)


def record_from(problem, model, params, evaluated, save_matrices: bool, heldout=None):
    """:func:`record` from ``evaluated = loss_and_grad(problem, model, params)`` computed
    already (the gradient-descent loop carries the one its next step uses)."""
    f, g, aux = evaluated
    gn = jnp.sqrt(sum(jnp.sum(x * x) for x in g))
    if isinstance(problem, SparseCompletion):
        out = {"loss": f, "grad_norm": gn, "sv": model.spectrum(params)}
        if save_matrices:
            A, B = problem.factors(model, params)
            out["W"] = A @ B.T
        if heldout is not None:
            A, B = problem.factors(model, params)
            rows, cols, values = heldout
            pred = jnp.sum(A[rows] * B[cols], axis=1)
            out["heldout_rmse"] = jnp.sqrt(jnp.mean((pred - values) ** 2))
        return out
    out = {"loss": f, "grad_norm": gn, "sv": model.spectrum(params, aux)}
    if save_matrices:
        out["W"] = aux
    if heldout is not None:
        rows, cols, values = heldout
        out["heldout_rmse"] = jnp.sqrt(jnp.mean((aux[rows, cols] - values) ** 2))
    return out


def heldout_tables(heldout, shape, dtype):
    """``heldout`` (a :class:`~rankbias.problems.heldout.HeldOut` of a matrix of ``shape``,
    or ``None``) as the ``(rows, cols, values)`` device arrays that :func:`record` scores;
    ``TypeError``/``ValueError`` naming ``heldout`` for another object, another shape, no
    entry or an entry out of range."""
    if heldout is None:
        return None
    for attr in ("rows", "cols", "values", "shape"):
        if not hasattr(heldout, attr):
            raise TypeError(
                f"`heldout` must be a rankbias.problems.HeldOut (rows, cols, values, shape), "
                f"got {type(heldout).__name__}"
            )
    if tuple(heldout.shape) != tuple(shape):
        raise ValueError(
            f"`heldout` is of a {tuple(heldout.shape)} matrix, the problem is {tuple(shape)}"
        )
    rows, cols = np.asarray(heldout.rows), np.asarray(heldout.cols)
    values = np.asarray(heldout.values, dtype=np.float64)
    if values.size == 0 or not (rows.shape == cols.shape == values.shape):
        raise ValueError("`heldout` must hold at least one entry, with rows, cols, values alike")
    m, n = shape
    if rows.min() < 0 or rows.max() >= m or cols.min() < 0 or cols.max() >= n:
        raise ValueError(f"`heldout` has an entry outside the {m} x {n} matrix")
    if not np.all(np.isfinite(values)):
        raise ValueError("`heldout` values must be finite")
    return (
        jnp.asarray(rows, jnp.int32),
        jnp.asarray(cols, jnp.int32),
        jnp.asarray(values, dtype),
    )
