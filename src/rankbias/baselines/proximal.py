r"""Soft-Impute: ``min f(X) + lam ||X||_*`` (PSD: ``+ lam tr X`` over ``X >= 0``) by
accelerated proximal gradient, one ``lam`` or a warm-started path of them (each result
delivered as it finishes)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np

from .._nuclear import SVT, blas_threads, factored_polish, fista_prox_grad
from .._validation import check_choice, check_int, check_matrix, check_positive
from ..problems.base import Problem
from ._sparse_impute import SparseImpute
from .solution import default_psd

__all__ = ["soft_impute", "soft_impute_path"]

# Below this size a full LAPACK SVD (about 2 ms at 100x100) beats the range finder's
# several QR factorisations per call.
_FULL_SVD_MAX = 200
# From this many matrix entries (m n) "auto" runs completion on the observed entries and the
# iterate's factors (:mod:`._sparse_impute`) unless more than this fraction is observed.
# 5-lambda paths, shared 2 cores: 300x300 at 10% dense 3.7 s, sparse 13.2 s (the dense path's
# factored polish saves most iterations); 943x1682 with 90,000 entries sparse 93 s, dense
# killed at 200 s with 4 of 5 lambdas. The crossover lies in between; not measured closer.
_SPARSE_MIN_ENTRIES = 500_000
_SPARSE_MAX_FRACTION = 0.3


class _Solver:
    """One Soft-Impute engine with its warm state: ``solve(lam)`` starts from the previous
    minimiser (and singular subspace) and returns the dense ``(m, n)`` minimiser."""

    def __init__(self, problem: Problem, psd: bool, svd: str, max_iter: int, tol: float, X0):
        self.max_iter, self.tol = max_iter, tol
        m, n = problem.shape
        entries = problem.observed_entries()
        sparse_ok = not psd and entries is not None
        if svd == "sparse" and not sparse_ok:
            raise ValueError(
                "`svd='sparse'` needs a completion problem (observed entries) and psd=False; "
                "use svd='randomized' for this problem"
            )
        self.sparse = sparse_ok and (
            svd == "sparse"
            or (
                svd == "auto"
                and m * n >= _SPARSE_MIN_ENTRIES
                and entries is not None
                and entries.rows.size <= _SPARSE_MAX_FRACTION * m * n
            )
        )
        self.step = 1.0 / problem.lipschitz()
        if self.sparse:
            assert entries is not None  # sparse_ok
            self.engine = SparseImpute(problem.shape, entries.rows, entries.cols, entries.values)
            if X0 is None:
                self.L, self.R = np.zeros((m, 0)), np.zeros((n, 0))
            else:
                U, s, Vt = np.linalg.svd(X0, full_matrices=False)
                r = int(np.count_nonzero(s > 1e-14 * max(1.0, float(s[0]))))
                self.L, self.R = U[:, :r] * s[:r], Vt[:r].T
            return
        randomized = svd == "randomized" or (svd == "auto" and min(m, n) > _FULL_SVD_MAX)
        self.svt, self.grad = SVT(problem.shape, psd, randomized), problem.host_grad()
        # The factored polish needs a quadratic loss (its value from gradients alone).
        self.polish_psd = psd if problem.is_quadratic else None
        self.X = np.zeros(problem.shape) if X0 is None else X0

    @property
    def rank(self) -> int:
        return self.L.shape[1] if self.sparse else self.svt.rank

    def solve(self, lam: float) -> np.ndarray:
        if self.sparse:
            # Step 1/c on f = c/2 ||P_Omega(X - M)||^2: threshold lam / c.
            with blas_threads(self.L.shape, thin=True):
                self.L, self.R, _, ok = self.engine.solve(
                    lam * self.step, self.L, self.R, self.tol, self.max_iter
                )
            X = self.L @ self.R.T
        else:
            X, ok = self._dense(lam)
            self.X = X
        if not ok:
            warnings.warn(
                f"soft_impute: not converged in {self.max_iter} iterations at lam={lam:g}; "
                f"raise `max_iter` or use soft_impute_path for warm starts",
                RuntimeWarning,
                stacklevel=3,
            )
        return X

    def _dense(self, lam: float):
        polish = None
        if self.polish_psd is not None and lam > 0:
            tol, grad, psd = self.tol, self.grad, self.polish_psd
            polish = lambda X: factored_polish(
                grad, X, lam, psd, gtol=0.1 * tol * max(1.0, float(np.linalg.norm(X)))
            )
        X, _, ok = fista_prox_grad(
            self.grad, self.X, lam, self.step, self.svt, self.tol, self.max_iter, polish=polish
        )
        return X, ok


def _setup(problem: Problem, psd: bool | None, svd: str, max_iter: int, tol: float, X0):
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a rankbias Problem, got {type(problem).__name__}")
    check_int(max_iter, "max_iter", minimum=1)
    check_choice(svd, "svd", ("auto", "full", "randomized", "sparse"))
    psd = default_psd(problem) if psd is None else bool(psd)
    if psd and problem.shape[0] != problem.shape[1]:
        raise ValueError(f"`psd=True` needs a square problem, got shape {problem.shape}")
    if X0 is not None:
        X0 = check_matrix(X0, "X0", shape=problem.shape)
    return _Solver(problem, psd, svd, max_iter, tol, X0)


def soft_impute(
    problem: Problem,
    lam: float,
    *,
    psd: bool | None = None,
    X0=None,
    max_iter: int = 20_000,
    tol: float = 1e-10,
    svd: str = "auto",
) -> np.ndarray:
    r"""``argmin_X f(X) + lam ||X||_*`` (PSD: ``f(X) + lam tr X`` over ``X >= 0``).

    Accelerated proximal gradient (FISTA with gradient restart)
    ``X <- prox_{lam t ||.||_*}(Y - t grad f(Y))``, ``t = 1/Lip``, ``Y`` the extrapolated
    point; for completion (``"sum"``) a plain step is Soft-Impute
    ``X <- S_lam(P_Omega(M) + P_Omega^perp(X))`` with ``S_lam`` the singular-value soft
    threshold, and the minimiser is the same. Stops when
    ``||X_{k+1} - Y_k||_F <= tol * max(1, ||X_{k+1}||_F)``. For quadratic losses the run
    is shortcut at ``sqrt(tol)`` by an L-BFGS polish of the factored objective
    ``f(U V^T) + lam (||U||^2 + ||V||^2) / 2`` on the iterate's rank (same stopping rule).

    Arguments:
        lam: ``>= 0``; ``X0``: warm start (default 0); ``svd``: ``"full"`` (LAPACK),
            ``"randomized"`` (range finder on the dense matrix, warm-started from the
            previous iterate's singular subspace), ``"sparse"`` (completion only, not PSD:
            the iterate kept as factors and ``P_Omega(M) - P_Omega(Y) + Y`` applied as a
            sparse-plus-low-rank operator, Mazumder et al. 2010; no ``(m, n)`` matrix per
            step) or ``"auto"`` (full up to ``min(m, n) = 200``, randomized above; sparse
            for completion with ``m n >= 500,000`` and at most 30% observed).

    Returns:
        the ``(m, n)`` minimiser (warns if ``max_iter`` is reached).

    Raises:
        ValueError: a negative ``lam``, an unknown ``svd``, ``psd`` on a rectangular problem,
            ``svd="sparse"`` on a problem without observed entries or with ``psd``.
    """
    lam = check_positive(lam, "lam", allow_zero=True)
    solver = _setup(problem, psd, svd, max_iter, tol, X0)
    with blas_threads(problem.shape):
        return solver.solve(lam)


def soft_impute_path(
    problem: Problem,
    lams,
    *,
    psd: bool | None = None,
    max_iter: int = 20_000,
    tol: float = 1e-10,
    svd: str = "auto",
    on_result: Callable[[float, np.ndarray], object] | None = None,
    progress: bool = False,
) -> list[np.ndarray]:
    """:func:`soft_impute` along ``lams`` (solved from the largest down, each warm-started
    from the previous minimiser and, with the randomized or sparse SVD, from its singular
    subspace); returned in the order of ``lams``.

    Arguments:
        on_result: called as ``on_result(lam, X)`` with each ``(m, n)`` minimiser as soon as
            it is found (largest ``lam`` first), e.g. to save it or to stop early.
        progress: print one line per ``lam`` (``lam``, rank, train RMSE on the observed
            entries when the problem has them, seconds). Off by default.

    Interrupts: a ``KeyboardInterrupt`` (Ctrl-C, or raised by ``on_result``) stops the path
    and returns the minimisers finished so far (the largest ``lams``), in the order of
    ``lams``, with a ``RuntimeWarning`` that says how many; the interrupted ``lam`` is lost.
    """
    lams = [check_positive(v, "lams", allow_zero=True) for v in np.ravel(lams)]
    if not lams:
        raise ValueError("`lams` is empty")
    if on_result is not None and not callable(on_result):
        raise ValueError(f"`on_result` must be callable, got {type(on_result).__name__}")
    solver = _setup(problem, psd, svd, max_iter, tol, None)
    entries = problem.observed_entries()
    out: dict[int, np.ndarray] = {}
    try:
        with blas_threads(problem.shape):
            for i in np.argsort(lams)[::-1]:
                t0 = time.perf_counter()
                X = solver.solve(lams[i])
                out[int(i)] = X
                if progress:
                    rmse = ""
                    if entries is not None:
                        r = X[np.asarray(entries.rows), np.asarray(entries.cols)]
                        r = r - np.asarray(entries.values)
                        rmse = f"  train RMSE {float(np.sqrt(np.mean(r * r))):.4g}"
                    print(
                        f"soft_impute_path: lam {lams[i]:.4g}  rank {solver.rank}{rmse}  "
                        f"{time.perf_counter() - t0:.2f} s",
                        flush=True,
                    )
                if on_result is not None:
                    on_result(lams[i], X)
    except KeyboardInterrupt:
        warnings.warn(
            f"soft_impute_path: interrupted; returning the {len(out)} of {len(lams)} "
            f"minimisers finished (the largest lams)",
            RuntimeWarning,
            stacklevel=2,
        )
    return [out[i] for i in range(len(lams)) if i in out]
