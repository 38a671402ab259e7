"""Figures to files: :func:`plot` and :func:`plot_all` draw a sweep's dataset or one run and save
each figure as PNG and SVG (:func:`~rankbias.plots._save.save_figure`)."""

from __future__ import annotations

from pathlib import Path

from ._protocol import RunRecord
from ._save import save_figure
from ._stats import _check_stat
from .sweep import _NEEDS, FIGURES, _figure
from .trajectory import TRAJECTORY_KINDS, _kind, plot_trajectory


def plot(ds, name: str, out_dir: str | Path, *, stat: str = "median") -> list[Path]:
    """Draw figure ``name`` into ``out_dir`` as ``<name>.png`` and ``<name>.svg``; returns
    both paths.

    ``ds`` is a sweep's dataset (:func:`rankbias.store.load`; ``name`` one of
    :data:`FIGURES`, ``stat`` ``"median"`` or ``"mean"``, see the module docstring) or one
    :class:`~rankbias.Trajectory` (``name`` one of :data:`TRAJECTORY_KINDS`, hyphens allowed).

    Raises ``ValueError`` for an unknown figure or one the data cannot support, ``TypeError``
    for anything but a dataset or a Trajectory."""
    _check_stat(stat)
    if isinstance(ds, RunRecord):
        try:
            kind = _kind(name)
        except ValueError:
            raise ValueError(
                f"figure {name!r} is not drawn for one Trajectory; expected one of "
                f"{', '.join(TRAJECTORY_KINDS)} (sweep figures need a dataset)"
            ) from None
        ax = plot_trajectory(ds, kind)
        return save_figure(ax.figure, out_dir, kind.replace("_", "-"))
    if not hasattr(ds, "data_vars"):
        raise TypeError(
            f"`ds` must be an xarray Dataset (rankbias.store.load) or a rankbias "
            f"Trajectory, got {type(ds).__name__}"
        )
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; expected one of {', '.join(FIGURES)}")
    need = _NEEDS.get(name)
    if need is not None and need not in ds:
        raise ValueError(f"figure {name!r} needs the runs to record {need!r} (record.metrics)")
    ds = ds.load()
    return save_figure(_figure(ds, name, stat), out_dir, name)


def plot_all(ds, out_dir: str | Path, *, stat: str = "median") -> dict[str, list[Path]]:
    """Every figure the dataset (or Trajectory) supports; figures it cannot draw are skipped."""
    _check_stat(stat)
    if isinstance(ds, RunRecord):
        return {k: plot(ds, k, out_dir) for k in TRAJECTORY_KINDS}
    ds = ds.load()
    out = {}
    for name in FIGURES:
        try:
            out[name] = plot(ds, name, out_dir, stat=stat)
        except ValueError:
            continue
    return out
