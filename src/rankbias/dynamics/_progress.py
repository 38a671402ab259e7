"""Progress you can see: one live line per foreground run, updated after every chunk.

``gradient_flow``, ``gradient_descent``, ``train`` and ``glrl`` take ``progress=``:

* ``None`` (default): shown when standard error is a terminal and the code is not running in
  a notebook, never inside a sweep worker (:func:`~._interrupt.raise_interrupts`);
* ``True``: shown (in a notebook too); ``False``: never.

The line appears only once a run has lasted :data:`MIN_SECONDS` (2 s): short runs print
nothing. It says how far the run got (time reached of ``t_max`` for a flow, steps of
``steps`` for descent, phases for GLRL), the loss and gradient norm at the last chunk, steps
per second and the elapsed time; it is drawn with ``rich`` and removed when the run ends.
Progress is display only: it changes neither the run (its chunks never depend on it) nor its
keys.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from ._interrupt import ChunkReport, interrupts_return

__all__ = ["MIN_SECONDS", "Progress", "check_progress", "progress_display", "progress_line"]

#: Runs shorter than this (seconds) show no progress line.
MIN_SECONDS = 2.0


def check_progress(progress) -> bool | None:
    """``progress`` as given (``None``, ``True`` or ``False``); ``TypeError`` otherwise."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"`progress` must be None (auto), True or False, got {progress!r}")
    return progress


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = getattr(shell, "get_ipython", lambda: None)()
    return type(ip).__name__ == "ZMQInteractiveShell"


def _auto(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not _in_notebook()


def progress_line(report: ChunkReport, elapsed: float, rate: float) -> str:
    """The text of the line: ``what reached | loss | |grad| | rate | elapsed``."""
    if report.method == "gradient_flow":
        where = f"t = {report.done:.4g} / {report.total:.4g}"
        unit = "steps/s"
    elif report.method == "glrl":
        where = f"phase {int(report.done)} / {int(report.total)}"
        unit = "phases/s"
    else:
        where = f"step {int(report.done):,} / {int(report.total):,}"
        unit = "steps/s"
    parts = [f"{report.method}: {where}"]
    if math.isfinite(report.loss):
        parts.append(f"loss {report.loss:.4g}")
    if math.isfinite(report.grad_norm):
        parts.append(f"|grad| {report.grad_norm:.3g}")
    parts.append(f"{rate:,.0f} {unit}")
    parts.append(f"{elapsed:.1f} s")
    return " | ".join(parts)


class Progress:
    """A chunk display (``display(report)``) that shows :func:`progress_line` once the run
    has lasted ``min_seconds`` on ``clock`` (default :func:`time.monotonic`), in a ``rich``
    live line on ``stream``; :meth:`close` removes it. ``text`` is the last line."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_seconds: float = MIN_SECONDS,
    ):
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.min_seconds = min_seconds
        self.start = clock()
        self.text: str | None = None
        self.live: Any = None

    def __call__(self, report: ChunkReport) -> None:
        elapsed = self.clock() - self.start
        if elapsed < self.min_seconds:
            return
        self.text = progress_line(report, elapsed, report.steps / max(elapsed, 1e-9))
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        if self.live is None:
            console = Console(file=self.stream)
            self.live = Live(Text(self.text), console=console, auto_refresh=False, transient=True)
            self.live.start()
        self.live.update(Text(self.text), refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


@contextlib.contextmanager
def progress_display(progress: bool | None, stream: IO[str] | None = None) -> Iterator[Any]:
    """The display of one run (a :class:`Progress`, or ``None``: nothing shown) for the
    ``progress`` argument (checked), closed when the block ends."""
    progress = check_progress(progress)
    out: IO[str] = sys.stderr if stream is None else stream
    on = progress if progress is not None else (_auto(out) and interrupts_return())
    display = Progress(out) if on else None
    try:
        yield display
    finally:
        if display is not None:
            display.close()
