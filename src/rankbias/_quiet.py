"""The one place where rankbias silences warnings on purpose.

Engines report how a run ended in ``info["status"]`` and, for a user calling them directly, as a
warning. Internal callers that read the status themselves (sweeps, comparisons, reproductions)
enter :func:`quietly` so that the user sees each status once, where it is reported; callers that
report whether a run warned record the warnings with :func:`recorded`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quietly(*categories: type[Warning]) -> Iterator[None]:
    """Ignore warnings of ``categories`` (all warnings if none given) inside the block."""
    with warnings.catch_warnings():
        for category in categories or (Warning,):
            warnings.simplefilter("ignore", category)
        yield


@contextlib.contextmanager
def recorded(*categories: type[Warning]) -> Iterator[list[warnings.WarningMessage]]:
    """Record the warnings raised inside the block into the yielded list instead of showing them;
    every occurrence of ``categories`` (all warnings if none given) is recorded, not only the
    first per place. For callers that report whether a run warned (e.g. a drift diagnostic)."""
    with warnings.catch_warnings(record=True) as caught:
        for category in categories or (Warning,):
            warnings.simplefilter("always", category)
        yield caught
