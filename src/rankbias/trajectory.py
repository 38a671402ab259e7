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
``metric_<name>``      ``(T,)``             optional per-record metrics (``heldout_rmse``)
``final_matrix``       ``(m, n)``           ``W`` at the last time
``final_param_<j>``    factor shapes        final factors ``W_1 ... W_L`` (``j = 0..L-1``)
``info``               scalar string        JSON: method, solver, statistics, status
=====================  ===================  ============================================

A model may record other values than the singular values of ``W``
(:meth:`rankbias.models.Model.spectrum`): a :class:`~rankbias.DiagonalNetwork`, whose ``W``
is the ``(d, 1)`` column ``beta``, records the ``d`` singular values of ``diag(beta)``, the
sorted ``|beta_i|``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _repr
from ._io import atomic_write_npz, json_default
from .metrics import EFFECTIVE_RANKS, effective_ranks_from_sv

__all__ = ["Trajectory", "TrajectoryFileError", "atomic_write_npz"]

#: Keys every trajectory file has (see the table above).
REQUIRED_KEYS = ("times", "loss", "grad_norm", "singular_values", "final_matrix", "info")


class TrajectoryFileError(ValueError):
    """``Trajectory.load`` was given a file that is not a (complete) rankbias trajectory."""


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A recorded gradient-flow or gradient-descent run (all arrays are NumPy, float64).

    ``T`` records of ``W(t)`` (``(m, n)``, ``k = min(m, n)``): ``times`` ``(T,)``, ``loss``
    ``(T,)``, ``grad_norm`` ``(T,)``, ``singular_values`` ``(T, k)`` (descending; ``k = d``
    for a diagonal network, see the module docstring),
    ``effective_ranks`` ``{kind: (T,)}``, optional ``steps`` ``(T,)`` (GD) and ``matrices``
    ``(T, m, n)``; ``final_params`` and ``final_matrix`` at the last time; ``info`` (method,
    solver, ``status``, statistics).

    ``print(traj)`` is a short summary; ``traj == other`` compares every array exactly (NaN
    equal to NaN) and ``info`` (as saved: JSON); :meth:`to_xarray` and :meth:`plot` present it.
    A run is a record: its attributes cannot be assigned (``dataclasses.FrozenInstanceError``);
    build a variant with :meth:`replace`.
    """

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
    #: per-record metrics, each ``(T,)``: ``heldout_rmse`` with ``heldout=`` (empty otherwise).
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if not self.effective_ranks:  # frozen: set once, here
            ranks = {k: effective_ranks_from_sv(self.singular_values, k) for k in EFFECTIVE_RANKS}
            object.__setattr__(self, "effective_ranks", ranks)

    def replace(self, **changes) -> Trajectory:
        """A copy of this run with the given fields changed; this run is left as it is.

        Build variants of a run with this instead of assigning to its attributes, e.g.
        ``traj.replace(times=traj.times + t0)`` for a run on a shifted clock. ``changes`` are
        field names (``times``, ``loss``, ``grad_norm``, ``singular_values``, ``final_params``,
        ``final_matrix``, ``steps``, ``matrices``, ``info``, ``effective_ranks``, ``metrics``); an unknown
        name raises ``TypeError``. Arrays not changed are shared with this run, not copied
        (treat them as read-only); ``info`` and ``effective_ranks`` are new dicts, so that a
        change to the copy's ``info`` leaves this run's alone. New ``singular_values`` without
        new ``effective_ranks`` recompute the effective ranks (every kind of
        :data:`rankbias.metrics.EFFECTIVE_RANKS`) from them.
        """
        if "singular_values" in changes and "effective_ranks" not in changes:
            changes["effective_ranks"] = {}  # __post_init__ computes them from the new values
        changes.setdefault("info", dict(self.info))
        changes.setdefault("effective_ranks", dict(self.effective_ranks))
        changes.setdefault("metrics", dict(self.metrics))
        return dataclasses.replace(self, **changes)

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

    def __repr__(self) -> str:
        return _repr.render(self._title(), self._rows())

    def _repr_html_(self) -> str:
        return _repr.render_html(self._title(), self._rows())

    def _title(self) -> str:
        return f"Trajectory({self.info.get('method', 'run')}, status={self.status!r})"

    def _rows(self) -> list[tuple[str, str]]:
        T = len(self)
        t = self.times
        span = f"t in [{_repr.num(t[0])}, {_repr.num(t[-1])}]" if T else "empty"
        if self.steps is not None and T:
            span = f"steps {int(self.steps[0])}..{int(self.steps[-1])}, " + span
        sv = self.singular_values
        rows = [
            ("records", f"{T}, {span}"),
            (
                "W",
                f"{tuple(np.shape(self.final_matrix))}, factors "
                f"{[tuple(np.shape(p)) for p in self.final_params]}",
            ),
        ]
        if T:
            rows += [
                ("final loss", _repr.num(self.loss[-1])),
                ("grad norm", _repr.num(self.grad_norm[-1])),
                ("top sv", _repr.nums(sv[-1], limit=4) if sv.ndim == 2 and sv.shape[1] else "-"),
                (
                    "eff. rank",
                    ", ".join(
                        f"{k} {_repr.num(v[-1], 3)}"
                        for k, v in self.effective_ranks.items()
                        if len(v)
                    ),
                ),
            ]
        i = self.info
        keys = [k for k in ("solver", "lr", "rtol", "gtol", "num_steps", "dtype") if k in i]
        if keys:
            rows.append(("settings", ", ".join(f"{k}={_repr.num(i[k])}" for k in keys)))
        if "wall_time" in i:
            rows.append(("wall time", f"{_repr.num(i['wall_time'], 3)} s"))
        rows.append(
            (
                "arrays",
                "times, loss, grad_norm, singular_values, effective_ranks"
                + (", steps" if self.steps is not None else "")
                + (f", matrices {_repr.shape(self.matrices)}" if self.matrices is not None else ""),
            )
        )
        return rows

    def __eq__(self, other) -> bool:
        """Exact equality of every array (``NaN == NaN``), of the factors and of ``info`` (as
        saved: compared after a JSON round trip, so ``Trajectory.load(p) == traj``)."""
        if not isinstance(other, Trajectory):
            return NotImplemented
        for name in (
            "times",
            "loss",
            "grad_norm",
            "singular_values",
            "final_matrix",
            "steps",
            "matrices",
        ):
            if not _array_equal(getattr(self, name), getattr(other, name)):
                return False
        if len(self.final_params) != len(other.final_params) or not all(
            _array_equal(a, b) for a, b in zip(self.final_params, other.final_params, strict=True)
        ):
            return False
        for k in set(self.effective_ranks) | set(other.effective_ranks):
            try:
                if not _array_equal(self.effective_rank(k), other.effective_rank(k)):
                    return False
            except ValueError:  # a kind one side cannot compute
                return False
        if self.metrics.keys() != other.metrics.keys() or not all(
            _array_equal(v, other.metrics[k]) for k, v in self.metrics.items()
        ):
            return False
        return _json_equal(_as_saved(self.info), _as_saved(other.info))

    __hash__ = None  # pyright: ignore[reportAssignmentType]  # mutable arrays: unhashable, like a dataclass with eq

    def at(self, t: float) -> int:
        """Index of the last recorded time ``<= t``."""
        return int(np.searchsorted(self.times, t, side="right") - 1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {
            "times": self.times,
            "loss": self.loss,
            "grad_norm": self.grad_norm,
            "singular_values": self.singular_values,
            "final_matrix": self.final_matrix,
        }
        if self.steps is not None:
            out["steps"] = self.steps
        if self.matrices is not None:
            out["matrices"] = self.matrices
        for k, v in self.effective_ranks.items():
            out[f"rank_{k}"] = v
        for k, v in self.metrics.items():
            out[f"metric_{k}"] = v
        for j, p in enumerate(self.final_params):
            out[f"final_param_{j}"] = np.asarray(p)
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (``.npz`` appended if missing) atomically; returns the path."""
        arrays = self.to_arrays()
        arrays["info"] = np.array(json.dumps(self.info, default=json_default))
        return atomic_write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trajectory:
        """Read a file written by :meth:`save` (an exact round trip: ``load(p) == traj``).

        Raises:
            FileNotFoundError: no file at ``path``.
            TrajectoryFileError: (a ``ValueError``) the file is not a complete rankbias
                trajectory: empty, truncated, not an ``.npz``, a key missing, unreadable
                ``info`` or inconsistent shapes; the message names the path and the reason.
        """

        def bad(reason: str) -> TrajectoryFileError:
            return TrajectoryFileError(f"not a rankbias trajectory file: {path} ({reason})")

        try:
            if os.path.getsize(path) == 0:
                raise bad("empty file")
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise bad("a single .npy array, not an .npz archive")
            with z:
                missing = [k for k in REQUIRED_KEYS if k not in z.files]
                if missing:
                    raise bad(f"missing key(s) {', '.join(missing)}")
                d = {k: z[k] for k in z.files}
        except (FileNotFoundError, IsADirectoryError, PermissionError, TrajectoryFileError):
            raise
        except (
            zipfile.BadZipFile,
            EOFError,
            OSError,
            ValueError,
            KeyError,
            zlib.error,
            pickle.UnpicklingError,
        ) as e:
            raise bad(f"{type(e).__name__}: {e}") from None
        params = []
        j = 0
        while f"final_param_{j}" in d:
            params.append(d.pop(f"final_param_{j}"))
            j += 1
        ranks = {k[5:]: d.pop(k) for k in list(d) if k.startswith("rank_")}
        metrics = {k[7:]: d.pop(k) for k in list(d) if k.startswith("metric_")}
        try:
            info = json.loads(str(d.pop("info")))
        except ValueError as e:
            raise bad(f"unreadable info: {e}") from None
        if not isinstance(info, dict):
            raise bad(f"info is a {type(info).__name__}, not a JSON object")
        T = d["times"].shape[0] if d["times"].ndim == 1 else -1
        for k in ("loss", "grad_norm", "steps", *[f"rank_{r}" for r in ranks], *metrics):
            a = ranks[k[5:]] if k.startswith("rank_") else metrics.get(k, d.get(k))
            if a is not None and a.shape != (T,):
                raise bad(f"{k!r} has shape {a.shape}, expected ({T},) like 'times'")
        if d["singular_values"].ndim != 2 or d["singular_values"].shape[0] != T:
            raise bad(
                f"'singular_values' has shape {d['singular_values'].shape}, expected ({T}, k)"
            )
        return cls(
            times=d["times"],
            loss=d["loss"],
            grad_norm=d["grad_norm"],
            singular_values=d["singular_values"],
            final_params=tuple(params),
            final_matrix=d["final_matrix"],
            steps=d.get("steps"),
            matrices=d.get("matrices"),
            info=info,
            effective_ranks=ranks,
            metrics=metrics,
        )

    def to_xarray(self):
        """The run as an :class:`xarray.Dataset`, laid out like a sweep's dataset.

        Dimensions ``time`` (``T``; GD runs also carry the ``step`` coordinate on it), ``sv``
        (``k``, labelled ``1..k``) and, where present, ``row``/``col`` (``m``, ``n``).
        Variables: ``loss``, ``grad_norm`` ``(time,)``, ``singular_values`` ``(time, sv)``,
        ``rank_<kind>`` ``(time,)``, each of :attr:`metrics` ``(time,)`` under its name
        (``heldout_rmse``), ``final_matrix`` ``(row, col)``, ``matrices``
        ``(time, row, col)`` when saved. Attributes: the scalar entries of ``info`` (bools as
        0/1) and all of ``info`` as the JSON string ``attrs["info"]`` (netCDF-safe).
        """
        import xarray as xr

        coords = {
            "time": ("time", np.asarray(self.times, dtype=np.float64)),
            "sv": ("sv", np.arange(1, self.singular_values.shape[1] + 1)),
        }
        if self.steps is not None:
            coords["step"] = ("time", np.asarray(self.steps))
        data = {
            "loss": ("time", self.loss),
            "grad_norm": ("time", self.grad_norm),
            "singular_values": (("time", "sv"), self.singular_values),
            "final_matrix": (("row", "col"), np.asarray(self.final_matrix)),
        }
        for k, v in self.effective_ranks.items():
            data[f"rank_{k}"] = ("time", v)
        for k, v in self.metrics.items():
            data[k] = ("time", v)
        if self.matrices is not None:
            data["matrices"] = (("time", "row", "col"), self.matrices)
        attrs = {}
        for k, v in _as_saved(self.info).items():
            if isinstance(v, bool):
                attrs[k] = int(v)
            elif isinstance(v, (int, float, str)):
                attrs[k] = v
        attrs["info"] = json.dumps(self.info, default=json_default)
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def plot(self, kind: str = "loss", *, ax=None, top_k: int | None = 5, rank_kind: str = "ratio"):
        """Draw one quantity of the run against time (log axes, as in the sweep figures).

        Arguments:
            kind: ``"loss"`` (``f(W(t))``), ``"singular_values"`` (the ``top_k`` largest),
                ``"effective_rank"`` (``rank_kind``, see :mod:`rankbias.metrics`) or
                ``"grad_norm"`` (``||grad L||``), ``"heldout_rmse"`` (a run with
                ``heldout=``); hyphenated names are accepted.
            ax: a matplotlib Axes to draw into (default: a new figure).
            top_k: number of singular values drawn (``None``: all).
            rank_kind: which effective rank (``"ratio"``, ``"entropy"``, ...).

        Returns the Axes. The time axis is logarithmic (``t = 0`` is left out; GD runs are
        drawn against the step) and frames the dynamics, from just before the first visible
        change to the final plateau; a flow that stopped at its steady state as its last
        value arrived has its last values held (dotted). Singular values below the float
        resolution floor ``eps * sigma_1 * max(m, n)`` are grey; a run that did not end well
        gets a red status note (see :func:`rankbias.plots.plot_trajectory`). Raises
        ``ValueError`` for an unknown ``kind``.
        """
        # Presentation depends on data, not the reverse: the figure code knows a run only by
        # the members it reads (rankbias.plots._protocol.RunRecord) and never imports this
        # module, so this convenience closes no import cycle. It is imported here, when a
        # figure is asked for, so that every engine that builds a Trajectory does not load
        # the figure code (matplotlib is imported at the first drawing).
        from .plots.trajectory import plot_trajectory

        return plot_trajectory(self, kind, ax=ax, top_k=top_k, rank_kind=rank_kind)


def _array_equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    try:
        return bool(np.array_equal(a, b, equal_nan=True))
    except TypeError:  # non-numeric dtypes have no NaN
        return bool(np.array_equal(a, b))


def _as_saved(info: dict) -> dict:
    """``info`` as :meth:`Trajectory.save` writes it (tuples -> lists, NumPy -> Python)."""
    return json.loads(json.dumps(info, default=json_default))


def _json_equal(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
