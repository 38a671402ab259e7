r"""First-order engines behind :mod:`rankbias.baselines`: exact-constraint nuclear-norm
minimisation on the factors, the solver-independent certificate, Soft-Impute with
truncated SVDs.

Minimum nuclear norm ``min ||X||_* s.t. A(X) = b`` is solved as the Burer-Monteiro problem
``min (||U||_F^2 + ||V||_F^2) / 2  s.t. A(U V^T) = b`` (PSD: ``min ||U||_F^2 s.t.
A(U U^T) = b``), whose value equals the convex one once the width ``r`` is at least the
rank of a solution, by an augmented Lagrangian (L-BFGS on the factors, multiplier update
``y <- y - mu (A(U V^T) - b)``). The multiplier ``y`` is the dual variable: at a KKT point
``U = Y V``, ``V = Y^T U`` with ``Y = A^*(y)``, and the point is a convex optimum iff
``||Y||_2 <= 1`` (PSD: ``lambda_max(sym Y) <= 1``). When ``||Y||_2 > 1`` the top singular
pairs of ``Y`` above 1 are descent directions; they are appended to the factors (rank
escape) and the solve continues. Every step of the loop is O(|Omega| r) for completion;
no SDP is formed, so 500x500 completions take seconds.

Why not ADMM/SCS on the SDP: each iteration needs a full eigendecomposition of the
``(m + n)`` block and thousands of iterations to reach 1e-9; the factor method needs a
few hundred gradient evaluations of size ``(m + n) r`` and one SVD of ``Y`` per outer step.
"""

from __future__ import annotations

import contextlib
import functools
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
import scipy.sparse.linalg as sla

from .problems.base import LinearMap, Problem

# One BLAS thread for small dense factorisations: a 100x100 SVD took 70 ms with OpenBLAS
# threads on 2 shared cores against 3.7 ms single-threaded (same machine, same minute).
_SINGLE_THREAD_MAX = 300


def blas_threads(shape, *, thin: bool = False):
    """Context that limits BLAS to one thread for matrices up to 300 on a side, or for any
    size with ``thin`` (products with blocks of at most a few hundred columns: sparse
    Soft-Impute at 943x1682 ran 10x faster on one thread than on the shared 2 cores)."""
    if max(shape) > _SINGLE_THREAD_MAX and not thin:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a listed dependency
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


# ----------------------------------------------------------------------------------------
# The linear map A and its adjoint (the problem's `linear_map` and `measure`)


def _forward(problem: Problem, U: jax.Array, V: jax.Array, orders=None) -> jax.Array:
    """``A(U V^T)``: without forming ``U V^T`` for a problem with observed entries
    (``orders`` from :func:`_entry_orders` gives it the fast adjoint of
    :func:`_pair_products`), else the problem's traced ``measure``."""
    entries = problem.observed_entries()
    if entries is not None:
        if orders is not None:
            return _pair_products(U, V, entries.rows, entries.cols, *orders)
        return jnp.sum(U[entries.rows] * V[entries.cols], axis=1)
    return problem.measure(U @ V.T)


# Above this fraction observed, the adjoint scatters into a dense (m, n) matrix and
# multiplies (BLAS); below, it sums sorted segments. At 500x500, 10% observed, width 76:
# autodiff's unsorted scatter-add 92 ms, sorted segments 33 ms, dense 16-26 ms; at
# 1000x1000, 2%: dense 59 ms, segments 18 ms (same minutes, loaded machine).
_DENSE_ADJOINT_MIN_FRACTION = 0.05


