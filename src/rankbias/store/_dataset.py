"""A sweep's run files as one labelled dataset: the variables a manifest implies, each run's
values on the sweep's shared time grid, and the assembly into an :class:`xarray.Dataset`.

Reading and verifying the files is the store's (:func:`rankbias.store.load`); this module only
lays out what was read.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from ..status import RunStatus

_BLOCK = 256  # runs per lazy-load task


def _on_grid(times: np.ndarray, values: np.ndarray, grid: np.ndarray, hold: bool) -> np.ndarray:
    """Values of a run at the sweep's grid: exact where the run recorded that time, linear
    interpolation between recorded times, the last value after a steady-state stop
    (``hold``), NaN beyond the run otherwise."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full((grid.size,) + values.shape[1:], np.nan)
    inside = (grid >= times[0]) & (grid <= times[-1])
    flat = values.reshape(values.shape[0], -1)
    res = np.empty((int(inside.sum()), flat.shape[1]))
    for j in range(flat.shape[1]):
        res[:, j] = np.interp(grid[inside], times, flat[:, j])
    pos = np.searchsorted(times, grid[inside])
    pos = np.minimum(pos, times.size - 1)
    exact = times[pos] == grid[inside]
    res[exact] = flat[pos[exact]]
    out[inside] = res.reshape((-1,) + values.shape[1:])
    if hold:
        out[grid > times[-1]] = values[-1]
    return out


def run_variables(manifest: dict) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """Variable name -> (extra dims, extra shape) of the dataset, from the manifest alone."""
    tdim = manifest["time_dim"]
    T = len(manifest["time_grid"])
    k = int(manifest["max_rank"])
    metrics = manifest["metrics"]
    out = {}
    if "loss" in metrics:
        out["loss"] = ((tdim,), (T,))
    if "grad_norm" in metrics:
        out["grad_norm"] = ((tdim,), (T,))
    if "heldout_rmse" in metrics:
        out["heldout_rmse"] = ((tdim,), (T,))
    if "singular_values" in metrics:
        out["singular_values"] = ((tdim, "sv"), (T, k))
    if "effective_rank" in metrics:
        for kind in ("ratio", "entropy", "stable", "numerical"):
            out[f"rank_{kind}"] = ((tdim,), (T,))
    out["final_loss"] = ((), ())
    out["t_final"] = ((), ())
    out["steady_state"] = ((), ())
    for name in manifest.get("scalar_metrics", []):
        out[name] = ((), ())
    return out


def empty_block(n: int, manifest: dict) -> dict[str, np.ndarray]:
    """The arrays of ``n`` runs before any is read: NaN values, ``done`` False, ``status`` ""."""
    out = {v: np.full((n,) + shape, np.nan) for v, (_, shape) in run_variables(manifest).items()}
    out["done"] = np.zeros(n, dtype=bool)
    out["status"] = np.full(n, "", dtype=object)
    return out


_HOLD = (RunStatus.STEADY_STATE.value, RunStatus.KKT.value)


def put_run(out: dict[str, np.ndarray], i: int, a: dict, manifest: dict) -> None:
    """Put the run file's arrays ``a`` at row ``i`` of ``out`` (:func:`empty_block`)."""
    grid = np.asarray(manifest["time_grid"], dtype=np.float64)
    out["done"][i] = True
    info = json.loads(str(a["info"]))
    out["status"][i] = str(info.get("status", ""))
    # a run that stopped at a certified fixed point (a flow's steady state, GLRL's KKT point)
    # keeps its last values after its last record; one cut short does not
    hold = info.get("status") in _HOLD
    t = a["steps"].astype(np.float64) if manifest["time_dim"] == "step" else a["times"]
    for v in run_variables(manifest):
        if v == "singular_values":
            sv = _on_grid(t, a["singular_values"], grid, hold)
            out[v][i, :, : sv.shape[1]] = sv
        elif v in ("loss", "grad_norm", "heldout_rmse") or v.startswith("rank_"):
            if v in a:
                out[v][i] = _on_grid(t, a[v], grid, hold)
        elif v == "final_loss":
            out[v][i] = float(a["loss"][-1]) if "loss" in a else np.nan
        elif v == "t_final":
            out[v][i] = float(t[-1])
        elif v == "steady_state":
            out[v][i] = float(hold)
        elif f"metric_{v}" in a:
            out[v][i] = float(a[f"metric_{v}"])


def assemble(root: str, man: dict, load_block: Callable, lazy: bool):
    """The dataset of the sweep ``man`` whose blocks of ``_BLOCK`` runs are read by
    ``load_block(root, keys, man)`` (a dask task each; computed at once unless ``lazy``)."""
    # dask and xarray are optional at import time: the CLI imports the store for every command
    import dask.array as da
    import xarray as xr
    from dask.delayed import delayed  # `dask.delayed` is not re-exported for type checkers

    keys = man["runs"]
    axes = man["axes"]
    shape = tuple(len(a["values"][0]) for a in axes)
    spec = run_variables(man)
    data_vars = {}
    blocks = [keys[i : i + _BLOCK] for i in range(0, len(keys), _BLOCK)]
    loaded = [delayed(load_block, pure=True)(root, b, man) for b in blocks]
    spec = dict(spec, done=((), ()), status=((), ()))
    for v, (dims, vshape) in spec.items():
        dtype = {"done": bool, "status": object}.get(v, np.float64)
        parts = [
            da.from_delayed(
                delayed(lambda d, v=v: d[v], pure=True)(blk), shape=(len(b),) + vshape, dtype=dtype
            )
            for blk, b in zip(loaded, blocks, strict=True)
        ]
        arr = da.concatenate(parts, axis=0).reshape(shape + vshape)
        if not lazy:
            arr = arr.compute()
        data_vars[v] = ([a["name"] for a in axes] + list(dims), arr)
    coords = {}
    for a in axes:
        coords[a["name"]] = (a["name"], list(a["values"][0]))
        for key, vals in zip(a["keys"][1:], a["values"][1:], strict=True):
            coords[key.replace(".", "_")] = (a["name"], list(vals))
    coords[man["time_dim"]] = (man["time_dim"], np.asarray(man["time_grid"], dtype=np.float64))
    if "singular_values" in spec:
        coords["sv"] = ("sv", np.arange(1, int(man["max_rank"]) + 1))
    attrs = {
        "name": man["name"],
        "description": man.get("description", ""),
        "config": json.dumps(man["config"]),
        "versions": json.dumps(man["versions"]),
        "method": man["method"],
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
