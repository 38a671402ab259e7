"""Scale (issue 6, item 4): the largest completion problems GLRL and depth-2 gradient flow
solve within 60 s.

Problems: symmetric completion of a rank-r PSD truth (||M||_2 = 1), each pair (i, j), (j, i)
observed with probability p = min(1, 4 r log(d) / d), f = 1/2 sum_Omega (W - M)^2. For
growing d:

* GLRL: ``rb.glrl(prob, eps=1e-30, tol=1e-9)`` (factor-only path above d = 200: ELL gathers,
  Tsit5/RKC per phase, Newton-CG polish). "Reached" = rank r found and
  ||W - M||_F / ||M||_F <= 1e-6.
* depth-2 gradient flow: ``rb.gradient_flow`` on ``DeepFactorization((d, d), depth=2)``
  (full width, dense d x d factors: 3 d^3-matmuls per gradient), gaussian init of end-to-end
  scale 1e-8, default rtol, t_max = 5e3 (past the last escape), 20 records. "Reached" =
  relative error <= 1e-4 (at alpha = 1e-8 the flow's limit sits ~alpha^c away from the
  minimum-rank fit; the tail after t = 5e3 only polishes that remnant).

Wall times include compilation (a user's first call); a size is tried only while the
previous one finished within the budget.

Engines (issue 18): ``rb.gradient_flow`` with ``backend="dense"`` and ``backend="sparse"`` on
a rank-5 PSD truth (``||M||_2 = 1``), symmetric mask with 5% observed, from a gaussian init of
scale 1e-6, t_max = 1e5, default tolerances and stopping rule: ``SymmetricFactorization`` of
width 10 at d = 1000 and 2000, and ``DeepFactorization`` depth 3, widths 10, at d = 1000.
Each run is a subprocess with a wall-clock limit (``--engine-timeout``); its CPU time
(user + sys, all threads) is reported next to the wall time, since the machine may be shared.

Usage: python benchmarks/bench_scale.py [--budget 60] [--glrl 1000 2000 3000 4000]
                                        [--flow 200 300 400 500 600] [--engines 1000 2000]
                                        [--engine-timeout 600] [--out benchmarks/results_scale.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

import rankbias as rb


def problem(d, rank, c, seed=0):
    M = rb.random_low_rank((d, d), rank, psd=True, seed=seed)
    p = min(1.0, c * rank * np.log(d) / d)
    return M, rb.MatrixCompletion.uniform(M, p, seed=seed, symmetric=True), p


def run_glrl(d, rank):
    M, prob, p = problem(d, rank, 4.0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rb.glrl(prob, eps=1e-30, tol=1e-9)
    wall = time.perf_counter() - t0
    err = np.linalg.norm(res.matrix - M) / np.linalg.norm(M)
    return dict(
        method="GLRL",
        d=d,
        rank=rank,
        p=p,
        nnz=prob.num_observed,
        wall=wall,
        err=err,
        found=res.rank,
        ok=res.rank == rank and err <= 1e-6,
        extra=f"{res.rank} phases, KKT psd {res.kkt['psd_rel']:.1e}",
    )


def run_flow(d, rank):
    M, prob, p = problem(d, rank, 4.0)
    model = rb.DeepFactorization((d, d), depth=2)
    params = model.init("gaussian", scale=1e-8, seed=0)
    t0 = time.perf_counter()
    tr = rb.gradient_flow(prob, model, params, t_max=5e3, n_save=20)
    wall = time.perf_counter() - t0
    err = np.linalg.norm(tr.final_matrix - M) / np.linalg.norm(M)
    return dict(
        method="GF depth 2",
        d=d,
        rank=rank,
        p=p,
        nnz=prob.num_observed,
        wall=wall,
        err=err,
        found=int(np.sum(tr.singular_values[-1] > 1e-3)),
        ok=err <= 1e-4,
        extra=f"{tr.info['num_steps']} steps, status {tr.info['status']}",
    )


def engine_problem(d, rank=5, fraction=0.05, seed=0):
    M = rb.random_low_rank((d, d), rank, psd=True, seed=seed)
    return M, rb.MatrixCompletion.uniform(M, fraction, seed=seed, symmetric=True)


def run_engine_here(d, kind, backend, t_max=1e5, scale=1e-6):
    """One engine run in this process: a dict of the numbers (printed as JSON). ``kind``:
    ``"sym<k>"`` (``SymmetricFactorization`` of width ``k``) or ``"deep3"`` (width 10)."""
    M, prob = engine_problem(d)
    if kind.startswith("sym"):
        model = rb.SymmetricFactorization(size=d, width=int(kind[3:]))
    else:
        model = rb.DeepFactorization((d, d), depth=3, width=10)
    params = model.init("gaussian", scale=scale, seed=0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = rb.gradient_flow(prob, model, params, t_max=t_max, n_save=50, backend=backend)
    wall = time.perf_counter() - t0
    err = float(np.linalg.norm(tr.final_matrix - M) / np.linalg.norm(M))
    # The over-parameterized tail: the 6th singular value (0 in the truth) over time.
    pick = np.unique(np.linspace(len(tr) // 2, len(tr) - 1, 5).astype(int))
    tail = [[float(tr.times[i]), float(tr.singular_values[i, 5])] for i in pick]
    return dict(
        sv6=tail,
        wall=wall,
        err=err,
        status=tr.status,
        t_final=float(tr.info["t_final"]),
        steps=int(tr.info["num_steps"]),
        nfe=tr.info["num_vf_evals"],
        nnz=prob.num_observed,
        backend=tr.info["backend"],
    )


def run_engine(d, kind, backend, timeout, t_max=1e5, scale=1e-6):
    """``run_engine_here`` in a subprocess with a wall-clock limit; adds its CPU time."""
    cmd = [sys.executable, __file__, "--one", str(d), kind, backend, str(t_max), str(scale)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ)
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"engine run {cmd} failed: {out.stderr[-2000:]}")
        res = json.loads(lines[-1])
    except subprocess.TimeoutExpired:
        res = dict(wall=time.perf_counter() - t0, err=float("nan"), status="cut off")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res.update(d=d, kind=kind, requested=backend, t_max=t_max, scale=scale)
    return res


def engine_table(rows, timeout):
    def name(kind):
        if kind.startswith("sym"):
            return f"SymmetricFactorization width {kind[3:]}"
        return "DeepFactorization depth 3 width 10"

    lines = [
        "| model | d | backend | init scale | t_max | wall (s) | CPU (s) | rel. error | status | "
        "t_final | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] == "cut off":
            lines.append(
                f"| {name(r['kind'])} | {r['d']} | {r['requested']} | {r['scale']:g} | {r['t_max']:g} | "
                f"> {timeout:g} (cut off) | "
                f"{r['cpu']:.0f} | - | cut off | - | - |"
            )
            continue
        lines.append(
            f"| {name(r['kind'])} | {r['d']} | {r['backend']} | {r['scale']:g} | {r['t_max']:g} | "
            f"{r['wall']:.1f} | "
            f"{r['cpu']:.0f} | {r['err']:.1e} | {r['status']} | {r['t_final']:.3g} | "
            f"{r['steps']} |"
        )
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--rank", type=int, default=5)
    ap.add_argument("--glrl", type=int, nargs="*", default=[1000, 2000, 3000, 4000])
    ap.add_argument("--flow", type=int, nargs="*", default=[200, 300, 400, 500, 600])
    ap.add_argument("--engines", type=int, nargs="*", default=[])
    ap.add_argument("--deep", type=int, nargs="*", default=None, help="d for depth 3 (engines)")
    ap.add_argument("--engine-timeout", type=float, default=600.0)
    ap.add_argument("--backends", nargs="*", default=["sparse", "dense"])
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=float, default=1e-6, help="init scale (engines)")
    ap.add_argument("--kinds", nargs="*", default=["sym10"], help="sym<width> models (engines)")
    ap.add_argument("--t-max", type=float, default=1e5, help="t_max of the engine runs")
    ap.add_argument("--out", default="benchmarks/results_scale.md")
    args = ap.parse_args(argv)
    if args.one:
        d, kind, backend, t_max, scale = (args.one + ["1e-6"])[:5]
        print(json.dumps(run_engine_here(int(d), kind, backend, float(t_max), float(scale))))
        return
    eng = []
    deep = args.engines[:1] if args.deep is None else args.deep
    jobs = [(k, d) for d in args.engines for k in args.kinds] + [("deep3", d) for d in deep]
    for kind, d in jobs:
        for backend in args.backends:
            r = run_engine(d, kind, backend, args.engine_timeout, args.t_max, args.scale)
            eng.append(r)
            print(json.dumps(r), flush=True)
    rows = []
    for fn, sizes in ((run_glrl, args.glrl), (run_flow, args.flow)):
        for d in sizes:
            r = fn(d, args.rank)
            rows.append(r)
            print(
                f"{r['method']} d={d} p={r['p']:.3f} |Omega|={r['nnz']}: {r['wall']:.1f} s, "
                f"rel err {r['err']:.1e}, {r['extra']}",
                flush=True,
            )
            if r["wall"] > args.budget:
                break
    best = {}
    for r in rows:
        if r["ok"] and r["wall"] <= args.budget:
            best[r["method"]] = max(best.get(r["method"], 0), r["d"])
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}"
    )
    lines = [
        f"# bench_scale ({time.strftime('%Y-%m-%d')}, {machine})",
        "",
        f"Rank-{args.rank} PSD completion; wall times include compilation; budget "
        f"{args.budget:g} s.",
        "",
        "| method | d | observed fraction | observed entries | wall (s) | rel. error | "
        "reached truth within budget | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['d']} | {r['p']:.3f} | {r['nnz']} | {r['wall']:.1f} | "
            f"{r['err']:.1e} | {'yes' if r['ok'] and r['wall'] <= args.budget else 'no'} | "
            f"{r['extra']} |"
        )
    lines += ["", "Largest d within budget: " + ", ".join(f"{k}: {v}" for k, v in best.items())]
    if eng:
        lines += [
            "",
            "Engines: rank-5 PSD truth, 5% observed (symmetric mask), gaussian init, "
            f"default stopping rule; each run limited to {args.engine_timeout:g} s wall.",
            "",
            *engine_table(eng, args.engine_timeout),
        ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with open(args.out, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
