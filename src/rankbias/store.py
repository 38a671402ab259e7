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
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import socket
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._io import atomic_write, is_temp_name, json_default, temp_prefix, temp_writer
from ._version import __version__
from .trajectory import atomic_write_npz

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

MANIFEST = "experiment.json"
LOCK = ".lock"
_SWEEP_FIELDS = ("runs", "axes", "time_grid", "time_dim", "metrics", "max_rank", "method")
_BLOCK = 256  # runs per lazy-load task
_STALE_TEMP_AGE = 24 * 3600.0  # s: an unmodified temp file whose writer cannot be checked


class StoreError(RuntimeError):
    """A results folder is missing, unreadable or not a rankbias store."""


class CorruptRunError(StoreError):
    """A run file exists but fails its checksum, cannot be parsed, or belongs to another key."""


class RunReadError(StoreError):
    """A run file exists but cannot be read (permissions, I/O): not proven corrupt, kept."""


class StoreLockedError(StoreError):
    """Another live ``rankbias run`` holds the results folder's lock."""


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
METHOD_RESULTS = {"gd": "gd.2", "optax": "optax.2"}


def results_version(config: dict | None = None) -> str:
    """The results version of a run config: :data:`RESULTS_VERSION`, plus its method's bump in
    :data:`METHOD_RESULTS` (``"0.1.0+gd.2"``); configs without a method get the base."""
    dyn = (config or {}).get("dynamics")
    bump = METHOD_RESULTS.get(str(dyn.get("method"))) if isinstance(dyn, dict) else None
    return RESULTS_VERSION if bump is None else f"{RESULTS_VERSION}+{bump}"


def code_version(config: dict | None = None) -> str:
    """The version that enters a run's key: :func:`results_version` (not ``__version__``)."""
    return results_version(config)


