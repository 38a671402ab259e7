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
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ._validation import check_bool, check_choice, check_int, check_int_seed, check_positive
from .dynamics._common import deliberate_atol
from .dynamics._flow import _vector_field
from .dynamics._sparse import SparseCompletion, record
from .models import DeepFactorization, SymmetricFactorization
from .problems.base import Problem
from .trajectory import Trajectory

__all__ = ["glrl", "GLRLResult", "GLRLPhase", "top_direction", "kkt_residuals"]

#: Problems of at most this size are handled with dense eigensolvers and recorded densely.
DENSE_LIMIT = 200


@dataclass
class GLRLPhase:
    """One GLRL phase ``r``: escape from ``W_{r-1}`` along ``direction`` to ``W_r``.

    Attributes:
        rank: ``r`` (number of columns of the factor after this phase).
        lam: top eigenvalue (asymmetric: singular value) of ``-grad f(W_{r-1})``.
        direction: unit escape direction ``u`` (``(d,)``), or the pair ``(u, v)``.
        escape_time: ``log(1/eps) / (2 lam)``, the predicted time to leave ``W_{r-1}``.
        W: the converged ``W_r`` (``(m, n)``); ``loss = f(W_r)``.
        factors: ``(U,)`` (``(d, r)``) or ``(V^T, U)`` (``(r, n)``, ``(m, r)``) at ``W_r``.
        trajectory: the phase's gradient flow (time from the phase start), a
            :class:`~rankbias.Trajectory`; ``matrices`` are kept for ``d <= 200``.
        t_mid: phase-clock time at which ``f`` crosses ``(f(W_{r-1}) + f(W_r)) / 2`` (used to
            align GF trajectories with this phase).
        converged: whether ``||grad L|| <= phase_gtol`` was reached.
        grad_norm: ``||grad L||`` at the end of the phase.
    """

    rank: int
    lam: float
    direction: np.ndarray | tuple[np.ndarray, np.ndarray]
    escape_time: float
    W: np.ndarray
    loss: float
    loss_before: float
    factors: tuple[np.ndarray, ...]
    trajectory: Trajectory
    t_mid: float
    converged: bool
    grad_norm: float
    wall_time: float

    def _title(self) -> str:
        return f"GLRLPhase(rank={self.rank}, converged={self.converged})"

    def _rows(self):
        from ._repr import num

        return [
            ("lam", num(self.lam, 6)),
            ("escape time", num(self.escape_time)),
            ("t_mid", num(self.t_mid)),
            ("loss", f"{num(self.loss_before)} -> {num(self.loss)}"),
            ("grad norm", num(self.grad_norm)),
            (
                "W",
                f"{tuple(np.shape(self.W))}, factors {[tuple(np.shape(f)) for f in self.factors]}",
            ),
            (
                "trajectory",
                f"{len(self.trajectory)} records, t in [0, {num(self.trajectory.times[-1])}]",
            ),
            ("wall time", f"{num(self.wall_time, 3)} s"),
        ]

    def __repr__(self) -> str:
        from ._repr import render

        return render(self._title(), self._rows())

    def _repr_html_(self) -> str:
        from ._repr import render_html

        return render_html(self._title(), self._rows())


@dataclass
class GLRLResult:
    """Output of :func:`glrl`.

    Attributes:
        phases: list of :class:`GLRLPhase`, in order.
        matrix: the GLRL limit ``W`` (``(m, n)``); ``loss = f(matrix)``.
        factors: final factor(s).
        final_lambda: top eigenvalue (singular value) of ``-grad f`` at the limit (``<= tol``
            when ``status == "kkt"``).
        kkt: residuals at the limit, see :func:`kkt_residuals`.
        status: ``"kkt"`` (stopped by the eigenvalue test), ``"max_rank"``.
    """

    phases: list[GLRLPhase]
    matrix: np.ndarray
    factors: tuple[np.ndarray, ...]
    loss: float
    final_lambda: float
    kkt: dict
    status: str
    eps: float
    tol: float
    symmetric: bool
    info: dict = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return len(self.phases)

    @property
    def levels(self) -> np.ndarray:
        """Loss plateaus ``f(W_0), f(W_1), ..., f(W_R)``."""
        if not self.phases:
            return np.array([self.loss])
        return np.array([self.phases[0].loss_before] + [p.loss for p in self.phases])

    def _title(self) -> str:
        return (
            f"GLRLResult({'PSD' if self.symmetric else 'asymmetric'}, status={self.status!r}, "
            f"rank={self.rank})"
        )

    def _rows(self):
        from ._repr import num

        rows = [
            ("W", f"{tuple(np.shape(self.matrix))}"),
            ("loss", num(self.loss)),
            ("final lambda", f"{num(self.final_lambda)} (tol {num(self.tol)})"),
            (
                "kkt",
                ", ".join(
                    f"{k} {num(v, 3)}"
                    for k, v in self.kkt.items()
                    if not k.endswith("_rel") and k != "grad0_norm"
                ),
            ),
            ("eps", num(self.eps)),
        ]
        shown = self.phases[:8]
        for p in shown:
            rows.append(
                (
                    f"phase {p.rank}",
                    f"lam {num(p.lam)}, escape {num(p.escape_time)}, "
                    f"f {num(p.loss)}" + ("" if p.converged else ", NOT converged"),
                )
            )
        if len(self.phases) > len(shown):
            rows.append(("...", f"{len(self.phases) - len(shown)} more phases"))
        if "wall_time" in self.info:
            rows.append(("wall time", f"{num(self.info['wall_time'], 3)} s"))
        return rows

    def __repr__(self) -> str:
        from ._repr import render

        return render(self._title(), self._rows())

    def _repr_html_(self) -> str:
        from ._repr import render_html

        return render_html(self._title(), self._rows())

    def plot(self, axes=None):
        """Loss staircase with the phase levels (labelled right of the axes) and the singular
        values per phase, rounding noise grey (see :func:`rankbias.plots.plot_glrl`); returns
        the two Axes."""
        from .plots import plot_glrl

        return plot_glrl(self, axes)

    def summary(self) -> dict:
        """JSON-able numbers: per-phase ``lam``, loss, escape time; KKT residuals."""
        return dict(
            status=self.status,
            rank=self.rank,
            loss=self.loss,
            final_lambda=self.final_lambda,
            kkt=self.kkt,
            eps=self.eps,
            tol=self.tol,
            phases=[
                dict(
                    rank=p.rank,
                    lam=p.lam,
                    loss=p.loss,
                    escape_time=p.escape_time,
                    t_mid=p.t_mid,
                    converged=p.converged,
                    grad_norm=p.grad_norm,
                    wall_time=p.wall_time,
                )
                for p in self.phases
            ],
        )


