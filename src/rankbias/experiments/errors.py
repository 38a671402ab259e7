"""The config error and the helpers every config module shares to report one.

Every problem with a config is a :class:`ConfigError` (a ``ValueError``) naming the key path,
e.g. ``dynamics.lr must be > 0, got -1``; independent checks collect theirs in an
:class:`_Errors` so that one run reports every typo of a file.
"""

from __future__ import annotations

import contextlib

__all__ = ["ConfigError", "short", "check_depth", "MAX_DEPTH"]


class ConfigError(ValueError):
    """A config is malformed; the message names the offending key path.

    ``errors`` lists every problem found (a config is checked whole, so that two typos are
    reported by one run); the message is the one problem, or all of them, one a line.
    """

    def __init__(self, message: str = "", errors: list[str] | None = None):
        self.errors = list(errors) if errors else [message]
        if errors and len(errors) > 1:
            message = f"{len(errors)} problems in the config:\n" + "\n".join(
                f"  - {e}" for e in errors
            )
        elif errors:
            message = errors[0]
        super().__init__(message)


class _Errors:
    """Collects the :class:`ConfigError` of independent checks, raised together at the end."""

    def __init__(self) -> None:
        self.items: list[str] = []

    @contextlib.contextmanager
    def check(self, prefix: str = ""):
        try:
            yield
        except ConfigError as e:
            self.items.extend(f"{prefix}{x}" for x in e.errors if f"{prefix}{x}" not in self.items)

    def raise_any(self, limit: int = 20) -> None:
        if not self.items:
            return
        items = self.items
        if len(items) > limit:  # e.g. one semantic error repeated by every run of a big grid
            items = items[:limit] + [f"... and {len(items) - limit} more"]
        raise ConfigError(errors=items)


def short(v, limit: int = 80, *, quote: bool = True) -> str:
    """``repr``-like text of ``v`` (a string unquoted with ``quote=False``), cut to ``limit``
    characters: messages never echo a 100 KB value."""
    text = repr(v) if isinstance(v, str) and quote else str(v)
    return text if len(text) <= limit else f"{text[: limit - 25]}... ({len(text)} characters)"


#: Nesting a config may have (sections, sub-tables, lists of values); deeper is refused before
#: any recursive code (validation, ``--set``, diffs) walks it.
MAX_DEPTH = 8


def check_depth(raw, source: str) -> None:
    """Refuse a value nested deeper than :data:`MAX_DEPTH` (iteratively: no recursion)."""
    stack = [(raw, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"invalid config {source}: tables or arrays nested more than {MAX_DEPTH} "
                f"levels deep (a config needs at most 4)"
            )
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
