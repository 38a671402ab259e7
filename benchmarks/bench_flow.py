"""Gradient flow cost: rankbias (adaptive RKC/Tsit5 ODE) vs fixed-step GD loops (NumPy, PyTorch).

Problems: symmetric completion, PSD truth, f = 1/2 sum_Omega (W - M)^2 (||M||_2 = 1):
20 x 20 rank 3 (half observed) and 100 x 100 rank 5 (30% observed). Models:
DeepFactorization depth 2, 3, 4, gaussian init of end-to-end scale alpha in
{1e-3, 1e-8, 1e-16, 1e-32}. For each case:

* reference: rankbias at rtol 1e-12 (init-scaled atol) run to t_end, the first recorded
  time the loss is <= 1e-10 (found at rtol 1e-10 over horizons growing 100x; converged to
  practical precision: at depth >= 3 the last digits converge only polynomially in t, so
  "steady state" is not a useful end);
* ours: rankbias at the default rtol 1e-8, run to t_end: wall time (compiled; compile apart),
  steps, gradient evaluations, distance of W(t_end) to the reference's ("end err") and the
  largest distance over 40 shared log-spaced times ("traj err");
* loops: W_j <- W_j - lr grad_j with prefix/suffix products (what public codes do), NumPy
  float64 and PyTorch eager float64 (skipped with a note if torch is absent). GD at time T
  differs from the flow by C * lr (Euler's global error); C is fitted per problem and depth
  from two runs (lr0, lr0/2) over a short horizon at alpha = 1e-3, and lr* = 1e-6 / C is
  the largest step expected to reach 1e-6 (optimistic for long horizons: the error of a
  saddle escape grows with the plateau, so the loops' times below are lower bounds).
  Steps needed = t_end / lr*. A loop is run for real when its projection is under
  ``--budget`` seconds (then its end and trajectory errors are measured), else its time is
  projected from the measured time per step and marked "projected".

Stiff cases (``--stiff``): depth >= 3 with plateaus above 1e7 (``--min-plateau``), where
plain RKC does not get past the stretch between two escapes, and where no rtol-1e-12
reference is affordable (``--min-plateau 1e3 --sizes 100`` adds the 100 x 100 cases the main
table misses). They run with ``solver="hybrid"`` (Tsit5 / RKC / dense Rodas4 up to
``DENSE_LIMIT`` parameters, plain RKC above) at rtol 1e-8 and 1e-9 (``--rtols``; the
default atol, fixed at t = 0, unless ``--atol``) up to the certified steady
state (gtol 1e-10) or 1e3 x the plateau; reported: wall time, steps,
the times at which the loss first falls below 1e-1, 1e-2 and 1e-10 at each tolerance (their
spread is the accuracy: no rtol-1e-12 reference is affordable there; below
``max|y0|^(L-1) ~ 0.01 eps`` the later escapes are below float64 resolution whatever the
tolerance, see README "Resolution"), and the loops' projected times.

Usage: python benchmarks/bench_flow.py [--budget 600] [--sizes 20 100] [--out benchmarks/results_flow.md]
       python benchmarks/bench_flow.py --stiff [--sizes 20] [--min-plateau 1e7] [--rtols 1e-8 1e-9]
                                       [--atol A] [--out benchmarks/results_flow_stiff.md]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np

import rankbias as rb
from rankbias.dynamics.flow.precision import below_rounding_floor
from rankbias.dynamics.flow.solvers import DENSE_LIMIT

try:
    import torch
except ImportError:  # optional: the PyTorch column is skipped with a note
    torch = None

ALPHAS = (1e-3, 1e-8, 1e-16, 1e-32)
DEPTHS = (2, 3, 4)
PROBLEMS = {20: (3, 0.5), 100: (5, 0.3)}
N_SHARED = 41
PLATEAU_LIMIT = 1e9
STIFF_LIMIT = 1e7  # --stiff runs the depth >= 3 cases with longer plateaus


def gd_loop(mask, M, params, lr, steps, record_steps=(), backend="numpy"):
    """Fixed-step GD on f = 1/2 ||mask * (W_L ... W_1 - M)||^2; returns W at the end and
    at ``record_steps``. ``backend``: ``"numpy"`` or ``"torch"`` (eager, float64)."""
    if backend == "torch":
        xp_mask, xp_M = torch.from_numpy(mask), torch.from_numpy(M)
        Ws = [torch.from_numpy(np.array(p)) for p in params]
        eye = lambda k: torch.eye(k, dtype=torch.float64)
        to_np = lambda X: X.numpy().copy()
    else:
        xp_mask, xp_M = mask, M
        Ws = [np.array(p) for p in params]
        eye = np.eye
        to_np = np.copy
    L = len(Ws)
    want = {int(s): i for i, s in enumerate(record_steps)}
    recs = [None] * len(want)

    def product():
        W = Ws[0]
        for P in Ws[1:]:
            W = P @ W
        return W

    if 0 in want:
        recs[want[0]] = to_np(product())
    for k in range(1, steps + 1):
        pre = [eye(Ws[0].shape[1])]
        for W in Ws:
            pre.append(W @ pre[-1])
        G = xp_mask * (pre[-1] - xp_M)
        suf = eye(Ws[-1].shape[0])
        grads = [None] * L
        for j in range(L - 1, -1, -1):
            grads[j] = suf.T @ G @ pre[j].T
            suf = suf @ Ws[j]
        for j in range(L):
            Ws[j] -= lr * grads[j]
        if k in want:
            recs[want[k]] = to_np(product())
    return to_np(product()), recs


def _time_per_step(mask, M, params, lr, backend, probe=1000):
    gd_loop(mask, M, params, lr, 20, backend=backend)  # warm caches / allocator
    t0 = time.perf_counter()
    gd_loop(mask, M, params, lr, probe, backend=backend)
    return (time.perf_counter() - t0) / probe


def _loop_case(mask, M, ps, lr, t_end, ref, budget, backend):
    """Time (real or projected), end error and trajectory error of one GD loop."""
    per_step = _time_per_step(mask, M, ps, lr, backend)
    steps = int(np.ceil(t_end / lr))
    proj = steps * per_step
    if proj > budget:
        return dict(s=proj, kind="projected", end="-", traj="-", steps=steps)
    rec = [int(round(t / lr)) for t in ref.times]
    t0 = time.perf_counter()
    W, Ws = gd_loop(mask, M, ps, lr, steps, rec, backend)
    wall = time.perf_counter() - t0
    traj = max(np.linalg.norm(a - b) for a, b in zip(Ws, ref.matrices, strict=True))
    return dict(
        s=wall,
        kind="measured",
        end=f"{np.linalg.norm(W - ref.final_matrix):.1e}",
        traj=f"{traj:.1e}",
        steps=steps,
    )


def instance(d):
    """(M, problem, mask as floats): the d x d symmetric completion of PROBLEMS[d]."""
    rank, frac = PROBLEMS[d]
    M = rb.random_low_rank((d, d), rank, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, frac, seed=0, symmetric=True)
    return M, prob, prob.mask.astype(float)


def loop_step(M, prob, mask, model, T_fit=50.0, lr0=0.02):
    """lr* = 1e-6 / C, C = Euler's error constant of GD vs GF fitted over a short, fully
    affordable horizon at alpha = 1e-3 from two real runs (lr0, lr0 / 2)."""
    p3 = [np.asarray(p) for p in model.init("gaussian", scale=1e-3, seed=0)]
    ref3 = rb.gradient_flow(prob, model, p3, t_max=T_fit, rtol=1e-12, gtol=None)
    e = [
        np.linalg.norm(gd_loop(mask, M, p3, lr, int(round(T_fit / lr)))[0] - ref3.final_matrix) / lr
        for lr in (lr0, lr0 / 2)
    ]
    return min(lr0, 1e-6 / max(e))


def find_t_end(prob, model, ps, target=1e-10, max_steps=40_000):
    """(first recorded time the flow's loss is <= target, reached?): horizons grow 100x from
    1e3 (a depth-L plateau lasts ~alpha^-(1 - 2/L), up to 1e16 at depth 4 and alpha = 1e-32;
    the tail after it converges only polynomially, so there is no steady state to wait for).
    A horizon that needs more than ``max_steps`` steps ends the search unreached."""
    T = 1e3
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tr = rb.gradient_flow(
                prob, model, ps, t_max=T, rtol=1e-10, gtol=None, n_save=400, max_steps=max_steps
            )
        hit = tr.loss <= target
        if np.any(hit):
            return float(tr.times[np.argmax(hit)]), True
        if T >= 1e24 or tr.info["status"] == "max_steps":
            return float(tr.times[-1]), False
        T *= 100.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--budget",
        type=float,
        default=600.0,
        help="seconds a loop may run for real (issue 6: 10 minutes)",
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=list(PROBLEMS))
    ap.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    ap.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--stiff",
        action="store_true",
        help="only the depth >= 3 cases with plateaus above --min-plateau, with solver='hybrid'",
    )
    ap.add_argument(
        "--rtols",
        type=float,
        nargs="+",
        default=[1e-8, 1e-9],
        help="--stiff: the tolerances to run and compare (one or two; default 1e-8 1e-9)",
    )
    ap.add_argument(
        "--atol",
        type=float,
        default=None,
        help="--stiff: absolute tolerance (default: gradient_flow's, "
        "min(1e-12, 1e-4 rtol max|y0|), fixed at t = 0)",
    )
    ap.add_argument(
        "--min-plateau",
        type=float,
        default=STIFF_LIMIT,
        help="--stiff runs the cases whose plateau alpha^-(1-2/L) exceeds this "
        "(default 1e7; 1e3 adds the 100x100 cases the main table misses)",
    )
    args = ap.parse_args(argv)
    if not 1 <= len(args.rtols) <= 2 or min(args.rtols) <= 0:
        ap.error(f"--rtols takes one or two positive tolerances, got {args.rtols}")
    if args.atol is not None and not args.atol > 0:
        ap.error(f"--atol must be positive, got {args.atol}")
    if args.out is None:
        args.out = f"benchmarks/results_flow{'_stiff' if args.stiff else ''}.md"
    if torch is not None:
        torch.set_num_threads(2)
    if args.stiff:
        return stiff_main(args)
    rows = []
    for d in args.sizes:
        M, prob, mask = instance(d)
        for depth in args.depths:
            model = rb.DeepFactorization((d, d), depth=depth)
            lr_star = loop_step(M, prob, mask, model)
            for alpha in args.alphas:
                ps = [np.asarray(p) for p in model.init("gaussian", scale=alpha, seed=0)]
                plateau = alpha ** -(1 - 2 / depth) if depth > 2 else np.log(1 / alpha)
                if plateau > PLATEAU_LIMIT:
                    # Not run: between two escapes one learned direction (curvature ~1) stays
                    # stiff for ~plateau time units while the next creeps up; RKC then needs
                    # ~2000 stages per step for ~1e4 steps (minutes; see RESULTS.md).
                    t_end, reached = plateau, False
                    why = (
                        "not run: plateau alpha^-(1-2/L) above 1e9 (stiff stretch between "
                        "escapes, minutes per run; see RESULTS.md)"
                    )
                else:
                    t_end, reached = find_t_end(prob, model, ps)
                    why = (
                        "loss 1e-10 not reached within 40,000 steps at rtol 1e-10 (stiff "
                        "stretch between escapes; see RESULTS.md)"
                    )
                if not reached:
                    # The stretch between two escapes at depth >= 3 and tiny alpha: one learned
                    # direction (curvature ~1) is stiff for ~1e10 time units while the next
                    # one creeps up; RKC then needs ~2000 stages per step (see RESULTS.md).
                    rows.append(
                        dict(d=d, depth=depth, alpha=alpha, t_end=t_end, reached=False, why=why)
                    )
                    print(
                        f"d {d} depth {depth} alpha {alpha:.0e}: not run or not reached "
                        f"(t = {t_end:.3g})",
                        flush=True,
                    )
                    _write(rows, args, quiet=True)
                    continue
                kw = dict(t_max=t_end, gtol=None, n_save=N_SHARED, save_matrices=True)
                ref = rb.gradient_flow(prob, model, ps, rtol=1e-12, **kw)
                t0 = time.perf_counter()
                rb.gradient_flow(prob, model, ps, **kw)  # compile + run
                first = time.perf_counter() - t0
                t0 = time.perf_counter()
                ours = rb.gradient_flow(prob, model, ps, **kw)
                wall = time.perf_counter() - t0
                assert np.allclose(ours.times, ref.times)
                err = np.linalg.norm(ours.final_matrix - ref.final_matrix)
                traj = float(np.max(np.linalg.norm(ours.matrices - ref.matrices, axis=(1, 2))))
                row = dict(
                    d=d,
                    depth=depth,
                    alpha=alpha,
                    t_end=t_end,
                    reached=True,
                    ours_s=wall,
                    compile_s=max(first - wall, 0.0),
                    steps=ours.info["num_steps"],
                    nfe=ours.info["num_vf_evals"],
                    err=err,
                    traj=traj,
                    lr=lr_star,
                )
                row["numpy"] = _loop_case(mask, M, ps, lr_star, t_end, ref, args.budget, "numpy")
                row["torch"] = (
                    None
                    if torch is None
                    else _loop_case(mask, M, ps, lr_star, t_end, ref, args.budget, "torch")
                )
                rows.append(row)
                npc, tc = row["numpy"], row["torch"]
                print(
                    f"d {d} depth {depth} alpha {alpha:.0e}: t_end {t_end:.3g}; ours {wall:.2f}s "
                    f"({row['steps']} steps, end {err:.1e}, traj {traj:.1e}); numpy "
                    f"{npc['s']:.3g}s {npc['kind']} ({npc['steps']:.3g} steps of {lr_star:.2g})"
                    + ("" if tc is None else f"; torch {tc['s']:.3g}s {tc['kind']}"),
                    flush=True,
                )
                _write(rows, args, quiet=True)  # an interrupted run keeps its finished rows
    _write(rows, args)


LEVELS = (1e-1, 1e-2, 1e-10)


def _crossings(tr):
    return [
        float(tr.times[np.argmax(tr.loss <= v)]) if np.any(tr.loss <= v) else None for v in LEVELS
    ]


def stiff_main(args):
    """Depth >= 3 cases whose plateau exceeds STIFF_LIMIT, with the hybrid solver."""
    rows = []
    for d in args.sizes:
        M, prob, mask = instance(d)
        for depth in [L for L in args.depths if L >= 3]:
            model = rb.DeepFactorization((d, d), depth=depth)
            lr_star = loop_step(M, prob, mask, model)
            for alpha in args.alphas:
                plateau = alpha ** -(1 - 2 / depth)
                if plateau <= args.min_plateau:
                    continue
                ps = [np.asarray(p) for p in model.init("gaussian", scale=alpha, seed=0)]
                row = dict(d=d, depth=depth, alpha=alpha, runs={}, P=sum(p.size for p in ps))
                if below_rounding_floor(model, np.concatenate([p.ravel() for p in ps])):
                    rows.append(_noise_bound_case(prob, model, ps, plateau, row, args))
                    _write_stiff(rows, args, quiet=True)
                    continue
                for rtol in args.rtols:
                    # Stops at the certified steady state (gtol 1e-10: loss ~1e-20), after
                    # every crossing; the steps before it do not depend on the stop.
                    kw = dict(
                        t_max=1e3 * plateau,
                        rtol=rtol,
                        atol=args.atol,
                        gtol=1e-10,
                        n_save=2000,
                        max_steps=200_000,
                        solver="hybrid",
                    )
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        rb.gradient_flow(prob, model, ps, **{**kw, "t_max": 1.0})  # compile
                        tr = rb.gradient_flow(prob, model, ps, **kw)
                    row["runs"][rtol] = dict(
                        s=tr.info["wall_time"],
                        steps=tr.info["num_steps"],
                        status=tr.info["status"],
                        cross=_crossings(tr),
                    )
                    print(
                        f"d {d} depth {depth} alpha {alpha:.0e} rtol {rtol:.0e}: "
                        f"{tr.info['wall_time']:.1f} s, {tr.info['num_steps']} steps, "
                        f"crossings {row['runs'][rtol]['cross']}",
                        flush=True,
                    )
                t_end = row["runs"][args.rtols[0]]["cross"][-1] or 1e3 * plateau
                per = _time_per_step(mask, M, ps, lr_star, "numpy")
                row["numpy"] = t_end / lr_star * per
                row["torch"] = (
                    None
                    if torch is None
                    else t_end / lr_star * _time_per_step(mask, M, ps, lr_star, "torch")
                )
                row["lr"] = lr_star
                rows.append(row)
                _write_stiff(rows, args, quiet=True)
    _write_stiff(rows, args)


def _noise_bound_case(prob, model, ps, plateau, row, args):
    """A case whose stretch after the first escape is float64 rounding noise (README,
    'Resolution'): time only the first escape, at each tolerance, with growing step caps."""
    row["noise"] = {}
    for rtol in args.rtols:
        for cap in (2000, 3000, 4000, 6000):
            kw = dict(
                t_max=1e3 * plateau,
                rtol=rtol,
                atol=args.atol,
                gtol=None,
                n_save=2000,
                max_steps=cap,
                solver="hybrid",
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rb.gradient_flow(prob, model, ps, **{**kw, "t_max": 1.0, "max_steps": 10})
                tr = rb.gradient_flow(prob, model, ps, **kw)
            hit = np.nonzero(tr.loss <= 0.5 * tr.loss[0])[0]
            if hit.size:
                break
        # Locate the escape within its record interval: 400 save times there (~3e-5 relative).
        # A finer zoom is moot: a different save grid changes the steps, and the escape time
        # with them, by ~5e-6 relative (measured).
        lo = hi = None
        if hit.size:
            lo, hi = tr.times[hit[0] - 1], tr.times[hit[0]]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tr = rb.gradient_flow(
                    prob,
                    model,
                    ps,
                    **{
                        **kw,
                        "t_max": hi,
                        "max_steps": 2 * cap,
                        "save_at": np.linspace(lo, hi, 400),
                    },
                )
            hit = np.nonzero(tr.loss <= 0.5 * tr.loss[0])[0]
        width = hi - lo if hit.size else None
        i = tr.info
        row["noise"][rtol] = dict(
            s=i["wall_time"],
            steps=i["num_steps"],
            restarts=i["restarts"],
            escape=float(tr.times[hit[0]]) if hit.size else None,
            t=i["t_final"],
            width=width,
        )
        print(
            f"d {row['d']} depth {row['depth']} alpha {row['alpha']:.0e} rtol {rtol:.0e}: "
            f"first escape {row['noise'][rtol]['escape']} ({i['num_steps']} steps, "
            f"{i['restarts']} clock restarts, {i['wall_time']:.1f} s)",
            flush=True,
        )
    return row


def _write_stiff(rows, args, quiet=False):
    fmt = lambda c: " / ".join("-" if x is None else f"{x:.4g}" for x in c)
    r1, r2 = args.rtols[0], (args.rtols[1] if len(args.rtols) > 1 else None)
    e = lambda x: f"{x:.0e}".replace("e-0", "e-")
    lines = []
    for r in rows:
        if "noise" in r:
            esc = lambda x: (
                "none" if x["escape"] is None else f"{x['escape']:.7e} (+0/-{x['width'] / 399:.1g})"
            )
            runs = [
                f"{esc(x)} (rtol {e(k)}: {x['steps']} steps, {x['restarts']} clock "
                f"restarts, {x['s']:.1f} s)"
                for k, x in r["noise"].items()
            ]
            lines.append(
                f"| {r['d']} | {r['depth']} | {r['alpha']:.0e} | {r['P']} | not reached: first escape (loss "
                f"halved) at t = {' and '.join(runs)}; after it the float64 gradient is rounding noise "
                f"(max|y0|^(L-2) < 100 eps; README, 'Resolution') |" + " - |" * 9
            )
            continue
        a = r["runs"][r1]
        t_end = a["cross"][-1]
        P = f"{r['P']}" + ("" if r["P"] <= DENSE_LIMIT else " (RKC only)")
        wall = lambda x: f"{x['s']:.1f}" + ("" if x["status"] != "max_steps" else " (step cap)")
        second = (
            "not run | - | -"
            if r2 is None
            else f"{wall(r['runs'][r2])} | {r['runs'][r2]['steps']} | {fmt(r['runs'][r2]['cross'])}"
        )
        tcol = "not installed" if r["torch"] is None else f"{r['torch']:.3g} (projected)"
        lines.append(
            f"| {r['d']} | {r['depth']} | {r['alpha']:.0e} | {P} | {wall(a)} | {a['steps']} | "
            f"{fmt(a['cross'])} | {second} | "
            f"{r['lr']:.2g} | {r['numpy']:.3g} (projected) | "
            + ("-" if t_end is None else f"{r['numpy'] / a['s']:.3g}x")
            + f" | {tcol} |"
        )
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}"
    )
    atol = (
        "gradient_flow's default atol (min(1e-12, 1e-4 rtol max|y0|), fixed at t = 0)"
        if args.atol is None
        else f"atol {args.atol:g}"
    )
    head2 = "rtol -" if r2 is None else f"rtol {e(r2)}"
    text = (
        f"# bench_flow --stiff ({time.strftime('%Y-%m-%d')}, {machine})\n\n"
        "solver='hybrid' (Tsit5 / RKC / dense Rodas4 up to P = "
        f"{DENSE_LIMIT} parameters; plain RKC above), {atol}, stopped at the certified "
        "steady state (gtol 1e-10) or 1e3 x the plateau. Crossings: first recorded times the "
        "loss is <= 1e-1 / 1e-2 / 1e-10 (2000 log-spaced records). Their change between the "
        "tolerances is the accuracy of the later escapes (README, 'Resolution'). Loops: "
        f"t(1e-10) at rtol {e(r1)} / lr x measured time per step.\n\n"
        f"| d | depth | alpha | P | rtol {e(r1)} (s) | steps | crossings | {head2} (s) | steps | "
        "crossings | GD lr | NumPy (s) | NumPy / ours | PyTorch (s) |\n"
        + "|---" * 14
        + "|\n"
        + "\n".join(lines)
        + "\n"
    )
    if not quiet:
        print("\n" + text)
    with open(args.out, "w") as fh:
        fh.write(text)


def _write(rows, args, quiet=False):
    header = (
        "| d | depth | alpha | t_end | ours (s) | compile (s) | steps | grad evals | end err | "
        "traj err | GD lr | GD steps | NumPy (s) | NumPy end / traj err | NumPy / ours | "
        "PyTorch (s) | PyTorch / ours |\n" + "|---" * 17 + "|\n"
    )
    lines = []
    for r in rows:
        if not r["reached"]:
            lines.append(
                f"| {r['d']} | {r['depth']} | {r['alpha']:.0e} | > {r['t_end']:.3g} | "
                f"{r['why']} |" + " - |" * 12
            )
            continue
        n, t = r["numpy"], r["torch"]
        tcol = (
            "not installed | -"
            if t is None
            else f"{t['s']:.3g} ({t['kind']}) | {t['s'] / r['ours_s']:.3g}x"
        )
        lines.append(
            f"| {r['d']} | {r['depth']} | {r['alpha']:.0e} | {r['t_end']:.3g} | {r['ours_s']:.2f} | "
            f"{r['compile_s']:.1f} | {r['steps']} | {r['nfe']} | {r['err']:.1e} | {r['traj']:.1e} | "
            f"{r['lr']:.2g} | {n['steps']:.3g} | {n['s']:.3g} ({n['kind']}) | {n['end']} / {n['traj']} | "
            f"{n['s'] / r['ours_s']:.3g}x | {tcol} |"
        )
    machine = (
        f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}"
    )
    tv = "not installed" if torch is None else torch.__version__
    text = (
        f"# bench_flow ({time.strftime('%Y-%m-%d')}, {machine}, PyTorch {tv})\n\n"
        "Reference: rankbias at rtol 1e-12; t_end = first time its loss <= 1e-10. Ours: default "
        "rtol 1e-8. Errors are Frobenius distances to the reference W (||M||_2 = 1); traj err "
        f"is the largest over {N_SHARED} shared times. Loops run for real under "
        f"{args.budget:g} s, else projected from the time per step.\n\n"
        + header
        + "\n".join(lines)
        + "\n"
    )
    if not quiet:
        print("\n" + text)
    with open(args.out, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
