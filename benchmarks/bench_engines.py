"""Wall time of each engine's public call on small, typical problems, for before/after checks
of refactors (issue 25: "no slowdown beyond noise").

    python3 benchmarks/bench_engines.py                      # this checkout, one table
    python3 benchmarks/bench_engines.py --against OLD/src    # this checkout vs another tree,
                                                             # alternated in one run

Each case is compiled once (warm-up call, not timed), then called ``--repeats`` times; the
table shows the median. With ``--against``, the two source trees run in alternating
subprocesses (A B A B ...), so machine load affects both alike; the ratio column is
``this / other`` (1.00: the same; above 1: this checkout is slower).
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

CASES = ("flow_d3_20", "flow_batch_d2_12", "gd_d3_20", "train_adam_d2_20", "glrl_psd_12")


def _measure(repeats: int) -> dict[str, float]:
    import numpy as np

    import rankbias as rb

    M = rb.random_low_rank((20, 20), 3, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.5, 0, symmetric=True)
    deep3 = rb.DeepFactorization(shape=(20, 20), depth=3, width=20)
    deep2 = rb.DeepFactorization(shape=(20, 20), depth=2, width=20)
    M12 = rb.random_low_rank((12, 12), 2, psd=True, seed=1)
    p12 = rb.MatrixCompletion.uniform(M12, 0.6, 1, symmetric=True)
    d12 = rb.DeepFactorization(shape=(12, 12), depth=2, width=12)
    calls = {
        "flow_d3_20": lambda: rb.gradient_flow(
            prob, deep3, deep3.init("gaussian", 1e-6, 0), t_max=1e5
        ),
        "flow_batch_d2_12": lambda: rb.gradient_flow_batch(
            p12, d12, [d12.init("gaussian", 1e-4, s) for s in range(4)], t_max=1e3
        ),
        "gd_d3_20": lambda: rb.gradient_descent(
            prob, deep3, deep3.init("gaussian", 1e-3, 0), lr=0.05, steps=3000
        ),
        "train_adam_d2_20": lambda: rb.train(
            prob, deep2, deep2.init("gaussian", 1e-3, 0), "adam", lr=1e-3, steps=1000
        ),
        "glrl_psd_12": lambda: rb.glrl(p12),
    }
    out = {}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in CASES:
            calls[name]()  # compile
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                calls[name]()
                ts.append(time.perf_counter() - t0)
            out[name] = statistics.median(ts)
    del np
    return out


def _child(src: str, repeats: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=src)
    r = subprocess.run(
        [sys.executable, __file__, "--json", "--repeats", str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--against", help="another source tree (its src/ folder)")
    ap.add_argument("--rounds", type=int, default=2, help="alternations with --against")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.json:
        print(json.dumps(_measure(a.repeats)))
        return
    here = str(Path(__file__).resolve().parents[1] / "src")
    if not a.against:
        res = _child(here, a.repeats)
        print(f"{'case':<20} {'median s':>10}")
        for k, v in res.items():
            print(f"{k:<20} {v:>10.4f}")
        return
    mine: dict[str, list[float]] = {k: [] for k in CASES}
    other: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(a.rounds):
        for src, acc in ((a.against, other), (here, mine)):
            for k, v in _child(src, a.repeats).items():
                acc[k].append(v)
    print(f"{'case':<20} {'other s':>10} {'this s':>10} {'this/other':>11}")
    for k in CASES:
        o, m = min(other[k]), min(mine[k])
        print(f"{k:<20} {o:>10.4f} {m:>10.4f} {m / o:>11.2f}")


if __name__ == "__main__":
    main()
