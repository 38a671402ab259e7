"""Old spellings kept for one release: a renamed keyword or config key still works, means the
same, and warns once per process with a ``FutureWarning`` that names the new spelling.

Every alias of the "one word per concept" renames (issue 25) goes through :func:`renamed`, so
the warning, the once-per-process rule and the "both given" error are the same everywhere.
``FutureWarning`` rather than ``DeprecationWarning``: Python shows it by default, so a user who
calls the library from a script or a notebook sees it.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["renamed", "warn_renamed"]

# (where, old) pairs already warned about in this process.
_WARNED: set[tuple[str, str]] = set()


def warn_renamed(where: str, old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn once per process that ``old`` (in ``where``) is the deprecated spelling of ``new``.

    ``stacklevel`` counts from the caller of this function: the default 3 points at the caller
    of the public function that calls it."""
    if (where, old) in _WARNED:
        return
    _WARNED.add((where, old))
    warnings.warn(
        f"`{old}` of {where} is deprecated and will be removed in the next release; "
        f"use `{new}` (same meaning)",
        FutureWarning,
        stacklevel=stacklevel,
    )


def renamed(
    where: str,
    old: str,
    old_value: Any,
    new: str,
    new_value: Any,
    new_default: Any,
    *,
    stacklevel: int = 4,
) -> Any:
    """The value of a keyword renamed from ``old`` to ``new``.

    ``old_value is None``: the old spelling was not given, ``new_value`` is returned. Otherwise
    the old spelling warns once (:func:`warn_renamed`) and its value is returned, unless the new
    one was given too: a ``ValueError``. A new keyword left at ``new_default`` counts as not
    given (a keyword argument cannot tell an explicit default from an omitted one).

    Raises:
        ValueError: both spellings given (the new one not at its default).
    """
    if old_value is None:
        return new_value
    if new_value != new_default:
        raise ValueError(
            f"{where}: pass `{new}` only (`{old}` is its deprecated spelling), "
            f"got {new}={new_value!r} and {old}={old_value!r}"
        )
    warn_renamed(where, old, new, stacklevel=stacklevel)
    return old_value