# ----------------------------------------------------------------------------------------
# Gradient of f and its top eigen/singular direction


def _grad_operator(problem: Problem, factors, symmetric: bool):
    """``-grad f(W)`` as a dense array, or as a scipy sparse matrix for completion.

    For completion the gradient is supported on the observed entries, so for large ``d`` we
    never form ``W``: ``W_ij = <U_i, U_j>`` only at the observed ``(i, j)``.
    """
    d = max(problem.shape)
    entries = problem.observed_entries()
    if entries is not None and d > DENSE_LIMIT:
        rows = np.asarray(entries.rows)
        cols = np.asarray(entries.cols)
        vals = np.asarray(entries.values)
        w = float(entries.weight)
        if symmetric:
            (U,) = factors
            Wo = np.einsum("ij,ij->i", U[rows], U[cols]) if U.shape[1] else np.zeros(rows.size)
        else:
            V1, U2 = factors  # W = U2 @ V1
            Wo = (
                np.einsum("ij,ji->i", U2[rows], V1[:, cols]) if U2.shape[1] else np.zeros(rows.size)
            )
        return sp.csr_matrix((-w * (Wo - vals), (rows, cols)), shape=problem.shape)
    W = _product(factors, problem.shape, symmetric)
    return -np.asarray(problem.grad(jnp.asarray(W)), dtype=np.float64)


def _product(factors, shape, symmetric: bool) -> np.ndarray:
    if symmetric:
        (U,) = factors
        return U @ U.T
    V1, U2 = factors
    return U2 @ V1


def top_direction(negG, symmetric: bool = True, *, seed: int = 0) -> tuple[float, Any, float]:
    r"""Top eigenpair of ``sym(negG)`` (symmetric) or top singular triple of ``negG``.

    ``negG`` is a dense ``(m, n)`` array or a scipy sparse matrix (``-grad f``). Dense
    matrices up to 200 use LAPACK; larger ones Lanczos (``eigsh`` / ``svds``), which only
    needs products with ``negG``.

    Returns ``(lam, u, gap)`` or ``(sigma, (u, v), gap)``; ``gap = lam_1 - lam_2`` (a tie makes
    the greedy step ambiguous).
    """
    m, n = negG.shape
    if symmetric:
        if sp.issparse(negG) or m > DENSE_LIMIT:
            S = (negG + negG.T) * 0.5
            v0 = np.random.default_rng(seed).standard_normal(m)
            w, V = spla.eigsh(S, k=2, which="LA", v0=v0, tol=1e-12, maxiter=20 * m)  # pyright: ignore[reportArgumentType]  # scipy stub: tol is a float
            order = np.argsort(w)[::-1]
            return float(w[order[0]]), V[:, order[0]], float(w[order[0]] - w[order[1]])
        S = 0.5 * (negG + negG.T)
        w, V = np.linalg.eigh(S)
        gap = float(w[-1] - w[-2]) if m > 1 else np.inf
        return float(w[-1]), V[:, -1], gap
    if sp.issparse(negG) or max(m, n) > DENSE_LIMIT:
        v0 = np.random.default_rng(seed).standard_normal(min(m, n))
        k = 2 if min(m, n) > 2 else 1
        Uu, s, Vt = spla.svds(negG, k=k, v0=v0, tol=1e-12, maxiter=20 * max(m, n))  # pyright: ignore[reportArgumentType]  # scipy stub: tol is a float
        assert Uu is not None and Vt is not None  # return_singular_vectors=True
        order = np.argsort(s)[::-1]
        gap = float(s[order[0]] - s[order[1]]) if k > 1 else np.inf
        return float(s[order[0]]), (Uu[:, order[0]], Vt[order[0]]), gap
    Uu, s, Vt = np.linalg.svd(negG)
    gap = float(s[0] - s[1]) if s.size > 1 else np.inf
    return float(s[0]), (Uu[:, 0], Vt[0]), gap


