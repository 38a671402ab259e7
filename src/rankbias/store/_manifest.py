"""The manifest of a results folder (``experiment.json``): its file names and its validation.

A hand-edited manifest fails in one line naming the field, what it must be and what it holds
(:func:`validate_manifest`), when it is loaded, not deep inside ``status``, ``plot`` or ``report``.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from ._errors import StoreError

MANIFEST = "experiment.json"
LOCK = ".lock"
_SWEEP_FIELDS = ("runs", "axes", "time_grid", "time_dim", "metrics", "max_rank", "method")

_KEY = re.compile(r"[0-9a-f]{32}")  # run_key: 32 hex digits


def _shown(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _Text(str):
    """A received value already put in words (shown as is, not as JSON)."""


def _manifest_problem(man: dict) -> tuple[str, str, object] | None:
    """The first structural problem of a parsed manifest as (field, expected, received)."""
    kind = man.get("kind", "sweep")
    if kind not in ("sweep", "reproduction"):
        return "kind", '"sweep" or "reproduction"', kind
    for f in ("name", "description", "created"):
        if f in man and not isinstance(man[f], str):
            return f, "a string", man[f]
    for f in ("config", "versions"):
        if f in man and not isinstance(man[f], dict):
            return f, "a JSON object", man[f]
    if kind == "reproduction":
        return None
    missing = [f for f in _SWEEP_FIELDS if f not in man]
    if missing:
        return ", ".join(map(repr, missing)), "present (a sweep needs it)", _Text("missing")
    runs, axes, grid = man["runs"], man["axes"], man["time_grid"]
    if not isinstance(runs, list) or not all(
        isinstance(k, str) and _KEY.fullmatch(k) for k in runs
    ):
        return "runs", "a list of run keys (32 hex digits each)", runs
    if man["time_dim"] not in ("time", "step"):
        return "time_dim", '"time" or "step"', man["time_dim"]
    if (
        not isinstance(grid, list)
        or not grid
        or not all(_is_number(t) and np.isfinite(t) for t in grid)
        or any(b <= a for a, b in zip(grid, grid[1:], strict=False))
    ):
        return "time_grid", "a non-empty list of finite numbers in increasing order", grid
    for f in ("metrics", "scalar_metrics", "custom"):
        v = man.get(f, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return f, "a list of strings", v
    if not isinstance(man["max_rank"], int) or isinstance(man["max_rank"], bool):
        return "max_rank", "a positive integer", man["max_rank"]
    if man["max_rank"] < 1:
        return "max_rank", "a positive integer", man["max_rank"]
    if not isinstance(man["method"], str):
        return "method", "a string", man["method"]
    if not isinstance(axes, list):
        return "axes", "a list of axes", axes
    size = 1
    for i, a in enumerate(axes):
        ok = (
            isinstance(a, dict)
            and isinstance(a.get("name"), str)
            and isinstance(a.get("keys"), list)
            and len(a["keys"]) >= 1
            and all(isinstance(k, str) for k in a["keys"])
            and isinstance(a.get("values"), list)
            and len(a["values"]) == len(a["keys"])
            and all(isinstance(v, list) for v in a["values"])
            and len({len(v) for v in a["values"]}) == 1
            and len(a["values"][0]) >= 1
        )
        if not ok:
            return (
                f"axes[{i}]",
                'an object {"name": str, "keys": [str, ...], "values": [[...], ...]} with one '
                "non-empty list of values per key, all of the same length",
                a,
            )
        size *= len(a["values"][0])
    if len(runs) != size:
        return "runs", f"{size} run keys (one per point of the axes' grid)", _Text(f"{len(runs)}")
    hist = man.get("history", [])
    if not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist):
        return "history", "a list of JSON objects", hist
    return None


def validate_manifest(man: dict, path: str | os.PathLike) -> None:
    """Raise :class:`StoreError` naming ``path``, the field, what it must be and what it holds
    if the parsed manifest ``man`` is not structurally sound (types of ``runs``, ``axes`` with
    names, keys and values of consistent lengths matching ``runs``, ``time_grid`` finite and
    increasing, ``description`` a string, ...): a hand-edited ``experiment.json`` then fails
    in one line when it is loaded, not deep inside ``status``, ``plot`` or ``report``."""
    problem = _manifest_problem(man)
    if problem is None:
        return
    field, expected, got = problem
    if got == "missing" and isinstance(got, _Text):
        what = f"missing {field}"
    else:
        what = f"{field} must be {expected}, got {got if isinstance(got, _Text) else _shown(got)}"
    raise StoreError(
        f"{path} is not a valid rankbias manifest: {what}; edit it back or re-create the folder"
    )
