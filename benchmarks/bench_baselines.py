"""Convex baselines: rankbias's solvers against cvxpy + SCS / Clarabel, measured in one run.

Rows:

* minimum nuclear norm, 100x100 rank 5 with 2,000 observed entries;
* minimum nuclear norm, 500x500 rank 5 with 10% observed;
* a Soft-Impute path of 20 lambdas (geometric, 0.9 to 1e-3 of ||P_Omega(M)||_2) at 100x100,
  against the previous implementation (plain proximal gradient, jitted gradient, full SVD:
  ``--old-src`` points at a checkout that has it).

* ``--movielens-size``: a synthetic 943x1682 ratings-like matrix (rank 10 plus noise, rounded
  to 1..5, 90,000 observed entries, seeded): a Soft-Impute path of 5 lambdas on the sparse
  factored engine (``svd="sparse"``, what ``"auto"`` picks) against the dense randomized one
  (``svd="randomized"``, what ``"auto"`` picked before), each lambda's time as it finishes;
  ``min_nuclear_norm`` with ``time_budget`` (status and gap at the stop) against no budget.
  Each run is killed at ``--cap`` seconds; a killed run reports the lambdas it finished.

Every competitor runs in a subprocess with a wall-clock limit (``--timeout``), so one that
does not finish is reported as such. "obj err" is ``|obj - ref| / ref`` with ``ref`` the
best certified value of the run (rankbias's objective when its relative gap is <= 1e-8).

    python benchmarks/bench_baselines.py --timeout 300 [--old-src OLD/src] [--only nuclear|path]

``OLD/src``: e.g. ``git archive 3e69ca3 src | tar -x -C OLD`` (the commit before this
benchmark's solvers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

SETUP = """
import json, time, numpy as np, rankbias as rb
def problem(d, frac=None, k=None, seed=0):
    M = rb.random_low_rank((d, d), 5, seed=seed)
    if k is not None:
        pick = np.random.default_rng(seed).choice(d * d, k, replace=False)
        return rb.MatrixCompletion(M, (pick // d, pick % d), truth=M), M
    return rb.MatrixCompletion.uniform(M, frac, seed=seed), M
"""

OURS = (
    SETUP
    + """
prob, M = problem({d}, frac={frac}, k={k})
from rankbias import baselines
t = time.perf_counter(); sol = baselines.min_nuclear_norm(prob); t = time.perf_counter() - t
W = np.asarray(sol)
print(json.dumps(dict(time=t, obj=sol.objective, res=sol.constraint_residual,
     gap=sol.info["relative_gap"], solver=sol.solver, status=sol.status,
     err=float(np.linalg.norm(W - M) / np.linalg.norm(M)))))
"""
)

CVX = (
    SETUP
    + """
import cvxpy as cp
prob, M = problem({d}, frac={frac}, k={k})
r, c = np.asarray(prob.rows), np.asarray(prob.cols); b = np.asarray(prob.values)
X = cp.Variable(({d}, {d}))
p = cp.Problem(cp.Minimize(cp.normNuc(X)), [X[r, c] == b])
kw = dict(eps=1e-9, max_iters=100_000) if "{solver}" == "SCS" else dict()
t = time.perf_counter(); p.solve(solver="{solver}", **kw); t = time.perf_counter() - t
W = X.value
print(json.dumps(dict(time=t, obj=float(np.linalg.svd(W, compute_uv=False).sum()),
     res=float(np.max(np.abs(W[r, c] - b))), status=p.status, solver="{solver}",
     err=float(np.linalg.norm(W - M) / np.linalg.norm(M)))))
"""
)

PATH = (
    SETUP
    + """
prob, M = problem(100, k=2000)
from rankbias import baselines
lmax = float(np.linalg.norm(np.where(prob.mask, M, 0.0), 2))
lams = lmax * np.geomspace(0.9, 1e-3, 20)
t = time.perf_counter(); path = baselines.soft_impute_path(prob, lams); t = time.perf_counter() - t
f = [float(prob.loss(X)) + lam * float(np.linalg.svd(X, compute_uv=False).sum())
     for X, lam in zip(path, lams)]
print(json.dumps(dict(time=t, objs=f, err=float(np.linalg.norm(path[-1] - M) / np.linalg.norm(M)))))
"""
)


ML = """
import json, sys, time, numpy as np, rankbias as rb
from rankbias import baselines
m, n, k = 943, 1682, 90_000
rng = np.random.default_rng(0)
U, V = rng.standard_normal((m, 10)), rng.standard_normal((n, 10))
M = np.clip(np.rint(3.5 + 0.9 * (U @ V.T) / np.sqrt(10) + 0.3 * rng.standard_normal((m, n))), 1, 5)
pick = rng.choice(m * n, k, replace=False)
prob = rb.MatrixCompletion(M, (pick // n, pick % n))
"""

ML_PATH = (
    ML
    + """
lmax = float(np.linalg.norm(np.where(prob.mask, M, 0.0), 2))
t0 = time.perf_counter(); last = [t0]
def report(lam, X):
    r = X[prob.mask] - M[prob.mask]
    now = time.perf_counter()
    print(json.dumps(dict(lam=lam, rank=int(np.linalg.matrix_rank(X, tol=1e-8 * lam)),
          rmse=float(np.sqrt(np.mean(r * r))), time=now - last[0])), flush=True)
    last[0] = now
baselines.soft_impute_path(prob, lmax * np.geomspace(0.5, 0.02, 5), svd="{svd}", on_result=report)
print(json.dumps(dict(total=time.perf_counter() - t0)))
"""
)

ML_NUCLEAR = (
    ML
    + """
t = time.perf_counter(); sol = baselines.min_nuclear_norm(prob, time_budget={budget})
t = time.perf_counter() - t
print(json.dumps(dict(time=t, status=sol.status, obj=sol.objective, dual=sol.dual_objective,
     gap=sol.info["relative_gap"], res=sol.constraint_residual)))
"""
)


def run_lines(code: str, cap: float) -> tuple[list[dict], bool]:
    """The JSON lines a subprocess printed, and whether it was killed at ``cap`` seconds."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, timeout=cap
        )
        text, killed = out.stdout, False
        if out.returncode != 0:
            print(out.stderr.decode(errors="replace")[-500:])
    except subprocess.TimeoutExpired as e:
        text, killed = e.stdout or b"", True
    lines = text.decode(errors="replace").splitlines() if isinstance(text, bytes) else []
    return [json.loads(x) for x in lines if x.startswith("{")], killed


def movielens_size(cap: float, budget: float) -> None:
    print("| 943x1682, 90,000 entries | engine | per lambda: lam, rank, train RMSE, s | total |")
    print("|---|---|---|---|")
    for name, svd in (("new: sparse factored", "sparse"), ("old: dense randomized", "randomized")):
        rows, killed = run_lines(ML_PATH.format(svd=svd), cap)
        per = "; ".join(
            f"{r['lam']:.3g}, {r['rank']}, {r['rmse']:.3f}, {r['time']:.1f}"
            for r in rows
            if "lam" in r
        )
        total = f"> {cap:.0f} s, killed" if killed else f"{rows[-1]['total']:.1f} s"
        print(f"| Soft-Impute path, 5 lambdas | {name} | {per or '-'} | {total} |", flush=True)
    print()
    print(
        "| 943x1682, 90,000 entries | min_nuclear_norm | time (s) | status | rel. gap | residual |"
    )
    print("|---|---|---|---|---|---|")
    for name, b in ((f"new: time_budget={budget:g}", budget), ("old: no budget", None)):
        rows, killed = run_lines(ML_NUCLEAR.format(budget=b), cap)
        if killed or not rows:
            print(f"| ALM | {name} | > {cap:.0f} s, killed | - | - | - |")
            continue
        r = rows[-1]
        print(
            f"| ALM | {name} | {r['time']:.1f} | {r['status']} | {r['gap']:.2e} | {r['res']:.1e} |",
            flush=True,
        )


def run(code: str, timeout: float, src: str | None = None) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    t0 = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return dict(timeout=True, wall=time.perf_counter() - t0)
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "no message"
        return dict(error=f"exit code {out.returncode}: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(r: dict, ref: float | None, timeout: float) -> str:
    if r.get("timeout"):
        return f"| not finished in {timeout:.0f} s | - | - | - | - |"
    if "error" in r:
        return f"| failed: {r['error'][:60]} | - | - | - | - |"
    err = abs(r["obj"] - ref) / ref if ref else float("nan")
    return f"| {r['time']:.2f} | {r['obj']:.10g} | {err:.1e} | {r['res']:.1e} | {r['status']} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "convex baselines").splitlines()[0])
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--old-src", default=None, help="src folder of the previous implementation")
    ap.add_argument("--only", choices=("nuclear", "path"), default=None)
    ap.add_argument("--movielens-size", action="store_true", help="only the 943x1682 case")
    ap.add_argument("--cap", type=float, default=300.0, help="seconds before a run is killed")
    ap.add_argument("--budget", type=float, default=60.0, help="min_nuclear_norm time_budget")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.1f} (2 cores)\n")
    if args.movielens_size:
        movielens_size(args.cap, args.budget)
        print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
        return
    print("| problem | solver | time (s) | objective | obj err | residual | status |")
    print("|---|---|---|---|---|---|---|")
    cases = [
        ("100x100 rank 5, 2,000 entries", dict(d=100, frac=None, k=2000)),
        ("500x500 rank 5, 10% observed", dict(d=500, frac=0.1, k=None)),
    ]
    for label, kw in cases if args.only != "path" else []:
        ours = run(OURS.format(**kw), args.timeout)
        rows = [("rankbias (auto: " + ours.get("solver", "?") + ")", ours)]
        rows.append(("cvxpy + SCS (eps 1e-9)", run(CVX.format(solver="SCS", **kw), args.timeout)))
        if kw["d"] <= 100:
            rows.append(
                ("cvxpy + Clarabel", run(CVX.format(solver="CLARABEL", **kw), args.timeout))
            )
        ref = ours["obj"] if ours.get("gap", 1.0) <= 1e-8 else None
        if ref is None:
            done = [r["obj"] for _, r in rows if "obj" in r]
            ref = min(done) if done else None
        for name, r in rows:
            print(f"| {label} | {name} " + _fmt(r, ref, args.timeout))
        if "gap" in ours:
            print(
                f"| {label} | rankbias certificate: relative gap {ours['gap']:.1e}, "
                f"error vs truth {ours['err']:.3g} | | | | | |"
            )
    print()
    if args.only == "nuclear":
        return
    print(
        "| soft-impute path, 100x100, 2,000 entries, 20 lambdas | time (s) | max rel. obj diff "
        "vs new | final error vs truth |"
    )
    print("|---|---|---|---|")
    new = run(PATH, args.timeout)
    print(
        f"| rankbias (FISTA, restart, NumPy gradient) | {new.get('time', float('nan')):.2f} | - | "
        f"{new.get('err', float('nan')):.3g} |"
    )
    if args.old_src:
        old = run(PATH, args.timeout, src=args.old_src)
        if old.get("timeout"):
            print(f"| previous (plain prox-grad) | not finished in {args.timeout:.0f} s | - | - |")
        elif "error" in old:
            print(f"| previous (plain prox-grad) | failed: {old['error'][:60]} | - | - |")
        else:
            diff = max(
                abs(a - b) / max(abs(b), 1e-300)
                for a, b in zip(old["objs"], new["objs"], strict=True)
            )
            print(
                f"| previous (plain prox-grad) | {old['time']:.2f} | {diff:.1e} | {old['err']:.3g} |"
            )
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
