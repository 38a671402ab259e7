"""How often a sweep checkpoints: wall time, first saved run and the longest gap between
saved runs, for several ``sweep.chunk_size`` values (a chunk is one vmapped batch and its
runs are written when the batch ends, so the gap is what an interrupt can lose).

    python benchmarks/bench_checkpoint.py [--sizes 16,8,4] [--seeds 4] [--n 20] [--t-max 1e6]

Prints a markdown table; the ratios are against the first batch size, measured in the same
run. Each batch size compiles its own batched function (shapes differ), included in the times.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

CONFIG = """
name = "bench-checkpoint"
kind = "sweep"
[problem]
type = "completion"
shape = [{n}, {n}]
rank = 2
psd = true
fraction = 0.5
[model]
type = "deep"
depth = 3
[dynamics]
method = "flow"
t_max = {t_max}
rtol = 1e-8
atol = 1e-10  # explicit: a default atol (scaled to each init) recompiled per run in this version
n_save = 200
[sweep]
grid = {{ alpha = [1e-2, 1e-4, 1e-6, 1e-8], seed = {seeds} }}
chunk_size = {bs}
"""


def one(bs: int, seeds: int, n: int, t_max: float) -> dict:
    import rankbias.experiments as ex

    raw = ex.parse_config(CONFIG.format(bs=bs, seeds=list(range(seeds)), n=n, t_max=t_max))
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "o"
        t0 = time.time()
        st = ex.run_sweep(ex.expand(raw), out, progress=False)
        wall = time.time() - t0
        times = sorted(p.stat().st_mtime for p in (out / "runs").rglob("*.npz"))
    gaps = [b - a for a, b in zip([t0] + times[:-1], times, strict=True)]
    return {
        "bs": bs,
        "runs": st["done"],
        "wall": wall,
        "first": times[0] - t0,
        "max_gap": max(gaps),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16,8,4")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--n", type=int, default=20, help="matrix size")
    ap.add_argument("--t-max", type=float, default=1e6)
    a = ap.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}\n")
    print("| chunk_size | runs | wall (s) | wall / first | first run saved (s) | longest gap (s) |")
    print("|---:|---:|---:|---:|---:|---:|", flush=True)
    base = None
    for s in a.sizes.split(","):
        r = one(int(s), a.seeds, a.n, a.t_max)
        base = base or r["wall"]
        print(
            f"| {r['bs']} | {r['runs']} | {r['wall']:.1f} | {r['wall'] / base:.2f} | "
            f"{r['first']:.1f} | {r['max_gap']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
