"""Batched against one-by-one gradient descent on the CPU (issue 15, point 6).

The issue measured 16 GD runs of a 100x100 depth-3 completion at 14.2 s batched against
6.3 s one by one (float64, a loaded machine). This script times, in one process and on the
same runs (16 inits, one problem):

* ``batch (vmap)``: :func:`rankbias.gradient_descent_batch`, one vmapped computation
  (what it does on the CPU);
* ``batch (lax.map)``: the same loop compiled as a ``lax.map`` over the runs;
* ``one by one``: a Python loop of :func:`rankbias.gradient_descent` (compiled once, the
  settings are traced).

Each is timed cold (first call: tracing and compiling included, with the persistent cache
turned off so that it really compiles) and warm (best of ``--repeat`` calls). Ratios are
against ``one by one`` in the same run.

``--grid``: warm times only, of ``vmap`` against ``one by one`` (and ``lax.map``) over the
sizes ``--sizes`` and depths ``--depths``, alternating the paths ``--repeat`` times and
keeping each one's best (a shared, loaded machine: ratios within one row are what counts).

Usage: python benchmarks/bench_batch_gd.py [--d 100] [--depth 3] [--runs 16] [--steps 2000]
       [--repeat 3] [--lr 0.02] [--out FILE]
       python benchmarks/bench_batch_gd.py --grid [--sizes 15 30 100] [--depths 2 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("RANKBIAS_JAX_CACHE", "off")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import rankbias as rb  # noqa: E402
from rankbias.dynamics._common import batch_apply, prepare_batch  # noqa: E402
from rankbias.dynamics.descent.grid import record_steps  # noqa: E402
from rankbias.dynamics.descent.loop import LoopConfig, _run  # noqa: E402
from rankbias.dynamics.descent.rules import GDRule  # noqa: E402


@jax.jit
def _noop(x):
    return x


def _lax_map_runner():
    """The GD loop over the runs as ``lax.map`` (``batch_apply`` without ``cpu_vmap``)."""
    import equinox as eqx

    @eqx.filter_jit
    def run(problem, params, rec_steps, hyper, divergence_factor, model, cfg):
        return batch_apply(
            lambda x: _run(problem, x, rec_steps, hyper, divergence_factor, model, cfg),
            (0,),
            (params,),
            cpu_vmap=False,
        )

    def call(prob, model, inits, lr, steps, n_save):
        problem, _, params, dtype, _ = prepare_batch(prob, model, inits, None)
        cfg = LoopConfig(False, GDRule(None))
        _, padded = record_steps(steps, n_save, None)
        out = run(
            problem,
            params,
            jnp.asarray(padded),
            {"lr": jnp.asarray(lr, dtype)},
            jnp.asarray(1e8, dtype),
            model,
            cfg,
        )
        return jax.block_until_ready(out)

    return call


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--n-save", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--out", default=None)
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="+", default=[15, 30, 100])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 3])
    a = ap.parse_args(argv)
    if a.grid:
        return grid(a)

    d = a.d
    M = rb.random_low_rank((d, d), 5, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.3, seed=0, symmetric=True)
    model = rb.DeepFactorization(shape=(d, d), depth=a.depth, width=d)
    inits = [model.init("gaussian", scale=1e-2, seed=s) for s in range(a.runs)]
    lr = a.lr
    lax_map = _lax_map_runner()

    cases = {
        "batch (vmap)": lambda: rb.gradient_descent_batch(
            prob, model, inits, lr, a.steps, n_save=a.n_save
        ),
        "batch (lax.map)": lambda: lax_map(prob, model, inits, lr, a.steps, a.n_save),
        "one by one": lambda: [
            rb.gradient_descent(prob, model, p, lr, a.steps, n_save=a.n_save) for p in inits
        ],
    }
    rows = {}
    for name, fn in cases.items():
        t0 = time.perf_counter()
        fn()
        cold = time.perf_counter() - t0
        warm = np.inf
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            fn()
            warm = min(warm, time.perf_counter() - t0)
        rows[name] = (cold, warm)
        print(f"{name}: cold {cold:.2f} s, warm {warm:.2f} s", flush=True)

    ref_cold, ref_warm = rows["one by one"]
    lines = [
        f"Batched vs one-by-one GD, {d}x{d} completion (30% observed), depth {a.depth}, "
        f"{a.runs} runs x {a.steps} steps, float64, {platform.machine()} CPU, "
        f"{os.cpu_count()} cores, JAX {jax.__version__}, {time.strftime('%Y-%m-%d')}",
        "",
        "| path | cold (s) | warm (s) | cold / one-by-one | warm / one-by-one |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (cold, warm) in rows.items():
        lines.append(
            f"| {name} | {cold:.2f} | {warm:.2f} | {cold / ref_cold:.2f} | {warm / ref_warm:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


def _paths(prob, model, inits, lr, a, lax_map) -> dict:
    kw = dict(n_save=a.n_save)
    return {
        "vmap": lambda: rb.gradient_descent_batch(
            prob, model, inits, lr, a.steps, strategy="vmap", **kw
        ),
        "lax.map": lambda: lax_map(prob, model, inits, lr, a.steps, a.n_save),
        "loop": lambda: rb.gradient_descent_batch(
            prob, model, inits, lr, a.steps, strategy="loop", **kw
        ),
    }


def grid(a) -> None:
    lax_map = _lax_map_runner()
    lines = [
        f"Warm GD, {a.runs} runs x {a.steps} steps (n_save {a.n_save}), float64, "
        f"{os.cpu_count()} cores, JAX {jax.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load {os.getloadavg()[0]:.1f}",
        "",
        "| d | depth | vmap (s) | lax.map (s) | one by one (s) | vmap / one by one | "
        "lax.map / one by one |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    print(lines[0], flush=True)
    for d in a.sizes:
        for depth in a.depths:
            M = rb.random_low_rank((d, d), min(5, d // 3), psd=True, seed=0)
            prob = rb.MatrixCompletion.uniform(M, 0.3, seed=0, symmetric=True)
            model = rb.DeepFactorization(shape=(d, d), depth=depth, width=d)
            inits = [model.init("gaussian", scale=1e-2, seed=s) for s in range(a.runs)]
            paths = _paths(prob, model, inits, a.lr, a, lax_map)
            best = dict.fromkeys(paths, np.inf)
            for fn in paths.values():
                fn()  # compile
            for _ in range(a.repeat):
                for name, fn in paths.items():
                    t0 = time.perf_counter()
                    fn()
                    best[name] = min(best[name], time.perf_counter() - t0)
            v, m, lp = best["vmap"], best["lax.map"], best["loop"]
            lines.append(
                f"| {d} | {depth} | {v:.3f} | {m:.3f} | {lp:.3f} | {v / lp:.2f} | {m / lp:.2f} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
