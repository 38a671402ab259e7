"""The float resolution floor: singular values of ``W`` below ``eps * sigma_1 * max(m, n)`` are
rounding noise, drawn thin and grey in every figure of singular values."""

from __future__ import annotations

import json

import numpy as np


def _floor_scale(shape, dtype) -> float:
    """``eps * max(m, n)``: singular values of ``W`` (``(m, n)``) below this times ``sigma_1``
    are not resolved in ``dtype`` (the error of an SVD, and of forming ``W`` as a product of
    factors, is ``~ eps ||W||_2`` per entry)."""
    return float(np.finfo(np.dtype(dtype)).eps) * max(int(v) for v in shape)


def _resolution_floor(sv: np.ndarray, shape, dtype) -> np.ndarray:
    """Per record, the smallest singular value of ``W`` that its float type resolves:
    ``eps * sigma_1 * max(m, n)``. ``sv``: ``(T, k)``, descending."""
    return _floor_scale(shape, dtype) * np.asarray(sv, dtype=float)[:, 0]


def _sweep_floor_scale(ds) -> float:
    """:func:`_floor_scale` of a sweep: ``max(m, n)`` from the config's ``problem.shape``
    when no sweep axis changes it, else the number of recorded singular values
    (``min(m, n)``, a lower bound: no resolved value is greyed); ``dtype`` float64, the
    sweeps' precision."""
    k = int(ds.sizes["sv"])
    try:
        cfg = json.loads(ds.attrs.get("config", ""))
    except (TypeError, ValueError):
        return _floor_scale((k,), "float64")
    sweep = cfg.get("sweep") or {}
    zips = sweep.get("zip") or []
    keys = list(sweep.get("grid") or {}) + [
        key for z in ([zips] if isinstance(zips, dict) else zips) for key in z
    ]
    shape = (cfg.get("problem") or {}).get("shape")
    if not shape or any("shape" in str(key) for key in keys):
        return _floor_scale((k,), "float64")
    return _floor_scale((k, *shape), "float64")
