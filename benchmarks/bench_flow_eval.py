"""Where one gradient-flow step's time goes (issue 30): the Arora et al. 2019 setting.

Problem: ``rankbias.reproduce.arora2019``'s instance, 100 x 100 rank-5 truth, 2,000 observed
entries (seed 0), ``DeepFactorization`` depth 3 and 4, factor entries of std 1e-3, solver
``"rkc"``, ``t_max = 5e4``, ``rtol = 1e-6``, the study's stop (``gtol = 1``,
``certificate_tol = 1e-5``), ``n_save = 30`` with matrices saved.

For each depth, in one process:

* the flow (compiled first by a short run of the same shapes): wall time, steps, rejected,
  ``info["num_vf_evals"]``, wall time per evaluation;
* the bare costs, each jitted alone on the same problem: ``loss_and_grad`` (the model's
  objective and gradient), the flow's vector field (the same, flattened), one JVP of the
  vector field (a power iteration of RKC's spectral-radius estimate), the steady-state test
  (one per step) and one record (loss, gradient, SVD, ``W``);
* the breakdown: the flow's evaluations split by kind (gradients, JVPs, stopping tests,
  records: from the step count and the solver's own counter) times their bare costs, and
  the rest (diffrax's loop, step-size controller, stage arithmetic, saving) per step.

The ratio ``flow per evaluation / bare loss_and_grad`` is the target of issue 30 (<= 1.5);
the ratios are measured in the same process and stay meaningful on a shared machine (the
script prints ``uptime``'s load).

``--variants`` adds, per depth, the flow with RKC / controller variants (power iterations,
safety factor, PID coefficients, the Tsit5 switch), each compiled afresh: the suspects of
the rejected steps.

Usage: python benchmarks/bench_flow_eval.py [--depths 3 4] [--repeat 200] [--variants]
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import platform
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import rankbias as rb
from rankbias.dynamics._sparse import (
    backend_data,
    choose_backend,
    loss_and_grad,
    loss_and_grad_norm,
    record,
)
from rankbias.dynamics.flow.initial import check_initial_state as _check_initial_state
from rankbias.dynamics.flow.settings import traced_tolerances as _tols
from rankbias.dynamics.flow.solvers import FlowArgs, vector_field as _vector_field
from rankbias.dynamics.flow.steady import steady_event as _steady_event
from rankbias.problems import MatrixCompletion
from rankbias.reproduce.arora2019 import _flow_init, _instance

D, RANK, K, SEED = 100, 5, 2000, 0
FLOW = dict(
    t_max=5e4,
    rtol=1e-6,
    gtol=1.0,
    certificate_tol=1e-5,
    n_save=30,
    save_matrices=True,
    solver="rkc",
)


def _ms(fun, *args, repeat: int) -> float:
    """Median wall time of one call of the jitted ``fun`` in ms (compiled and warmed first)."""
    jax.block_until_ready(fun(*args))
    jax.block_until_ready(fun(*args))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fun(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


_CALLS = [0]


def _bump(_):
    _CALLS[0] += 1


class _Counted(MatrixCompletion):
    """The same completion, with a host callback per evaluation of ``f`` and its gradient:
    the independent count (``info["num_vf_evals"]`` of RKC misses rejected attempts)."""

    def loss_and_grad(self, W):
        jax.debug.callback(_bump, W[0, 0])
        return super().loss_and_grad(W)


def _callbacks(thunk) -> tuple[object, int]:
    _CALLS[0] = 0
    out = jax.block_until_ready(thunk())
    jax.effects_barrier()
    return out, _CALLS[0]


def true_evals(prob, model, p0) -> int:
    """Every objective-and-gradient evaluation and JVP of the solve, counted on the host."""
    counted = copy.copy(prob)
    object.__setattr__(counted, "__class__", _Counted)
    vf = _vector_field(model)
    data = backend_data(counted, model, "dense")
    y = model.flatten(p0)
    _, unit = _callbacks(lambda: jax.jit(lambda z: vf(0.0, z, data))(y))
    _, unit_jvp = _callbacks(
        lambda: jax.jit(lambda z: jax.jvp(lambda u: vf(0.0, u, data), (z,), (z,))[1])(y)
    )
    assert unit == unit_jvp, (unit, unit_jvp)
    _, outside = _callbacks(
        lambda: _check_initial_state(counted, model, p0, jnp.float64, 1.0, 10, "rkc")
    )
    _, ref = _callbacks(lambda: jax.jit(lambda p: loss_and_grad_norm(data, model, p))(p0))
    _, calls = _callbacks(lambda: _flow(counted, model, p0, backend="dense"))
    return (calls - outside - ref) // unit


def _flow(prob, model, p0, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rb.gradient_flow(prob, model, p0, **{**FLOW, **kw})


def measure(L: int, repeat: int) -> dict:
    """The flow's counts and wall time at depth ``L`` and the bare costs (ms)."""
    _, prob = _instance(D, RANK, K, SEED)
    model = rb.DeepFactorization((D, D), depth=L)
    p0 = _flow_init(model, D, SEED, 1e-3, None)
    _flow(prob, model, p0, t_max=1e-3)  # compiles the solve (t_max is traced)
    tr = _flow(prob, model, p0)
    info = tr.info

    backend = choose_backend("auto", prob, model)
    data = backend_data(prob, model, backend)
    y = model.flatten(tuple(jnp.asarray(p) for p in tr.final_params))
    params = model.unflatten(y)
    vf = _vector_field(model)
    v = jnp.cos(jnp.arange(y.size, dtype=y.dtype))
    loss0, g0 = jnp.asarray(1.0), jnp.asarray(1.0)
    tols = _tols(y.dtype, 1e-6, 1e-12, 1.0, 1e-6, 1e-5, 10)
    cond_fn = _steady_event(model).cond_fn
    bare = dict(
        loss_and_grad=_ms(
            jax.jit(lambda p: loss_and_grad(data, model, p)[:2]), params, repeat=repeat
        ),
        vf=_ms(jax.jit(lambda z: vf(0.0, z, data)), y, repeat=repeat),
        jvp=_ms(
            jax.jit(lambda z, w: jax.jvp(lambda u: vf(0.0, u, data), (z,), (w,))[1]),
            y,
            v,
            repeat=repeat,
        ),
        event=_ms(
            jax.jit(lambda z: cond_fn(0.0, z, FlowArgs(data, loss0, g0, tols))), y, repeat=repeat
        ),
        record=_ms(
            jax.jit(lambda z: record(data, model, model.unflatten(z), True)), y, repeat=repeat
        ),
    )
    steps, nfe = int(info["num_steps"]), int(info["num_vf_evals"])
    true = true_evals(prob, model, p0)
    records = len(tr.times)
    # By kind: every attempt (rejected too) runs 2 power iterations; the init runs 20 and
    # f(y0); a stopping test per step and at the start; a record per saved time and the end.
    kinds = dict(jvps=20 + 2 * steps, stopping_tests=steps + 1, records=records)
    kinds["gradients"] = true - sum(kinds.values())
    return dict(
        L=L,
        backend=backend,
        status=str(info["status"]),
        t_final=float(info["t_final"]),
        wall=float(info["wall_time"]),
        steps=steps,
        rejected=int(info["num_rejected"]),
        nfe=nfe,
        true=true,
        counts=kinds,
        bare=bare,
    )


