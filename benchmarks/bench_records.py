"""Records and backends at MovieLens-100K size (issue 26): what one record and one step cost.

Problem: a synthetic ratings-like matrix, seeded (rank 10 plus noise, rounded and clipped to
1..5), 943 x 1682 with 100,000 observed entries. For DeepFactorization depth 2 and 3 at
hidden width 1682 (the default) and 943 (``min(m, n)``), compiled separately and timed (median
of ``--reps`` calls after a warm-up):

* ``step``: one loss-and-gradient evaluation (what a GD or ``rb.train`` step costs), dense
  backend and sparse (factor-form) backend;
* ``record``: what the engines compute at a record, old (loss, gradient and a full SVD of
  ``W``, with OpenBLAS's default threads as before, and on one thread) and new
  (:func:`rankbias.dynamics._sparse.record`: top-``k`` singular values above
  ``min(m, n) = 500``, on one BLAS thread as the engines now run it:
  :func:`rankbias.dynamics._records.lapack_threads`), on each backend.

The share of a run that records take is ``R c_rec / (S c_step + R c_rec)`` for ``S`` steps
and ``R`` records (``R <= n_save``, 200 by default). Prints a markdown table.

    python benchmarks/bench_records.py [--reps 2] [--depths 2 3] [--widths 1682 943]

``--mode run`` (issue 26, records reuse the step) times whole runs instead: a
``rb.gradient_descent`` (``lr = 2``, mean loss) and a ``rb.train`` (``group_rmsprop``,
``lr = 1e-3``) run of ``--steps`` steps at depth 2, width 943, from scale 1e-3, once with the
default ``n_save = 200`` and once with ``n_save = 2``, each after a 2-step warm-up call that
compiles its programs; records' share of the run is ``1 - t(n_save=2) / t(n_save=200)``. Each
code version runs in its own process: ``--old SRC`` is a ``src`` folder of the code before
(``git -C /work/main archive HEAD src | tar -x -C /tmp/old-rec``), on ``PYTHONPATH``; the
new one is this checkout's. The per-step cost ``t(2) / S`` and per-record cost
``(t(200) - t(2)) / (R - 2)`` (``R`` the records the run took) give the share at other
lengths (``--extrapolate``), with the record counts of the log grid.

    python benchmarks/bench_records.py --mode run --old /tmp/old-rec/src [--steps 1000]

``--mode share`` measures the same in one process from compiled pieces (minutes instead of
a run's hour on a loaded box): one step (loss and gradient), the record before (its own
evaluation and the singular values: :func:`~rankbias.dynamics._sparse.record`) and the
record now (the singular values from the step's evaluation:
:func:`~rankbias.dynamics._sparse.record_from`), depth 2, width 943, and the records' share
``R c_rec / (S c_step + R c_rec)`` of a default-``n_save`` run of ``S`` steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import rankbias as rb
from rankbias.dynamics._records import lapack_threads
from rankbias.dynamics._sparse import SparseCompletion, loss_and_grad, record

M_ROWS, N_COLS, N_OBS = 943, 1682, 100_000


def ratings_problem(**kw) -> rb.MatrixCompletion:
    rng = np.random.default_rng(0)
    U, V = rng.standard_normal((M_ROWS, 10)), rng.standard_normal((N_COLS, 10))
    noise = 0.3 * rng.standard_normal((M_ROWS, N_COLS))
    M = np.clip(np.rint(3.5 + 0.9 * (U @ V.T) / np.sqrt(10) + noise), 1, 5)
    pick = rng.choice(M_ROWS * N_COLS, N_OBS, replace=False)
    return rb.MatrixCompletion(M, (pick // N_COLS, pick % N_COLS), **kw)


def run_child(method: str, n_save: int, steps: int) -> None:
    """One timed run (after a 2-step call that compiles its programs); prints a JSON line."""
    prob = ratings_problem(normalization="mean")
    model = rb.DeepFactorization((M_ROWS, N_COLS), depth=2, width=min(M_ROWS, N_COLS))
    p0 = model.init(scale=1e-3, seed=0)

    def go(s: int):
        if method == "gd":
            return rb.gradient_descent(prob, model, p0, lr=2.0, steps=s, n_save=n_save)
        return rb.train(prob, model, p0, "group_rmsprop", lr=1e-3, steps=s, n_save=n_save)

    go(2)
    tr = go(steps)
    # info["wall_time"]: the compiled run alone, not the status check after it (a rerun that
    # verifies a step-size hint when the run ends far from stationarity)
    wall = tr.info["wall_time"]
    print(json.dumps(dict(wall=wall, records=len(tr.loss), loss=float(tr.loss[-1]))))


def share_mode(args) -> None:
    """Per-step and per-record costs and the records' share at ``--extrapolate`` lengths."""
    from rankbias.dynamics._sparse import record_from
    from rankbias.dynamics.descent.grid import record_steps

    print(f"`uptime` at start: {os.getloadavg()}")
    prob = ratings_problem(normalization="mean")
    model = rb.DeepFactorization((M_ROWS, N_COLS), depth=2, width=min(M_ROWS, N_COLS))
    params = model.init(scale=1e-3, seed=0)
    ev = loss_and_grad(prob, model, params)
    step = jax.jit(lambda p: loss_and_grad(prob, model, p))
    old = jax.jit(lambda p: record(prob, model, p, False))
    new = jax.jit(lambda p, e: record_from(prob, model, p, e, False))
    ts = timed(step, params, reps=args.reps, one_thread=True)
    to = timed(old, params, reps=args.reps, one_thread=True)
    tn = timed(new, params, ev, reps=args.reps, one_thread=True)
    ts = (ts + timed(step, params, reps=args.reps, one_thread=True)) / 2
    print(
        f"step {ts:.3f} s; record before {to:.3f} s ({to / ts:.2f} steps), "
        f"now {tn:.3f} s ({tn / ts:.2f} steps)"
    )
    print("| steps | records | share before | share now |\n|---|---|---|---|")
    for n in args.extrapolate:
        r = record_steps(n, 200, None)[0].size
        share = lambda c, n=n, r=r: r * c / (n * ts + r * c)  # noqa: E731
        print(f"| {n} | {r} | {share(to):.1%} | {share(tn):.1%} |")
    print(f"`uptime` at end: {os.getloadavg()}")


