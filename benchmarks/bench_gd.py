"""Gradient-descent throughput and hardware efficiency (issue 6, items 2, 3 and 5).

1. Sweep throughput: 64 runs (8 alphas x 8 seeds), depth 3, 100 x 100 symmetric completion,
   GD for a fixed number of steps: rankbias batched (one vmapped computation) vs the same
   runs one by one vs a NumPy loop (what public codes do), on whatever device JAX sees.
2. Hardware efficiency: achieved float rate of our GD step as a fraction of the dense
   matmul rate measured in the same run (a large jnp.dot in the same dtype), for
   d in {100, 300, 1000} and batch sizes {1, 16, 64}. A depth-L GD step on square d x d
   factors costs 6 (L - 1) d^3 flops (forward prefix products 2(L-1)d^3, backward two
   products per prefix 4(L-1)d^3); the O(d^2) elementwise work is not counted.

3. Peak memory of a 64-run batched GD sweep at d = 300 (depth 3, 100x100 -> 300x300
   completion, 200 steps), measured in a fresh child process: its peak resident set size
   (CPU) and JAX's ``peak_bytes_in_use`` on an accelerator. Target: under 8 GB.

Usage: python benchmarks/bench_gd.py [--dtype float64|float32] [--quick] [--numpy] [--out FILE]
       [--tables sweep efficiency memory] [--sizes D ...] [--batches B ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from bench_flow import gd_loop  # noqa: E402

import rankbias as rb  # noqa: E402


def timeit(fn, repeat=3):
    fn()  # compile / warm up
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(dtype, n):
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    reps = 8

    def run():
        out = None
        for _ in range(reps):
            out = f(a, b)
        out.block_until_ready()

    return reps * 2 * n**3 / timeit(run)


def sweep_inputs(d: int, depth: int = 3):
    """The sweep of items 1 and 3: d x d rank-5 completion (30% observed), 8 alphas x 8 seeds."""
    M = rb.random_low_rank((d, d), 5, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.3, seed=0, symmetric=True)
    model = rb.DeepFactorization((d, d), depth=depth)
    inits = [
        model.init("gaussian", scale=float(a), seed=s)
        for a in np.geomspace(1e-1, 1e-8, 8)
        for s in range(8)
    ]
    return M, prob, model, inits


def memory_child(dtype: str) -> None:
    """Run the d = 300, 64-run batched sweep and print its peak memory as JSON."""
    _, prob, model, inits = sweep_inputs(300)
    t0 = time.perf_counter()
    rb.gradient_descent_batch(
        prob, model, inits, lr=0.02, steps=200, n_save=20, dtype=jnp.dtype(dtype)
    )
    wall = time.perf_counter() - t0
    dev = jax.devices()[0]
    stats = dev.memory_stats() or {}
    print(
        json.dumps(
            dict(
                rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                device_peak_gb=stats.get("peak_bytes_in_use", 0) / 2**30,
                wall_s=wall,
                platform=dev.platform,
            )
        )
    )


def measure_memory(dtype: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", "--dtype", dtype],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--quick", action="store_true", help="fewer steps and sizes")
    ap.add_argument("--numpy", action="store_true", help="also time the NumPy loop (CPU)")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--tables",
        nargs="+",
        default=["sweep", "efficiency", "memory"],
        choices=["sweep", "efficiency", "memory"],
        help="which tables to take",
    )
    ap.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=None,
        help="d of the efficiency table (default 100 300 1000; --quick: 100 300)",
    )
    ap.add_argument(
        "--batches",
        nargs="+",
        type=int,
        default=[1, 16, 64],
        help="batch sizes of the efficiency table",
    )
    args = ap.parse_args(argv)
    if args.memory_child:
        return memory_child(args.dtype)
    dtype = jnp.dtype(args.dtype)
    dev = jax.devices()[0]
    lines = [
        f"# bench_gd ({time.strftime('%Y-%m-%d')}, device {dev.device_kind} [{dev.platform}], "
        f"{platform.machine()}, dtype {dtype}, jax {jax.__version__})",
        "",
    ]

    depth, steps = 3, (200 if args.quick else 1000)
    if "sweep" in args.tables:
        lines += sweep_table(args, dtype, depth, steps)
        print("\n".join(lines), flush=True)
    if "efficiency" in args.tables:
        lines += efficiency_table(args, dtype, depth, dev)
    if "memory" in args.tables:
        mem = measure_memory(args.dtype)
        lines += [
            "",
            "## Peak memory: 64 batched GD runs, depth 3, 300x300 completion, 200 steps",
            "",
            "| platform | peak RSS (GB) | device peak (GB) | wall (s) | target |",
            "|---|---|---|---|---|",
            f"| {mem['platform']} | {mem['rss_gb']:.2f} | {mem['device_peak_gb']:.2f} | "
            f"{mem['wall_s']:.1f} | < 8 GB |",
        ]
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text)


def sweep_table(args, dtype, depth, steps) -> list[str]:
    """Item 2: 64 runs batched vs one by one vs the NumPy loop."""
    lines = []
    M, prob, model, inits = sweep_inputs(100, depth)
    lr = 0.02
    batched = timeit(
        lambda: rb.gradient_descent_batch(
            prob, model, inits, lr=lr, steps=steps, n_save=20, dtype=dtype
        ),
        repeat=2,
    )
    sub = inits[:8]
    single8 = timeit(
        lambda: [
            rb.gradient_descent(prob, model, p, lr=lr, steps=steps, n_save=20, dtype=dtype)
            for p in sub
        ],
        repeat=2,
    )
    single = single8 * len(inits) / len(sub)
    lines += [
        "",
        f"## Sweep throughput: 64 GD runs, depth 3, 100x100 completion, {steps} steps each",
        "",
        "| executor | wall (s) | runs/s | speed-up vs NumPy |",
        "|---|---|---|---|",
    ]
    rows = [("rankbias batched (vmap)", batched), ("rankbias one by one", single)]
    if args.numpy:
        mask = prob.mask.astype(float)
        np_inits = [[np.asarray(p, dtype=np.float64) for p in ps] for ps in inits[:4]]
        t0 = time.perf_counter()
        for ps in np_inits:
            gd_loop(mask, M, ps, lr, steps)
        np_time = (time.perf_counter() - t0) * len(inits) / len(np_inits)
        rows.append(("NumPy loop (projected from 4 runs)", np_time))
    else:
        np_time = None
    for name, t in rows:
        ratio = f"{np_time / t:.1f}x" if np_time else "-"
        lines.append(f"| {name} | {t:.2f} | {len(inits) / t:.1f} | {ratio} |")
    return lines


def efficiency_table(args, dtype, depth, dev) -> list[str]:
    """Item 3: GD step rate as a fraction of the matmul rate measured here."""
    lines = []
    peak = matmul_peak(dtype, 2048 if args.quick else 4096)
    lines += [
        "",
        f"## Hardware efficiency (depth {depth}; matmul peak measured here: "
        f"{peak / 1e9:.1f} GFLOP/s in {dtype})",
        "",
        "| d | batch | GD step (ms) | GFLOP/s | fraction of matmul peak |",
        "|---|---|---|---|---|",
    ]
    sizes = args.sizes or ((100, 300) if args.quick else (100, 300, 1000))
    for d in sizes:
        M = rb.random_low_rank((d, d), 5, psd=True, seed=0)
        prob = rb.MatrixCompletion.uniform(M, 0.3, seed=0, symmetric=True, dense=True)
        model = rb.DeepFactorization((d, d), depth=depth)
        for B in args.batches:
            if d == 1000 and B == 64 and dev.platform == "cpu":
                continue  # 64 x 3 x 8 MB factors x several buffers: too slow on 2 cores
            inits = [model.init("gaussian", scale=1e-3, seed=s) for s in range(B)]

            def run(n, prob=prob, model=model, inits=inits):  # bound: B023
                return timeit(
                    lambda: rb.gradient_descent_batch(
                        prob, model, inits, lr=1e-3, steps=n, n_save=2, dtype=dtype
                    ),
                    repeat=2,
                )

            # Per-step time from the difference of two step counts: the fixed cost of a call
            # (validation, the SVDs of the two records, host transfers) cancels.
            t1 = run(1)
            t5 = run(5)
            est = max((t5 - t1) / 4, 1e-6)
            n = int(min(2000, max(10, 1.0 / est)))  # about a second of steps
            per_step = (run(1 + n) - t1) / n
            flops = 6 * (depth - 1) * d**3 * B
            rate = flops / per_step
            lines.append(
                f"| {d} | {B} | {1e3 * per_step:.3f} | {rate / 1e9:.1f} | {rate / peak:.0%} |"
            )
            print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
