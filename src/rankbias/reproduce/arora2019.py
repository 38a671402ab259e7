r"""``arora2019-completion``: Arora, Cohen, Hu & Luo (2019), "Implicit Regularization in Deep
Matrix Factorization", the completion study of their Figures 1-2.

A ``d x d`` rank-``r`` truth ``W*`` (:func:`rankbias.random_low_rank`, ``||W*||_F =
sqrt(r)``); for each seed one random order of the ``d^2`` entries, of which the first ``k``
are observed (nested sets: the curves over ``k`` are not blurred by re-sampling). Methods:
gradient flow (:func:`rankbias.gradient_flow`) of full-width ``DeepFactorization`` at depths
2, 3, 4 from a gaussian init whose factor entries have standard deviation ``init_std``
(``1e-3``, the paper's; or an end-to-end ``scale``), and the certified minimum nuclear
norm (:func:`rankbias.baselines.min_nuclear_norm`, ``solver="auto"``). Measured: the relative
reconstruction error ``||W - W*||_F / ||W*||_F`` against ``k``.

Stopping: the flow stops once the observed residual is ``residual_tol`` times its initial
value (``||P_Omega(W - W*)||_F <= residual_tol ||P_Omega(W(0) - W*)||_F``, i.e. the loss is
``residual_tol^2`` times its initial value); with full width that residual is the model's
optimality certificate (``certificate_tol`` of :func:`rankbias.gradient_flow`). Past that
point the unobserved entries no longer move at the precision the figure shows (measured on
100x100 rank 5: the depth-2 error is 0.2877 from loss 3e-8 on, to loss 1e-18), and the flow
to the default ``gtol = 1e-10`` takes three to ten times longer. Each run is stored in the
results folder as it finishes (``runs/``, checksummed, keyed by its settings), so an
interrupted study resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .._io import atomic_write_text, canonical_json
from .._quiet import quietly
from ..baselines.nuclear import min_nuclear_norm
from ..dynamics._interrupt import raise_interrupts
from ..dynamics.flow.api import gradient_flow
from ..models import DeepFactorization
from ..problems.completion import MatrixCompletion
from ..problems.matrices import random_low_rank
from ..store import Store, run_key
from ._output import plt, save_figure

__all__ = [
    "completion_study",
    "default_workers",
    "observed_entries",
    "relative_error",
    "METHODS",
]

#: Label of each method in tables and figures: ``"depth L"`` (gradient flow) or the baseline.
NUCLEAR = "nuclear norm"


def default_workers(quick: bool = False) -> int:
    """:func:`completion_study`'s ``workers`` by default: ``min(2, cores)``, 1 in quick mode.

    One 100x100 flow keeps about one core busy, and two worker processes did the same
    work in the same CPU time as one process (``benchmarks/bench_study_workers.py``,
    ``benchmarks/RESULTS.md`` section 20: 130 s against 138 s of CPU for 6 runs, identical
    stored errors; 0.62x the wall time of one process on a nearly idle machine), so on 2
    cores two workers finish the study sooner. More than two were
    not measured (``--workers N`` sets it). The quick study's runs (30x30) take a fraction
    of their compilation, which every worker process repeats: one process.
    """
    return 1 if quick else max(1, min(2, os.cpu_count() or 1))


def METHODS(depths) -> list[str]:  # noqa: N802 - reads as a constant in the tables
    """The method labels in table order: ``["depth 2", ..., "nuclear norm"]``."""
    return [f"depth {L}" for L in depths] + [NUCLEAR]


def observed_entries(d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` entries of seed ``seed``'s random order of the ``d x d`` grid, as
    ``(rows, cols)`` (``(k,)`` int arrays). Nested: a larger ``k`` observes a superset.

    Raises:
        ValueError: ``k`` outside ``[1, d^2]``.
    """
    if not 1 <= int(k) <= d * d:
        raise ValueError(f"`k` (observed entries) must be in [1, {d * d}], got {k}")
    idx = np.random.default_rng([int(seed), 2019]).permutation(d * d)[: int(k)]
    return idx // d, idx % d


