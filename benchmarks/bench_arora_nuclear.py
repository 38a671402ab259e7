"""The minimum nuclear norm on the Arora et al. study's slow instances (issue 30).

The gallery run of ``arora2019-completion`` spent minutes on three nuclear-norm instances
(100 x 100 rank 5: 2,500 entries seeds 2 and 3, 3,000 entries seed 4). For each instance
(the study's ``_instance``) and each mode, print the wall time, the status, the certificate
(duality gap, relative gap, constraint residual) and the relative error:

* ``auto``: ``min_nuclear_norm(solver="auto", time_budget=BUDGET)`` (a solve that does not
  finish stops with its certificate);
* ``scs<eps>`` (e.g. ``scs1e-6``): SCS through cvxpy at that ``eps`` (``min_nuclear_norm``
  fixes 1e-9), certified by the same :func:`rankbias._nuclear.certificate`;
* ``alm<tol>`` (e.g. ``alm1e-6``): the factor ALM at that tolerance.

Usage: python benchmarks/bench_arora_nuclear.py [--budget 600] [--modes auto scs1e-6]
       [--instances 2500:2 2500:3 3000:4]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from rankbias._nuclear import alm_min_nuclear, certificate, linear_map
from rankbias.baselines.nuclear import min_nuclear_norm
from rankbias.reproduce.arora2019 import _instance, relative_error


def solve(prob, mode: str, budget: float):
    """``(W, y or None, status, note)`` of one mode (``y``: the multiplier to certify)."""
    if mode == "auto":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = min_nuclear_norm(prob, solver="auto", time_budget=budget)
        return np.asarray(sol), None, f"{sol.status} ({sol.solver})", sol
    if mode.startswith("scs"):
        import cvxpy as cp

        lm = linear_map(prob)
        X = cp.Variable(prob.shape)
        cons: list = [X[lm.rows, lm.cols] == lm.b]
        p = cp.Problem(cp.Minimize(cp.normNuc(X)), cons)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p.solve(solver="SCS", eps=float(mode[3:]), max_iters=100_000, time_limit_secs=budget)
        y = np.asarray(cons[0].dual_value, dtype=np.float64).ravel()
        return np.asarray(X.value), y, f"{p.status}, {p.solver_stats.num_iters} iterations", None
    W, y, info = alm_min_nuclear(
        prob, False, tol=float(mode[3:]), deadline=time.perf_counter() + budget
    )
    return (
        W,
        y,
        f"converged {info['converged']}, {info['outer']} updates, rank {info['rank']}",
        None,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--modes", nargs="+", default=["auto"])
    ap.add_argument("--instances", nargs="+", default=["2500:2", "2500:3", "3000:4"])
    args = ap.parse_args()
    for inst in args.instances:
        k, seed = map(int, inst.split(":"))
        M, prob = _instance(100, 5, k, seed)
        lm = linear_map(prob)
        for mode in args.modes:
            t0 = time.perf_counter()
            W, y, note, sol = solve(prob, mode, args.budget)
            wall = time.perf_counter() - t0
            if sol is not None:
                gap, res, obj = sol.duality_gap, sol.constraint_residual, sol.objective
            else:
                assert y is not None  # the modes other than auto return it
                c = certificate(W, y, lm.apply, lm.adjoint, lm.b, False)
                gap, res, obj = max(c["gap_raw"], 0.0), c["residual"], c["primal"]
            print(
                f"k={k} seed={seed} {mode}: {wall:.1f} s, {note}, gap {gap:.3g} "
                f"(relative {gap / obj:.3g}), residual {res:.3g}, "
                f"error {relative_error(W, M):.4g}, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
