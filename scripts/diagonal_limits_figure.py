"""Redraw the figure of the diagonal-limits guide (docs/guides/figures/diagonal-saddle-to-saddle.png),
a few seconds.

    PYTHONPATH=src python3 scripts/diagonal_limits_figure.py [OUT_DIR]

Pesme & Flammarion's saddle-to-saddle path of a small instance (n = 3, d = 5: four jumps, one
coordinate leaves the support) with the depth-2 flow from alpha = 1e-12 overlaid.
The flow is integrated here with scipy (Radau on the mirror coordinates
``beta = alpha^2 sinh(2 S)``, ``S' = X^T (y - X beta)``), independent of rankbias's engines.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from _figures import run, save_docs_figure
from scipy.integrate import solve_ivp

import rankbias as rb


def depth2_flow(X, y, alpha, t_eval):
    """beta(t) of beta = u v, u(0) = sqrt(2) alpha, v(0) = 0, loss 1/2 ||X beta - y||^2."""
    la = math.log(alpha)
    XtX, Xty = X.T @ X, X.T @ y

    def beta(S):
        return 0.5 * (
            np.exp(np.minimum(2 * S + 2 * la, 700)) - np.exp(np.minimum(2 * la - 2 * S, 700))
        )

    def jac(_t, S):
        w = np.exp(np.minimum(2 * S + 2 * la, 700)) + np.exp(np.minimum(2 * la - 2 * S, 700))
        return -XtX * w[None, :]

    with np.errstate(over="ignore"):
        sol = solve_ivp(lambda _t, S: Xty - XtX @ beta(S), (0, t_eval[-1]), np.zeros(X.shape[1]),
                        method="Radau", jac=jac, t_eval=t_eval, rtol=1e-10, atol=1e-10)  # fmt: skip
    return sol.t, np.array([beta(S) for S in sol.y.T])


def main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    X = np.array(
        [[-1.0, 0.1, 0.8, 0.9, -0.5], [1.3, 1.4, 0.6, 0.7, 1.4], [-0.1, 0.9, 1.1, 0.6, 0.2]]
    )
    y = np.array([-2.3, -0.1, 1.7])
    res = rb.saddle_to_saddle(X, y)
    alpha = 1e-12
    h = rb.diagonal_time_scale(alpha, 2)
    t, b = depth2_flow(X, y, alpha, np.linspace(0, 1.2 * res.times[-1] * h, 3000))
    res.plot(flow=(t, b), alpha=alpha)
    return [save_docs_figure(out / "diagonal-saddle-to-saddle.png")]


if __name__ == "__main__":
    run(main)
