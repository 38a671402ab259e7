"""Atomic file writes and JSON encoding: the one writer and the one canonical JSON of rankbias.

Every file rankbias writes for a user (run files, manifests, tables, caches) goes through
:func:`atomic_write` (bytes, text and ``.npz`` are thin callers), and every JSON text that is
hashed or compared goes through :func:`canonical_json`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Temp files are named ``.<target>.<host>~<pid>.<random>.tmp``: the writer's host and pid say
# whether a leftover belongs to a dead writer (see ``temp_writer``). Older versions wrote
# ``.<target>.<random>.tmp``.
_TEMP_PID = re.compile(r"~(?P<pid>\d+)\.[a-z0-9_]+\.tmp$")


def _host() -> str:
    return socket.gethostname().replace("~", "-").replace("/", "-")


def temp_prefix(name: str) -> str:
    """Prefix of this process's temp files for the target file name ``name``."""
    return f".{name}.{_host()}~{os.getpid()}."


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temp file of :func:`atomic_write` (any version)."""
    return name.startswith(".") and name.endswith(".tmp")


def temp_writer(name: str) -> int | None:
    """The pid of the writer of the temp file ``name`` if it is a process of this host;
    ``None`` for another host's or an older version's temp file (cannot be checked)."""
    m = _TEMP_PID.search(name)
    if not is_temp_name(name) or m is None or not name[: m.start()].endswith(f".{_host()}"):
        return None
    return int(m["pid"])


def atomic_write(path: Path, write: Callable, *, binary: bool) -> Path:
    """Write through a temp file in the same folder, fsync, then ``os.replace``.

    A reader sees the old file or the new one, never a half-written one, even after Ctrl-C
    or a killed process (at worst a dot-prefixed ``.tmp`` file is left behind, named with
    the writer's host and pid: :meth:`rankbias.store.Store.clean_temp_files` removes it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        # mkstemp creates 0600 files; results are meant to be shared (cluster file systems).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data), binary=True)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


def atomic_write_npz(path, arrays: dict) -> Path:
    """Write ``arrays`` to ``path`` (``.npz`` appended if missing) atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    return atomic_write(path, lambda fh: np.savez(fh, **arrays), binary=True)


def canonical_json(obj) -> str:
    """The canonical JSON text of ``obj``: keys sorted, no spaces, non-JSON numbers as
    ``float`` (NumPy scalars). Run keys hash this text (:func:`rankbias.store.run_key`), so its
    bytes must never change: a change would re-key every stored run."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=float)


def json_default(o):
    """``json.dumps(default=...)`` for NumPy scalars and arrays; anything else as ``str``."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
