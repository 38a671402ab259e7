"""The results store: one checksummed ``.npz`` per run, keyed by the hash of its config.

Layout of a results folder::

    experiment.json          manifest: config as run, axes, run keys in grid order, time grid,
                             versions; ``history``: earlier configs run here with ``--add``
    config.toml              the config as run (overrides and ``--quick`` applied)
    .lock                    held by the ``rankbias run`` writing the folder (pid, host)
    runs/ab/abcdef....npz    one finished run (``ab`` = the first two hex digits of its key)
    runs/ab/abcdef....failed.json   why a run failed (removed when it later succeeds)
    figures/, report.html    written by ``rankbias plot`` / ``rankbias report``

A run file holds the :class:`~rankbias.Trajectory` arrays that its ``record.metrics`` ask for,
``run_config`` (JSON), ``info`` (JSON, with ``info["status"]``: how the run ended, a
:class:`~rankbias.status.RunStatus`), scalar metrics ``metric_<name>``, its own key
``__key__`` and the results version ``__code_version__`` its key was made with
(:data:`RESULTS_VERSION`), and ``__checksum__``, the SHA-256 of every
other array (name, dtype, shape and bytes). Files are written through a temp file and
``os.replace``: a killed writer leaves no half file.

The key of a run is the SHA-256 of its resolved config and :data:`RESULTS_VERSION`
(:func:`run_key`): a re-run of a sweep skips every finished run, and a changed config or
results version is a new run. ``RESULTS_VERSION`` is bumped only by a change that alters
what a run computes, so a new release of the package alone recomputes nothing. Reading a run checks that the file is what its name says: the
checksum matches, ``__key__`` is the key asked for, and ``run_key(run_config,
__code_version__)`` is that key too (files written before ``__key__`` existed are checked
by the config against the current code version, and stay readable when it matches). A file
that fails any check is *corrupt* (:class:`CorruptRunError`: bit rot, a truncated copy, a
file copied or renamed under another key); it is never loaded and ``rankbias run`` deletes
and re-runs it. A file that cannot be *read* (permissions, I/O errors) is not proven corrupt:
it raises :class:`RunReadError` and is never deleted.

Modules: :mod:`._errors` (the errors), :mod:`._manifest` (``experiment.json``: names and
validation), :mod:`._lock` (the writer's lock, temp-file clean-up), :mod:`._dataset` (run files
as an :class:`xarray.Dataset`). This module holds the results version, the run keys and the
:class:`Store` that binds each run file to its key: the version constants are read from this
module's globals by every key and check, so setting ``rankbias.store.METHOD_RESULTS`` (or
``RESULTS_VERSION``) is seen everywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import sys
import tempfile
import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from .._io import atomic_write_npz, atomic_write_text, canonical_json, json_default, temp_prefix
from .._version import __version__
from ..status import ended_well
from . import _lock

# LOCK, MANIFEST and run_variables are re-exported: `rankbias.store.<name>` is where users and
# the CLI found them
from ._dataset import assemble, empty_block, put_run, run_variables as run_variables
from ._errors import CorruptRunError, RunReadError, StoreError, StoreLockedError
from ._manifest import LOCK as LOCK, MANIFEST, validate_manifest

__all__ = [
    "Store",
    "StoreError",
    "CorruptRunError",
    "RunReadError",
    "StoreLockedError",
    "run_key",
    "RESULTS_VERSION",
    "METHOD_RESULTS",
    "results_version",
    "code_version",
    "versions",
    "load",
    "checksum",
    "atomic_write_text",
    "validate_manifest",
]

#: The version of the *numbers* a run produces; it enters every run key (:func:`run_key`).
#: Bump it (any new string, e.g. ``"0.1.0+r2"``) in the commit that changes what some run
#: computes: the engines, a default, a problem or init generator. Then every stored run is
#: recomputed on the next ``rankbias run``, and never otherwise: a release (``__version__``),
#: a refactor or new features leave the keys and the results on users' disks alone.
#: ``tests/test_results_version.py`` fails when recorded numbers change while this stays.
#: It started as ``"0.1.0"``, the ``__version__`` the keys hashed before this constant, so
#: that every key already on disk stays valid.
RESULTS_VERSION = "0.1.0"

#: Bumps of one method's numbers on top of :data:`RESULTS_VERSION`: a change that alters what
#: only one ``dynamics.method`` computes bumps its entry here, so that the stored runs of the
#: other methods (hours of gradient flows) stay valid. ``gd.2``/``optax.2``: GD and optimizer
#: runs classify how they ended (``completed`` or ``not_stationary``, with
#: ``info["stationarity"]``); a stored run of before said ``completed`` for any run.
#: ``flow.2``: the RKC-based flow solvers predict the step-size controller (issue 30: no step
#: past the Tsit5/Chebyshev switch that a Chebyshev step would fail, no spectral estimate on
#: rejected attempts), so a flow takes other steps and its records move within the solver's
#: tolerance (the reproductions' end-point errors are equal to the digits reported).
#: ``glrl.2``: GLRL's phase flows run at an absolute tolerance of at most ``1e-5 sqrt(eps)``
#: (was ``1e-3 sqrt(eps)``, issue 30) and on the flow.2 solvers: the plateaus are the same
#: limits, but the values at the noise floor (a 4 x 4 run's loss 1.764e-23 -> 1.766e-23,
#: its zero singular values at 1e-17) are other numbers, so stored GLRL runs are recomputed.
METHOD_RESULTS = {"gd": "gd.2", "optax": "optax.2", "flow": "flow.2", "glrl": "glrl.2"}


#: The bump of runs whose model width changed with the default width: a deep model of depth
#: ``>= 2`` with no ``model.width`` on a non-square problem had hidden width ``max(m, n)`` and
#: has ``min(m, n)`` since issue 26 (another init draw, another product chain). Square
#: problems, explicit widths and depth 1 compute what they did: their keys stay.
WIDTH_RESULTS = "width.2"


def _default_width_changed(config: dict) -> bool:
    """Whether ``config`` is a deep, depth >= 2, default-width run on a non-square shape."""
    model, problem = config.get("model"), config.get("problem")
    if not isinstance(model, dict) or not isinstance(problem, dict):
        return False
    shape = problem.get("shape")
    return (
        model.get("type", "deep") == "deep"
        and model.get("width") is None
        and isinstance(model.get("depth"), int)
        and model["depth"] >= 2
        and isinstance(shape, (list, tuple))
        and len(shape) == 2
        and shape[0] != shape[1]
    )


def results_version(config: dict | None = None) -> str:
    """The results version of a run config: :data:`RESULTS_VERSION`, plus its method's bump in
    :data:`METHOD_RESULTS` (``"0.1.0+gd.2"``), plus :data:`WIDTH_RESULTS` for a deep model of
    depth >= 2 with the default width on a non-square shape (``"0.1.0+gd.2+width.2"``: the
    default width went from ``max(m, n)`` to ``min(m, n)``); configs without a method get the
    base."""
    config = config or {}
    dyn = config.get("dynamics")
    bump = METHOD_RESULTS.get(str(dyn.get("method"))) if isinstance(dyn, dict) else None
    version = RESULTS_VERSION if bump is None else f"{RESULTS_VERSION}+{bump}"
    return f"{version}+{WIDTH_RESULTS}" if _default_width_changed(config) else version


def code_version(config: dict | None = None) -> str:
    """The version that enters a run's key: :func:`results_version` (not ``__version__``)."""
    return results_version(config)


