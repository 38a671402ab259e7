"""The one place where rankbias silences warnings on purpose.

Engines report how a run ended in ``info["status"]`` and, for a user calling them directly, as a
warning. Internal callers that read the status themselves (sweeps, comparisons, reproductions)
enter :func:`quietly` so that the user sees each status once, where it is reported.
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
