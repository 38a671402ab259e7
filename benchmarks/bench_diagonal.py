"""Exact gradient flow of diagonal linear networks from tiny scales (issue 27).

    python3 benchmarks/bench_diagonal.py            # d = 1000, n = 200, k = 5 (the issue's case)
    python3 benchmarks/bench_diagonal.py --quick    # d = 200, n = 50

A sparse-recovery instance (``rb.problems.sparse_recovery``: ``X`` with ``N(0, 1/n)`` entries,
a ``k``-sparse ``+-1`` truth), the depth-2 two-branch network ``beta = u^2 - v^2`` from
``u = v = alpha`` (every weight at ``alpha``), run to its certified steady state. Each row:
the first call (compilation included) and the median of ``--repeats`` further calls (the
solve compiled once serves every ``alpha``: the scale is data, not a compile key), the
number of accepted steps, the flow's end time, the loss, the distance of the end point to the
truth and its support size (``|beta_i| > 1e-6 max|beta|``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--alphas", type=float, nargs="+", default=[1e-2, 1e-10, 1e-30, 1e-100])
    args = ap.parse_args()

    import numpy as np

    import rankbias as rb

    n, d, k = (50, 200, 3) if args.quick else (200, 1000, 5)
    prob = rb.problems.sparse_recovery(n, d, k, seed=0)
    truth = np.asarray(prob.target)[:, 0]
    model = rb.DiagonalNetwork(d, 2, form="two_branch")
    print(f"sparse recovery n = {n}, d = {d}, k = {k}; two-branch depth 2, u = v = alpha")
    print(
        "| alpha | first call (s) | median (s) | accepted steps | t_end | status | loss | "
        "max abs(beta - beta*) | support |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for alpha in args.alphas:
            p0 = model.init(scale=alpha)
            t0 = time.perf_counter()
            flow = rb.gradient_flow(prob, model, p0, t_max=1e7, n_save=50)
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                rb.gradient_flow(prob, model, p0, t_max=1e7, n_save=50)
                times.append(time.perf_counter() - t0)
            beta = flow.final_matrix[:, 0]
            supp = int(np.sum(np.abs(beta) > 1e-6 * np.abs(beta).max()))
            print(
                f"| {alpha:.0e} | {first:.2f} | {statistics.median(times):.2f} | "
                f"{flow.info['num_accepted']} | {flow.times[-1]:.4g} | {flow.status} | "
                f"{flow.loss[-1]:.1e} | {np.abs(beta - truth).max():.1e} | {supp} |"
            )


if __name__ == "__main__":
    main()
