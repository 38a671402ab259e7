"""Redraw the figures of the results guide (docs/guides/figures/*.png), about a minute.

    PYTHONPATH=src python3 scripts/docs_figures.py [OUT_DIR]

A depth-3 gradient flow's singular values (framed log time, the final plateau held after the
steady-state stop) and a GLRL staircase, both at their default size, as ``Trajectory.plot``
and ``GLRLResult.plot`` draw them.
"""

from __future__ import annotations

from pathlib import Path

from _figures import run, save_docs_figure

import rankbias as rb


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
    paths.append(save_docs_figure(out / "flow-depth3-singular-values.png"))
    Y = rb.matrix_from_spectrum([3.0, 2.0, -1.0], (3, 3), seed=1, symmetric=True)
    rb.glrl(rb.MatrixEstimation(Y)).plot()
    paths.append(save_docs_figure(out / "glrl-staircase.png"))
    return paths


if __name__ == "__main__":
    run(main)