def run_key(config: dict, version: str | None = None) -> str:
    """SHA-256 (hex, 32 digits) of the canonical JSON of ``config`` and ``version``
    (default :func:`results_version` of ``config``)."""
    payload = json.dumps(
        {"config": config, "version": version or code_version(config)},
        sort_keys=True,
        separators=(",", ":"),
        default=float,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _package_version() -> str:
    return __version__


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
    from importlib import metadata

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


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` through a temp file in the same folder and ``os.replace``."""
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


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


def _write_holder(fd: int, me: dict) -> None:
    """Write the holder's pid, host and start into the lock file and fsync it: on a shared
    file system whose ``flock`` is local to each machine (NFS ``nolock``, Lustre
    ``localflock``) the content is the only guard between machines, and an unflushed write
    would leave another machine reading an empty file."""
    os.pwrite(fd, json.dumps(me).encode(), 0)
    os.fsync(fd)


def _read_lock(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _in_use(root: Path, path: Path, holder: dict) -> str:
    return (
        f"{root} is in use by another `rankbias run` (pid {holder.get('pid', '?')} "
        f"on {holder.get('host', '?')}, since {holder.get('started', '?')}); wait for it "
        f"to finish, or, if that process is gone, delete {path}"
    )


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


_KEY = re.compile(r"[0-9a-f]{32}")  # run_key: 32 hex digits


def _shown(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _Text(str):
    """A received value already put in words (shown as is, not as JSON)."""


def _manifest_problem(man: dict) -> tuple[str, str, object] | None:
    """The first structural problem of a parsed manifest as (field, expected, received)."""
    kind = man.get("kind", "sweep")
    if kind not in ("sweep", "reproduction"):
        return "kind", '"sweep" or "reproduction"', kind
    for f in ("name", "description", "created"):
        if f in man and not isinstance(man[f], str):
            return f, "a string", man[f]
    for f in ("config", "versions"):
        if f in man and not isinstance(man[f], dict):
            return f, "a JSON object", man[f]
    if kind == "reproduction":
        return None
    missing = [f for f in _SWEEP_FIELDS if f not in man]
    if missing:
        return ", ".join(map(repr, missing)), "present (a sweep needs it)", _Text("missing")
    runs, axes, grid = man["runs"], man["axes"], man["time_grid"]
    if not isinstance(runs, list) or not all(
        isinstance(k, str) and _KEY.fullmatch(k) for k in runs
    ):
        return "runs", "a list of run keys (32 hex digits each)", runs
    if man["time_dim"] not in ("time", "step"):
        return "time_dim", '"time" or "step"', man["time_dim"]
    if (
        not isinstance(grid, list)
        or not grid
        or not all(_is_number(t) and np.isfinite(t) for t in grid)
        or any(b <= a for a, b in zip(grid, grid[1:], strict=False))
    ):
        return "time_grid", "a non-empty list of finite numbers in increasing order", grid
    for f in ("metrics", "scalar_metrics", "custom"):
        v = man.get(f, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return f, "a list of strings", v
    if not isinstance(man["max_rank"], int) or isinstance(man["max_rank"], bool):
        return "max_rank", "a positive integer", man["max_rank"]
    if man["max_rank"] < 1:
        return "max_rank", "a positive integer", man["max_rank"]
    if not isinstance(man["method"], str):
        return "method", "a string", man["method"]
    if not isinstance(axes, list):
        return "axes", "a list of axes", axes
    size = 1
    for i, a in enumerate(axes):
        ok = (
            isinstance(a, dict)
            and isinstance(a.get("name"), str)
            and isinstance(a.get("keys"), list)
            and len(a["keys"]) >= 1
            and all(isinstance(k, str) for k in a["keys"])
            and isinstance(a.get("values"), list)
            and len(a["values"]) == len(a["keys"])
            and all(isinstance(v, list) for v in a["values"])
            and len({len(v) for v in a["values"]}) == 1
            and len(a["values"][0]) >= 1
        )
        if not ok:
            return (
                f"axes[{i}]",
                'an object {"name": str, "keys": [str, ...], "values": [[...], ...]} with one '
                "non-empty list of values per key, all of the same length",
                a,
            )
        size *= len(a["values"][0])
    if len(runs) != size:
        return "runs", f"{size} run keys (one per point of the axes' grid)", _Text(f"{len(runs)}")
    hist = man.get("history", [])
    if not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist):
        return "history", "a list of JSON objects", hist
    return None


def validate_manifest(man: dict, path: str | os.PathLike) -> None:
    """Raise :class:`StoreError` naming ``path``, the field, what it must be and what it holds
    if the parsed manifest ``man`` is not structurally sound (types of ``runs``, ``axes`` with
    names, keys and values of consistent lengths matching ``runs``, ``time_grid`` finite and
    increasing, ``description`` a string, ...): a hand-edited ``experiment.json`` then fails
    in one line when it is loaded, not deep inside ``status``, ``plot`` or ``report``."""
    problem = _manifest_problem(man)
    if problem is None:
        return
    field, expected, got = problem
    if got == "missing" and isinstance(got, _Text):
        what = f"missing {field}"
    else:
        what = f"{field} must be {expected}, got {got if isinstance(got, _Text) else _shown(got)}"
    raise StoreError(
        f"{path} is not a valid rankbias manifest: {what}; edit it back or re-create the folder"
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
    @contextlib.contextmanager
    def lock(self, log=None):
        """Hold ``.lock`` (pid, host, start time) while writing; refuse a live holder.

        The lock is an ``flock`` on ``.lock`` held by this process: the kernel takes it away
        when the process ends, however it ends, so taking over after a dead holder is one
        atomic step (two contenders cannot both win, as with a read-unlink-create takeover).
        The file's JSON content names the holder for messages and for ``rankbias`` versions
        that only know the file: a lock file naming a live process of this host is refused
        even if unlocked, and one of another host cannot be checked and is refused, naming
        it. A lock left by a dead process of this host is taken over (``log`` says so).
        Raises :class:`StoreLockedError`.
        """
        path = self.root / LOCK
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot write to results folder {self.root}: {e.strerror or e}"
            ) from None
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        fd = self._take_lock(path, me, log)
        try:
            yield
        finally:
            # unlink while still holding the flock: a contender that opened this file then
            # sees that its inode is no longer the one at the path and starts again
            if (_read_lock(path) or {}).get("pid") == me["pid"]:
                _unlink(path)
            os.close(fd)

    def _take_lock(self, path: Path, me: dict, log) -> int:
        """The descriptor of ``path``, flocked and holding ``me``; see :meth:`lock`."""
        for _ in range(100):
            try:
                fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as e:
                raise StoreError(f"cannot create the lock {path}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _read_lock(path) or {}
                raise StoreLockedError(_in_use(self.root, path, holder)) from None
            except OSError:  # no flock on this file system (e.g. Lustre without -o flock)
                os.close(fd)
                return self._take_lock_file(path, me, log)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file between our open and flock
                os.close(fd)
                continue
            holder = _read_lock(path)
            if holder and holder.get("pid") != me["pid"]:
                if holder.get("host") != me["host"] or _pid_alive(holder.get("pid")):
                    os.close(fd)  # a live writer of an older version, or one we cannot check
                    raise StoreLockedError(_in_use(self.root, path, holder))
                if log:
                    log(
                        f"taking over the stale lock of {self.root} (pid {holder.get('pid')} "
                        f"on {holder.get('host')} is no longer running)"
                    )
            os.ftruncate(fd, 0)
            _write_holder(fd, me)
            return fd
        raise StoreLockedError(f"cannot take the lock {path} (it keeps being replaced)")

    def _take_lock_file(self, path: Path, me: dict, log) -> int:
        """The lock as a file alone, where the file system has no ``flock``: created with
        ``O_EXCL``; a holder that is dead (or a file left empty) is replaced. Not atomic
        against several runs taking over the same stale lock at once."""
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                holder = _read_lock(path)
                if holder is None:  # being written, or left empty
                    time.sleep(1.0)  # a writer's content is fsynced within ms, even over NFS
                    if _read_lock(path) is None:
                        _unlink(path)
                    continue
                if holder.get("host") == me["host"] and not _pid_alive(holder.get("pid")):
                    if log:
                        log(
                            f"taking over the stale lock of {self.root} (pid {holder.get('pid')} "
                            f"on {holder.get('host')} is no longer running)"
                        )
                    _unlink(path)
                    continue
                raise StoreLockedError(_in_use(self.root, path, holder)) from None
            _write_holder(fd, me)
            return fd
        raise StoreLockedError(f"cannot take the lock {path}")

    def clean_temp_files(self, log=None) -> int:
        """Remove the temp files that killed writers left in the folder and ``runs/``; returns
        how many. Call it holding :meth:`lock`, in a folder known to be a results folder.

        A temp file is removed if its writer (host and pid in its name) is a process of this
        host that is no longer running, or if it has not been modified for
        ``_STALE_TEMP_AGE`` seconds (temp files of another host or of older versions, whose
        writer cannot be checked: a live writer writes its file in one go). A temp file of a
        live writer is never removed.
        """
        now = time.time()
        dirs = [self.root]
        if self.runs_dir.is_dir():
            dirs += [Path(e.path) for e in os.scandir(self.runs_dir) if e.is_dir()]
        removed = 0
        for d in dirs:
            for e in os.scandir(d):
                if not is_temp_name(e.name) or not e.is_file(follow_symlinks=False):
                    continue
                pid = temp_writer(e.name)
                try:
                    old = now - e.stat(follow_symlinks=False).st_mtime > _STALE_TEMP_AGE
                except FileNotFoundError:
                    continue
                if old or (pid is not None and not _pid_alive(pid)):
                    _unlink(Path(e.path))
                    removed += 1
        if removed and log:
            log(f"removed {removed} temp file(s) left by killed writers in {self.root}")
        return removed

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
        from .status import ended_well

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


def _load_block(root: str, keys: list[str], manifest: dict) -> dict[str, np.ndarray]:
    store = Store(root)
    grid = np.asarray(manifest["time_grid"], dtype=np.float64)
    spec = run_variables(manifest)
    out = {v: np.full((len(keys),) + shape, np.nan) for v, (_, shape) in spec.items()}
    out["done"] = np.zeros(len(keys), dtype=bool)
    out["status"] = np.full(len(keys), "", dtype=object)
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
        out["done"][i] = True
        info = json.loads(str(a["info"]))
        out["status"][i] = str(info.get("status", ""))
        hold = info.get("status") == "steady_state"
        t = a["steps"].astype(np.float64) if manifest["time_dim"] == "step" else a["times"]
        for v in spec:
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
    import dask.array as da
    import xarray as xr
    from dask.delayed import delayed  # `dask.delayed` is not re-exported for type checkers

    store = Store(root)
    man = store.manifest()
    if man.get("kind") == "reproduction":
        raise StoreError(
            f"{root} holds a reproduction ({man.get('name')}), not a sweep; its "
            f"numbers are in {Path(root) / 'summary.json'}"
        )
    keys = man["runs"]
    axes = man["axes"]
    shape = tuple(len(a["values"][0]) for a in axes)
    spec = run_variables(man)
    data_vars = {}
    blocks = [keys[i : i + _BLOCK] for i in range(0, len(keys), _BLOCK)]
    loaded = [delayed(_load_block, pure=True)(str(root), b, man) for b in blocks]
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