def relative_error(W, truth) -> float:
    r"""``||W - W*||_F / ||W*||_F`` for ``(m, n)`` arrays ``W`` and ``truth``."""
    W, truth = np.asarray(W, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if W.shape != truth.shape:
        raise ValueError(f"`W` has shape {W.shape}, `truth` has {truth.shape}")
    return float(np.linalg.norm(W - truth) / max(np.linalg.norm(truth), 1e-300))


def _instance(d: int, rank: int, k: int, seed: int):
    M = random_low_rank((d, d), rank, seed=seed)
    return M, MatrixCompletion(M, observed_entries(d, k, seed), truth=M)


def _flow_init(model, d: int, seed: int, init_std: float | None, scale: float | None):
    """Gaussian factors: entries of std ``init_std`` (Arora et al.'s convention; rankbias's
    per-factor value ``init_std * sqrt(d)``, as entries are ``N(0, a^2 / fan_in)``), or,
    with ``scale``, the end-to-end scale of :meth:`DeepFactorization.init`."""
    if scale is not None:
        return model.init("gaussian", scale=scale, seed=seed)
    return model.init("gaussian", scale=init_std * np.sqrt(d), seed=seed, per_factor=True)


@raise_interrupts()  # a run cut short would be a wrong result: Ctrl-C propagates
def _flow_run(M, prob, d, L, seed, init_std, scale, t_max, rtol, residual_tol, n_save) -> dict:
    model = DeepFactorization((d, d), depth=L)
    p0 = _flow_init(model, d, seed, init_std, scale)
    t0 = time.perf_counter()
    with quietly():
        tr = gradient_flow(
            prob,
            model,
            p0,
            t_max=t_max,
            rtol=rtol,
            # The certificate (observed residual <= residual_tol * initial) is the stop; the
            # parameter-gradient test is set loose so that it never binds first.
            gtol=1.0,
            certificate_tol=residual_tol,
            n_save=n_save,
            save_matrices=True,
        )
    wall = time.perf_counter() - t0
    W = np.asarray(tr.final_matrix)
    return dict(
        error=np.array(relative_error(W, M)),
        loss=np.array(float(tr.loss[-1])),
        loss0=np.array(float(tr.loss[0])),
        t_end=np.array(float(tr.times[-1])),
        status=np.array(str(tr.status)),
        num_steps=np.array(int(tr.info.get("num_steps", -1))),
        eff_rank=np.array(float(tr.effective_rank("ratio")[-1])),
        wall=np.array(wall),
        times=np.asarray(tr.times),
        error_curve=np.array([relative_error(Wt, M) for Wt in np.asarray(tr.matrices)]),
    )


def _nuclear_run(M, prob, solver: str) -> dict:
    t0 = time.perf_counter()
    with quietly():
        sol = min_nuclear_norm(prob, solver=solver)
    wall = time.perf_counter() - t0
    return dict(
        error=np.array(relative_error(np.asarray(sol), M)),
        status=np.array(str(sol.status)),
        solver=np.array(str(sol.solver)),
        duality_gap=np.array(float(sol.duality_gap)),
        residual=np.array(float(sol.constraint_residual)),
        objective=np.array(float(sol.objective)),
        wall=np.array(wall),
    )


def _compute(spec: dict) -> dict:
    """The arrays of run ``spec`` (a study run's settings, as keyed in the store): its
    instance is rebuilt from the spec, so that a worker process needs nothing else."""
    d, rank, k, seed = spec["d"], spec["rank"], spec["k"], spec["seed"]
    M, prob = _instance(d, rank, k, seed)
    if spec["method"] == "nuclear":
        return _nuclear_run(M, prob, spec["solver"])
    return _flow_run(
        M,
        prob,
        d,
        spec["depth"],
        seed,
        spec.get("init_std"),
        spec.get("scale"),
        spec["t_max"],
        spec["rtol"],
        spec["residual_tol"],
        spec["n_save"],
    )


def _compute_and_store(out_dir: str, spec: dict) -> dict:
    """Compute run ``spec`` and write it into the store at ``out_dir``; returns its arrays.
    Module-level: the function a worker process runs (each run is stored by the process
    that computed it, as soon as it finishes)."""
    arrays = _compute(spec)
    # the config as JSON; a reader parses it (json.loads) and re-hashes it, so files written
    # before this used `json.dumps(spec, sort_keys=True)` (spaces after separators) stay valid
    arrays["run_config"] = np.array(canonical_json(spec))
    Store(Path(out_dir)).write_run(run_key(spec), arrays)
    return arrays


def _cached(store: Store, spec: dict, log, only_stored: bool = False) -> dict | None:
    """The stored arrays of run ``spec``, or compute and store them; ``None`` for a run not in
    the store with ``only_stored``.

    A thin caller of the store, not a second mechanism: the key is the sweeps' :func:`run_key`
    (so the folders users already have resume with nothing recomputed), the file is written by
    :meth:`Store.write_run` (atomic, checksummed, bound to its key and results version) and read
    back by :meth:`Store.read_run` (every check of a sweep's run). The sweep runner itself does
    not fit: its chunks, executors and axes manifest are for one engine's runs over a grid, and
    this study mixes a convex baseline with flows whose arrays differ, one run at a time.
    """
    key = run_key(spec)
    if store.verify(key):
        return store.read_run(key)
    if only_stored:
        return None
    arrays = _compute_and_store(str(store.root), spec)
    log(spec, arrays)
    return arrays


def _run_in_processes(store: Store, specs: list[dict], workers: int, log) -> None:
    """Compute and store the runs ``specs`` in ``workers`` processes (the sweeps'
    :class:`~rankbias.experiments.executors.ProcessExecutor`: ``spawn``ed workers that end with
    the command; Ctrl-C in the command stops and reaps them). Each worker stores its run as it
    finishes, so a study cut short keeps every finished run; the caller then reads all runs
    back in the study's order (the tables do not depend on the order runs finish in)."""
    from ..experiments.executors import make_executor

    with make_executor("processes", workers=workers) as ex:
        for i, arrays in ex.map(_compute_and_store, [(str(store.root), s) for s in specs]):
            log(specs[i], arrays)


def completion_study(
    out_dir: Path,
    quick: bool = False,
    d: int = 100,
    rank: int = 5,
    counts=(1000, 2000, 3000, 4000, 5000),
    depths=(2, 3, 4),
    seeds: int | list[int] = 5,
    init_std: float = 1e-3,
    scale: float | None = None,
    t_max: float = 5e4,
    rtol: float = 1e-6,
    residual_tol: float = 1e-5,
    n_save: int = 30,
    recovered: float = 1e-2,
    nuclear_solver: str = "auto",
    only_stored: bool = False,
    workers: int | None = None,
) -> dict:
    r"""Run the study; writes ``arora2019-completion.{png,svg,json,md}`` into ``out_dir``.

    Arguments:
        d, rank: the ``d x d`` rank-``rank`` truth. counts: numbers of observed entries.
        depths: gradient-flow depths. seeds: number of seeds (truth, entries and init:
            ``range(seeds)``) or a list of seeds.
        init_std: standard deviation of every entry of every factor at ``t = 0`` (the
            paper's setting; rankbias's per-factor scale ``init_std * sqrt(d)``).
        scale: instead, the end-to-end scale ``||W(0)||`` of rankbias's convention
            (``None``: use ``init_std``). t_max, rtol, residual_tol, n_save: flow settings
            (see the module docstring for the stop). recovered: the error below which a run
            counts as a recovery in the summary. nuclear_solver: of
            :func:`~rankbias.baselines.min_nuclear_norm` (every answer carries its certificate).
        only_stored: summarise the runs already in ``out_dir/runs`` and compute none (the
            table's ``n`` says how many seeds each cell holds): a study cut short by time.
        workers: processes that compute the runs (``None``: :func:`default_workers`). With
            more than one, the unfinished runs go to a pool of worker processes in the
            study's order, each stored by its worker as it finishes; the tables and figure
            are then built from the stored runs in the study's order, the same as with one.
            Run keys do not depend on it (a study may be resumed with another value).

    ``quick``: 30x30 rank 2 (116 degrees of freedom), 200/300/400 entries, depths 2 and 3,
    3 seeds, ``t_max = 1e4``: depth 3 recovers at 300 entries (measured: error 5e-5 to 7e-5)
    where the nuclear norm does not (0.13 to 0.36).

    Returns the per-run records, the median / min / max error per method and count, and
    the smallest count at which each method's median error is below ``recovered``.
    """
    if workers is None:
        workers = default_workers(quick)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be a positive integer (processes), got {workers!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if quick:
        d, rank, counts, depths, seeds, t_max = 30, 2, (200, 300, 400), (2, 3), 3, 1e4
        nuclear_solver = "SCS"  # 1-2 s here; Clarabel ("auto" at this size) takes 10 s
    counts, depths = [int(k) for k in counts], [int(L) for L in depths]
    seed_list = (
        list(range(int(seeds))) if isinstance(seeds, (int, float)) else [int(s) for s in seeds]
    )
    store = Store(out_dir)
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    log_path = out_dir / "runs.log"

    def log(spec, arrays):
        line = (
            f"{time.strftime('%H:%M:%S')} k={spec['k']} {spec['method']}{spec.get('depth', '')} "
            f"seed={spec['seed']}: "
            f"error {float(arrays['error']):.4g}, {float(arrays['wall']):.1f} s"
            + (
                f", t_end {float(arrays['t_end']):.3g} ({arrays['status']})"
                if "t_end" in arrays
                else ""
            )
        )
        with open(log_path, "a") as fh:
            fh.write(line + "\n")

    common = dict(study="arora2019-completion", d=d, rank=rank)
    init = dict(scale=scale) if scale is not None else dict(init_std=init_std)
    flow_set = dict(**init, t_max=t_max, rtol=rtol, residual_tol=residual_tol, n_save=n_save)
    runs, curves = [], []
    k_mid = counts[len(counts) // 2]
    # Method-major, cheapest first (the convex baseline, then the depths in order): deeper
    # flows from the paper's init escape later and cost the most; a study cut short keeps
    # whole methods, and a second process given other `depths` fills the same store.
    plan = []
    for method in [NUCLEAR] + [f"depth {L}" for L in depths]:
        for seed in seed_list:
            for k in counts:
                if method == NUCLEAR:
                    spec = dict(common, k=k, seed=seed, method="nuclear", solver=nuclear_solver)
                else:
                    L = int(method.split()[1])
                    spec = dict(common, k=k, seed=seed, method="flow", depth=L, **flow_set)
                plan.append((method, k, seed, spec))
    if workers > 1 and not only_stored:
        todo = [spec for *_, spec in plan if not store.verify(run_key(spec))]
        if len(todo) > 1:
            _run_in_processes(store, todo, min(workers, len(todo)), log)
    for method, k, seed, spec in plan:
        a = _cached(store, spec, log, only_stored)
        if a is None:
            continue
        runs.append(_record(method, k, seed, a))
        if method != NUCLEAR and k == k_mid:
            curves.append((spec["depth"], a["times"], a["error_curve"]))
    methods = METHODS(depths)
    table = _table(runs, counts, methods)
    recovers_from = {
        m: next((k for k in counts if table[m][str(k)]["median"] < recovered), None)
        for m in methods
    }
    dof = rank * (2 * d - rank)
    _figure(out_dir, runs, curves, table, counts, methods, d, rank, len(seed_list), dof)
    deep = [m for m in methods if m != NUCLEAR and int(m.split()[1]) >= 3]

    def best_deep(k):  # lowest median over the depths >= 3 that ran at k (nan: none)
        vals = [table[m][str(k)]["median"] for m in deep]
        vals = [v for v in vals if v == v]
        return min(vals) if vals else float("nan")

    wins = [k for k in counts if best_deep(k) < table[NUCLEAR][str(k)]["median"]]
    init_label = f"end-to-end {scale:g}" if scale is not None else f"entries std {init_std:g}"
    out = dict(
        shows=(
            f"{d}x{d} rank-{rank} completion ({dof} degrees of freedom), {len(seed_list)} seeds: "
            f"relative error of gradient flow (depths {depths}, init {init_label}) and of the "
            f"minimum nuclear norm against the number of observed entries; depth >= 3 "
            f"has a lower median error than the nuclear norm at {wins or 'no'} entries"
            + (" [quick mode: 30x30 rank 2, depths 2-3, 3 seeds, t_max 1e4]" if quick else "")
        ),
        table=table,
        recovers_from=recovers_from,
        deep_beats_nuclear_at=wins,
        settings=dict(
            d=d,
            rank=rank,
            dof=dof,
            counts=counts,
            depths=depths,
            seeds=seed_list,
            init_std=init_std if scale is None else None,
            scale=scale,
            t_max=t_max,
            rtol=rtol,
            residual_tol=residual_tol,
            recovered=recovered,
            quick=quick,
        ),
        runs=runs,
        wall_time=time.perf_counter() - t_start,
    )
    _write_tables(out_dir, out, counts, methods)
    return out


def _record(method: str, k: int, seed: int, a: dict) -> dict:
    row = dict(method=method, k=k, seed=seed, error=float(a["error"]), wall=float(a["wall"]))
    for f in ("status", "solver"):
        if f in a:
            row[f] = str(a[f])
    for f in ("loss", "t_end", "num_steps", "eff_rank", "duality_gap", "residual"):
        if f in a:
            row[f] = float(a[f])
    return row


def _table(runs: list[dict], counts, methods) -> dict:
    out: dict = {}
    for m in methods:
        out[m] = {}
        for k in counts:
            e = np.array([r["error"] for r in runs if r["method"] == m and r["k"] == k])
            if e.size == 0:  # only_stored, and no seed of this cell finished
                out[m][str(k)] = dict(median=np.nan, min=np.nan, max=np.nan, n=0)
                continue
            out[m][str(k)] = dict(
                median=float(np.median(e)), min=float(e.min()), max=float(e.max()), n=int(e.size)
            )
    return out


def _write_tables(out_dir: Path, out: dict, counts, methods) -> None:
    lines = [
        "| observed | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for k in counts:
        cells = []
        for m in methods:
            c = out["table"][m][str(k)]
            cells.append(
                "not run"
                if c["n"] == 0
                else f"{c['median']:.2g} ({c['min']:.2g}-{c['max']:.2g})"
                + (
                    ""
                    if c["n"] == len(out["settings"]["seeds"])
                    else f", {c['n']} seed{'s' * (c['n'] > 1)}"
                )
            )
        lines.append(f"| {k:,} | " + " | ".join(cells) + " |")
    md = "Median (min-max over seeds) of ||W - W*||_F / ||W*||_F\n\n" + "\n".join(lines) + "\n"
    atomic_write_text(out_dir / "arora2019-completion.md", md)
    atomic_write_text(
        out_dir / "arora2019-completion.json", json.dumps(out, indent=1, default=float)
    )


def _figure(out_dir: Path, runs, curves, table, counts, methods, d, rank, seeds, dof) -> None:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.array(counts, dtype=float)
    for m in methods:
        med = np.array([table[m][str(k)]["median"] for k in counts])
        lo = np.array([table[m][str(k)]["min"] for k in counts])
        hi = np.array([table[m][str(k)]["max"] for k in counts])
        style = dict(c="k", ls="--", marker="s") if m == NUCLEAR else dict(marker="o")
        (line,) = ax.semilogy(x, np.maximum(med, 1e-16), label=m, **style)
        ax.fill_between(
            x, np.maximum(lo, 1e-16), np.maximum(hi, 1e-16), alpha=0.18, color=line.get_color()
        )
    ax.axvline(dof, c="gray", lw=0.8, ls=":")
    ax.text(dof, ax.get_ylim()[0], " dof", color="gray", fontsize=7, va="bottom")
    ax.set_xlabel("observed entries")
    ax.set_ylabel("||W - W*||_F / ||W*||_F")
    ax.set_title(f"{d}x{d} rank {rank}: median, band min-max over {seeds} seeds", fontsize=9)
    ax.legend(fontsize=7)
    # Error against time at the middle count, seed 0: the error is flat before the stop.
    k_mid = counts[len(counts) // 2]
    for m in methods:
        if m == NUCLEAR:
            e = [r["error"] for r in runs if r["method"] == m and r["k"] == k_mid]
            if e:
                ax2.axhline(np.median(e), c="k", ls="--", lw=1, label=f"{m} (median)")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("t")
    ax2.set_ylabel("||W(t) - W*||_F / ||W*||_F")
    ax2.set_title(f"gradient flow at {k_mid:,} entries (all seeds)", fontsize=9)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    seen = set()
    for L, t, e in curves:
        keep = t > 0
        label = None if L in seen else f"depth {L}"
        seen.add(L)
        c = colours[methods.index(f"depth {L}") % len(colours)]
        ax2.plot(t[keep], np.maximum(e[keep], 1e-16), c=c, lw=0.8, alpha=0.8, label=label)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir, "arora2019-completion")