def breakdown(r: dict) -> list[tuple[str, int, float, float]]:
    """``(kind, count, ms each, total s)`` rows: the flow's work priced at its bare costs."""
    b, c = r["bare"], r["counts"]
    rows = [
        ("gradients (solver stages)", c.get("gradients", 0), b["vf"]),
        ("JVPs (spectral radius)", c.get("jvps", 0), b["jvp"]),
        ("stopping tests", c.get("stopping_tests", 0), b["event"]),
        ("records", c["records"], b["record"]),
    ]
    return [(k, n, ms, n * ms / 1e3) for k, n, ms in rows]


#: Solver variants of ``--variants``: RKC's settings and the PID controller's coefficients.
VARIANTS = {
    "default": ({}, {}),
    "power_iterations=4": (dict(power_iterations=4), {}),
    "safety=1.5": (dict(safety=1.5), {}),
    "PID pcoeff=0.3 icoeff=0.4": ({}, dict(pcoeff=0.3, icoeff=0.4)),
    "tsit5_limit=1.0": (dict(tsit5_limit=1.0), {}),
    "tsit5_limit=-1 (no Tsit5 steps)": (dict(tsit5_limit=-1.0), {}),
}


def variants(L: int) -> None:
    """Steps, rejections and wall time of the flow with RKC / controller variants (the
    suspects of the rejected steps), each compiled afresh; accuracy: error to the truth."""
    import diffrax
    import equinox as eqx

    import rankbias._aot as aot
    from rankbias.dynamics._rkc import RKC
    from rankbias.dynamics.flow import api, segments as engine
    from rankbias.reproduce.arora2019 import relative_error

    M, prob = _instance(D, RANK, K, SEED)
    model = rb.DeepFactorization((D, D), depth=L)
    p0 = _flow_init(model, D, SEED, 1e-3, None)
    make, pid = engine.make_solver, diffrax.PIDController
    stored, aot.aot_dir = aot.aot_dir, lambda: None  # the stored program is the default's
    print(
        f"\n| depth {L}: variant | status | t_end | wall s | steps | rejected | num_vf_evals "
        "| error to truth |"
    )
    print("|---|---|---|---|---|---|---|---|")
    try:
        for name, (rkc, ctrl) in VARIANTS.items():
            jax.clear_caches()
            # traced again with the variant (api holds its own reference to the solve)
            engine.solve = api.solve = eqx.filter_jit(engine._solve)
            engine.make_solver = (lambda n, size=None, kw=rkc: RKC(**kw)) if rkc else make
            engine.diffrax.PIDController = functools.partial(pid, **ctrl) if ctrl else pid
            _flow(prob, model, p0, t_max=1e-3)  # compiles
            tr = _flow(prob, model, p0)
            i = tr.info
            print(
                f"| {name} | {i['status']} | {i['t_final']:.4g} | {i['wall_time']:.2f} | "
                f"{i['num_steps']} | {i['num_rejected']} "
                f"({100 * i['num_rejected'] / i['num_steps']:.0f}%) | {i['num_vf_evals']} | "
                f"{relative_error(tr.final_matrix, M):.3e} |"
            )
    finally:
        engine.make_solver, engine.diffrax.PIDController, aot.aot_dir = make, pid, stored
        engine.solve = api.solve = aot.aot_jit(engine._solve)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[3, 4])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument(
        "--variants", action="store_true", help="also time RKC / controller variants (slow)"
    )
    args = ap.parse_args(argv)
    load = os.getloadavg()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, JAX "
        f"{jax.__version__}, {jax.default_backend()}; load average before: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    results = [measure(L, args.repeat) for L in args.depths]
    print(
        "\n| depth | backend | status | t_end | wall s | steps | rejected | num_vf_evals "
        "| evaluations (host count) | ms / evaluation in flow | bare loss_and_grad ms | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        per = 1e3 * r["wall"] / r["true"]
        lg = r["bare"]["loss_and_grad"]
        print(
            f"| {r['L']} | {r['backend']} | {r['status']} | {r['t_final']:.4g} | "
            f"{r['wall']:.2f} | {r['steps']} | {r['rejected']} "
            f"({100 * r['rejected'] / max(r['steps'], 1):.0f}%) | {r['nfe']} | {r['true']} | "
            f"{per:.3f} | {lg:.3f} | {per / lg:.2f} |"
        )
    for r in results:
        b = r["bare"]
        print(
            f"\nDepth {r['L']}: bare costs (ms, median of {args.repeat}): loss_and_grad "
            f"{b['loss_and_grad']:.3f}, vector field {b['vf']:.3f}, JVP {b['jvp']:.3f} "
            f"({b['jvp'] / b['vf']:.2f}x), stopping test {b['event']:.3f}, record "
            f"{b['record']:.3f}"
        )
        print("\n| where | count | ms each | s | share of wall |")
        print("|---|---|---|---|---|")
        rows = breakdown(r)
        for kind, n, ms, s in rows:
            print(f"| {kind} | {n} | {ms:.3f} | {s:.2f} | {100 * s / r['wall']:.0f}% |")
        rest = r["wall"] - sum(s for *_, s in rows)
        print(
            f"| rest (loop, controller, stage arithmetic, saving) | {r['steps']} steps | "
            f"{1e3 * rest / max(r['steps'], 1):.3f} per step | {rest:.2f} | "
            f"{100 * rest / r['wall']:.0f}% |"
        )
    if args.variants:
        for L in args.depths:
            variants(L)
    load = os.getloadavg()
    print(f"\n# load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
