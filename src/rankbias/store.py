"""The results store: one checksummed ``.npz`` per run, keyed by the hash of its config.

Layout of a results folder::

    experiment.json          manifest: config, axes, run keys in grid order, time grid, versions
    config.toml              the config as given (sweeps run from a TOML file or a named one)
    runs/ab/abcdef....npz    one finished run (``ab`` = the first two hex digits of its key)
    runs/ab/abcdef....failed.json   why a run failed (removed when it later succeeds)
    figures/, report.html    written by ``rankbias plot`` / ``rankbias report``

A run file holds the :class:`~rankbias.Trajectory` arrays that its ``record.metrics`` ask for,
``run_config`` (JSON), ``info`` (JSON), scalar metrics ``metric_<name>`` and ``__checksum__``,
the SHA-256 of every other array (name, dtype, shape and bytes). Files are written through a
temp file and ``os.replace``: a killed writer leaves no half file, and a file whose checksum
does not match (bit rot, a truncated copy) is reported as corrupt, never loaded, and re-run.

The key of a run is the SHA-256 of its resolved config and the code version
(:func:`run_key`): a re-run of a sweep skips every finished run, and a changed config or
code version is a new run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import atomic_write, json_default
from .trajectory import atomic_write_npz

__all__ = ["Store", "StoreError", "CorruptRunError", "run_key", "code_version", "versions",
           "load", "checksum", "atomic_write_text"]

MANIFEST = "experiment.json"
_BLOCK = 256  # runs per lazy-load task


class StoreError(RuntimeError):
    """A results folder is missing, unreadable or not a rankbias store."""


class CorruptRunError(StoreError):
    """A run file exists but fails its checksum or cannot be parsed."""


def code_version() -> str:
    """The version that enters every run key (``rankbias.__version__``)."""
    from . import __version__
    return __version__


def run_key(config: dict, version: str | None = None) -> str:
    """SHA-256 (hex, 32 digits) of the canonical JSON of ``config`` and the code version."""
    payload = json.dumps({"config": config, "version": version or code_version()},
                         sort_keys=True, separators=(",", ":"), default=float)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def versions() -> dict[str, str]:
    """Software versions recorded with every result."""
    out = {"python": sys.version.split()[0], "platform": platform.platform(),
           "machine": platform.machine(), "processor": platform.processor() or "unknown",
           "rankbias": code_version()}
    from importlib import metadata
    for pkg in ("jax", "jaxlib", "diffrax", "equinox", "numpy", "scipy", "xarray", "pandas",
                "dask", "distributed", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        if k == "__checksum__":
            continue
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` through a temp file in the same folder and ``os.replace``."""
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


@dataclass
class Scan:
    """One pass over ``runs/``: the keys with a finished file and those with a failure note."""

    done: set[str]
    failed: dict[str, Path]


