"""Summaries over the seed axes of a sweep: the center line and band of a statistic, the thin
per-run lines, and the sweep axes fixed at their first value."""

from __future__ import annotations

import numpy as np

from .._quiet import quietly

STATS = ("median", "mean")
#: Runs drawn one by one (thin lines) when a line summarises at most this many.
MAX_THIN = 10
_QUANTILES = (0.25, 0.75)


def seed_dims(ds) -> list[str]:
    """The sweep axes that figures and report tables summarise over (their statistic): every
    axis whose name mentions ``seed``, and ``problem``."""
    return [d for d in _axes(ds) if "seed" in d or d == "problem"]


def _axes(ds) -> list[str]:
    return [d for d in ds["done"].dims] if "done" in ds else []


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


def _check_stat(stat: str) -> str:
    if stat not in STATS:
        raise ValueError(f"`stat` must be one of {', '.join(STATS)}, got {stat!r}")
    return stat


def _summary(da, seeds: list[str], stat: str):
    """``(center, lo, hi, runs)`` of ``da`` over the seed axes (NumPy, last axis kept).

    ``runs`` is ``(n_runs, ...)`` (``None`` without seed axes); the band is the 25-75%
    quantiles (median) or one standard deviation (mean); NaN runs are skipped."""
    seeds = [s for s in seeds if s in da.dims]
    if not seeds:
        v = np.asarray(da.values, dtype=float)
        return v, None, None, None
    runs = da.stack(_run=seeds).transpose("_run", ...)
    r = np.asarray(runs.values, dtype=float)
    with quietly(RuntimeWarning):  # all-NaN columns (no run recorded there): NaN, no warning
        if stat == "median":
            c = np.nanmedian(r, axis=0)
            lo, hi = np.nanquantile(r, _QUANTILES, axis=0)
        else:
            c = np.nanmean(r, axis=0)
            s = np.nanstd(r, axis=0)
            lo, hi = c - s, c + s
    return c, lo, hi, r


def _take(v, idx):
    """``v[..., idx]``, or ``None``."""
    return None if v is None else v[..., idx]


def _stat_text(seeds: list[str], n: int, stat: str, thin: bool) -> str:
    if not seeds or n <= 1:
        return ""
    what = "median, band 25-75% quantiles" if stat == "median" else "mean, band one std"
    return f"{what} over {n} runs ({', '.join(seeds)})" + ("; thin: each run" if thin else "")
