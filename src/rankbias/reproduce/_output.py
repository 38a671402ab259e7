"""What every reproduction writes: figures (PNG and SVG) and JSON tables, through one saver each.

matplotlib is set to the non-interactive ``Agg`` backend here, before ``pyplot`` is imported:
reproductions run on clusters and in CI, where no display exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

from .._io import atomic_write_text  # noqa: E402

__all__ = ["plt", "save_figure", "dump_json"]


def save_figure(fig, out_dir: Path, name: str) -> list[str]:
    """Write ``fig`` as ``out_dir/name.png`` and ``.svg`` (120 dpi, tight box), close it, and
    return the two file names."""
    paths = []
    for ext in ("png", "svg"):
        p = Path(out_dir) / f"{name}.{ext}"
        fig.savefig(p, dpi=120, bbox_inches="tight")
        paths.append(p.name)
    plt.close(fig)
    return paths


def dump_json(out_dir: Path, name: str, obj) -> None:
    """Write ``obj`` as ``out_dir/name.json`` (indented; NumPy scalars as floats), atomically."""
    atomic_write_text(Path(out_dir) / f"{name}.json", json.dumps(obj, indent=1, default=float))
