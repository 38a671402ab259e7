"""The one figure saver: a matplotlib figure to ``<name>.png`` and ``<name>.svg``, then closed."""

from __future__ import annotations

from pathlib import Path

from ._style import _plt

#: The formats every saved figure is written in (PNG for pages, SVG for print).
FORMATS = ("png", "svg")


def save_figure(fig, out_dir: str | Path, name: str, *, dpi: float = 110, **savefig) -> list[Path]:
    """Write ``fig`` to ``out_dir/<name>.png`` and ``out_dir/<name>.svg`` (creating
    ``out_dir``) and close it, also when writing fails; returns the two paths.

    ``dpi`` and the other keywords (e.g. ``bbox_inches="tight"``) go to ``fig.savefig``; the
    figures of :mod:`rankbias.plots` use the defaults."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for ext in FORMATS:
            p = out_dir / f"{name}.{ext}"
            fig.savefig(p, dpi=dpi, **savefig)
            paths.append(p)
    finally:
        plt.close(fig)
    return paths