def run_key(config: dict, version: str | None = None) -> str:
    """SHA-256 (hex, 32 digits) of the canonical JSON of ``config`` and ``version``
    (default :func:`results_version` of ``config``)."""
    payload = canonical_json({"config": config, "version": version or code_version(config)})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _package_version() -> str:
    # The facade's `__version__` once the package is loaded (a patched or vendored one is what
    # gets recorded); read from sys.modules, as importing the facade here would be a cycle.
    return getattr(sys.modules.get("rankbias"), "__version__", __version__)


def versions() -> dict[str, str]:
    """Software versions recorded with every result."""
    out = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "rankbias": _package_version(),
        "results_version": RESULTS_VERSION,
        "method_results": ",".join(f"{k}:{v}" for k, v in sorted(METHOD_RESULTS.items())),
    }
    for pkg in (
        "jax",
        "jaxlib",
        "diffrax",
        "equinox",
        "numpy",
        "scipy",
        "xarray",
        "pandas",
        "dask",
        "distributed",
        "matplotlib",
    ):
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


def _check_binding(path: Path, key: str, arrays: dict) -> None:
    """Raise :class:`CorruptRunError` unless the file holds the run ``key``: its ``__key__``
    and the hash of its ``run_config`` with its code version (old files: the current one)."""
    stored = arrays.get("__key__")
    if stored is not None and str(stored) != key:
        raise CorruptRunError(
            f"run file {path} holds the run {str(stored)} (copied or renamed under another key)"
        )
    try:
        cfg = json.loads(str(arrays["run_config"]))
    except (KeyError, ValueError):
        raise CorruptRunError(f"run file {path} has no readable run_config") from None
    # a file without __code_version__ predates it: its key hashed the base version (or, for
    # a file rewritten without it, the config's current one)
    stored_version = arrays.get("__code_version__")
    versions = (
        [str(stored_version)]
        if stored_version is not None
        else [RESULTS_VERSION, code_version(cfg if isinstance(cfg, dict) else None)]
    )
    if all(run_key(cfg, v) != key for v in versions):
        raise CorruptRunError(
            f"run file {path}: its run_config does not hash to its key "
            f"(a file of another run{'' if stored is not None else ', or of another code version'})"
        )


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
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=temp_prefix("probe"), suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise StoreError(
                f"cannot write to results folder {self.root}: {e.strerror or e}"
            ) from None

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_text(
            self.root / MANIFEST, json.dumps(manifest, indent=1, default=json_default)
        )

    def manifest(self) -> dict:
        """The parsed ``experiment.json``; :class:`StoreError` if missing, unreadable or lacking
        a field that ``status``/``load`` need."""
        p = self.root / MANIFEST
        if not self.root.is_dir():
            raise StoreError(f"no results folder at {self.root}")
        if not p.exists():
            raise StoreError(
                f"{self.root} is not a rankbias results folder (no {MANIFEST}); "
                f"create one with `rankbias run NAME --out {self.root}`"
            )
        try:
            man = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"cannot read {p}: {e}") from None
        if not isinstance(man, dict):
            raise StoreError(f"{p} is not a rankbias manifest (not a JSON object)")
        validate_manifest(man, p)
        return man

    # -- lock ----------------------------------------------------------------------------------
    def lock(self, log=None) -> AbstractContextManager[None]:
        """Hold ``.lock`` (pid, host, start time) while writing; refuse a live holder
        (:class:`StoreLockedError`). See :func:`rankbias.store._lock.hold`."""
        return _lock.hold(self.root, log)

    def clean_temp_files(self, log=None) -> int:
        """Remove the temp files that killed writers left in the folder and ``runs/``; returns
        how many (see :func:`rankbias.store._lock.clean_temp_files`)."""
        return _lock.clean_temp_files(self.root, self.runs_dir, log)

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
        """Store one run's arrays atomically, bound to ``key`` (adds ``__key__``,
        ``__code_version__`` and ``__checksum__``); clears a failure note."""
        arrays = dict(arrays)
        arrays["__key__"] = np.array(key)
        try:
            cfg = json.loads(str(arrays["run_config"]))
        except (KeyError, ValueError):
            cfg = None
        arrays["__code_version__"] = np.array(code_version(cfg if isinstance(cfg, dict) else None))
        arrays["__checksum__"] = np.array(checksum(arrays))
        path = atomic_write_npz(self.path(key), arrays)
        try:
            self.failure_path(key).unlink()
        except FileNotFoundError:
            pass
        return path

    def write_failure(self, key: str, config: dict, message: str) -> None:
        atomic_write_text(
            self.failure_path(key),
            json.dumps({"key": key, "config": config, "error": message}, default=json_default),
        )

    def read_run(self, key: str) -> dict[str, np.ndarray]:
        """The arrays of the finished run ``key``, verified (see the module docstring).

        Raises :class:`CorruptRunError` (damaged, or not the run of ``key``),
        :class:`RunReadError` (cannot be read: permissions, I/O) or ``FileNotFoundError``.
        """
        path = self.path(key)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise
        except OSError as e:
            raise RunReadError(f"cannot read run file {path}: {e.strerror or e}") from None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # zip/pickle/format errors of a damaged file
            raise CorruptRunError(f"run file {path} is unreadable: {e}") from None
        stored = arrays.get("__checksum__")
        if stored is None or str(stored) != checksum(arrays):
            raise CorruptRunError(f"run file {path} fails its checksum")
        _check_binding(path, key, arrays)
        return arrays

    def check(self, key: str) -> str:
        """``"ok"``, ``"missing"``, ``"corrupt"`` or ``"unreadable"`` for the run ``key``."""
        try:
            self.read_run(key)
            return "ok"
        except FileNotFoundError:
            return "missing"
        except CorruptRunError:
            return "corrupt"
        except RunReadError:
            return "unreadable"

    def verify(self, key: str) -> bool:
        """Whether the run ``key`` is present and passes every check of :meth:`read_run`."""
        return self.check(key) == "ok"

    def run_status(self, key: str) -> str:
        """How the finished run ``key`` ended: ``info["status"]`` of its file (a
        :class:`~rankbias.status.RunStatus` value; ``""`` when its file records none).

        Reads only the ``info`` entry (not the checksum: :meth:`read_run` verifies). Raises
        ``FileNotFoundError``, :class:`CorruptRunError` for a file whose ``info`` cannot be
        parsed, or :class:`RunReadError` for a file that cannot be read."""
        return self._run_end(key)[0]

    def _run_end(self, key: str) -> tuple[str, bool]:
        """``(status, stale)`` of the finished run ``key``: ``stale`` when the file was made
        by another results version than its config has now (:func:`results_version`): its
        numbers or status are of older code, and ``rankbias run`` recomputes it."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                text = str(z["info"])
                made = str(z["__code_version__"]) if "__code_version__" in z.files else None
                cfg_text = str(z["run_config"]) if "run_config" in z.files else None
        except FileNotFoundError:
            raise
        except OSError as e:
            raise RunReadError(f"cannot read run file {path}: {e.strerror or e}") from None
        except Exception as e:  # zip/format errors, a missing `info`: a damaged file
            raise CorruptRunError(f"run file {path} is unreadable: {e}") from None
        try:
            info = json.loads(text)
        except ValueError:
            raise CorruptRunError(f"run file {path} has no readable info") from None
        status = str(info.get("status", "")) if isinstance(info, dict) else ""
        try:
            cfg = json.loads(cfg_text) if cfg_text is not None else None
        except ValueError:
            cfg = None
        now = results_version(cfg if isinstance(cfg, dict) else None)
        stale = (made or RESULTS_VERSION) != now
        return status, stale

    def remove(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass

    def status(self, verify: bool = False) -> dict:
        """Counts of done / pending / failed (/ corrupt with ``verify``) runs of the manifest.

        ``statuses`` counts the done runs by how they ended (``{status: n}``, read from each
        run file's ``info``, :class:`~rankbias.status.RunStatus` values; a file whose status
        cannot be read is left out) and ``not_ended_well`` is how many of them did not reach
        what they were asked to (:func:`~rankbias.status.ended_well`): a flow stopped at
        ``t_max`` or ``max_steps`` without a steady state, a diverged run, ...)."""
        man = self.manifest()
        if man.get("kind") == "reproduction":
            done = (self.root / "summary.json").exists()
            return {
                "kind": "reproduction",
                "total": 1,
                "done": int(done),
                "pending": int(not done),
                "failed": 0,
                "corrupt": 0,
                "failures": {},
                "statuses": {},
                "not_ended_well": 0,
            }
        keys = list(dict.fromkeys(man["runs"]))  # grid points that are the same run count once
        scan = self.scan()
        corrupt, unreadable = set(), set()
        if verify:
            for k in set(keys) & scan.done:
                c = self.check(k)
                if c == "corrupt":
                    corrupt.add(k)
                elif c == "unreadable":
                    unreadable.add(k)
        done_keys = [k for k in keys if k in scan.done and k not in corrupt | unreadable]
        done = len(done_keys)
        statuses: dict[str, int] = {}
        stale = 0
        for k in done_keys:
            try:
                s, old = self._run_end(k)
            except (FileNotFoundError, StoreError):
                continue  # removed meanwhile, or damaged: `--verify` reports those
            statuses[s] = statuses.get(s, 0) + 1
            stale += old
        failed = {k: scan.failed[k] for k in keys if k in scan.failed and k not in scan.done}
        hist = man.get("history", [])
        return {
            "kind": "sweep",
            "total": len(keys),
            "done": done,
            "failed": len(failed),
            "corrupt": len(corrupt),
            "unreadable": len(unreadable),
            "pending": len(keys) - done - len(failed),
            "failures": failed,
            "corrupt_keys": sorted(corrupt),
            "unreadable_keys": sorted(unreadable),
            "earlier_configs": len(hist),
            "statuses": dict(sorted(statuses.items())),
            "not_ended_well": sum(n for s, n in statuses.items() if not ended_well(s)),
            "stale": stale,
        }


# ---------------------------------------------------------------------------------------------
# The labelled dataset


def _load_block(root: str, keys: list[str], manifest: dict) -> dict[str, np.ndarray]:
    """The arrays of the runs ``keys``, each verified by :meth:`Store.read_run` (a damaged or
    unreadable file loads as missing, with a warning)."""
    store = Store(root)
    out = empty_block(len(keys), manifest)
    for i, key in enumerate(keys):
        try:
            a = store.read_run(key)
        except FileNotFoundError:
            continue
        except CorruptRunError as e:
            warnings.warn(
                f"{e}; loaded as missing (NaN, done=False); `rankbias run` re-runs it",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        except RunReadError as e:
            warnings.warn(f"{e}; loaded as missing (NaN, done=False)", RuntimeWarning, stacklevel=2)
            continue
        put_run(out, i, a, manifest)
    return out


def load(root: str | os.PathLike, *, lazy: bool = True):
    """Load a sweep's results folder as one labelled :class:`xarray.Dataset`.

    Dimensions: the sweep's axes (e.g. ``alpha``, ``depth``, ``seed``, ``problem``), then
    ``time`` (gradient flow) or ``step`` (gradient descent) and ``sv`` (singular value index).
    The time axis is the sweep's shared save grid; a run that stopped early at a steady state
    holds its last value after its stopping time ``t_final``; values of unfinished, failed,
    corrupt or unreadable runs are NaN and the boolean ``done`` says which runs were read and
    passed their checks (so ``done`` is computed from the files, like the other variables).
    ``status`` (a string per run) says how each done run ended (``info["status"]``, a
    :class:`~rankbias.status.RunStatus` value such as ``"steady_state"``, ``"t_max"`` or
    ``"max_steps"``; ``""`` for runs not done): count the runs that did not end well with
    ``~ds.status.isin(["steady_state", "completed"]) & ds.done`` or
    :func:`~rankbias.status.ended_well`.

    With ``lazy`` (default) the variables are dask arrays read block by block on demand
    (``_BLOCK`` runs per task, checksums and keys verified as they are read); call
    ``.compute()`` or ``.load()`` to read everything.

    Raises :class:`StoreError` for a folder without a valid sweep manifest.
    """
    man = Store(root).manifest()
    if man.get("kind") == "reproduction":
        raise StoreError(
            f"{root} holds a reproduction ({man.get('name')}), not a sweep; its "
            f"numbers are in {Path(root) / 'summary.json'}"
        )
    return assemble(str(root), man, _load_block, lazy)