def kkt_residuals(problem: Problem, W=None, *, factors=None, symmetric: bool = True) -> dict:
    r"""First-order optimality residuals of ``W`` (or of the product of ``factors``).

    Symmetric (``min_{W PSD} f``): ``psd = max(0, -lambda_min(sym grad f))``,
    ``complementarity = ||sym(grad f) W||_F``, ``feasibility = max(0, -lambda_min(W))``.
    Asymmetric (``min_W f``): ``stationarity = ||grad f(W)||_2``. Relative versions divide by
    ``||grad f(0)||_2`` (and ``||W||_F``).
    """
    if W is None and factors is None:
        raise ValueError("give `W` or `factors`")
    if factors is not None:
        factors = tuple(np.asarray(f, dtype=np.float64) for f in factors)
    zero = (
        (np.zeros((problem.shape[0], 0)),)
        if symmetric
        else (np.zeros((0, problem.shape[1])), np.zeros((problem.shape[0], 0)))
    )
    g0 = _norm2(_grad_operator(problem, zero, symmetric))
    scale = max(g0, 1e-300)
    if factors is not None:
        negG = _grad_operator(problem, factors, symmetric)
    else:
        W = np.asarray(W, dtype=np.float64)
        negG = -np.asarray(problem.grad(jnp.asarray(W)), dtype=np.float64)
    if not symmetric:
        st = _norm2(negG)
        return dict(stationarity=st, stationarity_rel=st / scale, grad0_norm=g0)
    lam = top_direction(negG, True)[0]
    S = (negG + negG.T) * 0.5
    if factors is not None:
        (U,) = factors
        comp = float(np.linalg.norm((S @ U) @ U.T)) if U.shape[1] else 0.0
        feas = 0.0
        wn = float(np.linalg.norm(U.T @ U))
    else:
        assert W is not None  # given when factors is None (checked on entry)
        comp = float(np.linalg.norm(np.asarray(S @ W)))
        Ws = 0.5 * (W + W.T)
        feas = max(0.0, -float(np.linalg.eigvalsh(Ws)[0]))
        wn = float(np.linalg.norm(W))
    return dict(
        psd=max(0.0, lam),
        psd_rel=max(0.0, lam) / scale,
        complementarity=comp,
        complementarity_rel=comp / (scale * max(wn, 1e-300)),
        feasibility=feas,
        grad0_norm=g0,
    )


def _norm2(A) -> float:
    if sp.issparse(A):
        if min(A.shape) <= 2:
            return float(np.linalg.norm(A.toarray(), 2))
        return float(spla.svds(A, k=1, return_singular_vectors=False, tol=1e-10)[0])  # pyright: ignore[reportArgumentType]  # scipy stub: tol is a float
    return float(np.linalg.norm(A, 2)) if A.size else 0.0


# ----------------------------------------------------------------------------------------
# One phase: gradient flow of the engine, run in chunks until converged


# Where the large-problem phases hand over from the flow to Newton-CG (times phase_gtol;
# with the default phase_gtol: ||grad L|| <= 1e-4 max(1, ||grad f(0)||)).
_POLISH_FACTOR = 1e7


