"""Batched against one-by-one gradient flows: the Arora et al. 2019 setting (issue 30).

Problem: ``rankbias.reproduce.arora2019``'s instances, 100 x 100 rank-5 truth, 2,000 observed
entries, seeds 0-4 (each seed its own truth, entries and initialization, as in the study),
``DeepFactorization`` depth 3 and 4, factor entries of std 1e-3, solver ``"rkc"``,
``t_max = 5e4``, ``rtol = 1e-6``, the study's stop (``gtol = 1``, ``certificate_tol = 1e-5``),
``n_save = 30`` with matrices saved.

For each depth, in one process:

* one by one: ``rb.gradient_flow`` per seed (the program compiled first by a short run of the
  same shapes, ``t_max`` being traced): wall, steps, stop time, relative error per seed;
* batched: ``rb.gradient_flow_batch`` over the 5 seeds (a list of problems, one vmapped
  program; compiled first by a short batched run): wall of the batch, steps, stop time and
  error per member, and the largest error difference from the one-by-one runs.

A vmapped adaptive solve takes as many loop iterations as its slowest member (every member's
state goes through every iteration; a finished member is masked, not skipped), so the
batched wall is about ``max(steps) * (batched step cost)`` against ``sum(steps) * (single step
cost)``: the ratio printed last.

Usage: python benchmarks/bench_flow_batch.py [--depths 3 4] [--seeds 5] [--k 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np

# The flow settings of the study, as bench_flow_eval and bench_flow_speed time them (this
# folder is on sys.path when a script of it runs).
from bench_flow_eval import FLOW, RANK, D

import rankbias as rb
from rankbias.reproduce.arora2019 import _flow_init, _instance, relative_error


def _quiet(fun, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args, **kw)


def measure(L: int, seeds: list[int], k: int) -> dict:
    """Wall, steps and errors of the flows at depth ``L``, one by one and batched."""
    model = rb.DeepFactorization((D, D), depth=L)
    inst = [_instance(D, RANK, k, s) for s in seeds]
    p0s = [_flow_init(model, D, s, 1e-3, None) for s in seeds]
    t0 = time.perf_counter()
    _quiet(rb.gradient_flow, inst[0][1], model, p0s[0], **{**FLOW, "t_max": 1e-3})
    compile_one = time.perf_counter() - t0
    one = []
    for (M, prob), p0 in zip(inst, p0s, strict=True):
        t0 = time.perf_counter()
        tr = _quiet(rb.gradient_flow, prob, model, p0, **FLOW)
        wall = time.perf_counter() - t0
        one.append(
            dict(
                wall=wall,
                steps=int(tr.info["num_steps"]),
                t_end=float(tr.times[-1]),
                error=relative_error(np.asarray(tr.final_matrix), M),
            )
        )
        print(
            f"  depth {L} seed {seeds[len(one) - 1]} one-by-one: {wall:7.1f} s, "
            f"{one[-1]['steps']:6d} steps, t_end {one[-1]['t_end']:.3g}, "
            f"error {one[-1]['error']:.4g}",
            flush=True,
        )
    probs = [p for _, p in inst]
    t0 = time.perf_counter()
    _quiet(rb.gradient_flow_batch, probs, model, p0s, **{**FLOW, "t_max": 1e-3})
    compile_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    trs = _quiet(rb.gradient_flow_batch, probs, model, p0s, **FLOW)
    wall_batch = time.perf_counter() - t0
    batch = [
        dict(
            steps=int(tr.info["num_steps"]),
            t_end=float(tr.times[-1]),
            error=relative_error(np.asarray(tr.final_matrix), M),
        )
        for tr, (M, _) in zip(trs, inst, strict=True)
    ]
    print(
        f"  depth {L} batched: {wall_batch:.1f} s (compile {compile_batch:.1f} s) against "
        f"{sum(r['wall'] for r in one):.1f} s one by one (compile {compile_one:.1f} s)",
        flush=True,
    )
    for s, b in zip(seeds, batch, strict=True):
        print(
            f"  depth {L} seed {s} batched member: {b['steps']:6d} steps, "
            f"t_end {b['t_end']:.3g}, error {b['error']:.4g}",
            flush=True,
        )
    return dict(
        one=one,
        batch=batch,
        wall_one=sum(r["wall"] for r in one),
        wall_batch=wall_batch,
        compile_one=compile_one,
        compile_batch=compile_batch,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[3, 4])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--k", type=int, default=2000, help="observed entries")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    print(
        f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"{D}x{D} rank {RANK}, {args.k} entries, seeds {seeds}, float64, rkc, rtol 1e-6",
        flush=True,
    )
    rows = []
    for L in args.depths:
        r = measure(L, seeds, args.k)
        diff = max(abs(a["error"] - b["error"]) for a, b in zip(r["one"], r["batch"], strict=True))
        steps_one = sum(x["steps"] for x in r["one"])
        steps_max = max(x["steps"] for x in r["batch"])
        rows.append(
            f"| {L} | {r['wall_one']:.1f} | {r['wall_batch']:.1f} | "
            f"{r['wall_batch'] / r['wall_one']:.2f} | {steps_one} | {steps_max} | "
            f"{1e3 * r['wall_one'] / steps_one:.2f} | {1e3 * r['wall_batch'] / steps_max:.2f} | "
            f"{r['compile_one']:.1f} / {r['compile_batch']:.1f} | {diff:.2g} |"
        )
    print(
        "\n| depth | one by one (s) | batched (s) | batched / one | steps (sum, one by one) | "
        "steps (batch: slowest) | ms/step one | ms/step batch | compile one / batch (s) | "
        "max |error diff| |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
