"""What the scripts that redraw the docs' figures share (``docs_figures.py``,
``diagonal_limits_figure.py``): the Agg backend, the resolution, and the command line

    PYTHONPATH=src python3 scripts/NAME.py [OUT_DIR]

(default ``docs/guides/figures``; each written file is printed with its size). Import this
module before ``matplotlib.pyplot``: it selects the backend.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110  # as the sweep figures (rankbias.plots)
ROOT = Path(__file__).resolve().parent.parent


def save_docs_figure(path: Path) -> Path:
    """Save the current figure to ``path`` at ``DPI``, close every figure, return ``path``."""
    plt.gcf().savefig(path, dpi=DPI)
    plt.close("all")
    return path


def run(main: Callable[[Path], list[Path]]) -> None:
    """``main(OUT_DIR)`` with the command line's folder (default ``docs/guides/figures``),
    then print each file it wrote with its size."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/guides/figures"
    for p in main(out):
        print(p, f"{p.stat().st_size // 1024} KB")