def _entry_orders(problem: Problem):
    """``(row_order, col_order, dense)``: the permutations that sort the observed entries
    by row and by column (traced), and whether the adjoint goes through a dense matrix
    (``problem`` has observed entries)."""
    entries = problem.observed_entries()
    assert entries is not None  # callers check
    rows, cols = np.asarray(entries.rows), np.asarray(entries.cols)
    m, n = problem.shape
    dense = rows.size >= _DENSE_ADJOINT_MIN_FRACTION * m * n
    return (
        jnp.asarray(np.argsort(rows, kind="stable")),
        jnp.asarray(np.argsort(cols, kind="stable")),
        bool(dense),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _pair_products(U, V, rows, cols, row_order, col_order, dense: bool):
    """``(U V^T)[rows, cols]`` (shape ``(k,)``), with an adjoint ``(W V, W^T U)``,
    ``W = sum_e w_e e_{r_e} e_{c_e}^T``, by sorted segment sums or a dense ``W``."""
    return jnp.sum(U[rows] * V[cols], axis=1)


def _pair_products_fwd(U, V, rows, cols, row_order, col_order, dense):
    out = _pair_products(U, V, rows, cols, row_order, col_order, dense)
    return out, (U, V, rows, cols, row_order, col_order)


def _pair_products_bwd(dense, saved, w):
    U, V, rows, cols, row_order, col_order = saved
    m, n = U.shape[0], V.shape[0]
    if dense:
        W = jnp.zeros((m, n), w.dtype).at[rows, cols].add(w)
        gU, gV = W @ V, W.T @ U
    else:
        r, c = rows[row_order], cols[row_order]
        gU = jax.ops.segment_sum(w[row_order, None] * V[c], r, m, indices_are_sorted=True)
        r, c = rows[col_order], cols[col_order]
        gV = jax.ops.segment_sum(w[col_order, None] * U[r], c, n, indices_are_sorted=True)
    return gU, gV, None, None, None, None


_pair_products.defvjp(_pair_products_fwd, _pair_products_bwd)


def _lagrangian(problem: Problem, z, y, mu, b, m: int, n: int, psd: bool, orders=None):
    """Augmented Lagrangian of the factor problem at ``z = vec(U)`` (PSD) or
    ``[vec(U), vec(V)]``."""
    r = z.shape[0] // (m if psd else m + n)
    U = z[: m * r].reshape(m, r)
    V = U if psd else z[m * r :].reshape(n, r)
    res = _forward(problem, U, V, orders) - b
    reg = jnp.sum(U * U) if psd else 0.5 * (jnp.sum(U * U) + jnp.sum(V * V))
    return reg - jnp.dot(y, res) + 0.5 * mu * jnp.dot(res, res)


@eqx.filter_jit
def _inner_solve(
    problem: Problem, z0, y, mu, b, gtol, max_iter, m: int, n: int, psd: bool, orders=None
):
    """L-BFGS (optax, zoom line search) on the augmented Lagrangian, in one compiled loop:
    shapes, ``psd`` and the adjoint kind are static, the data, multipliers, ``mu``,
    tolerances and entry orders traced."""
    fun = lambda z: _lagrangian(problem, z, y, mu, b, m, n, psd, orders)
    opt = optax.lbfgs(memory_size=20)
    vg = optax.value_and_grad_from_state(fun)

    def step(carry):
        z, state = carry
        f, g = vg(z, state=state)
        upd, state = opt.update(g, state, z, value=f, grad=g, value_fn=fun)
        return optax.apply_updates(z, upd), state

    def cont(carry):
        _, state = carry
        it = otu.tree_get(state, "count")
        g = otu.tree_get(state, "grad")
        return (it == 0) | ((it < max_iter) & (jnp.max(jnp.abs(g)) > gtol))

    z, state = jax.lax.while_loop(cont, step, (z0, opt.init(z0)))
    return z, otu.tree_get(state, "count")


def linear_map(problem: Problem) -> LinearMap:
    """The problem's exact data constraints ``A(X) = b``
    (:meth:`~rankbias.problems.base.Problem.linear_map`).

    Raises:
        ValueError: a problem without them.
    """
    lm = problem.linear_map()
    if lm is None:
        raise ValueError(
            f"`problem` must be a MatrixCompletion or MatrixSensing (exact data "
            f"constraints), got {type(problem).__name__}"
        )
    return lm


# ----------------------------------------------------------------------------------------
# The certificate


def certificate(W: np.ndarray, y: np.ndarray, A, A_adj, b: np.ndarray, psd: bool) -> dict:
    r"""Solver-independent optimality certificate for ``min ||W||_* s.t. A(W) = b``.

    ``primal = ||W||_*`` (PSD: ``tr W``); the dual ``max <y, b> s.t. ||A^*(y)||_2 <= 1``
    (PSD: ``lambda_max(sym A^*(y)) <= 1``) is evaluated at ``t s y``, the sign ``s`` and
    the largest scale ``t <= 1`` that make it feasible, so ``dual <= optimum`` holds for any
    ``y``. ``gap_raw = primal - dual`` may be slightly negative because ``W`` meets the
    constraints only up to ``residual = max |A(W) - b|``.
    """
    W = np.asarray(W, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    primal = float(np.trace(W)) if psd else float(np.sum(np.linalg.svd(W, compute_uv=False)))
    best, best_norm = -np.inf, np.nan
    for s in (1.0, -1.0):
        Z = A_adj(s * y)
        top = float(np.linalg.eigvalsh(0.5 * (Z + Z.T))[-1]) if psd else float(np.linalg.norm(Z, 2))
        t = 1.0 if top <= 1.0 else 1.0 / top
        val = t * float(np.dot(s * y, b))
        if val > best:
            best, best_norm = val, top
    res = float(np.max(np.abs(A(W) - b))) if b.size else 0.0
    return dict(primal=primal, dual=best, gap_raw=primal - best, residual=res, dual_norm=best_norm)


# ----------------------------------------------------------------------------------------
# Augmented Lagrangian on the factors


def _top_pairs(Y: np.ndarray, psd: bool, k: int):
    """Top ``k`` singular triplets of ``Y`` (PSD: top eigenpairs of ``sym Y``), descending.

    Above 200 on a side and for ``k`` below a tenth of the size, ARPACK (``svds``/``eigsh``
    to machine precision) instead of a full factorisation: a full 500x500 SVD per outer
    step was 15% of a 500x500 solve."""
    if min(Y.shape) > 200 and k < min(Y.shape) // 10:
        v0 = np.ones(min(Y.shape))  # deterministic start
        if psd:
            w, Q = sla.eigsh(0.5 * (Y + Y.T), k=k, which="LA", v0=v0, tol=0)
            idx = np.argsort(w)[::-1]
            return w[idx], Q[:, idx], Q[:, idx]
        Uy, s, Vt = sla.svds(Y, k=k, v0=v0, tol=0)
        assert Uy is not None and Vt is not None  # return_singular_vectors=True
        idx = np.argsort(s)[::-1]
        return s[idx], Uy[:, idx], Vt[idx].T
    if psd:
        w, Q = np.linalg.eigh(0.5 * (Y + Y.T))
        idx = np.argsort(w)[::-1][:k]
        return w[idx], Q[:, idx], Q[:, idx]
    Uy, s, Vt = np.linalg.svd(Y, full_matrices=False)
    return s[:k], Uy[:, :k], Vt[:k].T


# L-BFGS steps between two looks at the clock when a deadline is set (at 943x1682 with
# 90,000 entries a step took about 10 ms on the shared cores).
_BUDGET_CHUNK = 200


def alm_min_nuclear(
    problem: Problem,
    psd: bool,
    *,
    tol: float = 1e-9,
    rank: int | None = None,
    max_outer: int = 60,
    max_rank: int | None = None,
    verbose: bool = False,
    deadline: float | None = None,
):
    """Solve ``min ||X||_* s.t. A(X) = b`` (PSD: ``min tr X, X >= 0``) on the factors.

    Returns ``(W, y, info)`` with ``W`` of shape ``(m, n)`` and the multiplier ``y``
    (shape ``(k,)``, ``A^*(y)`` the dual matrix). Stops when the constraint residual is
    ``<= tol * max|b|`` and ``||A^*(y)||_2 <= 1 + tol`` (PSD: its top eigenvalue), or
    after ``max_outer`` multiplier updates (``info["converged"] = False``), or once
    ``time.perf_counter()`` passes ``deadline`` (``info["out_of_time"] = True``): then the
    inner solve runs in chunks of ``_BUDGET_CHUNK`` L-BFGS steps so that it can stop between
    them, and the point and multiplier at the stop are returned.
    """
    t0 = time.perf_counter()
    m, n = problem.shape
    lm = linear_map(problem)
    A, A_adj, b_np = lm.apply, lm.adjoint, lm.b
    scale = float(np.max(np.abs(b_np))) if b_np.size else 0.0
    if scale == 0.0:  # b = 0: X = 0 is optimal, y = 0 certifies it
        return (
            np.zeros((m, n)),
            np.zeros_like(b_np),
            dict(outer=0, rank=0, evals=0, converged=True, time=0.0),
        )
    bn = b_np / scale  # the dual y does not scale with b; X scales by `scale`
    max_rank = min(m, n) if max_rank is None else int(max_rank)
    # Start from the top of A^*(b): for completion the standard spectral initialisation.
    Y0 = A_adj(bn)
    # Width guess: a few times |Omega| / (m + n), the rank whose factors match the data's
    # degrees of freedom; the rank escape below corrects a guess that is too small.
    r0 = rank if rank is not None else min(max_rank, max(8, int(np.ceil(3 * bn.size / (m + n)))))
    s0, U0, V0 = _top_pairs(Y0, psd, r0)
    s0 = np.maximum(s0, 0.0)
    # Least-squares scale of the spectral guess X0 = U0 diag(s0) V0^T against b.
    f0 = A((U0 * s0) @ V0.T)
    alpha = max(float(np.dot(f0, bn)) / max(float(np.dot(f0, f0)), 1e-300), 0.0)
    c = np.sqrt(np.maximum(alpha * s0, 1e-6))
    U, V = U0 * c, V0 * c
    y = np.zeros_like(bn)
    mu = 100.0
    bj = jnp.asarray(bn)
    orders = _entry_orders(problem) if problem.observed_entries() is not None else None
    evals = 0
    res_prev = np.inf
    converged = False
    history = []
    outer = 0
    out_of_time = False
    for outer in range(1, max_outer + 1):
        if outer > 1 and deadline is not None and time.perf_counter() >= deadline:
            out_of_time, outer = True, outer - 1
            break
        z0 = U.ravel() if psd else np.concatenate([U.ravel(), V.ravel()])
        # Inexact inner solves early on: tighten with the constraint residual.
        gtol = max(1e-2 * tol, min(1e-4, 1e-2 * res_prev))
        # Without a deadline one solve of up to 20,000 steps (the numbers of every run
        # before the budget existed); with one, chunks (each restarts L-BFGS's memory).
        chunk = 20_000 if deadline is None else _BUDGET_CHUNK
        z, nit = jnp.asarray(z0), 0
        while True:
            z, n_chunk = _inner_solve(
                problem,
                z,
                jnp.asarray(y),
                jnp.asarray(mu),
                bj,
                jnp.asarray(gtol),
                jnp.asarray(chunk),
                m,
                n,
                psd,
                orders,
            )
            nit += int(n_chunk)
            if deadline is None or int(n_chunk) < chunk or nit >= 20_000:
                break
            if time.perf_counter() >= deadline:
                out_of_time = True
                break
        z = np.asarray(z)
        evals += int(nit)
        k = U.shape[1]
        U = z[: m * k].reshape(m, k)
        V = U if psd else z[m * k :].reshape(n, k)
        resid = np.asarray(_forward(problem, jnp.asarray(U), jnp.asarray(V))) - bn
        y = y - mu * resid
        res = float(np.max(np.abs(resid)))
        Y = A_adj(y)
        # Only the pairs the rank escape may append (and the top one) are needed.
        s, Uy, Vy = _top_pairs(Y, psd, min(min(m, n), max(1, k // 5) + 6))
        top = float(s[0])
        history.append(dict(res=res, dual_norm=top, mu=mu, rank=k, nit=int(nit)))
        if verbose:
            print(f"alm {outer}: rank {k} res {res:.2e} ||Y|| {top:.9f} mu {mu:.1e} nit {int(nit)}")
        if res <= tol and top <= 1.0 + tol:
            converged = True
            break
        if out_of_time:
            break
        if top - 1.0 > max(10 * tol, 10 * res) and k < max_rank:
            # Rank escape, only once the dual estimate is accurate enough to trust
            # ||Y||_2 > 1 (its error is of the order of the residual): the top pairs of Y
            # decrease the Lagrangian; new columns start small so the solve moves along them.
            new = [j for j in range(s.size) if s[j] - 1.0 > 0.5 * (top - 1.0)]
            new = new[: min(max(1, k // 5), max_rank - k)]
            U = np.concatenate([U, 1e-3 * Uy[:, new]], axis=1)
            V = U if psd else np.concatenate([V, 1e-3 * Vy[:, new]], axis=1)
        # Raise mu only when the multiplier step stalls: a larger mu slows L-BFGS more than
        # it speeds the multipliers (x10 steps doubled the time on the 100x100 benchmark).
        if res > 0.25 * res_prev:
            mu = min(mu * 5.0, 1e8)
        res_prev = res
    W = scale * (U @ V.T)
    info = dict(
        outer=outer,
        rank=int(U.shape[1]),
        evals=evals,
        converged=converged,
        out_of_time=out_of_time and not converged,
        time=time.perf_counter() - t0,
        history=history,
    )
    return W, y, info


# ----------------------------------------------------------------------------------------
# Singular-value thresholding for Soft-Impute


class SVT:
    """``prox_{thr ||.||_*}(Z)`` (PSD: ``prox_{thr tr}`` over ``Z >= 0``) by a full LAPACK
    SVD, or by a randomized range finder warm-started from the previous call's singular
    subspace (``randomized=True``): along a proximal-gradient run the iterates change little,
    so a subspace of width ``rank + oversample`` and two power steps recover the singular
    values above ``thr`` at ``O(m n k)`` per call instead of ``O(m n min(m, n))``. The
    width doubles until the smallest computed singular value is below ``thr`` (then every
    value above it is captured up to the range finder's accuracy).
    """

    def __init__(
        self,
        shape,
        psd: bool,
        randomized: bool,
        seed: int = 0,
        oversample: int = 10,
        power: int = 2,
    ):
        self.shape, self.psd, self.randomized = shape, psd, randomized
        self.rng = np.random.default_rng(seed)
        self.oversample, self.power = oversample, power
        self.basis: np.ndarray | None = None  # (n, k) right singular subspace
        self.rank = 0

    def __call__(self, Z: np.ndarray, thr: float) -> np.ndarray:
        if self.psd:
            w, Q = np.linalg.eigh(0.5 * (Z + Z.T))
            w = np.maximum(w - thr, 0.0)
            keep = w > 0
            self.rank = int(keep.sum())
            return (Q[:, keep] * w[keep]) @ Q[:, keep].T
        if not self.randomized:
            U, sv, Vt = np.linalg.svd(Z, full_matrices=False)
            sv = np.maximum(sv - thr, 0.0)
            k = int(np.count_nonzero(sv))
            self.rank = k
            return (U[:, :k] * sv[:k]) @ Vt[:k]
        m, n = Z.shape
        k = min(n, max(self.rank + self.oversample, 2 * self.oversample))
        while True:
            G = self.rng.standard_normal((n, k))
            if self.basis is not None:
                j = min(self.basis.shape[1], k)
                G[:, :j] = self.basis[:, :j]
            Q = np.linalg.qr(Z @ G)[0]
            for _ in range(self.power):
                Q = np.linalg.qr(Z @ np.linalg.qr(Z.T @ Q)[0])[0]
            Ub, sv, Vt = np.linalg.svd(Q.T @ Z, full_matrices=False)
            if sv[-1] < thr or k >= min(m, n):
                break
            k = min(min(m, n), 2 * k)
        keep = sv > thr
        self.rank = int(keep.sum())
        self.basis = Vt.T
        return ((Q @ Ub[:, keep]) * (sv[keep] - thr)) @ Vt[keep]


def factored_polish(
    grad, X: np.ndarray, lam: float, psd: bool, gtol: float = 1e-12, max_iter: int = 2_000
):
    r"""Polish an approximate minimiser of the quadratic ``f(X) + lam ||X||_*`` on its rank.

    With ``X = U S V^T`` of rank ``r``, minimises the smooth Burer-Monteiro objective
    ``f(U V^T) + lam (||U||_F^2 + ||V||_F^2) / 2`` (PSD: ``f(U U^T) + lam ||U||_F^2``) over
    ``U (m, r)``, ``V (n, r)`` by L-BFGS from ``U = U_X S^{1/2}``, ``V = V_X S^{1/2}``. At
    balanced factors it equals the convex objective, so a stationary point of the right
    rank is the convex minimiser; the caller checks that with one proximal step (the
    point is returned as a candidate, not a certificate). Gradients ``O(m n r)``, no SVD,
    so each iteration costs a small fraction of a proximal-gradient step.

    ``f`` must be quadratic (completion, sensing, estimation): its value, up to the
    constant ``f(0)``, is ``<g_0, X> + <X, grad f(X) - g_0> / 2`` with ``g_0 = grad f(0)``.
    """
    m, n = X.shape
    g0 = grad(np.zeros_like(X))
    if psd:
        w, Q = np.linalg.eigh(0.5 * (X + X.T))
        keep = w > 1e-14 * max(1.0, float(np.abs(w).max(initial=0.0)))
        if not keep.any():
            return X
        z0 = (Q[:, keep] * np.sqrt(w[keep])).ravel()
        r = int(keep.sum())

        def fun_psd(z):
            U = z.reshape(m, r)
            Y = U @ U.T
            G = grad(Y)
            f = float(np.vdot(g0, Y) + 0.5 * np.vdot(Y, G - g0)) + lam * float(np.vdot(U, U))
            return f, ((G + G.T) @ U + 2.0 * lam * U).ravel()

        fun = fun_psd
        unpack = lambda z: (lambda U: U @ U.T)(z.reshape(m, r))
    else:
        Ux, sv, Vt = np.linalg.svd(X, full_matrices=False)
        r = int(np.count_nonzero(sv > 1e-14 * max(1.0, float(sv[0]) if sv.size else 1.0)))
        if r == 0:
            return X
        s = np.sqrt(sv[:r])
        z0 = np.concatenate([(Ux[:, :r] * s).ravel(), (Vt[:r].T * s).ravel()])

        def fun(z):
            U, V = z[: m * r].reshape(m, r), z[m * r :].reshape(n, r)
            Y = U @ V.T
            G = grad(Y)
            f = float(np.vdot(g0, Y) + 0.5 * np.vdot(Y, G - g0))
            f += 0.5 * lam * float(np.vdot(U, U) + np.vdot(V, V))
            return f, np.concatenate([(G @ V + lam * U).ravel(), (G.T @ U + lam * V).ravel()])

        unpack = lambda z: z[: m * r].reshape(m, r) @ z[m * r :].reshape(n, r).T
    # 5 pairs: a 100 x 100 path of 20 lambdas took 17,691 evaluations with 5 and 17,153
    # with 20, and 8.2 s against 13.6 s (the two-loop's passes over the pairs, not the
    # gradient, were most of an iteration's time).
    return unpack(lbfgs(fun, z0, gtol, max_iter, memory=5))


def lbfgs(fun, z0: np.ndarray, gtol: float, max_iter: int, memory: int = 20) -> np.ndarray:
    """Unconstrained L-BFGS (two-loop recursion, Armijo backtracking from the unit step) until
    ``max |grad| <= gtol``: ``O(memory * len(z))`` per iteration, against SciPy L-BFGS-B's
    bound-constrained subspace step that cost 0.75 ms per iteration at ``len(z) = 5200``
    (more than the gradient itself) in a Soft-Impute polish."""
    z = z0
    f, g = fun(z)
    S: list[np.ndarray] = []
    Y: list[np.ndarray] = []
    for _it in range(max_iter):
        if float(np.abs(g).max(initial=0.0)) <= gtol:
            break
        q = g.copy()
        alphas = []
        for s_, y_ in zip(reversed(S), reversed(Y), strict=True):
            a = float(np.vdot(s_, q)) / float(np.vdot(y_, s_))
            alphas.append(a)
            q -= a * y_
        if S:
            q *= float(np.vdot(S[-1], Y[-1])) / float(np.vdot(Y[-1], Y[-1]))
        for (s_, y_), a in zip(zip(S, Y, strict=True), reversed(alphas), strict=True):
            q += (a - float(np.vdot(y_, q)) / float(np.vdot(y_, s_))) * s_
        d = -q
        slope = float(np.vdot(g, d))
        if slope >= 0:  # not a descent direction: restart from steepest descent
            S.clear()
            Y.clear()
            d, slope = -g, -float(np.vdot(g, g))
        t = 1.0 if S else min(1.0, 1.0 / max(float(np.abs(g).max()), 1e-300))
        gmax = float(np.abs(g).max())
        for _ls in range(30):
            zn = z + t * d
            fn, gn = fun(zn)
            if fn <= f + 1e-4 * t * slope:
                break
            # Near the minimum f changes below its rounding (|f| 1e-15) long before the
            # gradient is at gtol: accept a step that shrinks the gradient instead.
            if abs(fn - f) <= 1e-13 * max(1.0, abs(f)) and float(np.abs(gn).max()) < gmax:
                break
            t *= 0.5
        else:
            break  # no progress in value or gradient: at the floor
        s_, y_ = zn - z, gn - g
        if float(np.vdot(s_, y_)) > 1e-300:
            S.append(s_)
            Y.append(y_)
            if len(S) > memory:
                del S[0], Y[0]
        z, f, g = zn, fn, gn
    return z


def fista_prox_grad(
    grad,
    X0: np.ndarray,
    lam: float,
    step: float,
    svt: SVT,
    tol: float,
    max_iter: int,
    *,
    polish=None,
):
    """``argmin f(X) + lam ||X||_*`` by accelerated proximal gradient with gradient-based
    restart (O'Donoghue & Candes 2015): the same fixed point as plain Soft-Impute, with
    far fewer iterations where plain Soft-Impute crawls (small ``lam``).

    Stops when the proximal-gradient step from the extrapolated point is small,
    ``||X_{k+1} - Y_k||_F <= tol * max(1, ||X_{k+1}||_F)`` (for plain proximal gradient
    this is the usual ``||X_{k+1} - X_k||``). Returns ``(X, iterations, converged)``.

    ``polish(X) -> X'`` (optional, e.g. :func:`factored_polish`): once the iteration has
    reached ``sqrt(tol)`` (the active rank is found by then), the iterate is polished on its
    rank and the run continues from the polished point, which then typically meets ``tol``
    at the next step; a polish that does not help costs one extra proximal step.
    """
    X = X0
    Yk = X0
    t = 1.0
    coarse = max(tol, min(1e-5, np.sqrt(tol)))
    for it in range(1, max_iter + 1):
        Xn = svt(Yk - step * grad(Yk), step * lam)
        d = Xn - Yk
        size = max(1.0, float(np.linalg.norm(Xn)))
        gap = float(np.linalg.norm(d))
        if gap <= tol * size:
            return Xn, it, True
        if polish is not None and gap <= coarse * size:
            polish, Xp = None, polish(Xn)  # once: a failed polish falls back to FISTA
            X, Yk, t = Xp, Xp, 1.0
            continue
        if float(np.vdot(d, Xn - X)) < 0.0:  # (Y_k - X_k+1).(X_k+1 - X_k) > 0: restart
            t = 1.0
            Yk_next = Xn
        else:
            t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            Yk_next = Xn + ((t - 1.0) / t_next) * (Xn - X)
            t = t_next
        X, Yk = Xn, Yk_next
    return X, max_iter, False
