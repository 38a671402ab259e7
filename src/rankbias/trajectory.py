"""The result of a run: a :class:`Trajectory`, and its on-disk format.

File format (``.npz``, written atomically: temp file in the same folder, then rename):

=====================  ===================  ============================================
key                    shape                meaning
=====================  ===================  ============================================
``times``              ``(T,)``             continuous time (GD: cumulative step size)
``steps``              ``(T,)``             GD step index (absent for gradient flow)
``loss``               ``(T,)``             ``f(W(t))`` (the problem loss, not the objective)
``grad_norm``          ``(T,)``             ``||grad L(params(t))||`` (flow speed)
``singular_values``    ``(T, min(m, n))``   all singular values of ``W(t)``, descending
``rank_<kind>``        ``(T,)``             effective ranks (``metrics.EFFECTIVE_RANKS``)
``matrices``           ``(T, m, n)``        optional snapshots of ``W(t)``
``final_matrix``       ``(m, n)``           ``W`` at the last time
``final_param_<j>``    factor shapes        final factors ``W_1 ... W_L`` (``j = 0..L-1``)
``info``               scalar string        JSON: method, solver, statistics, status
=====================  ===================  ============================================
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import atomic_write, json_default
from .metrics import EFFECTIVE_RANKS, effective_ranks_from_sv

__all__ = ["Trajectory", "atomic_write_npz"]


@dataclass
class Trajectory:
    """A recorded gradient-flow or gradient-descent run (all arrays are NumPy, float64)."""

    times: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    singular_values: np.ndarray
    final_params: tuple[np.ndarray, ...]
    final_matrix: np.ndarray
    steps: np.ndarray | None = None
    matrices: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    effective_ranks: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if not self.effective_ranks:
            self.effective_ranks = {k: effective_ranks_from_sv(self.singular_values, k)
                                    for k in EFFECTIVE_RANKS}

    def effective_rank(self, kind: str = "ratio") -> np.ndarray:
        """Effective rank of ``W(t)`` at every recorded time (see :mod:`rankbias.metrics`)."""
        if kind not in self.effective_ranks:
            self.effective_ranks[kind] = effective_ranks_from_sv(self.singular_values, kind)
        return self.effective_ranks[kind]

    @property
    def status(self) -> str:
        return self.info.get("status", "unknown")

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def at(self, t: float) -> int:
        """Index of the last recorded time ``<= t``."""
        return int(np.searchsorted(self.times, t, side="right") - 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"times": self.times, "loss": self.loss, "grad_norm": self.grad_norm,
               "singular_values": self.singular_values, "final_matrix": self.final_matrix}
        if self.steps is not None:
            out["steps"] = self.steps
        if self.matrices is not None:
            out["matrices"] = self.matrices
        for k, v in self.effective_ranks.items():
            out[f"rank_{k}"] = v
        for j, p in enumerate(self.final_params):
            out[f"final_param_{j}"] = np.asarray(p)
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (``.npz`` appended if missing) atomically; returns the path."""
        arrays = self.to_arrays()
        arrays["info"] = np.array(json.dumps(self.info, default=json_default))
        return atomic_write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trajectory":
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        params = []
        j = 0
        while f"final_param_{j}" in d:
            params.append(d.pop(f"final_param_{j}"))
            j += 1
        ranks = {k[5:]: d.pop(k) for k in list(d) if k.startswith("rank_")}
        info = json.loads(str(d.pop("info")))
        return cls(times=d["times"], loss=d["loss"], grad_norm=d["grad_norm"],
                   singular_values=d["singular_values"], final_params=tuple(params),
                   final_matrix=d["final_matrix"], steps=d.get("steps"),
                   matrices=d.get("matrices"), info=info, effective_ranks=ranks)


def atomic_write_npz(path, arrays: dict) -> Path:
    """Write ``arrays`` to ``path`` (``.npz`` appended if missing) atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    return atomic_write(path, lambda fh: np.savez(fh, **arrays), binary=True)
