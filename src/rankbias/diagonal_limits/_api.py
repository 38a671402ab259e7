"""The two limit algorithms: :func:`saddle_to_saddle` (depth 2) and :func:`diagonal_limit`."""

from __future__ import annotations

import numpy as np

from . import _homotopy
from ._result import DiagonalLimit
from ._thresholds import default_init, growth_thresholds

__all__ = ["saddle_to_saddle", "diagonal_limit"]


def _check_data(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X: expected a 2-D array (n, d), got shape {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y: expected shape ({X.shape[0]},) to match X {X.shape}, got {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X, y: contain NaN or inf")
    return X, y


def _check_tol(tol) -> float:
    if not isinstance(tol, (int, float)) or not 0.0 < float(tol) < 1e-2:
        raise ValueError(f"tol: expected a float in (0, 1e-2), got {tol!r}")
    return float(tol)


def _run(X, y, tp, tm, tol, max_steps, depth, name) -> DiagonalLimit:
    if max_steps is None:
        max_steps = 10 * X.shape[1] + 10
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps: expected a positive integer, got {max_steps!r}")
    st = _homotopy.run(X, y, tp, tm, tol, int(max_steps))
    return DiagonalLimit(
        times=st.times,
        betas=st.betas,
        s=st.s,
        entering=st.entering,
        t_plus=tp,
        t_minus=tm,
        depth=depth,
        algorithm=name,
        well_posed=st.unique,
        converged=st.converged,
    )


def saddle_to_saddle(X, y, *, tol: float = 1e-10, max_steps: int | None = None) -> DiagonalLimit:
    """Pesme & Flammarion's saddle-to-saddle limit of a depth-2 diagonal network.

    Pesme & Flammarion, "Saddle-to-Saddle Dynamics in Diagonal Linear Networks", NeurIPS 2023,
    Algorithm 1 and Theorem 1. Model ``beta = u * v`` (entrywise, ``X`` of shape ``(n, d)``,
    ``y`` of shape ``(n,)``), loss ``L(beta) = 1/2 ||X beta - y||^2``, gradient flow from
    ``u(0) = sqrt(2) alpha``, ``v(0) = 0`` (equivalently ``beta = w_+^2 - w_-^2``,
    ``w_+-(0) = alpha``, whose flow runs twice as fast: see
    :func:`rankbias.diagonal_time_scale`). As ``alpha -> 0`` the flow on the rescaled clock
    ``tau = t / log(1/alpha)`` converges to a piecewise-constant path: from
    ``beta_0 = 0``, ``s_0 = 0``, with ``u = X^T (y - X beta_p)`` (the paper's ``-grad L``),

    * ``Delta_p = min{delta > 0 : s_p(i) + delta u_i = +-1 for an i with beta_p(i) = 0}``,
      ``tau_{p+1} = tau_p + Delta_p``, ``s_{p+1} = s_p + Delta_p u``;
    * ``beta_{p+1} = argmin L(beta)`` over ``beta_i >= 0`` where ``s_{p+1}(i) = 1``,
      ``beta_i <= 0`` where ``s_{p+1}(i) = -1``, ``beta_i = 0`` where ``|s_{p+1}(i)| < 1``;

    until ``X^T (y - X beta) = 0``. Coordinates may deactivate (leave the support) and
    reactivate with the other sign. The end point is the minimum-l1 interpolator (when
    ``X beta = y`` is solvable). A loss normalised as ``1/(2n) ||.||^2`` is ours with
    ``X / sqrt(n), y / sqrt(n)``: it rescales ``u``, hence the jump times, by ``1/n``.

    A single coordinate with correlation ``c = x_i^T y`` (orthogonal columns) jumps at
    ``tau = 1 / |c|`` to ``c / ||x_i||^2``. Assumptions (the paper's, generic in ``X, y``): the
    argmin of each step is unique and each constrained least squares problem has a unique
    solution; ``well_posed`` on the result reports the first.

    Args:
        X: ``(n, d)`` design. y: ``(n,)`` targets.
        tol: a correlation below ``tol * max|X^T y|`` counts as zero (stops the recursion).
        max_steps: at most this many jumps (default ``10 d + 10``); ``converged`` says
            whether the recursion ended first.

    Returns:
        A :class:`DiagonalLimit` (depth 2, thresholds 1).
    """
    X, y = _check_data(X, y)
    d = X.shape[1]
    return _run(X, y, np.ones(d), np.ones(d), _check_tol(tol), max_steps, 2, "saddle_to_saddle")


def _check_init(init, depth: int, d: int) -> np.ndarray:
    if init is None:
        return default_init(depth, d)
    a = np.asarray(init, dtype=float)
    if a.ndim == 1 and a.shape == (depth,):
        a = np.repeat(a[:, None], d, axis=1)
    if a.shape != (depth, d):
        raise ValueError(
            f"init: expected shape ({depth},) or ({depth}, {d}) (layer, coordinate), got {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError("init: contains NaN or inf")
    return a


def diagonal_limit(
    X,
    y,
    depth: int,
    init=None,
    *,
    thresholds=None,
    tol: float = 1e-10,
    max_steps: int | None = None,
) -> DiagonalLimit:
    """Zhao, Wang, Yang, Bai, Zhang (ICML 2026) Algorithm 1: the ``alpha -> 0`` limit path of
    a depth-``L`` diagonal network ``k_i = a_{i,1} ... a_{i,L}`` from ``theta(0) = alpha
    theta*``.

    Their theorem "Dynamics of Deep Diagonal Linear Networks" (for ``L >= 3`` and general
    two-layer networks; theorem environments in their LaTeX source number it 4.5), under
    their Assumption 4.4: each coordinate's smallest initial layer ``argmin_j (a*_{i,j})^2``
    is unique, and the recursion is well posed (Theorem 4.2, "Convergence and Well-Posedness
    of Algorithm 1": ``X k = y`` solvable, a unique argmin at each step, ``u_i != 0`` at a
    zero coordinate sitting on a threshold). With the
    thresholds ``t_i^+-`` of :func:`rankbias.diagonal_limits.growth_thresholds` (quadrature of
    ``int dx / prod_j sqrt(x^2 + mu_{i,j}^2)``), from ``k = 0, s = 0``, ``u = X^T (y - X k)``:

    * for zero coordinates: ``delta_i = (t_i^+ - s_i) / u_i`` (``u_i > 0``) or
      ``(t_i^- + s_i) / |u_i|`` (``u_i < 0``); ``j = argmin delta_i``;
      ``tau += delta_j``, ``s += delta_j u``;
    * ``k = argmin ||X k - y||^2`` with the signs of the nonzero coordinates and of ``j``
      kept, every other coordinate 0;

    until ``X^T (y - X k) = 0``. The end point minimises
    ``R(k) = sum_i t_i^+ k_i^+ + t_i^- k_i^-`` over ``X k = y`` (their Theorem 4.2 and
    Corollary 4.6). Time scale: for ``L >= 3`` the jumps happen at flow times
    ``t = tau alpha^{-(L-2)}`` (loss ``1/2 ||X k - y||^2``; the paper's loss has no ``1/2``,
    halving the times; their Section 6 gives ``h(s) = 1/s`` at ``L = 3``), at ``L = 2`` at
    ``t = tau log(1/alpha)``. With every threshold 1 this is :func:`saddle_to_saddle`.

    Args:
        X: ``(n, d)`` design. y: ``(n,)`` targets. depth: ``L >= 2``.
        init: the direction ``theta*``: ``(L, d)`` (``init[j, i] = a*_{i,j}``) or ``(L,)``
            (the same for every coordinate). Default: layers ``1 .. L-1`` at 1 and layer ``L``
            at 0 (``(sqrt(2), 0)`` at depth 2), where ``t^+ = t^-`` and the limit is the
            min-l1 interpolator.
        thresholds: ``(t_plus, t_minus)``, each ``(d,)`` or a scalar, positive (``inf``
            allowed: that sign never activates), instead of computing them from ``init``.
        tol, max_steps: as in :func:`saddle_to_saddle`.

    Returns:
        A :class:`DiagonalLimit`.
    """
    X, y = _check_data(X, y)
    d = X.shape[1]
    if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or depth < 2:
        raise ValueError(f"depth: expected an integer >= 2, got {depth!r}")
    tol = _check_tol(tol)
    if thresholds is not None:
        if init is not None:
            raise ValueError("init, thresholds: pass one of them (thresholds replace init's)")
        try:
            tp, tm = (np.broadcast_to(np.asarray(t, dtype=float), (d,)).copy() for t in thresholds)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"thresholds: expected a pair (t_plus, t_minus) of scalars or ({d},) arrays ({e})"
            ) from None
        if not (np.all(tp > 0) and np.all(tm > 0)) or np.isnan(tp).any() or np.isnan(tm).any():
            raise ValueError("thresholds: every t_plus and t_minus must be > 0 (inf allowed)")
    else:
        tp, tm = growth_thresholds(_check_init(init, int(depth), d))
    return _run(X, y, tp, tm, tol, max_steps, int(depth), "diagonal_limit")
