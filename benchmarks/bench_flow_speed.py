"""The flow at the speed of its gradient (issue 30): this checkout against another, alternated.

Problem: ``rankbias.reproduce.arora2019``'s instance (100 x 100 rank-5 truth, 2,000 observed
entries, seed 0), ``DeepFactorization`` depth 3 and 4, factor entries of std 1e-3, solver
``"rkc"``, ``t_max = 5e4``, ``rtol = 1e-6``, the study's stop (``gtol = 1``,
``certificate_tol = 1e-5``), ``n_save = 30`` with matrices saved (``bench_flow_eval.FLOW``).

Per depth and source tree, in a fresh subprocess: the flow (compiled first by a short run of
the same shapes, then timed), its steps, rejected steps, ``info["num_vf_evals"]``, the
evaluations counted on the host (every objective-and-gradient evaluation and JVP, rejected
attempts included: ``bench_flow_eval.true_evals``, a second flow with a host callback, not
timed), the wall time per counted evaluation, a bare jitted ``loss_and_grad`` of the same
problem (median of ``--repeat`` calls) and the error to the truth. With ``--against OLD/src``
the two trees run alternately (A B A B, ``--rounds`` times; the table takes each one's
fastest wall time), so the machine's load weighs on both alike; ``uptime``'s load is printed.

Usage::

    git -C /work/main archive HEAD src | tar -x -C /tmp/old
    python benchmarks/bench_flow_speed.py --against /tmp/old/src [--depths 3 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _measure(L: int, repeat: int, count: bool) -> dict:
    """One depth in this process (the tree on ``PYTHONPATH``)."""
    import warnings

    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(HERE))
    from bench_flow_eval import FLOW, RANK, SEED, D, K, _ms, true_evals

    import rankbias as rb
    from rankbias.dynamics._sparse import backend_data, loss_and_grad
    from rankbias.reproduce.arora2019 import _flow_init, _instance, relative_error

    M, prob = _instance(D, RANK, K, SEED)
    model = rb.DeepFactorization((D, D), depth=L)
    p0 = _flow_init(model, D, SEED, 1e-3, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rb.gradient_flow(prob, model, p0, **{**FLOW, "t_max": 1e-3})  # compiles
        tr = rb.gradient_flow(prob, model, p0, **FLOW)
    info = tr.info
    data = backend_data(prob, model, "dense")
    params = tuple(jnp.asarray(p) for p in tr.final_params)
    bare = _ms(jax.jit(lambda p: loss_and_grad(data, model, p)[:2]), params, repeat=repeat)
    return dict(
        L=L,
        src=rb.__file__,
        status=str(info["status"]),
        t_final=float(info["t_final"]),
        wall=float(info["wall_time"]),
        steps=int(info["num_steps"]),
        rejected=int(info["num_rejected"]),
        nfe=int(info["num_vf_evals"]),
        true=true_evals(prob, model, p0) if count else None,
        bare=bare,
        error=float(relative_error(tr.final_matrix, M)),
    )


def _child(src: str, L: int, repeat: int, count: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    cmd = [sys.executable, __file__, "--child", str(L), "--repeat", str(repeat)]
    r = subprocess.run(
        cmd + ([] if count else ["--no-count"]), env=env, capture_output=True, text=True
    )
    if r.returncode:
        raise RuntimeError(f"{src} depth {L} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _row(name: str, r: dict, true: int | None) -> str:
    per = 1e3 * r["wall"] / true if true else float("nan")
    rej = f"{r['rejected']} ({100 * r['rejected'] / max(r['steps'], 1):.0f}%)"
    return (
        f"| {r['L']} | {name} | {r['status']} | {r['t_final']:.4g} | {r['wall']:.2f} | "
        f"{r['steps']} | {rej} | {r['nfe']} | {true} | {per:.3f} | {r['bare']:.3f} | "
        f"{per / r['bare']:.2f} | {r['error']:.4e} |"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--against", help="another source tree (its src/ folder)")
    ap.add_argument("--depths", type=int, nargs="+", default=[3, 4])
    ap.add_argument("--rounds", type=int, default=2, help="alternations (A B) per depth")
    ap.add_argument("--repeat", type=int, default=100, help="calls of the bare evaluation")
    ap.add_argument("--no-count", action="store_true", help="skip the host count (faster)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child is not None:
        print(json.dumps(_measure(a.child, a.repeat, not a.no_count)))
        return
    trees = [("this", str(HERE.parent / "src"))]
    if a.against:
        trees.insert(0, ("other", a.against))
    print(f"# {os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
    print(
        "\n| depth | tree | status | t_end | wall s | steps | rejected | num_vf_evals | "
        "evaluations (host count) | ms / evaluation | bare loss_and_grad ms | ratio | "
        "error to truth |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for L in a.depths:
        runs: dict[str, list[dict]] = {name: [] for name, _ in trees}
        for k in range(a.rounds):
            for name, src in trees:
                # the host count (a second flow with callbacks) once per tree and depth
                runs[name].append(_child(src, L, a.repeat, count=k == 0 and not a.no_count))
        for name, _ in trees:
            best = min(runs[name], key=lambda r: r["wall"])
            print(_row(name, best, runs[name][0]["true"]), flush=True)
        if a.against:
            o, m = (min(r["wall"] for r in runs[n]) for n in ("other", "this"))
            walls = {n: " ".join(f"{r['wall']:.1f}" for r in runs[n]) for n in runs}
            print(f"<!-- depth {L}: wall this/other {m / o:.2f} (all runs: {walls}) -->")
    print(f"\n# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
