"""The Arora et al. study's runs in one process against worker processes (issue 30).

A few runs of ``rankbias.reproduce.arora2019`` (100 x 100 rank 5, the study's flow settings:
factor entries of std 1e-3, ``t_max = 5e4``, ``rtol = 1e-6``, the residual stop), computed
and stored as ``completion_study`` does: one after another in this process (``workers=1``)
and by ``--workers 2`` processes (the sweeps' ``ProcessExecutor``). Each timing starts from
nothing compiled (a fresh store; the worker processes import and compile themselves), as a
study does. Printed: wall time, the runs' own wall times summed, and the CPU time of all the
processes (user + system): on a shared machine the CPU time says whether two processes do
more work than one (threads competing), the wall time what a user waits. The stored errors
of the two must agree exactly.

Usage: python benchmarks/bench_study_workers.py [--depth3 2000 2500 3000 5000] [--depth4 2500]
       [--seeds 0 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from rankbias.reproduce import arora2019 as ar
from rankbias.store import Store, run_key


def specs(depth3: list[int], depth4: list[int], seeds: list[int]) -> list[dict]:
    flow = dict(init_std=1e-3, t_max=5e4, rtol=1e-6, residual_tol=1e-5, n_save=30)
    common = dict(study="arora2019-completion", d=100, rank=5)
    return [
        dict(common, k=k, seed=s, method="flow", depth=L, **flow)
        for L, counts in ((3, depth3), (4, depth4))
        for s in seeds
        for k in counts
    ]


def run(out: str, todo: list[dict], workers: int) -> float:
    store = Store(out)
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if workers == 1:
        for spec in todo:
            ar._compute_and_store(out, spec)
    else:
        ar._run_in_processes(store, todo, workers, lambda spec, a: None)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--depth3", type=int, nargs="*", default=[2000, 2500, 3000, 5000])
    ap.add_argument("--depth4", type=int, nargs="*", default=[2500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    todo = specs(args.depth3, args.depth4, args.seeds)
    if args.child:  # one timing in a fresh process: nothing compiled yet
        wall = run(args.out, todo, args.child)
        cpu = sum(
            r.ru_utime + r.ru_stime
            for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        )
        print(cpu, wall)
        return
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {len(todo)} runs", flush=True)
    walls, errors = {}, {}
    for n in (1, args.workers):
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, __file__, "--child", str(n), "--out", out]
            cmd += ["--depth3", *map(str, args.depth3), "--depth4", *map(str, args.depth4)]
            cmd += ["--seeds", *map(str, args.seeds)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            cpu, walls[n] = map(float, res.stdout.split()[-2:])
            store = Store(out)
            errors[n] = [float(store.read_run(run_key(s))["error"]) for s in todo]
            runs = [store.read_run(run_key(s)) for s in todo]
            per_run = sum(float(a["wall"]) for a in runs)
            print(
                f"workers {n}: {walls[n]:.1f} s wall ({per_run:.1f} s inside the runs), "
                f"{cpu:.1f} s CPU (user + system, all processes); "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    same = np.array_equal(errors[1], errors[args.workers])
    print(
        f"\n{args.workers} workers / 1: {walls[args.workers] / walls[1]:.2f}; "
        f"stored errors identical: {same}"
    )


if __name__ == "__main__":
    main()
