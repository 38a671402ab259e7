"""Ctrl-C while the ``rankbias`` command is still starting: one line and exit code 130.

The console script (``rankbias.cli:run``) and ``python -m rankbias`` import the package before
:func:`rankbias.cli.main` can handle anything, and ``import rankbias`` takes seconds (JAX,
diffrax, cvxpy). A Ctrl-C there used to surface from inside those imports: a
``KeyboardInterrupt`` traceback, an ``ImportError`` from a half-initialised extension, or a
crash (measured: exit codes -2, -6, -11 and even 0 after a traceback, by when it landed).

``rankbias/__init__.py`` calls :func:`guard` before its first heavy import. In the command's
own process only, it replaces the SIGINT and SIGTERM handlers by one that prints one line and
ends the process at once with ``os._exit`` (130 or 143). Raising instead was not an option: the
exception would unwind through a half-imported JAX and out of the console-script wrapper,
which is not ours, so the traceback could not be caught. :func:`release` (first thing in
``cli.main``) puts the previous handlers back, after which ``main`` turns interrupts into its
usual message.

The end of the command has the same problem the other way round. After the ``atexit``
handlers, CPython resets the signal handlers to the default and then tears the modules down
(about 0.5 s with JAX loaded), and a Ctrl-C there killed the process without a word (exit
-2). So :func:`guard` also registers an ``atexit`` handler before any other import can: it
runs last, and once :func:`finish` has been given the command's exit code it flushes the
standard streams and leaves with ``os._exit``. Nothing of ours is left to tear down then;
files are closed and runs are on disk when ``main`` returns. ``import rankbias`` in a script or notebook, in-process calls of ``cli.main``
and the workers of ``--executor processes`` or a Dask ``LocalCluster`` (spawned with the
parent's ``sys.argv``) get no message: the terminal sends Ctrl-C to the whole process
group, so a pool worker of the command ignores SIGINT (the command stops it) and a Dask
worker ends silently (a worker used to print "interrupted while starting (nothing was run)" after runs had
been saved, or "terminated while starting" when the command stopped it). Standard library
only: this module must be cheap to import.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any

__all__ = ["finish", "guard", "release"]

_saved: dict[int, Any] = {}  # signal -> the handler guard() replaced
_exit_code: list[int] = []  # the command's exit code, once finish() has it
_registered: list[bool] = []


def _is_spawned() -> bool:
    """Whether this process is a ``spawn`` (or ``forkserver``) child of multiprocessing: a
    worker of ``--executor processes`` or of a Dask ``LocalCluster``. Its own command line
    says so; ``parent_process()`` is still ``None`` while the child imports what it runs
    (that is when ``import rankbias`` happens there)."""
    return "--multiprocessing-fork" in sys.orig_argv


def _is_a_worker_of_the_command() -> bool:
    """Whether this process is a spawned worker of the ``rankbias`` command (spawn gives
    it the command's ``sys.argv`` before it imports anything of ours)."""
    if not _is_spawned() or not sys.argv:
        return False
    first = sys.argv[0].replace(os.sep, "/")
    return os.path.splitext(os.path.basename(first))[0] == "rankbias" or first.endswith(
        ("rankbias/__main__.py", "rankbias/cli.py")
    )


def _is_the_command() -> bool:
    """Whether this process is ``rankbias ...`` or ``python -m rankbias[.cli] ...``."""
    mp = sys.modules.get("multiprocessing")
    if _is_spawned() or (mp is not None and mp.parent_process() is not None):
        return False  # a worker: spawn copies the parent's argv
    if os.path.splitext(os.path.basename(sys.argv[0]))[0] == "rankbias":
        return True  # the console script (argv[0] is its path while it imports us)
    if sys.argv[:1] != ["-m"]:  # `python -m X` sets argv[0] to "-m" while it imports X
        return False
    args = iter(sys.orig_argv[1:])
    for a in args:
        if a == "-m":
            target = next(args, "")
        elif a.startswith("-m"):
            target = a[2:]
        else:
            continue
        return target in ("rankbias", "rankbias.cli", "rankbias.__main__")
    return False


def _exit_now(signum, frame):  # pragma: no cover - runs in a child process
    what = "interrupted" if signum == signal.SIGINT else "terminated"
    sys.stderr.write(f"\nrankbias: {what} while starting (nothing was run)\n")
    sys.stderr.flush()
    os._exit(130 if signum == signal.SIGINT else 143)


def guard() -> None:
    """In the ``rankbias`` command's process, exit with one line on SIGINT/SIGTERM until
    :func:`release`. A signal that is ignored (``SIG_IGN``, e.g. SIGINT in a background job)
    stays ignored. In the command's spawned workers, print nothing: a pool worker ignores
    SIGINT (the command stops it), a Dask worker ends at once. Does nothing elsewhere, outside the main thread, or when already
    active."""
    if _saved or threading.current_thread() is not threading.main_thread():
        return
    if _is_a_worker_of_the_command():
        # The terminal sends Ctrl-C to the whole process group, workers included; they must
        # not print anything. A pool worker ignores it (the command stops it with SIGTERM:
        # dying first would look like a lost worker); a Dask worker (its task runs in a
        # thread the nanny cannot stop) ends at once, silently, by the default action.
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            dask = "distributed" in sys.modules
            signal.signal(signal.SIGINT, signal.SIG_DFL if dask else signal.SIG_IGN)
        return
    if not _is_the_command():
        return
    if not _registered:  # registered first, so it runs after every other atexit handler
        atexit.register(_exit_after_atexit)
        _registered.append(True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        old = signal.getsignal(sig)
        if old is not None and old is not signal.SIG_IGN:  # None: a handler not set from Python
            _saved[sig] = old
            signal.signal(sig, _exit_now)


def release() -> None:
    """Put back the handlers :func:`guard` replaced (a no-op if it replaced none)."""
    if threading.current_thread() is not threading.main_thread():
        return
    while _saved:
        sig, old = _saved.popitem()
        signal.signal(sig, old)


def finish(code: int) -> None:
    """Record the command's exit code: after the last ``atexit`` handler the process ends
    with it at once (see the module docstring). Only has an effect where :func:`guard`
    registered its handler, i.e. in the command's own process."""
    _exit_code[:] = [code]


def _exit_after_atexit() -> None:  # pragma: no cover - runs in a child process at exit
    if not _exit_code:
        return  # the command did not get to finish (an error before): normal teardown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream: nothing more can be said on it
            pass
    os._exit(_exit_code[0])