def _flow_phase(
    problem,
    factors,
    symmetric: bool,
    t_escape: float,
    lam: float,
    *,
    phase_gtol: float,
    max_time: float,
    n_save: int,
    rtol: float,
    atol: float,
    solver: str,
    record_matrices: bool,
    sparse: bool,
    polish: bool = True,
):
    r = factors[0].shape[1] if symmetric else factors[0].shape[0]
    d = problem.shape[0]
    model = (
        SymmetricFactorization(d, width=r)
        if symmetric
        else DeepFactorization(problem.shape, depth=2, width=r)
    )
    # Large problems: the flow runs until it is past the escape and within _POLISH_FACTOR
    # phase_gtol of stationarity, then Newton-CG polishes to phase_gtol. The last digits of a
    # flow's approach to a minimum converge at the rate of its smallest curvature (most of
    # the time on 1000 x 1000 completions); Newton from inside the basin reaches the same
    # minimiser quadratically (2-3 steps measured).
    flow_gtol = _POLISH_FACTOR * phase_gtol if (sparse and polish) else phase_gtol
    # First chunk: the escape plus a margin of a few local time constants 1/lam; later
    # chunks double. gtol=None: with width r < d the engine's own steady-state test falls
    # back to a Hessian test that we replace by our convergence loop.
    t_chunk = 1.5 * t_escape + 20.0 / lam
    if sparse:
        model, factors = _padded_model(problem, factors, symmetric)
        data = SparseCompletion.from_problems(problem, model)
        if solver == "auto":
            solver = _auto_solver(data, model, factors, 4.0 * t_chunk)
        hold = [1.2 * t_escape]  # the first chunk may not stop before the escape

        def gradient_flow(problem, model, params, **kw):
            h, hold[0] = hold[0], 0.0
            with deliberate_atol():
                return _sparse_phase_flow(problem, model, params, flow_gtol=flow_gtol, hold=h, **kw)
    else:
        solver = "rkc" if solver == "auto" else solver
        # either branch binds a flow function with the call signature used below
        model, gradient_flow, factors = _padded_flow(problem, factors, symmetric)  # pyright: ignore[reportAssignmentType]
    params = tuple(jnp.asarray(f) for f in factors)
    pieces, t0 = [], 0.0
    converged = False
    while True:
        tr = gradient_flow(
            problem,
            model,
            params,
            t_max=t_chunk,
            gtol=None,
            rtol=rtol,
            atol=atol,
            solver=solver,
            n_save=n_save,
            t_min=min(1e-2, t_chunk / 1e4) if not pieces else t_chunk / 1e3,
            save_matrices=record_matrices,
        )
        tr.times = tr.times + t0
        pieces.append(tr)
        t0 += float(tr.times[-1] - t0)
        params = tuple(jnp.asarray(p) for p in tr.final_params)
        gn = float(tr.grad_norm[-1])
        if gn <= flow_gtol:
            converged = gn <= phase_gtol
            break
        if t0 >= max_time:
            break
        t_chunk = min(2.0 * t_chunk, max_time - t0) if t0 < max_time else t_chunk
    traj = _concat(pieces)
    if sparse and polish and not converged and gn <= flow_gtol:
        params, gn, nit = _polish(problem, params, symmetric, phase_gtol, data=data)
        converged = gn <= phase_gtol
        last = record(data, model, tuple(jnp.asarray(p) for p in params), False)
        traj.loss[-1], traj.grad_norm[-1] = float(last["loss"]), float(last["grad_norm"])
        traj.singular_values[-1] = np.asarray(last["sv"])
        traj.final_params = tuple(np.asarray(p, dtype=np.float64) for p in params)
        traj.final_matrix = _product(traj.final_params, problem.shape, symmetric)
        traj.info["polish_iterations"] = nit
    params = _unpad(params, r, symmetric)
    traj.final_params = _unpad(traj.final_params, r, symmetric)
    return traj, tuple(np.asarray(p, dtype=np.float64) for p in params), converged, gn


