"""How a foreground run ends on Ctrl-C, and what it reports after each chunk.

The single-run engines (:func:`rankbias.gradient_flow`, :func:`rankbias.gradient_descent`,
:func:`rankbias.train`, :func:`rankbias.glrl`) drive their compiled program from the host in
*chunks* of a fixed number of steps and records (chosen from the run's settings only, never
from the clock, so that a chunked run equals a one-call run). A ``KeyboardInterrupt`` between
or within chunks ends the run: the engine returns what it reached up to the last finished
chunk, with ``info["status"] == "interrupted"`` (:attr:`rankbias.status.RunStatus.INTERRUPTED`)
and a ``RuntimeWarning`` that says so.

Inside :func:`raise_interrupts` (what the sweep runner uses: a sweep stops on Ctrl-C and
resumes later, it never stores a partial run) the interrupt propagates instead. The batch
functions (``*_batch``) always let it propagate.

After every finished chunk the engine calls each hook registered with
:func:`add_chunk_hook` with a :class:`ChunkReport` (the progress display is one; a test may
register its own to learn that a run is under way).
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "ChunkReport",
    "add_chunk_hook",
    "remove_chunk_hook",
    "raise_interrupts",
    "interrupts_return",
    "report_chunk",
    "warn_interrupted",
]

_RAISE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "rankbias_raise_interrupts", default=False
)


@dataclass(frozen=True)
class ChunkReport:
    """What a run reached at the end of a chunk.

    ``method``: ``"gradient_flow"``, ``"gradient_descent"``, ``"train"`` or ``"glrl"``;
    ``done`` / ``total``: time reached and ``t_max`` (flow), steps done and ``steps``
    (descent, train) or phases done and ``max_rank`` (GLRL); ``loss`` and ``grad_norm`` at
    that point (``nan`` where not measured); ``steps``: solver or descent steps so far."""

    method: str
    done: float
    total: float
    loss: float
    grad_norm: float
    steps: int


_HOOKS: list[Callable[[ChunkReport], None]] = []


def add_chunk_hook(hook: Callable[[ChunkReport], None]) -> None:
    """Call ``hook(report)`` after every finished chunk of every foreground run."""
    if not callable(hook):
        raise TypeError(f"`hook` must be callable, got {type(hook).__name__}")
    _HOOKS.append(hook)


def remove_chunk_hook(hook: Callable[[ChunkReport], None]) -> None:
    """Undo :func:`add_chunk_hook` (no error when ``hook`` is not registered)."""
    with contextlib.suppress(ValueError):
        _HOOKS.remove(hook)


def report_chunk(report: ChunkReport, extra: Callable[[ChunkReport], None] | None = None) -> None:
    """Pass ``report`` to every registered hook, then to ``extra`` (a run's own display)."""
    for hook in list(_HOOKS):
        hook(report)
    if extra is not None:
        extra(report)


@contextlib.contextmanager
def raise_interrupts() -> Iterator[None]:
    """Within this block a ``KeyboardInterrupt`` propagates out of every engine (no partial
    result): what sweep workers use."""
    token = _RAISE.set(True)
    try:
        yield
    finally:
        _RAISE.reset(token)


def interrupts_return() -> bool:
    """Whether an engine returns its partial result on ``KeyboardInterrupt`` (outside
    :func:`raise_interrupts`)."""
    return not _RAISE.get()


def warn_interrupted(what: str, reached: str, stacklevel: int) -> None:
    """The ``RuntimeWarning`` of an interrupted run: ``what`` was interrupted, ``reached``
    says how far it got."""
    warnings.warn(
        f"{what} interrupted (Ctrl-C) at {reached}: returning the run up to there "
        f"(info['status'] == 'interrupted')",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )
