"""Plateaus of the effective rank at the predicted levels ``r(W^_L)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_positive
from ._targets import _check_eigenvalues


@dataclass(frozen=True)
class Plateau:
    """Plateau ``L``: steps ``start..end`` (inclusive) with ``|r(W(k)) - level| < tol``.

    ``open`` is True when the run ends inside the plateau (``end`` is then the last step:
    "from ``start``").
    """

    L: int
    level: float
    start: int
    end: int
    open: bool

    def __contains__(self, k) -> bool:
        return self.start <= k <= self.end

    def as_tuple(self) -> tuple[int, int | None]:
        return (self.start, None if self.open else self.end)


def plateau_levels(eigenvalues) -> np.ndarray:
    """``r(W^_L) = sum_{i<=L} |lam_(i)| / |lam_(1)|`` for ``L = 1..n`` (``|lam|`` descending)."""
    a = np.sort(np.abs(_check_eigenvalues(eigenvalues)))[::-1]
    if a[0] == 0:
        raise ValueError("`eigenvalues` are all zero: no plateau levels")
    return np.cumsum(a) / a[0]


def find_plateaus(r, levels, tol: float = 0.05, steps=None) -> list[Plateau]:
    """Plateaus of an effective-rank curve ``r`` (``(T,)``) at the given ``levels``.

    Rising phase only: from ``argmin r``; the ``L``-th plateau is the first maximal run of
    records with ``|r - levels[L-1]| < tol`` (see the module docstring). ``steps`` (``(T,)``)
    labels the records (default ``0..T-1``). Levels never reached give no entry.
    """
    r = np.asarray(r, dtype=np.float64)
    steps = np.arange(r.size) if steps is None else np.asarray(steps)
    tol = check_positive(tol, "tol")
    k0 = int(np.nanargmin(r))
    out = []
    for L, lev in enumerate(np.asarray(levels, dtype=float), start=1):
        inside = np.abs(r[k0:] - lev) < tol
        if not inside.any():
            continue
        i = int(np.argmax(inside))
        j = i + (int(np.argmin(inside[i:])) if not inside[i:].all() else inside[i:].size)
        out.append(
            Plateau(
                L,
                float(lev),
                int(steps[k0 + i]),
                int(steps[k0 + j - 1]),
                open=bool(k0 + j == r.size),
            )
        )
    return out
