"""Where chunks run: in this process (default), in local processes, or on a Dask cluster.

An executor only maps :func:`~rankbias.experiments.runner.run_chunk` over chunks and yields
results as they complete; workers write their runs into the results folder themselves (a
Dask cluster must therefore share that folder, as SLURM/PBS clusters do). :func:`run_sweep`
drives a sweep: manifest, skipping finished runs, progress bar, resume.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .._io import atomic_write_text
from ..store import Store, versions
from ..store._errors import StoreError
from .expand import Sweep
from .folder import check_out, claim
from .runner import Chunk, manifest_for, plan_chunks, run_chunk
from .toml_io import dump_toml

__all__ = [
    "ExecutorError",
    "InProcessExecutor",
    "ProcessExecutor",
    "DaskExecutor",
    "make_executor",
    "run_sweep",
    "EXECUTORS",
]

EXECUTORS = ("inprocess", "processes", "dask")


class ExecutorError(RuntimeError):
    """An executor could not start (e.g. an unreachable Dask scheduler) or lost its workers."""


class InProcessExecutor:
    """Run chunks one after another in this process (the default; simplest to debug)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn: Callable, items: Sequence[tuple]) -> Iterator[tuple[int, object]]:
        for i, args in enumerate(items):
            yield i, fn(*args)


def _die_with_parent(parent: int, poll: float = 0.5) -> None:
    """End this process (SIGTERM's default action, or ``os._exit``) when the process
    ``parent`` is gone, however it ended (``kill -9`` included).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, delivered by the kernel at once. Everywhere:
    a daemon thread that polls ``os.getppid()`` (an orphan is re-parented), the fallback and
    the guard against a parent that died before the ``prctl``.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PDEATHSIG
    if os.getppid() != parent:
        os._exit(143)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(143)

    threading.Thread(target=watch, name="rankbias-parent-watch", daemon=True).start()


def _init_worker(parent: int) -> None:
    """Initializer of every ``processes`` worker: it ends with the command (a worker left
    alive after ``kill -9`` of the command would go on writing run files with no lock
    held), takes SIGTERM at once (the default action: no Python handler waits for a JAX
    computation to return) and ignores Ctrl-C, which the terminal sends to the whole process
    group: the command handles it and stops the workers itself."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)


