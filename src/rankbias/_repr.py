"""Short text and HTML summaries of result objects (``__repr__`` / ``_repr_html_``).

A result prints as a title line and a few ``name  value`` rows (status, sizes, final numbers),
never as its arrays: the arrays are attributes. One renderer for every result class, so they
all look alike in a terminal and in a notebook.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

Rows = Sequence[tuple[str, str]]


def num(x, digits: int = 4) -> str:
    """A scalar in ``%.{digits}g`` (``None`` -> ``-``, bools as words)."""
    if x is None:
        return "-"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "nan"
    if float(v).is_integer() and abs(v) < 1e6 and isinstance(x, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}g}"


def nums(xs, digits: int = 4, limit: int = 6) -> str:
    """The first ``limit`` values of a 1-D sequence, ``, ``-separated (``...`` if longer)."""
    xs = list(np.ravel(np.asarray(xs, dtype=object))) if not isinstance(xs, list) else xs
    head = ", ".join(num(x, digits) for x in xs[:limit])
    return head + (", ..." if len(xs) > limit else "")


def shape(a) -> str:
    """``(T, k) float64`` for an array, ``-`` for ``None``."""
    if a is None:
        return "-"
    a = np.asarray(a)
    return f"{tuple(a.shape)} {a.dtype}"


def render(title: str, rows: Rows) -> str:
    """``title`` then one aligned ``name  value`` line per row."""
    rows = [(k, v) for k, v in rows if v is not None]
    w = max((len(k) for k, _ in rows), default=0)
    return "\n".join([title] + [f"  {k.ljust(w)}  {v}" for k, v in rows])


def render_html(title: str, rows: Rows) -> str:
    """The same summary as a small HTML table (Jupyter's ``_repr_html_``)."""
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
        for k, v in rows
        if v is not None
    )
    return (
        f"<div><strong>{html.escape(title)}</strong>"
        f"<table style='font-size:90%'>{body}</table></div>"
    )
