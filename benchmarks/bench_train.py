"""rb.train: does an lr sweep recompile, and what does the optax step cost against plain GD?

Problem: 20x20 rank-3 completion (half observed), DeepFactorization depth 3, init 1e-3. For
each optimizer (as a name, built from traced hyper-parameters), wall time of the first call
(compile + run), of a second call with another lr, steps and seed (a cache hit if nothing
recompiles), and of a call with a new ``optax`` transform object (which compiles: its numbers
are static). The step-cost ratio is against ``rb.gradient_descent`` over the same steps,
measured in the same run. Prints a markdown table.

    python benchmarks/bench_train.py [--steps 20000]
"""

from __future__ import annotations

import argparse
import time

import optax

import rankbias as rb


def _t(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20_000)
    args = ap.parse_args()
    M = rb.random_low_rank((20, 20), 3, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=0)
    model = rb.DeepFactorization((20, 20), depth=3)
    p = model.init("gaussian", scale=1e-3, seed=0)
    S = args.steps
    rb.gradient_descent(prob, model, p, 0.1, S, n_save=50)
    gd = _t(lambda: rb.gradient_descent(prob, model, p, 0.11, S, n_save=50))
    print(f"20x20 depth 3, {S} steps; plain GD (compiled): {gd:.3f} s\n")
    print(
        "| optimizer | first call (compile + run) s | new lr/steps/seed s | new optax object s "
        "| run / GD run |"
    )
    print("|---|---|---|---|---|")
    cases = [
        ("sgd", {}, lambda lr: optax.sgd(lr)),
        ("momentum", {}, lambda lr: optax.sgd(lr, momentum=0.9)),
        ("adam", {}, lambda lr: optax.adam(lr)),
        ("group_rmsprop", {}, lambda lr: rb.optimizers.group_rmsprop(lr)),
    ]
    for name, kw, obj in cases:
        lr0 = 1e-3 if name in ("adam", "group_rmsprop") else 0.01
        # the loop variables are bound as defaults (B023), though each lambda runs at once
        first = _t(
            lambda name=name, lr0=lr0, kw=kw: rb.train(
                prob, model, p, name, lr=lr0, steps=S, n_save=50, **kw
            )
        )
        again = _t(
            lambda name=name, lr0=lr0, kw=kw: rb.train(
                prob, model, p, name, lr=lr0 * 1.5, steps=S - 1, seed=3, n_save=50, **kw
            )
        )
        rb.train(prob, model, p, obj(lr0), steps=S, n_save=50)
        fresh = _t(
            lambda obj=obj, lr0=lr0: rb.train(prob, model, p, obj(lr0 * 1.5), steps=S, n_save=50)
        )
        print(f"| {name} | {first:.2f} | {again:.3f} | {fresh:.2f} | {again / gd:.2f} |")


if __name__ == "__main__":
    main()
