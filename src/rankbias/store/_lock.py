"""The writer's lock on a results folder, and the clean-up of what killed writers left.

Both trust the same evidence: a process id and a host name (in the lock file's JSON, in a temp
file's name). ``flock`` makes taking over a dead holder's lock one atomic step; where the file
system has none, the lock falls back to the file alone (:func:`_take_lock_file`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from .._io import is_temp_name, temp_writer
from ._errors import StoreError, StoreLockedError
from ._manifest import LOCK

_STALE_TEMP_AGE = 24 * 3600.0  # s: an unmodified temp file whose writer cannot be checked


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


@contextlib.contextmanager
def hold(root: Path, log=None) -> Iterator[None]:
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
    path = root / LOCK
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot write to results folder {root}: {e.strerror or e}") from None
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    fd = _take_lock(root, path, me, log)
    try:
        yield
    finally:
        # unlink while still holding the flock: a contender that opened this file then
        # sees that its inode is no longer the one at the path and starts again
        if (_read_lock(path) or {}).get("pid") == me["pid"]:
            _unlink(path)
        os.close(fd)


def _take_lock(root: Path, path: Path, me: dict, log) -> int:
    """The descriptor of ``path``, flocked and holding ``me``; see :func:`hold`."""
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
            raise StoreLockedError(_in_use(root, path, holder)) from None
        except OSError:  # no flock on this file system (e.g. Lustre without -o flock)
            os.close(fd)
            return _take_lock_file(root, path, me, log)
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
                raise StoreLockedError(_in_use(root, path, holder))
            if log:
                log(
                    f"taking over the stale lock of {root} (pid {holder.get('pid')} "
                    f"on {holder.get('host')} is no longer running)"
                )
        os.ftruncate(fd, 0)
        _write_holder(fd, me)
        return fd
    raise StoreLockedError(f"cannot take the lock {path} (it keeps being replaced)")


def _take_lock_file(root: Path, path: Path, me: dict, log) -> int:
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
                        f"taking over the stale lock of {root} (pid {holder.get('pid')} "
                        f"on {holder.get('host')} is no longer running)"
                    )
                _unlink(path)
                continue
            raise StoreLockedError(_in_use(root, path, holder)) from None
        _write_holder(fd, me)
        return fd
    raise StoreLockedError(f"cannot take the lock {path}")


def clean_temp_files(root: Path, runs_dir: Path, log=None) -> int:
    """Remove the temp files that killed writers left in the folder and ``runs/``; returns
    how many. Call it holding :func:`hold`, in a folder known to be a results folder.

    A temp file is removed if its writer (host and pid in its name) is a process of this
    host that is no longer running, or if it has not been modified for
    ``_STALE_TEMP_AGE`` seconds (temp files of another host or of older versions, whose
    writer cannot be checked: a live writer writes its file in one go). A temp file of a
    live writer is never removed.
    """
    now = time.time()
    dirs = [root]
    if runs_dir.is_dir():
        dirs += [Path(e.path) for e in os.scandir(runs_dir) if e.is_dir()]
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
        log(f"removed {removed} temp file(s) left by killed writers in {root}")
    return removed
