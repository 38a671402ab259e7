"""Gradient flow cost: rankbias (adaptive RKC/Tsit5 ODE) vs a plain NumPy fixed-step GD loop.

Problem: 20 x 20 symmetric completion, rank-3 PSD truth, half the entries observed,
f = 1/2 sum_Omega (W - M)^2; DeepFactorization depth 2 and 3, gaussian init of end-to-end
scale alpha in {1e-4, 1e-8, 1e-16}. For each case:

* reference: rankbias at rtol 1e-12, atol 1e-16. The end time t_end is the first time its
  loss is <= 1e-10 (converged to practical precision; at depth 3 the last digits converge
  only polynomially in t, so "steady state" is not a useful end);
* ours: rankbias at the default rtol 1e-8 run to t_end: wall time (compiled; compile time
  apart), steps, gradient evaluations, distance of W(t_end) to the reference's;
* NumPy loop: W_j <- W_j - lr grad_j (what public codes do), timed per step. GD at time T
  differs from the flow by C * lr (Euler's global error); C is fitted from two runs
  (lr0 and lr0/2) over a short horizon at alpha = 1e-4, and the step that reaches 1e-6 is
  lr* = 1e-6 / C (an optimistic bound for long horizons). Steps needed = t_end / lr*.
  The loop is run for real when that takes under ``--budget`` seconds, else its time is
  projected from the measured time per step (marked "projected").

Usage: python benchmarks/bench_flow.py [--budget 60] [--out benchmarks/results_flow.md]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import rankbias as rb


def numpy_gd(mask, M, params, lr, steps):
    """The reference loop: prefix/suffix products, all layers updated at once."""
    Ws = [p.copy() for p in params]
    L = len(Ws)
    for _ in range(steps):
        pre = [np.eye(Ws[0].shape[1])]
        for W in Ws:
            pre.append(W @ pre[-1])
        G = mask * (pre[-1] - M)
        suf = np.eye(Ws[-1].shape[0])
        grads = [None] * L
        for j in range(L - 1, -1, -1):
            grads[j] = suf.T @ G @ pre[j].T
            suf = suf @ Ws[j]
        for j in range(L):
            Ws[j] -= lr * grads[j]
    W = Ws[0]
    for P in Ws[1:]:
        W = P @ W
    return W


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds a NumPy run may take")
    ap.add_argument("--out", default="benchmarks/results_flow.md")
    args = ap.parse_args(argv)

    M = rb.random_low_rank((20, 20), 3, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=0, symmetric=True)
    mask = prob.mask.astype(float)
    rows = []
    for depth in (2, 3):
        model = rb.DeepFactorization((20, 20), depth=depth)
        # Euler constant C of GD vs GF over a short, fully affordable horizon.
        p4 = [np.asarray(p) for p in model.init("gaussian", scale=1e-4, seed=0)]
        T_fit, lr0 = 50.0, 0.02
        ref4 = rb.gradient_flow(prob, model, p4, t_max=T_fit, rtol=1e-12, atol=1e-16, gtol=None)
        e1 = np.linalg.norm(numpy_gd(mask, M, p4, lr0, int(T_fit / lr0)) - ref4.final_matrix)
        e2 = np.linalg.norm(numpy_gd(mask, M, p4, lr0 / 2, int(T_fit / (lr0 / 2))) - ref4.final_matrix)
        C = max(e1 / lr0, e2 / (lr0 / 2))
        lr_star = min(lr0, 1e-6 / C)
        for alpha in (1e-4, 1e-8, 1e-16):
            ps = [np.asarray(p) for p in model.init("gaussian", scale=alpha, seed=0)]
            full = rb.gradient_flow(prob, model, ps, t_max=1e8, rtol=1e-12, atol=1e-16, gtol=1e-11)
            t_end = float(full.times[np.argmax(full.loss <= 1e-10)]) if np.any(full.loss <= 1e-10) \
                else float(full.times[-1])
            ref = rb.gradient_flow(prob, model, ps, t_max=t_end, rtol=1e-12, atol=1e-16, gtol=None)
            t0 = time.perf_counter()
            rb.gradient_flow(prob, model, ps, t_max=t_end, gtol=None)  # compile + run
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            ours = rb.gradient_flow(prob, model, ps, t_max=t_end, gtol=None)
            wall = time.perf_counter() - t0
            err = np.linalg.norm(ours.final_matrix - ref.final_matrix)
            # NumPy loop: time per step, then real or projected total.
            probe = 2000
            t0 = time.perf_counter()
            numpy_gd(mask, M, ps, lr_star, probe)
            per_step = (time.perf_counter() - t0) / probe
            steps_needed = int(np.ceil(t_end / lr_star))
            proj = steps_needed * per_step
            if proj <= args.budget:
                t0 = time.perf_counter()
                Wgd = numpy_gd(mask, M, ps, lr_star, steps_needed)
                np_time = time.perf_counter() - t0
                np_err = f"{np.linalg.norm(Wgd - ref.final_matrix):.1e}"
                kind = "measured"
            else:
                np_time, np_err, kind = proj, "-", "projected"
            rows.append(dict(depth=depth, alpha=alpha, t_end=t_end, ours_s=wall, compile_s=first - wall,
                             steps=ours.info["num_steps"], nfe=ours.info["num_vf_evals"], err=err,
                             lr=lr_star, np_steps=steps_needed, np_s=np_time, np_err=np_err,
                             kind=kind, ratio=np_time / wall))
            r = rows[-1]
            print(f"depth {depth} alpha {alpha:.0e}: ours {wall:.2f}s ({r['steps']} steps, err {err:.1e}); "
                  f"numpy {np_time:.3g}s {kind} ({steps_needed} steps of lr {lr_star:.2g}); "
                  f"ratio {r['ratio']:.3g}", flush=True)

    header = ("| depth | alpha | t_end | ours (s) | compile (s) | steps | grad evals | end-point err | "
              "NumPy lr | NumPy steps | NumPy (s) | NumPy err | NumPy / ours |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['depth']} | {r['alpha']:.0e} | {r['t_end']:.3g} | {r['ours_s']:.2f} | "
             f"{r['compile_s']:.1f} | {r['steps']} | {r['nfe']} | {r['err']:.1e} | {r['lr']:.2g} | "
             f"{r['np_steps']:.3g} | {r['np_s']:.3g} ({r['kind']}) | {r['np_err']} | {r['ratio']:.3g}x |"
             for r in rows]
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}"
    text = (f"# bench_flow ({time.strftime('%Y-%m-%d')}, {machine})\n\n"
            "Reference: rankbias at rtol 1e-12; t_end = first time its loss <= 1e-10. Ours: default rtol 1e-8.\n\n"
            + header + "\n".join(lines) + "\n")
    print("\n" + text)
    with open(args.out, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
