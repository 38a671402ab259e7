r"""The simple rating predictors a factorization must beat: the global, user or item mean
(:func:`mean_baseline`) and mean plus regularised biases (:func:`bias_baseline`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .._repr import num, render, render_html
from .._validation import check_choice, check_positive
from ..problems.base import Problem

__all__ = ["MeanPredictor", "mean_baseline", "bias_baseline"]


@dataclass(eq=False)
class MeanPredictor:
    r"""A simple ratings predictor: ``W_ij = clip(mu + b_i + c_j)``.

    ``kind`` says which terms were fitted: ``"global"`` (``mu`` only), ``"user"`` /
    ``"item"`` (``b`` / ``c``: each user's / item's mean minus ``mu``; a user or item
    without a training rating gets ``mu``) or ``"biases"`` (``mu``, ``b`` and ``c`` jointly
    by regularised least squares, see :func:`bias_baseline`). ``clip``: ``(lo, hi)``
    predictions are clipped to, or ``None``.

    ``np.asarray(pred)`` / :attr:`matrix` is the ``(m, n)`` prediction, :meth:`predict`
    gives entries, :meth:`rmse` scores a :class:`~rankbias.problems.HeldOut` (as
    ``heldout_rmse(pred, heldout)`` does).
    """

    kind: str
    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    clip: tuple[float, float] | None
    lam: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.user_bias.size), int(self.item_bias.size))

    def predict(self, rows, cols) -> np.ndarray:
        """Predictions at entries ``(rows[k], cols[k])`` (0-based index arrays)."""
        r, c = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        out = self.mu + self.user_bias[r] + self.item_bias[c]
        return out if self.clip is None else np.clip(out, *self.clip)

    @property
    def matrix(self) -> np.ndarray:
        """The ``(m, n)`` prediction."""
        out = self.mu + self.user_bias[:, None] + self.item_bias[None, :]
        return out if self.clip is None else np.clip(out, *self.clip)

    def __array__(self, dtype=None, copy=None):
        return self.matrix if dtype is None else self.matrix.astype(dtype)

    def rmse(self, heldout) -> float:
        """Root mean squared error on held-out ratings, through the entries only (no
        ``(m, n)`` matrix is formed)."""
        if len(heldout) == 0:
            raise ValueError("`heldout` holds no entry: nothing to score")
        if tuple(heldout.shape) != self.shape:
            raise ValueError(
                f"`heldout` has shape {tuple(heldout.shape)}, the predictor {self.shape}"
            )
        r = self.predict(heldout.rows, heldout.cols) - heldout.values
        return float(np.sqrt(np.mean(r * r)))

    def __repr__(self) -> str:
        return render(f"MeanPredictor(kind={self.kind!r})", self._rows())

    def _repr_html_(self) -> str:
        return render_html(f"MeanPredictor(kind={self.kind!r})", self._rows())

    def _rows(self):
        rows = [("shape", str(self.shape)), ("mu", num(self.mu, 6))]
        if self.kind == "biases":
            rows.append(("lam", num(self.lam)))
        rows.append(("clip", "-" if self.clip is None else f"[{self.clip[0]:g}, {self.clip[1]:g}]"))
        return rows + [(k, num(v)) for k, v in self.info.items()]


def _train_triplets(train) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    entries = train.observed_entries() if isinstance(train, Problem) else None
    if entries is None:
        raise TypeError(
            f"`train` must be a rankbias.MatrixCompletion (e.g. from load_ratings or a "
            f"split), got {type(train).__name__}"
        )
    return (
        np.asarray(entries.rows, np.int64),
        np.asarray(entries.cols, np.int64),
        np.asarray(entries.values, np.float64),
        (int(train.shape[0]), int(train.shape[1])),
    )


def _check_clip(clip, v: np.ndarray) -> tuple[float, float] | None:
    if clip is None or clip is False:
        return None
    if clip is True:
        return float(v.min()), float(v.max())
    try:
        lo, hi = (float(x) for x in clip)
    except (TypeError, ValueError):
        raise ValueError(
            f"`clip` must be None, True (the training ratings' range) or a pair (lo, hi), "
            f"got {clip!r}"
        ) from None
    if not lo <= hi:
        raise ValueError(f"`clip` must have lo <= hi, got ({lo}, {hi})")
    return lo, hi


def mean_baseline(train, kind: str = "global", *, clip=None) -> MeanPredictor:
    r"""The global, user or item mean of the training ratings as a prediction.

    * ``"global"``: ``W_ij = mu = mean_{Omega} M``; its held-out RMSE is
      ``sqrt(mean_test (R - mu)^2)``.
    * ``"user"``: ``W_ij = mean_{j': (i, j') in Omega} M_ij'`` (``mu`` for a user with no
      training rating); ``"item"`` likewise over each column.

    Arguments:
        train: a :class:`~rankbias.MatrixCompletion` (the training ratings).
        kind: ``"global"``, ``"user"`` or ``"item"``.
        clip: ``None``, ``True`` (the training ratings' range) or ``(lo, hi)``.
    """
    r, c, v, (m, n) = _train_triplets(train)
    check_choice(kind, "kind", ("global", "user", "item"))
    clip = _check_clip(clip, v)
    mu = float(v.mean())
    b, d = np.zeros(m), np.zeros(n)
    if kind != "global":
        idx, size = (r, m) if kind == "user" else (c, n)
        cnt = np.bincount(idx, minlength=size)
        s = np.bincount(idx, weights=v - mu, minlength=size)
        dev = np.divide(s, cnt, out=np.zeros(size), where=cnt > 0)
        if kind == "user":
            b = dev
        else:
            d = dev
    return MeanPredictor(kind, mu, b, d, clip, info={"num_train": int(v.size)})


# Above this many items (or users, whichever is fewer) the Schur complement would be a
# dense matrix of more than 8000^2 floats (0.5 GB): conjugate gradients instead.
_BIAS_DENSE_MAX = 8000


def _bias_normal(r, c, v, m, n, lam):
    """The normal equations' operator and right-hand side in ``z = (mu, b, c)``."""
    cu = np.bincount(r, minlength=m).astype(float)
    ci = np.bincount(c, minlength=n).astype(float)

    def apply(z):
        mu, b, d = z[0], z[1 : 1 + m], z[1 + m :]
        pred = mu + b[r] + d[c]
        return np.concatenate(
            [
                [pred.sum()],
                np.bincount(r, weights=pred, minlength=m) + lam * b,
                np.bincount(c, weights=pred, minlength=n) + lam * d,
            ]
        )

    rhs = np.concatenate(
        [[v.sum()], np.bincount(r, weights=v, minlength=m), np.bincount(c, weights=v, minlength=n)]
    )
    return apply, rhs, cu, ci


def _bias_schur(r, c, v, m, n, lam, cu, ci):
    """Exact solve, eliminating the ``m`` row biases: a dense ``(n + 1)`` SPD system."""
    C = sp.csr_matrix((np.ones(v.size), (r, c)), shape=(m, n))  # train holds no repeats
    w = 1.0 / (cu + lam)
    gb = np.bincount(r, weights=v, minlength=m)
    S = np.empty((n + 1, n + 1))
    S[1:, 1:] = np.diag(ci + lam) - (C.T @ sp.diags(w) @ C).toarray()
    S[0, 0] = v.size - np.sum(cu * cu * w)
    S[0, 1:] = S[1:, 0] = ci - C.T @ (cu * w)
    rhs = np.concatenate([[v.sum() - np.sum(cu * w * gb)], np.bincount(c, weights=v, minlength=n)
                          - C.T @ (w * gb)])  # fmt: skip
    z = scipy.linalg.solve(S, rhs, assume_a="pos")
    mu, d = float(z[0]), z[1:]
    b = w * (gb - cu * mu - C @ d)
    return mu, b, d


def bias_baseline(train, lam: float = 1.0, *, clip=None, rtol: float = 1e-10) -> MeanPredictor:
    r"""Mean plus user and item biases: ``W_ij = mu + b_i + c_j`` minimising

    .. math::
        \sum_{(i,j)\in\Omega} (M_{ij} - \mu - b_i - c_j)^2 + \lambda\,(\|b\|^2 + \|c\|^2)

    (``mu`` not penalised). ``lam`` (default 1) shrinks a bias fitted on few ratings toward 0,
    as ``lam`` extra ratings at the mean would; it must be ``> 0`` (at ``lam = 0`` the
    biases are defined up to a constant). Solved exactly: the user (or item, whichever are
    more) biases are eliminated in closed form and the remaining ``min(m, n) + 1`` normal
    equations are solved by Cholesky (above 8000 of them, by conjugate gradients to
    ``rtol``). The answer is checked: ``info["residual"]`` is the normal equations'
    relative residual (tested against a dense least-squares solve to 1e-8).

    Raises:
        ValueError: ``lam <= 0``. ``RuntimeError``: a residual above ``rtol`` (never a
            silent, unsolved answer).
    """
    r, c, v, (m, n) = _train_triplets(train)
    lam = check_positive(lam, "lam")
    rtol = check_positive(rtol, "rtol")
    clip = _check_clip(clip, v)
    apply, rhs, cu, ci = _bias_normal(r, c, v, m, n, lam)
    method = "cholesky"
    if min(m, n) <= _BIAS_DENSE_MAX:
        if n <= m:
            mu, b, d = _bias_schur(r, c, v, m, n, lam, cu, ci)
        else:
            mu, d, b = _bias_schur(c, r, v, n, m, lam, ci, cu)
    else:
        method = "cg"
        diag = np.concatenate([[v.size], cu + lam, ci + lam])
        size = 1 + m + n
        linop: Any = spla.LinearOperator  # scipy's stubs miss its `matvec` keyword
        op = linop(shape=(size, size), matvec=apply, dtype=float)
        pre = linop(shape=(size, size), matvec=lambda x: x / diag, dtype=float)
        z, _ = spla.cg(op, rhs, rtol=rtol / 10, maxiter=10 * (1 + m + n), M=pre)
        mu, b, d = float(z[0]), z[1 : 1 + m], z[1 + m :]
    res = float(np.linalg.norm(apply(np.concatenate([[mu], b, d])) - rhs) / np.linalg.norm(rhs))
    if not res <= rtol:
        raise RuntimeError(
            f"bias_baseline: the normal equations' relative residual is {res:.3g} "
            f"(> rtol={rtol:g}) after {method}; the problem may be too ill-conditioned "
            f"(raise `lam`)"
        )
    return MeanPredictor(
        "biases", mu, b, d, clip, lam,
        {"method": method, "residual": res, "num_train": int(v.size)},
    )  # fmt: skip