class Store:
    """A results folder (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def path(self, key: str) -> Path:
        return self.runs_dir / key[:2] / f"{key}.npz"

    def failure_path(self, key: str) -> Path:
        return self.runs_dir / key[:2] / f"{key}.failed.json"

    # -- manifest ------------------------------------------------------------------------------
    def create(self) -> None:
        """Create the folder, or raise :class:`StoreError` saying why it cannot be written."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".probe.")
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise StoreError(f"cannot write to results folder {self.root}: "
                             f"{e.strerror or e}") from None

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_text(self.root / MANIFEST,
                          json.dumps(manifest, indent=1, default=json_default))

    def manifest(self) -> dict:
        p = self.root / MANIFEST
        if not self.root.is_dir():
            raise StoreError(f"no results folder at {self.root}")
        if not p.exists():
            raise StoreError(f"{self.root} is not a rankbias results folder (no {MANIFEST}); "
                             f"create one with `rankbias run NAME --out {self.root}`")
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"cannot read {p}: {e}") from None

    # -- runs ----------------------------------------------------------------------------------
    def scan(self) -> Scan:
        """List finished and failed runs with one directory pass (no per-run lookups)."""
        done, failed = set(), {}
        if not self.runs_dir.is_dir():
            return Scan(done, failed)
        for sub in os.scandir(self.runs_dir):
            if not sub.is_dir():
                continue
            for e in os.scandir(sub.path):
                n = e.name
                if n.startswith("."):
                    continue  # temp files of writers that were killed
                if n.endswith(".npz"):
                    done.add(n[:-4])
                elif n.endswith(".failed.json"):
                    failed[n[:-12]] = Path(e.path)
        return Scan(done, failed)

    def write_run(self, key: str, arrays: dict[str, np.ndarray]) -> Path:
        """Store one run's arrays (adds ``__checksum__``) atomically; clears a failure note."""
        arrays = dict(arrays)
        arrays["__checksum__"] = np.array(checksum(arrays))
        path = atomic_write_npz(self.path(key), arrays)
        try:
            self.failure_path(key).unlink()
        except FileNotFoundError:
            pass
        return path

    def write_failure(self, key: str, config: dict, message: str) -> None:
        atomic_write_text(self.failure_path(key),
                          json.dumps({"key": key, "config": config, "error": message},
                                     default=json_default))

    def read_run(self, key: str) -> dict[str, np.ndarray]:
        """The arrays of a finished run, checksum verified; raises :class:`CorruptRunError`."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise
        except Exception as e:  # zip/pickle/format errors of a damaged file
            raise CorruptRunError(f"run file {path} is unreadable: {e}") from None
        stored = arrays.get("__checksum__")
        if stored is None or str(stored) != checksum(arrays):
            raise CorruptRunError(f"run file {path} fails its checksum")
        return arrays

    def verify(self, key: str) -> bool:
        try:
            self.read_run(key)
            return True
        except (CorruptRunError, FileNotFoundError):
            return False

    def remove(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass

    def status(self, verify: bool = False) -> dict:
        """Counts of done / pending / failed (/ corrupt with ``verify``) runs of the manifest."""
        man = self.manifest()
        if man.get("kind") == "reproduction":
            done = (self.root / "summary.json").exists()
            return {"kind": "reproduction", "total": 1, "done": int(done), "pending": int(not done),
                    "failed": 0, "corrupt": 0, "failures": {}}
        keys = man["runs"]
        scan = self.scan()
        corrupt = set()
        if verify:
            corrupt = {k for k in set(keys) & scan.done if not self.verify(k)}
        done = sum(1 for k in keys if k in scan.done and k not in corrupt)
        failed = {k: scan.failed[k] for k in keys if k in scan.failed and k not in scan.done}
        return {"kind": "sweep", "total": len(keys), "done": done,
                "failed": len(failed), "corrupt": len(corrupt),
                "pending": len(keys) - done - len(failed), "failures": failed}


# ---------------------------------------------------------------------------------------------
# The labelled dataset

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


def _load_block(root: str, keys: list[str], manifest: dict) -> dict[str, np.ndarray]:
    store = Store(root)
    grid = np.asarray(manifest["time_grid"], dtype=np.float64)
    spec = run_variables(manifest)
    out = {v: np.full((len(keys),) + shape, np.nan) for v, (_, shape) in spec.items()}
    for i, key in enumerate(keys):
        try:
            a = store.read_run(key)
        except FileNotFoundError:
            continue
        except CorruptRunError as e:
            warnings.warn(f"{e}; loaded as missing (NaN); `rankbias run` re-runs it",
                          RuntimeWarning, stacklevel=2)
            continue
        info = json.loads(str(a["info"]))
        hold = info.get("status") == "steady_state"
        t = a["steps"].astype(np.float64) if manifest["time_dim"] == "step" else a["times"]
        for v in spec:
            if v == "singular_values":
                sv = _on_grid(t, a["singular_values"], grid, hold)
                out[v][i, :, :sv.shape[1]] = sv
            elif v in ("loss", "grad_norm") or v.startswith("rank_"):
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
    return out


def load(root: str | os.PathLike, *, lazy: bool = True):
    """Load a sweep's results folder as one labelled :class:`xarray.Dataset`.

    Dimensions: the sweep's axes (e.g. ``alpha``, ``depth``, ``seed``, ``problem``), then
    ``time`` (gradient flow) or ``step`` (gradient descent) and ``sv`` (singular value index).
    The time axis is the sweep's shared save grid; a run that stopped early at a steady state
    holds its last value after its stopping time ``t_final``; values of unfinished, failed or
    corrupt runs are NaN and the boolean ``done`` says which runs are present.

    With ``lazy`` (default) the variables are dask arrays read block by block on demand
    (``_BLOCK`` runs per task, checksums verified as they are read); call ``.compute()`` or
    ``.load()`` to read everything.
    """
    import dask
    import dask.array as da
    import xarray as xr

    store = Store(root)
    man = store.manifest()
    if man.get("kind") == "reproduction":
        raise StoreError(f"{root} holds a reproduction ({man.get('name')}), not a sweep; its "
                         f"numbers are in {Path(root) / 'summary.json'}")
    keys = man["runs"]
    axes = man["axes"]
    shape = tuple(len(a["values"][0]) for a in axes)
    spec = run_variables(man)
    scan = store.scan()
    done = np.array([k in scan.done for k in keys], dtype=bool).reshape(shape)
    data_vars = {}
    blocks = [keys[i:i + _BLOCK] for i in range(0, len(keys), _BLOCK)]
    loaded = [dask.delayed(_load_block, pure=True)(str(root), b, man) for b in blocks]
    for v, (dims, vshape) in spec.items():
        parts = [da.from_delayed(dask.delayed(lambda d, v=v: d[v], pure=True)(blk),
                                 shape=(len(b),) + vshape, dtype=np.float64)
                 for blk, b in zip(loaded, blocks)]
        arr = da.concatenate(parts, axis=0).reshape(shape + vshape)
        if not lazy:
            arr = arr.compute()
        data_vars[v] = ([a["name"] for a in axes] + list(dims), arr)
    data_vars["done"] = ([a["name"] for a in axes], done)
    coords = {}
    for a in axes:
        coords[a["name"]] = (a["name"], list(a["values"][0]))
        for key, vals in zip(a["keys"][1:], a["values"][1:]):
            coords[key.replace(".", "_")] = (a["name"], list(vals))
    coords[man["time_dim"]] = (man["time_dim"], np.asarray(man["time_grid"], dtype=np.float64))
    if "singular_values" in spec:
        coords["sv"] = ("sv", np.arange(1, int(man["max_rank"]) + 1))
    attrs = {"name": man["name"], "description": man.get("description", ""),
             "config": json.dumps(man["config"]), "versions": json.dumps(man["versions"]),
             "method": man["method"]}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