def run_mode(args) -> None:
    """Whole runs, old against new code, ``n_save`` 200 against 2 (module docstring)."""
    from rankbias.dynamics.descent.grid import record_steps

    new_src = str(Path(__file__).resolve().parents[1] / "src")
    versions = [("old", args.old)] if args.old else []
    versions.append(("new", new_src))
    print(f"`uptime` at start: {os.getloadavg()}; steps {args.steps}")
    print(
        "| code | method | t(n_save=2) (s) | t(n_save=200) (s) | records | share | "
        "step (s) | record (s) | record / step | "
        + " | ".join(f"share at {n}" for n in args.extrapolate)
        + " |"
    )
    print("|---" * (9 + len(args.extrapolate)) + "|")
    for method in args.methods:
        for name, src in versions:
            res = {}
            for n_save in (2, 200):
                cmd = [sys.executable, __file__, "--child", method, str(n_save), str(args.steps)]
                env = dict(os.environ, PYTHONPATH=src)
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                res[n_save] = json.loads(out.stdout.strip().splitlines()[-1])
            t2, t200, R = res[2]["wall"], res[200]["wall"], res[200]["records"]
            step = t2 / args.steps
            rec = max(t200 - t2, 0.0) / (R - 2)
            shares = []
            for n in args.extrapolate:
                r = record_steps(n, 200, None)[0].size
                shares.append(f"{r * rec / (n * step + r * rec):.1%}")
            print(
                f"| {name} | {method} | {t2:.1f} | {t200:.1f} | {R} | {1 - t2 / t200:.1%} "
                f"| {step:.3f} | {rec:.3f} | {rec / step:.2f} | " + " | ".join(shares) + " |",
                flush=True,
            )
    print(f"`uptime` at end: {os.getloadavg()}")


def timed(fn, *args, reps: int, one_thread: bool = False) -> float:
    jax.block_until_ready(fn(*args))  # compile
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        if one_thread:
            with lapack_threads((M_ROWS, N_COLS)):
                jax.block_until_ready(fn(*args))
        else:
            jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def old_record(problem, model, params):
    """The record before issue 26: loss, gradient norm and every singular value (full SVD)."""
    f, g, aux = loss_and_grad(problem, model, params)
    W = aux if not isinstance(problem, SparseCompletion) else jnp.matmul(*_ab(model, params))
    gn = jnp.sqrt(sum(jnp.sum(x * x) for x in g))
    return f, gn, jnp.linalg.svd(W, compute_uv=False)


def _ab(model, params):
    A, B = model.factors(params)
    return A, B.T


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        run_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["records", "run", "share"], default="records")
    ap.add_argument("--old", default=None, help="run mode: the src folder of the code before")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--methods", nargs="+", default=["gd", "train"])
    ap.add_argument("--extrapolate", type=int, nargs="+", default=[1000, 3000])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--widths", type=int, nargs="+", default=[1682, 943])
    ap.add_argument("--backends", nargs="+", default=["dense", "sparse"])
    args = ap.parse_args()
    if args.mode == "run":
        run_mode(args)
        return
    if args.mode == "share":
        share_mode(args)
        return
    print(f"load average at start: {os.getloadavg()}")
    prob = ratings_problem()
    print(
        "| depth | width | backend | step (s) | record, old: full SVD (s) "
        "| old, 1 BLAS thread (s) | record, new (s) | old / step | new / step |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for depth in args.depths:
        for width in args.widths:
            model = rb.DeepFactorization((M_ROWS, N_COLS), depth=depth, width=width)
            params = model.init(scale=1e-3, seed=0)
            for backend in args.backends:
                data = SparseCompletion.from_problems(prob, model) if backend == "sparse" else prob
                step = jax.jit(lambda p, d=data, mo=model: loss_and_grad(d, mo, p)[:2])
                new = jax.jit(lambda p, d=data, mo=model: record(d, mo, p, False))
                old = jax.jit(lambda p, d=data, mo=model: old_record(d, mo, p))
                ts = timed(step, params, reps=args.reps)
                tn = timed(new, params, reps=args.reps, one_thread=True)
                to = timed(old, params, reps=args.reps)
                t1 = timed(old, params, reps=args.reps, one_thread=True)
                print(
                    f"| {depth} | {width} | {backend} | {ts:.3f} | {to:.3f} | {t1:.3f} "
                    f"| {tn:.3f} | {to / ts:.2f} | {tn / ts:.2f} |",
                    flush=True,
                )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