def _padded_width(r: int, shape) -> int:
    return max(min(-(-max(r, 1) // _WIDTH_BLOCK) * _WIDTH_BLOCK, min(shape)), r)


def _padded_model(problem, factors, symmetric: bool):
    """A phase's model and factors at the width padded to a multiple of 8 (one compilation
    serves 8 phases, and every later GLRL call of the same shape). Zero columns of ``U``
    (rows of ``W_1`` / columns of ``W_2``) stay exactly zero under the flow and the Newton
    polish (their gradient is ``sym(G) 0``), so the trajectory is that of width ``r``."""
    r = factors[0].shape[1] if symmetric else factors[0].shape[0]
    R = _padded_width(r, problem.shape)
    if symmetric:
        model = SymmetricFactorization(problem.shape[0], width=R)
        padded = (np.pad(np.asarray(factors[0], dtype=np.float64), ((0, 0), (0, R - r))),)
    else:
        model = DeepFactorization(problem.shape, depth=2, width=R)
        padded = (
            np.pad(np.asarray(factors[0], dtype=np.float64), ((0, R - r), (0, 0))),
            np.pad(np.asarray(factors[1], dtype=np.float64), ((0, 0), (0, R - r))),
        )
    return model, padded


def _padded_flow(problem, factors, symmetric: bool):
    """The dense phases' model, flow and factors at the padded width of
    :func:`_padded_model`.

    The error norm is an RMS over the state: the padding's exact zeros would loosen it by
    ``sqrt(R / r)``, so ``rtol`` and ``atol`` are scaled by ``sqrt(r / R)``. (The
    factor-only phases keep their tolerances: Newton-CG finishes them, the flow only
    carries them into the basin.)
    """
    from .dynamics import gradient_flow as flow

    r = factors[0].shape[1] if symmetric else factors[0].shape[0]
    model, padded = _padded_model(problem, factors, symmetric)
    R = padded[0].shape[1] if symmetric else padded[0].shape[0]
    k = float(np.sqrt(max(r, 1) / R))

    def gradient_flow(problem, model, params, *, rtol, atol, **kw):
        with deliberate_atol():
            return flow(problem, model, params, rtol=rtol * k, atol=atol * k, **kw)

    return model, gradient_flow, padded


def _unpad(params, r: int, symmetric: bool):
    if symmetric:
        return (np.asarray(params[0], dtype=np.float64)[:, :r],)
    return (
        np.asarray(params[0], dtype=np.float64)[:r],
        np.asarray(params[1], dtype=np.float64)[:, :r],
    )


def _polish(problem, params, symmetric: bool, gtol: float, max_iter: int = 30, *, data=None):
    """Newton-CG on the factor objective of a completion problem, from a point the flow
    brought near a minimiser; returns (params, ||grad L||, Newton iterations) at the width
    of ``params`` (the sparse backend's evaluations, padded to a multiple of 8 columns).

    Each step solves ``H d = -grad L`` by conjugate gradients on exact Hessian-vector
    products (the Hessian is singular along the factor's symmetries, ``U -> U Q``; CG stays
    in the range because the gradient does). No line search on loss values: near the
    minimiser the loss decrease falls below float64 resolution long before the gradient
    does, which stalls value-based searches (L-BFGS stopped at ``||grad|| ~ 1e-9`` on
    1000 x 1000 completions). A step is accepted when ``||grad L||`` falls, else halved."""
    r = params[0].shape[1] if symmetric else params[0].shape[0]
    # zero columns stay zero: their gradient sym(G) 0 vanishes
    model, padded = _padded_model(problem, params, symmetric)
    data = SparseCompletion.from_problems(problem, model) if data is None else data
    y = model.flatten(tuple(jnp.asarray(p) for p in padded))
    g = _neg_grad(data, model, y)
    gn = float(jnp.linalg.norm(g))
    it = 0
    while gn > gtol and it < max_iter:
        it += 1
        d = _newton_direction(data, model, y, g)
        step = 1.0
        for _ in range(8):
            y_new = y + step * d
            g_new = _neg_grad(data, model, y_new)
            gn_new = float(jnp.linalg.norm(g_new))
            if gn_new < gn:
                break
            step *= 0.5
        else:
            break  # no decrease: at the precision floor
        y, g, gn = y_new, g_new, gn_new
    return _unpad(model.unflatten(y), r, symmetric), gn, it


@eqx.filter_jit
def _neg_grad(data, model, y):
    """``-grad L`` of the factor objective, flat (the sparse backend's vector field)."""
    return _vector_field(model)(0.0, y, data)


@eqx.filter_jit
def _newton_direction(data, model, y, g, maxiter: int = 200):
    """CG for ``H d = -grad L = g`` (``g`` is ``-grad L``, ``H`` the Hessian of ``L``), to
    relative residual 1e-4, stopping early at non-positive curvature."""
    f = lambda z: _vector_field(model)(0.0, z, data)
    hvp = lambda v: -jax.jvp(f, (y,), (v,))[1]  # -d(-grad L) = H v
    b2 = jnp.sum(g * g)

    def cond(c):
        k, x, res, p, rr, done = c
        return (k < maxiter) & (rr > 1e-8 * b2) & ~done

    def body(c):
        k, x, res, p, rr, done = c
        hp = hvp(p)
        php = jnp.sum(p * hp)
        neg = php <= 1e-30 * jnp.sum(p * p)
        alpha = rr / jnp.where(neg, 1.0, php)
        x = jnp.where(neg, jnp.where(k == 0, g, x), x + alpha * p)
        res = res - alpha * hp
        rr_new = jnp.sum(res * res)
        p = res + rr_new / rr * p
        return k + 1, x, res, p, rr_new, neg

    init = (0, jnp.zeros_like(g), g, g, b2, False)
    return jax.lax.while_loop(cond, body, init)[1]


_WIDTH_BLOCK = 8


def _sparse_phase_flow(problem, model, params, *, flow_gtol, hold, t_max, gtol=None, **kw):
    """One chunk of a factor-only phase: :func:`rankbias.gradient_flow` on the sparse
    backend. Past ``hold`` (the escape) it stops as soon as ``||grad L|| <= flow_gtol``
    after the loss has dropped: cheaper than doubling chunks. Before ``hold`` it may not
    stop (``gtol`` 1e-300, the same compiled solve): the gradient is also small, and the
    loss slightly lower, early in the escape, where Newton-CG would start outside the
    basin. ``curvature_tol=inf``: the end point is a minimiser at width ``r`` but a saddle
    of the padded width (the next phase's direction), which the Lanczos test would reject."""
    from .dynamics import gradient_flow

    def run(p, T, g, **extra):
        return gradient_flow(
            problem,
            model,
            p,
            t_max=T,
            gtol=g,
            curvature_tol=np.inf,
            backend="sparse",
            **dict(kw, **extra),
        )

    if hold <= 0:
        return run(params, t_max, flow_gtol)
    if hold >= t_max:
        return run(params, t_max, 1e-300)
    first = run(params, hold, 1e-300)
    t_min = kw.get("t_min")
    rest = (t_max - hold) / 1e4 if t_min is None else min(t_min, (t_max - hold) / 1e4)
    second = run(
        tuple(jnp.asarray(p) for p in first.final_params), t_max - hold, flow_gtol, t_min=rest
    )
    second.times = second.times + first.times[-1]
    return _concat([first, second])


@eqx.filter_jit
def _sparse_rho(data, model, y0, iters: int = 30):
    """Spectral radius of the factor objective's Hessian at ``y0``: the RKC solver's own
    power iteration on exact JVPs of the sparse backend's vector field."""
    from .dynamics import RKC

    vf = _vector_field(model)
    term = diffrax.ODETerm(lambda t, y, args: vf(t, y, data))
    v0 = jnp.cos(jnp.arange(y0.size, dtype=y0.dtype) * 1.618033988749895 + 0.3)
    return RKC()._power(term, 0.0, y0, None, v0 / jnp.linalg.norm(v0), iters)[1]


def _auto_solver(data, model, params, horizon) -> str:
    """Tsit5 when the phase is not stiff, RKC otherwise: with Hessian spectral radius
    ``rho`` (twice its value at the phase start: the learned direction adds curvature),
    an explicit 5th-order method needs about ``rho T / 3.3`` steps for stability alone
    over a phase of length ``T``; below ~3000 such steps it beats RKC, which pays two
    Jacobian-vector products per step for its spectral-radius estimate."""
    y0 = model.flatten(tuple(jnp.asarray(p) for p in params))
    rho = 2.0 * float(_sparse_rho(data, model, y0))
    return "tsit5" if rho * horizon / 3.3 <= 3000.0 else "rkc"


def _concat(pieces: list[Trajectory]) -> Trajectory:
    if len(pieces) == 1:
        return pieces[0]
    first = pieces[0]
    # Drop each later piece's t = 0 record (it repeats the previous piece's end).
    cat = lambda name: np.concatenate(
        [getattr(first, name)] + [getattr(p, name)[1:] for p in pieces[1:]]
    )
    mats = None if first.matrices is None else cat("matrices")
    info = dict(pieces[-1].info)
    info["num_steps"] = sum(p.info.get("num_steps", 0) for p in pieces)
    info["wall_time"] = sum(p.info.get("wall_time", 0.0) for p in pieces)
    info["chunks"] = len(pieces)
    return Trajectory(
        times=cat("times"),
        loss=cat("loss"),
        grad_norm=cat("grad_norm"),
        singular_values=cat("singular_values"),
        final_params=pieces[-1].final_params,
        final_matrix=pieces[-1].final_matrix,
        matrices=mats,
        info=info,
    )


def _mid_time(traj: Trajectory, f_before: float, f_after: float, after: float = 0.0) -> float:
    """Time ``>= after`` where ``f`` crosses ``(f_before + f_after) / 2`` (NaN if never).

    The drop is close to a logistic ``q = 1 / (1 + e^{2 lam (t - t_mid)})`` in the
    normalised loss ``q = (f - f_after) / (f_before - f_after)``, so we interpolate
    ``logit q`` (cubic through up to 4 records around the crossing), not ``f``.
    """
    span = f_before - f_after
    if not span > 0:
        return float("nan")
    sel = traj.times >= after
    idx = np.nonzero(sel & (traj.loss - f_after <= 0.5 * span))[0]
    if idx.size == 0:
        return float("nan")
    i = int(idx[0])
    if i == 0 or not sel[i - 1]:
        return float(traj.times[i])
    lo, hi = max(i - 2, 0), min(i + 2, len(traj.times))
    t = traj.times[lo:hi]
    q = np.clip((traj.loss[lo:hi] - f_after) / span, 1e-300, 1 - 1e-16)
    z = np.log(q) - np.log1p(-q)
    ok = np.isfinite(z) & (np.abs(z) < 30)
    a, b = traj.times[i - 1], traj.times[i]
    if ok.sum() < 2:
        return float(b)
    t, z = t[ok], z[ok]
    c = np.polyfit(t - a, z, min(3, t.size - 1))
    roots = np.roots(c) + a
    roots = roots[np.isreal(roots)].real
    roots = roots[(roots >= a - 1e-12) & (roots <= b + 1e-12)]
    if roots.size == 0:
        za, zb = np.interp([a, b], t, z)
        return float(a + za / (za - zb) * (b - a)) if za != zb else float(b)
    return float(roots[0])


def _refine_mid(
    problem, start, symmetric, crude, lam, f_before, f_after, rtol, atol, n_save, save_matrices
):
    """Re-run the phase flow to just past ``crude`` with a dense save grid around it.

    At the padded width of :func:`_padded_flow`, with as many records as the phase flows
    (``n_save``, at least 163: ``n_save - 2`` times in ``crude +- 4 / lam``) and the same
    ``save_matrices``: the refinement is the phases' own compiled flow (one program instead
    of two: the first 30 x 30 call in a fresh process went from 9.1 to 6.1 s). A rank-``k`` truth compiled
    ``k`` refinements at the phases' own widths before the padding. The padded run takes the
    same steps as the unpadded one (zero columns stay exactly zero; RMS tolerances are
    rescaled): measured on the 8 x 8 case of ``tests/test_glrl.py``, phase 1: 739 steps (129
    rejected) either way, ``t_mid`` equal to 1e-14 and ``W`` to 6e-17."""
    k = max(int(n_save), 163) - 2  # save_times adds 0 and t_min: n_save records in all
    grid = crude + np.linspace(-4.0, 4.0, k) / lam
    if grid[0] <= 1e-3 * grid[-1]:  # an early crossing: same length, positive times
        grid = np.linspace(1e-3 * grid[-1], grid[-1], k)
    model, gradient_flow, padded = _padded_flow(problem, start, symmetric)
    tr = gradient_flow(
        problem,
        model,
        tuple(jnp.asarray(f) for f in padded),
        t_max=float(grid[-1]),
        gtol=None,
        rtol=rtol,
        atol=atol,
        n_save=2,
        save_at=grid,
        save_matrices=save_matrices,
    )
    return _mid_time(tr, f_before, f_after)


#: Smallest ``tol`` relative to ``max(1, ||grad f(0)||_2)``: a few float64 roundings
#: (machine epsilon 2.2e-16), the accuracy of a computed top eigenvalue.
_TOL_FLOOR = 1e-15


def glrl(
    problem: Problem,
    eps: float = 1e-30,
    tol: float = 1e-9,
    *,
    symmetric: bool = True,
    max_rank: int | None = None,
    phase_gtol: float | None = None,
    max_phase_time: float | None = None,
    n_save: int | None = None,
    rtol: float | None = None,
    atol: float = 1e-14,
    solver: str = "auto",
    record_matrices: bool | None = None,
    seed: int = 0,
    polish: bool = True,
) -> GLRLResult:
    r"""Greedy Low-Rank Learning on ``problem`` (see the module docstring for the algorithm).

    Arguments:
        problem: a rankbias :class:`~rankbias.problems.Problem`; square for ``symmetric``.
        eps: squared norm of each appended column (``U <- [U, sqrt(eps) u]``), ``> 0``.
        tol: stop when the top eigenvalue of ``-sym(grad f(W))`` (asymmetric: top singular
            value of ``-grad f(W)``) is ``<= tol``; at least ``1e-15 max(1, ||grad f(0)||_2)``
            (the float64 resolution of that eigenvalue: a smaller ``tol`` is never met, so
            it is refused).
        symmetric: PSD GLRL on ``W = U U^T`` (default) or the singular-pair variant ``U V^T``.
        max_rank: at most this many phases (default ``min(m, n)``).
        phase_gtol: a phase has converged when ``||grad L(U)||_F <= phase_gtol`` (default
            ``1e-11 * max(1, ||grad f(0)||_2)``).
        max_phase_time: cap on each phase's flow time (default ``200 * escape time``).
        polish: for large completion problems (factor-only path: the flow's sparse backend,
            :func:`rankbias.dynamics.choose_backend`), stop each phase's flow
            within ``1e7 phase_gtol`` of stationarity (past the escape) and finish with
            Newton-CG from there (same minimiser, quadratic); ``False``: flow all the way.
        n_save: records per flow chunk (default 400 for ``d <= 200``, else 3: on the dense
            path the recorder takes a full SVD of ``W`` at each record).
        rtol: relative tolerance of each phase's flow (default ``1e-10``; ``1e-8`` on the
            factor-only path, whose phases are finished by Newton-CG: there the flow only has
            to carry each phase into its minimiser's basin).
        atol: absolute tolerance (capped at ``1e-3 sqrt(eps)`` so the new column's escape
            is resolved).
        solver: ``"auto"`` (default): ``"rkc"`` for dense problems; on the factor-only path
            Tsit5 unless the phase is stiff (Hessian spectral radius times phase length
            above ~1e4, measured by power iteration at the phase start), else ``"rkc"``.
            Or any of :data:`rankbias.dynamics.SOLVERS`.
        seed: non-negative integer seed of the eigensolvers' start vectors.

    Returns:
        :class:`GLRLResult` (``phases``, ``matrix``, ``kkt``, ...).

    Raises:
        ValueError: bad arguments; ``RuntimeError``: a phase's gradient flow failed.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    eps = check_positive(eps, "eps")
    if eps >= 1:
        raise ValueError(f"`eps` must be small (0 < eps < 1), got {eps}")
    tol = check_positive(tol, "tol")
    seed = check_int_seed(seed)  # phase r uses seed + r
    symmetric = check_bool(symmetric, "symmetric")
    polish = check_bool(polish, "polish")
    m, n = problem.shape
    if symmetric and m != n:
        raise ValueError(
            f"symmetric GLRL needs a square problem, got shape {(m, n)}; use symmetric=False"
        )
    max_rank = min(m, n) if max_rank is None else check_int(max_rank, "max_rank", minimum=0)
    if not problem.is_convex:
        warnings.warn(
            "`problem` is not known to be convex: GLRL's stopping test (grad f PSD, "
            "grad f W = 0) certifies a first-order stationary point only, not a "
            "global minimiser",
            RuntimeWarning,
            stacklevel=2,
        )
    dense = max(m, n) <= DENSE_LIMIT
    from .dynamics import SOLVERS

    solver = check_choice(solver, "solver", ("auto", *SOLVERS))
    rtol = (1e-10 if dense else 1e-8) if rtol is None else check_positive(rtol, "rtol")
    record_matrices = (
        dense if record_matrices is None else check_bool(record_matrices, "record_matrices")
    )
    n_save = (400 if dense else 3) if n_save is None else check_int(n_save, "n_save", minimum=2)

    # tuple(): typed tuple[ndarray, ...], not narrowed to a 1-tuple (pyright)
    factors = tuple((np.zeros((m, 0)),) if symmetric else (np.zeros((0, n)), np.zeros((m, 0))))
    negG = _grad_operator(problem, factors, symmetric)
    g0 = _norm2(negG)
    # Below the float64 resolution of the top eigenvalue (~1e-16 ||grad f||), `tol` can
    # never be met: every later phase starts from rounding noise, lam ~ 1e-16, whose escape
    # time log(1/eps) / (2 lam) is practically endless.
    tol_floor = _TOL_FLOOR * max(1.0, g0)
    if tol < tol_floor:
        raise ValueError(
            f"`tol`={tol:g} is below the float64 resolution of the top eigenvalue, "
            f"{_TOL_FLOOR:g} * max(1, ||grad f(0)||_2) = {tol_floor:.3g}: GLRL could never "
            f"stop (it would flow through endless phases started by rounding noise); pass "
            f"tol >= {tol_floor:.3g} (default 1e-9)"
        )
    # Tight enough that the next phase's top eigenvalue is not a remnant of this phase's
    # residual gradient (a residual above `tol` starts a spurious phase of escape time
    # log(1/eps) / (2 lam) -> a practically endless flow).
    default_gtol = 1e-11 * max(1.0, g0)
    phase_gtol = default_gtol if phase_gtol is None else check_positive(phase_gtol, "phase_gtol")
    f_prev = float(problem.loss(jnp.zeros(problem.shape)))
    phases: list[GLRLPhase] = []
    t_start = time.perf_counter()
    status = "max_rank"
    lam = np.nan
    for r in range(1, max_rank + 2):
        lam, direction, gap = top_direction(negG, symmetric, seed=seed + r)
        if lam <= tol:
            status = "kkt"
            break
        if r > max_rank:
            break
        if gap < 1e-8 * max(lam, 1e-300):
            warnings.warn(
                f"GLRL phase {r}: top eigenvalue {lam:.6g} is (nearly) degenerate "
                f"(gap {gap:.3g}); the greedy direction is not unique",
                RuntimeWarning,
                stacklevel=2,
            )
        s = np.sqrt(eps)
        if symmetric:
            new = (np.concatenate([factors[0], s * direction[:, None]], axis=1),)
        else:
            u, v = direction
            new = (
                np.concatenate([factors[0], s * v[None, :]], axis=0),
                np.concatenate([factors[1], s * u[:, None]], axis=1),
            )
        t_escape = np.log(1.0 / eps) / (2.0 * lam)
        # The new column starts at sqrt(eps): an absolute tolerance above that would leave
        # its escape uncontrolled.
        atol_r = min(atol, 1e-3 * np.sqrt(eps))
        t_cap = (
            200.0 * t_escape
            if max_phase_time is None
            else check_positive(max_phase_time, "max_phase_time")
        )
        w0 = time.perf_counter()
        try:
            traj, factors, conv, gn = _flow_phase(
                problem,
                new,
                symmetric,
                t_escape,
                lam,
                phase_gtol=phase_gtol,
                max_time=t_cap,
                n_save=n_save,
                rtol=rtol,
                atol=atol_r,
                solver=solver,
                record_matrices=record_matrices,
                polish=polish,
                sparse=not dense and problem.observed_entries() is not None,
            )
        except (FloatingPointError, RuntimeError) as e:
            raise RuntimeError(
                f"GLRL phase {r} (lam = {lam:.6g}): gradient flow failed: {e}"
            ) from e
        if not conv:
            warnings.warn(
                f"GLRL phase {r}: flow not converged by t = {traj.times[-1]:.4g} "
                f"(||grad L|| = {gn:.3g} > phase_gtol = {phase_gtol:.3g}); "
                "raise `max_phase_time`",
                RuntimeWarning,
                stacklevel=2,
            )
        W = _product(factors, problem.shape, symmetric) if dense else None
        f_r = float(traj.loss[-1])
        phases.append(
            GLRLPhase(
                rank=r,
                lam=lam,
                direction=direction,
                escape_time=float(t_escape),
                W=W if W is not None else np.asarray(traj.final_matrix),
                loss=f_r,
                loss_before=f_prev,
                factors=factors,
                trajectory=traj,
                t_mid=(
                    _refine_mid(
                        problem,
                        new,
                        symmetric,
                        _mid_time(traj, f_prev, f_r),
                        lam,
                        f_prev,
                        f_r,
                        rtol,
                        atol_r,
                        n_save,
                        record_matrices,
                    )
                    if dense
                    else _mid_time(traj, f_prev, f_r)
                ),
                converged=conv,
                grad_norm=gn,
                wall_time=time.perf_counter() - w0,
            )
        )
        f_prev = f_r
        negG = _grad_operator(problem, factors, symmetric)
    if not phases:
        matrix = np.zeros(problem.shape)
    else:
        matrix = phases[-1].W
    kkt = kkt_residuals(problem, factors=factors, symmetric=symmetric)
    if status != "kkt":
        warnings.warn(
            f"GLRL stopped at max_rank={max_rank} with top eigenvalue {lam:.3g} > "
            f"tol={tol:g}: not a KKT point",
            RuntimeWarning,
            stacklevel=2,
        )
    return GLRLResult(
        phases=phases,
        matrix=matrix,
        factors=factors,
        loss=f_prev,
        final_lambda=float(lam),
        kkt=kkt,
        status=status,
        eps=eps,
        tol=tol,
        symmetric=symmetric,
        info=dict(wall_time=time.perf_counter() - t_start, phase_gtol=phase_gtol, grad0_norm=g0),
    )
