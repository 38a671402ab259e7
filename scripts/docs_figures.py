"""Redraw the figures of the results guide (docs/guides/figures/*.png), about a minute.

    PYTHONPATH=src python3 scripts/docs_figures.py [OUT_DIR]

A depth-3 gradient flow's singular values (framed log time, the final plateau held after the
steady-state stop) and a GLRL staircase, both at their default size, as ``Trajectory.plot``
and ``GLRLResult.plot`` draw them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import rankbias as rb  # noqa: E402

DPI = 110  # as the sweep figures (rankbias.plots)


def main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    # depth 3 on a rank-3 estimation: the flow stops at its steady state right as sigma_3
    # arrives, so the plot shows the held plateau
    Y = rb.matrix_from_spectrum([3.0, 2.0, 1.0], (8, 8), seed=0, symmetric=True)
    model = rb.DeepFactorization((8, 8), 3)
    traj = rb.gradient_flow(
        rb.MatrixEstimation(Y), model, model.init("gaussian", scale=1e-2, seed=0), t_max=1e6
    )
    traj.plot("singular_values")  # a new figure: the current one
    paths.append(out / "flow-depth3-singular-values.png")
    plt.gcf().savefig(paths[-1], dpi=DPI)
    plt.close("all")
    Y = rb.matrix_from_spectrum([3.0, 2.0, -1.0], (3, 3), seed=1, symmetric=True)
    rb.glrl(rb.MatrixEstimation(Y)).plot()
    paths.append(out / "glrl-staircase.png")
    plt.gcf().savefig(paths[-1], dpi=DPI)
    plt.close("all")
    return paths


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs/guides/figures"):
        print(p, f"{p.stat().st_size // 1024} KB")