class ProcessExecutor:
    """Run chunks in ``workers`` local processes (``spawn``: JAX does not survive ``fork``).

    Leaving the ``with`` block on an exception (Ctrl-C, SIGTERM turned into an interrupt, a
    lost worker) terminates the workers and reaps them: a pool shut down without waiting
    would let the workers finish the chunks already queued to them and stay alive after the
    command exits, racing a resumed run. Workers also end when the command's process dies
    without a word (``kill -9``, a crash): see :func:`_init_worker`.
    """

    def __init__(self, workers: int | None = None):
        self.workers = workers or max(1, (os.cpu_count() or 2) // 2)
        self._pool = None
        self._semaphores: set = set()

    def __enter__(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        before = set(_semaphore_finalizers())
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        self._semaphores = set(_semaphore_finalizers()) - before  # its queues' (5)
        return self

    def __exit__(self, *exc):
        assert self._pool is not None  # set by __enter__
        if exc[0] is None:
            self._pool.shutdown(wait=True)
            return False
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        _stop(procs)
        self._release_pool()
        return False

    def _release_pool(self, timeout: float = 5.0) -> None:
        """Unlink the pool's semaphores once its workers are gone. Their finalizers run when
        the queues are collected or at interpreter exit, and the command ends an interrupt
        with ``os._exit``: the resource tracker then printed "There appear to be 5 leaked
        semaphore objects" after Ctrl-C. Unlinking only removes the names; the semaphores
        stay valid for any thread of the pool still holding them."""
        manager = getattr(self._pool, "_executor_manager_thread", None)
        if manager is not None:  # it closes the queues on seeing the workers dead, then ends
            manager.join(timeout)
        self._pool = None
        registry = _semaphore_finalizers()
        for key in self._semaphores:
            finalizer = registry.get(key)
            if finalizer is not None:
                with contextlib.suppress(Exception):
                    finalizer()  # SemLock._cleanup: sem_unlink and unregister, once
        self._semaphores = set()

    def map(self, fn, items):
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        assert self._pool is not None, "use the executor in a `with` block"
        futs = {self._pool.submit(fn, *args): i for i, args in enumerate(items)}
        try:
            for f in as_completed(futs):
                try:
                    yield futs[f], f.result()
                except BrokenProcessPool:
                    raise ExecutorError(
                        "a worker process died; the finished runs are saved, "
                        "re-run the same command to resume"
                    ) from None
        finally:
            for f in futs:
                f.cancel()


def _semaphore_finalizers() -> dict:
    """multiprocessing's pending finalizers that unlink a named semaphore, by their key."""
    from multiprocessing import synchronize, util

    registry = getattr(util, "_finalizer_registry", {})
    cleanup = getattr(synchronize.SemLock, "_cleanup", None)
    return {k: f for k, f in list(registry.items()) if getattr(f, "_callback", 0) is cleanup}


def _stop(procs, grace: float = 2.0) -> None:
    """SIGTERM the processes, wait up to ``grace`` seconds, SIGKILL the rest, reap all."""
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        with contextlib.suppress(Exception):
            if p.is_alive():
                p.kill()
                p.join(1.0)


class _OSErrorResult:
    """An ``OSError`` of a chunk, returned to the driver as a value (see :func:`_dask_chunk`)."""

    def __init__(self, error: OSError):
        self.error = error


def _dask_chunk(*args) -> object:
    """:func:`run_chunk` on a Dask worker, an ``OSError`` (a full disk, a lost folder) returned
    instead of raised: raised, the worker logs it with its traceback (about 35 lines for a
    full disk) and Dask retries the chunk, which fails the same way. The driver raises it."""
    try:
        return run_chunk(*args)
    except OSError as e:
        return _OSErrorResult(e)


class DaskExecutor:
    """Run chunks on a Dask distributed cluster.

    ``scheduler``: an address (``tcp://host:8786``) of a running scheduler, or ``None`` to start
    a :class:`distributed.LocalCluster` with ``workers`` single-threaded worker processes.
    A chunk whose worker is killed is retried by Dask (``retries``); if it still fails its
    runs stay pending and the sweep reports them. An ``OSError`` of a chunk (a full disk)
    stops the sweep at once, without a retry. Leaving the ``with`` block on an exception
    (Ctrl-C, SIGTERM, that ``OSError``) kills the worker processes of a ``LocalCluster``
    before its futures are cancelled and it is closed, so that nothing is printed by the
    workers and closing does not wait for runs that cannot be stopped.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        workers: int | None = None,
        timeout: float = 10.0,
        retries: int = 1,
    ):
        self.scheduler, self.workers, self.timeout, self.retries = (
            scheduler,
            workers,
            timeout,
            retries,
        )
        self._client = self._cluster = None
        self._futures: list = []

    def __enter__(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - dask[distributed] is a dependency
            raise ExecutorError(
                "the dask executor needs `pip install 'dask[distributed]'`"
            ) from None
        try:
            if self.scheduler:
                self._client = Client(self.scheduler, timeout=f"{self.timeout}s")
            else:
                self._cluster = LocalCluster(
                    n_workers=self.workers or max(1, (os.cpu_count() or 2) // 2),
                    threads_per_worker=1,
                    processes=True,
                    # None turns the dashboard off (the stub says str)
                    dashboard_address=None,  # pyright: ignore[reportArgumentType]
                )
                self._client = Client(self._cluster)
        except (OSError, TimeoutError) as e:
            self.__exit__(None, None, None)
            where = self.scheduler or "a local cluster"
            raise ExecutorError(f"cannot connect to the Dask scheduler at {where}: {e}") from None
        return self

    def __exit__(self, *exc):
        import logging

        quiet = exc[0] is not None
        level = logging.getLogger("distributed").level
        if quiet:  # the nannies' warnings about the workers killed below
            logging.getLogger("distributed").setLevel(logging.ERROR)
            self._kill_local_workers()
        try:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.cancel(self._futures)
                with contextlib.suppress(Exception):
                    self._client.close()
            if self._cluster is not None:
                with contextlib.suppress(Exception):
                    self._cluster.close()
        finally:
            logging.getLogger("distributed").setLevel(level)
        return False

    def _kill_local_workers(self) -> None:
        """SIGKILL the worker processes of our ``LocalCluster`` (none for a remote scheduler)."""
        nannies = getattr(self._cluster, "workers", None) or {}
        for nanny in list(nannies.values()):
            pid = getattr(getattr(nanny, "process", None), "pid", None)
            if isinstance(pid, int):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def map(self, fn, items):
        from distributed import as_completed

        assert self._client is not None, "use the executor in a `with` block"
        task = _dask_chunk if fn is run_chunk else fn
        futs = [
            self._client.submit(task, *args, pure=False, retries=self.retries) for args in items
        ]
        self._futures = futs
        index = {f.key: i for i, f in enumerate(futs)}
        for f in as_completed(futs):
            try:
                res = f.result()
            except OSError:
                raise
            except Exception as e:  # noqa: BLE001 - e.g. KilledWorker: runs stay pending
                yield index[f.key], e
                continue
            if isinstance(res, _OSErrorResult):
                raise res.error
            yield index[f.key], res


def make_executor(
    name: str = "inprocess", *, workers: int | None = None, scheduler: str | None = None
):
    """An executor by name: ``"inprocess"``, ``"processes"`` or ``"dask"``."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"`workers` must be a positive integer, got {workers!r}")
    if scheduler is not None and name != "dask":
        raise ValueError("`scheduler` is only used by the dask executor (--executor dask)")
    if name == "inprocess":
        return InProcessExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    return DaskExecutor(scheduler, workers)


def _progress(total: int, name: str, enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def run_sweep(
    sweep: Sweep,
    out: str | os.PathLike,
    *,
    executor: str = "inprocess",
    workers: int | None = None,
    scheduler: str | None = None,
    verify: bool = True,
    progress: bool = True,
    config_text: str | None = None,
    max_chunks: int | None = None,
    add: bool = False,
    quick: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run every unfinished run of ``sweep`` into the results folder ``out``.

    The folder must be new, empty, or hold this same sweep (it is then resumed); a folder of
    another config is refused unless ``add`` (see :mod:`rankbias.experiments.folder`). The
    folder is locked while the sweep runs (``.lock``; a second writer is refused).
    Finished runs (a file that passes its checks) are skipped; corrupt files are removed and
    re-run (``log`` says how many); a file that cannot be read raises :class:`StoreError`
    and is kept; failed runs are retried. ``config_text`` is written as ``config.toml``
    (default: the config as run, :func:`~rankbias.experiments.config.dump_toml`);
    ``max_chunks`` stops after that many chunks (tests). ``log`` receives one-line messages
    (the CLI prints them), e.g. ``"12 already done, 4 to run"``.
    Returns the store's status counts plus ``wall_time``.
    """
    log = log or (lambda msg: None)
    store = Store(check_out(out, locked=False))
    man = manifest_for(sweep, versions())
    man["quick"] = bool(quick)
    with store.lock(log):
        check_out(out)  # under the lock: another writer may be creating the folder
        store.create()
        store.clean_temp_files(log)
        man = claim(store, man, add=add)
        store.write_manifest(man)
        atomic_write_text(
            Path(out) / "config.toml",
            config_text if config_text is not None else dump_toml(sweep.raw),
        )
        scan = store.scan()
        keys = set(man["runs"])
        done = set(scan.done) & keys
        if verify:
            bad = {k: store.check(k) for k in done}
            unreadable = sorted(k for k, c in bad.items() if c == "unreadable")
            if unreadable:
                raise StoreError(
                    f"{len(unreadable)} run file(s) cannot be read (e.g. "
                    f"{store.path(unreadable[0])}); they are kept: fix their "
                    f"permissions and run again"
                )
            corrupt = [k for k, c in bad.items() if c != "ok"]
            for k in corrupt:
                store.remove(k)
                done.discard(k)
            if corrupt:
                log(
                    f"removed {len(corrupt)} corrupt run file(s) (failed checksum or key "
                    f"check); they are re-run"
                )
        total = len(keys)
        log(f"{sweep.name}: {len(done)} already done, {total - len(done)} to run")
        chunks = [c for c in plan_chunks(sweep) if not set(c.keys) <= done]
        if max_chunks is not None:
            chunks = chunks[:max_chunks]
        t0 = time.perf_counter()
        items = [(str(out), c, frozenset(k for k in c.keys if k in done)) for c in chunks]
        lost = 0
        with _progress(total, sweep.name, progress) as bar:
            task = bar.add_task(sweep.name, total=total, completed=len(done))
            with make_executor(executor, workers=workers, scheduler=scheduler) as ex:
                for i, res in ex.map(run_chunk, items):
                    chunk: Chunk = chunks[i]
                    if isinstance(res, Exception):
                        lost += len(chunk)
                        continue
                    bar.advance(task, sum(1 for k in chunk.keys if k not in items[i][2]))
        _discover_metrics(store, man)
    st = store.status()
    st["wall_time"] = time.perf_counter() - t0
    st["lost_chunks_runs"] = lost
    return st


def _discover_metrics(store, man: dict) -> None:
    """Add the names of custom scalar metrics (known only from a run file) to the manifest."""
    if not man["custom"]:
        return
    for key in man["runs"]:
        try:
            with np.load(store.path(key)) as z:
                names = [k[7:] for k in z.files if k.startswith("metric_")]
        except (OSError, ValueError):
            continue
        man["scalar_metrics"] = sorted(set(man["scalar_metrics"]) | set(names))
        store.write_manifest(man)
        return
