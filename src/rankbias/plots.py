"""Figures of a sweep's dataset (matplotlib, Agg): each saved as PNG and SVG.

Conventions: the ``depth`` axis (if swept) gives one panel per value, the ``alpha`` axis (if
swept) one line per value, and every axis whose name mentions ``seed`` or is ``problem`` is
averaged over (mean, with a band of one standard deviation). Any other swept axis is fixed
at its first value (named in the title). Time axes are logarithmic.

==========================  ====================================================================
figure                      content
==========================  ====================================================================
``loss``                    ``f(W(t))`` against ``t``
``singular-values``         the top singular values of ``W(t)`` against ``t``
``effective-rank``          the effective rank (``rank_ratio``, see :mod:`rankbias.metrics`)
``distance-vs-alpha``       final distance to GLRL (variable ``glrl_distance``) when the runs
                            record it, else the relative distance to the ground truth, against
                            ``alpha``, one line per depth
==========================  ====================================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["FIGURES", "plot", "plot_all"]

FIGURES = ("loss", "singular-values", "effective-rank", "distance-vs-alpha")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _seed_dims(ds) -> list[str]:
    return [d for d in _axes(ds) if "seed" in d or d == "problem"]


def _axes(ds) -> list[str]:
    return [d for d in ds["done"].dims]


def _fix_others(da, keep: set[str]):
    """Fix every sweep axis not in ``keep`` at its first value; returns (array, note)."""
    notes = []
    for d in list(da.dims):
        if d in keep or d in ("time", "step", "sv"):
            continue
        if d in _axes_of(da) and da.sizes[d] > 1:
            notes.append(f"{d}={da[d].values[0]}")
        da = da.isel({d: 0})
    return da, ", ".join(notes)


def _axes_of(da) -> list[str]:
    return [d for d in da.dims if d not in ("time", "step", "sv")]


def _mean_std(da, seeds: list[str]):
    seeds = [s for s in seeds if s in da.dims]
    if not seeds:
        return da, None
    return da.mean(seeds, skipna=True), da.std(seeds, skipna=True)


def _panels(ds):
    return list(ds["depth"].values) if "depth" in ds.dims else [None]


def _band(ax, x, m, s, color, logy: bool):
    if s is None:
        return
    lo, hi = m - s, m + s
    if logy:
        lo = np.where(lo > 0, lo, np.nan)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def _time_plot(ds, var: str, ylabel: str, title: str, logy: bool, top_k: int | None = None):
    plt = _plt()
    tdim = "time" if "time" in ds.dims else "step"
    panels = _panels(ds)
    fig, axs = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False,
                            sharey=True)
    seeds = _seed_dims(ds)
    note = ""
    for ax, depth in zip(axs[0], panels):
        da = ds[var] if depth is None else ds[var].sel(depth=depth)
        da, note = _fix_others(da, set(seeds) | {"alpha"})
        m, s = _mean_std(da, seeds)
        lines = list(m["alpha"].values) if "alpha" in m.dims else [None]
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(lines), 1)))
        t = np.asarray(ds[tdim].values, dtype=float)
        sel = t > 0
        for c, a in zip(colors, lines):
            mm = m if a is None else m.sel(alpha=a)
            ss = None if s is None else (s if a is None else s.sel(alpha=a))
            label = None if a is None else f"alpha={a:.0e}"
            if top_k is not None:
                k = min(top_k, mm.sizes["sv"])
                for j in range(k):
                    y = np.asarray(mm.isel(sv=j).values)[sel]
                    ax.plot(t[sel], y, color=c, lw=1.4, ls=["-", "--", ":", "-."][j % 4],
                            label=label if j == 0 else None)
                    if ss is not None:
                        _band(ax, t[sel], y, np.asarray(ss.isel(sv=j).values)[sel], c, logy)
            else:
                y = np.asarray(mm.values)[sel]
                ax.plot(t[sel], y, color=c, lw=1.6, label=label)
                if ss is not None:
                    _band(ax, t[sel], y, np.asarray(ss.values)[sel], c, logy)
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("time t" if tdim == "time" else "step")
        ax.set_title(title if depth is None else f"{title}, depth {depth}", fontsize=10)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    axs[0][0].set_ylabel(ylabel)
    if len(axs[0][0].get_legend_handles_labels()[0]):
        axs[0][-1].legend(fontsize=8)
    _footnote(fig, seeds, note)
    return fig


def _footnote(fig, seeds, note):
    parts = []
    if seeds:
        parts.append(f"mean and one std over {', '.join(seeds)}")
    if note:
        parts.append(f"fixed: {note}")
    if parts:
        fig.text(0.01, 0.01, "; ".join(parts), fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.04, 1, 1))


def _distance_plot(ds):
    plt = _plt()
    var = "glrl_distance" if "glrl_distance" in ds else "distance_to_truth"
    if var not in ds:
        raise ValueError("figure 'distance-vs-alpha' needs runs that record 'distance_to_truth' "
                         "(record.metrics) or a custom 'glrl_distance' metric")
    if "alpha" not in ds.dims:
        raise ValueError("figure 'distance-vs-alpha' needs a sweep over alpha (init.scale)")
    seeds = _seed_dims(ds)
    da, note = _fix_others(ds[var], set(seeds) | {"alpha", "depth"})
    m, s = _mean_std(da, seeds)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    depths = list(m["depth"].values) if "depth" in m.dims else [None]
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(depths)))
    x = np.asarray(m["alpha"].values, dtype=float)
    order = np.argsort(x)
    for c, d in zip(colors, depths):
        mm = m if d is None else m.sel(depth=d)
        y = np.asarray(mm.values)[order]
        ax.plot(x[order], y, "o-", color=c, label=None if d is None else f"depth {d}")
        if s is not None:
            ss = s if d is None else s.sel(depth=d)
            _band(ax, x[order], y, np.asarray(ss.values)[order], c, True)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("initialization scale alpha")
    ax.set_ylabel("distance to GLRL" if var == "glrl_distance"
                  else "||W(t_final) - W*||_F / ||W*||_F")
    ax.set_title("final distance to " + ("GLRL" if var == "glrl_distance" else "the ground truth"),
                 fontsize=10)
    ax.grid(alpha=0.3, which="both", lw=0.4)
    if depths[0] is not None:
        ax.legend(fontsize=8)
    _footnote(fig, seeds, note)
    return fig


def _figure(ds, name: str):
    if name == "loss":
        return _time_plot(ds, "loss", "loss f(W(t))", "loss", logy=True)
    if name == "singular-values":
        return _time_plot(ds, "singular_values", "singular values of W(t)",
                          "top singular values", logy=True, top_k=3)
    if name == "effective-rank":
        return _time_plot(ds, "rank_ratio", "effective rank (ratio)", "effective rank", logy=False)
    return _distance_plot(ds)


_NEEDS = {"loss": "loss", "singular-values": "singular_values", "effective-rank": "rank_ratio"}


def plot(ds, name: str, out_dir: str | Path) -> list[Path]:
    """Draw figure ``name`` (one of :data:`FIGURES`) of dataset ``ds`` into ``out_dir`` as
    ``<name>.png`` and ``<name>.svg``; returns both paths."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; expected one of {', '.join(FIGURES)}")
    need = _NEEDS.get(name)
    if need is not None and need not in ds:
        raise ValueError(f"figure {name!r} needs the runs to record {need!r} (record.metrics)")
    ds = ds.load()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = _figure(ds, name)
    plt = _plt()
    paths = []
    try:
        for ext in ("png", "svg"):
            p = out_dir / f"{name}.{ext}"
            fig.savefig(p, dpi=110)
            paths.append(p)
    finally:
        plt.close(fig)
    return paths


def plot_all(ds, out_dir: str | Path) -> dict[str, list[Path]]:
    """Every figure the dataset supports; figures it cannot draw are skipped."""
    ds = ds.load()
    out = {}
    for name in FIGURES:
        try:
            out[name] = plot(ds, name, out_dir)
        except ValueError:
            continue
    return out
