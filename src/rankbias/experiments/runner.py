"""From run configs to stored results: build problems and models, batch, run, record.

Runs are grouped by everything a vmapped batch must share (model, dynamics settings, problem
type and array shapes; the problem data, the initialization and the GD step size may differ)
and each group is cut into chunks of ``sweep.chunk_size`` runs in key order. The chunks are a
function of the whole sweep, not of what is already finished: a resumed sweep re-runs the
unfinished chunks whole, so every run is computed in the same batch as in an uninterrupted
sweep and the results are bit-identical (the last bits of batched products depend on the
batch). A chunk whose batched run raises falls back to one run at a time, so that one failing
run does not fail its neighbours.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass

import jax
import numpy as np

from .._quiet import quietly
from ..diagonal import DiagonalNetwork
from ..dynamics._interrupt import raise_interrupts
from ..dynamics._train import train_batch
from ..dynamics.descent.api import gradient_descent_batch
from ..dynamics.descent.grid import save_steps
from ..dynamics.flow.api import gradient_flow_batch
from ..dynamics.flow.save import save_times
from ..glrl import glrl
from ..models import DeepFactorization, SymmetricFactorization
from ..optimizers import OPTIMIZERS
from ..problems.completion import MatrixCompletion
from ..problems.estimation import MatrixEstimation
from ..problems.heldout import HeldOut, heldout_rmse
from ..problems.matrices import random_low_rank
from ..problems.regression import sparse_recovery
from ..problems.sensing import MatrixSensing
from ..problems.splits import load_ratings
from ..store import Store
from ..trajectory import Trajectory
from .expand import RunSpec, Sweep
from .validate import check_custom

__all__ = [
    "Chunk",
    "plan_chunks",
    "build_problem",
    "build_heldout",
    "build_model",
    "run_chunk",
    "manifest_for",
]


@dataclass(frozen=True)
class Chunk:
    """Runs executed as one vmapped batch (``keys``/``configs`` in the same order)."""

    keys: tuple[str, ...]
    configs: tuple[dict, ...]

    def __len__(self) -> int:
        return len(self.keys)


def _canon(d: dict) -> str:
    # Not rankbias._io.canonical_json (the run keys' text): this text is also stored as each
    # run file's `run_config`, whose spacing new files keep so that they match older ones.
    return json.dumps(d, sort_keys=True, default=float)


def _truth(p: dict) -> np.ndarray:
    return random_low_rank(
        tuple(p["shape"]), p["rank"], psd=p["psd"], seed=p["seed"], spectrum=p.get("spectrum")
    )


def _completion(p: dict) -> MatrixCompletion:
    return MatrixCompletion.uniform(
        _truth(p),
        p["fraction"],
        p["seed"],
        symmetric=bool(p["psd"]),
        normalization=p.get("normalization", "sum"),
    )


@functools.lru_cache(maxsize=256)
def _problem_cached(pjson: str):
    p = json.loads(pjson)
    shape = tuple(p["shape"])
    if p["type"] == "ratings":
        return load_ratings(
            p["path"],
            test_fraction=p["test_fraction"],
            seed=p["seed"],
            shape=shape,
            normalization=p.get("normalization", "sum"),
        )[0]
    if p["type"] == "completion":
        return _completion(p)
    if p["type"] == "regression":
        return sparse_recovery(p["measurements"], shape[0], p["rank"], p["noise"], p["seed"])
    M = _truth(p)
    sym = bool(p["psd"])
    if p["type"] == "sensing":
        return MatrixSensing.gaussian(
            M, p["measurements"], p["seed"], symmetric=sym, noise=p["noise"]
        )
    rng = np.random.default_rng([p["seed"], 1])
    noise = p["noise"] * rng.standard_normal(shape)
    if sym:
        noise = (noise + noise.T) / np.sqrt(2)
    return MatrixEstimation(M + noise, truth=M)


@functools.lru_cache(maxsize=256)
def _heldout_cached(pjson: str):
    p = json.loads(pjson)
    if p["type"] == "ratings":
        return load_ratings(
            p["path"], test_fraction=p["test_fraction"], seed=p["seed"], shape=tuple(p["shape"])
        )[1]
    prob = _completion(p)  # the config allows no other type here (validate)
    rows, cols = np.nonzero(~prob.mask)
    truth = np.asarray(prob.target)
    m, n = prob.shape
    return HeldOut(rows, cols, truth[rows, cols], (int(m), int(n)))


def build_heldout(cfg: dict):
    """What ``heldout_rmse`` scores (a :class:`~rankbias.problems.HeldOut`): for ``ratings`` the
    held-out split of the file, for ``completion`` the unobserved entries of the truth."""
    return _heldout_cached(_canon(cfg["problem"]))


def build_problem(cfg: dict):
    """The problem of a run config (``problem`` table): the ground truth is
    ``random_low_rank(shape, rank, psd, seed, spectrum)``; completion observes entries with
    probability ``fraction`` (a symmetric mask when ``psd``), sensing takes ``measurements``
    Gaussian measurements with ``noise``, estimation observes ``truth + noise * N(0, 1)``;
    regression is ``sparse_recovery(n = measurements, d = shape[0], k = rank, noise, seed)``."""
    return _problem_cached(_canon(cfg["problem"]))


def build_model(cfg: dict):
    m, shape = cfg["model"], tuple(cfg["problem"]["shape"])
    if m["type"] == "diagonal":
        return DiagonalNetwork(shape[0], m["depth"], form=m["form"])
    if m["type"] == "symmetric":
        # a depth-2 run's config holds no depth (expand drops it: the keys of before depth)
        return SymmetricFactorization(size=shape[0], width=m["width"], depth=m.get("depth", 2))
    return DeepFactorization(shape=shape, depth=m["depth"], width=m["width"])


def build_init(model, cfg: dict):
    i = cfg["init"]
    if cfg["model"]["type"] == "diagonal":
        return model.init(i["name"], i["scale"], i["seed"])
    return model.init(
        i["name"], i["scale"], i["seed"], per_factor=i["per_factor"], beta=i.get("beta")
    )


def _group_key(cfg: dict) -> str:
    prob = build_problem(cfg)
    leaves = [(tuple(x.shape), str(x.dtype)) for x in jax.tree_util.tree_leaves(prob)]
    dyn = {k: v for k, v in cfg["dynamics"].items() if k not in ("lr", "batch_seed")}
    return _canon(
        {
            "model": cfg.get("model"),  # a GLRL run has none
            "dyn": dyn,
            "rec": cfg["record"],
            "ptype": type(prob).__name__,
            "shape": cfg["problem"]["shape"],
            "leaves": str(leaves),
        }
    )


def plan_chunks(sweep: Sweep) -> list[Chunk]:
    """All chunks of a sweep (independent of what is finished; see the module docstring)."""
    unique: dict[str, RunSpec] = {}
    for r in sweep.runs:
        unique.setdefault(r.key, r)
    groups: dict[str, list[RunSpec]] = {}
    for r in unique.values():
        groups.setdefault(_group_key(r.config), []).append(r)
    chunks = []
    for g in sorted(groups):
        runs = sorted(groups[g], key=lambda r: r.key)
        for i in range(0, len(runs), sweep.chunk_size):
            part = runs[i : i + sweep.chunk_size]
            chunks.append(Chunk(tuple(r.key for r in part), tuple(r.config for r in part)))
    return chunks


def _custom(name: str):
    # expand() checked it before any run; a worker process imports it again
    return check_custom(name)


def _arrays(traj, cfg: dict, problem) -> dict[str, np.ndarray]:
    """What a run stores: the trajectory arrays named by ``record.metrics`` and scalars."""
    metrics = cfg["record"]["metrics"]
    full = traj.to_arrays()
    keep = {"times", "steps", "final_matrix"} if "final_matrix" in metrics else {"times", "steps"}
    keep.add("loss")  # the final loss is always reported
    for m in ("grad_norm", "singular_values", "matrices"):
        if m in metrics:
            keep.add(m)
    if "effective_rank" in metrics:
        keep |= {k for k in full if k.startswith("rank_")}
    out = {k: v for k, v in full.items() if k in keep}
    if "distance_to_truth" in metrics:
        truth = problem.target
        if truth is not None:
            truth = np.asarray(truth)
            out["metric_distance_to_truth"] = np.array(
                np.linalg.norm(traj.final_matrix - truth) / max(np.linalg.norm(truth), 1e-300)
            )
    if "heldout_rmse" in metrics:
        # RMSE at every recorded time, from the matrices (kept only if `matrices` is asked)
        held = build_heldout(cfg)
        Ws = np.asarray(traj.matrices)
        r = Ws[:, held.rows, held.cols] - held.values
        out["heldout_rmse"] = np.sqrt(np.mean(r * r, axis=1))
        out["metric_final_heldout_rmse"] = np.array(heldout_rmse(traj.final_matrix, held))
    for name in cfg["record"]["custom"]:
        vals = _custom(name)(traj, problem, cfg)
        for k, v in dict(vals).items():
            out[f"metric_{k}"] = np.array(float(v))
    out["run_config"] = np.array(_canon(cfg))
    out["info"] = np.array(json.dumps(traj.info, default=str))
    return out


def _dyn_kwargs(d: dict) -> dict:
    # keys left out of a run config are at the library's defaults (config._normalise_run)
    opt = {
        k: d[k]
        for k in ("dtype", "backend", "divergence_factor", "save_spacing", "save_at")
        if k in d
    }
    if d["method"] == "flow":
        opt.pop("divergence_factor", None)
        return dict(
            t_max=d["t_max"],
            rtol=d["rtol"],
            atol=d["atol"],
            solver=d["solver"],
            gtol=d["gtol"],
            n_save=d["n_save"],
            t_min=d["t_min"],
            max_steps=d["max_steps"],
            curvature_tol=d.get("curvature_tol"),
            certificate_tol=d.get("certificate_tol"),
            **opt,
        )
    return dict(steps=d["steps"], n_save=d["n_save"], **opt)


def glrl_path(result, save_matrices: bool = False) -> Trajectory:
    """The limit path of a GLRL run (:class:`~rankbias.glrl.GLRLResult`) as a trajectory with
    one record per plateau: record ``r`` is ``W_r``, the limit after ``r`` phases (``W_0 = 0``).

    ``steps`` is ``r`` (the sweep's ``step`` axis of a GLRL sweep is the rank), ``times`` the
    GLRL time at which phase ``r`` ends (the phases' flow times summed), ``loss`` the plateaus
    ``f(W_r)`` (:attr:`~rankbias.glrl.GLRLResult.levels`), ``grad_norm`` the factors' gradient
    norm at the end of each phase (0 for the empty factorization of ``W_0``);
    ``info["status"]`` is ``"kkt"`` or ``"max_rank"`` (:class:`rankbias.status.RunStatus`).
    """
    m, n = np.shape(result.matrix)
    k = min(m, n)
    Ws = np.stack([np.zeros((m, n))] + [np.asarray(p.W, dtype=np.float64) for p in result.phases])
    sv = np.stack([np.linalg.svd(W, compute_uv=False)[:k] for W in Ws])
    ends = [float(p.trajectory.times[-1]) for p in result.phases]
    return Trajectory(
        times=np.concatenate([[0.0], np.cumsum(ends)]),
        loss=np.asarray(result.levels, dtype=np.float64),
        grad_norm=np.array([0.0] + [float(p.grad_norm) for p in result.phases]),
        singular_values=sv,
        final_params=tuple(np.asarray(f) for f in result.factors),
        final_matrix=np.asarray(result.matrix, dtype=np.float64),
        steps=np.arange(len(Ws)),
        matrices=Ws if save_matrices else None,
        info={
            "method": "glrl",
            "status": result.status,
            "rank": result.rank,
            "final_lambda": result.final_lambda,
            "kkt": result.kkt,
            **result.info,
        },
    )


def _run_glrl(configs, save_matrices: bool):
    """GLRL runs one at a time (each grows its own factors: nothing to batch)."""
    probs = [build_problem(c) for c in configs]
    out = []
    for c, p in zip(configs, probs, strict=True):
        opts = {k: v for k, v in c["dynamics"].items() if k != "method"}
        out.append(glrl_path(glrl(p, **opts), save_matrices))
    return out, probs


@raise_interrupts()  # a sweep stops on Ctrl-C and resumes later: never a partial run
def _run_batch(configs, save_matrices: bool):
    cfg0 = configs[0]
    d = cfg0["dynamics"]
    if d["method"] == "glrl":
        return _run_glrl(configs, save_matrices)
    model = build_model(cfg0)
    probs = [build_problem(c) for c in configs]
    same = all(_canon(c["problem"]) == _canon(cfg0["problem"]) for c in configs)
    problems = probs[0] if same else probs
    params = [build_init(model, c) for c in configs]
    if d["method"] == "flow":
        return gradient_flow_batch(
            problems, model, params, save_matrices=save_matrices, **_dyn_kwargs(d)
        ), probs
    lrs = [c["dynamics"]["lr"] for c in configs]
    if d["method"] == "optax":
        hyper = {k: d[k] for k in OPTIMIZERS[d["optimizer"]].defaults if d.get(k) is not None}
        return train_batch(
            problems,
            model,
            params,
            d["optimizer"],
            lr=lrs,
            batch_size=d["batch_size"],
            seed=[c["dynamics"].get("batch_seed", 0) for c in configs],
            save_matrices=save_matrices,
            on_failure="return",
            **hyper,
            **_dyn_kwargs(d),
        ), probs
    return gradient_descent_batch(
        problems,
        model,
        params,
        lrs,
        save_matrices=save_matrices,
        on_failure="return",
        **_dyn_kwargs(d),
    ), probs


def run_chunk(root: str, chunk: Chunk, skip: frozenset | set = frozenset()) -> dict[str, str]:
    """Run one chunk and store every run not in ``skip``; returns ``{key: "done" | error}``.

    Runs in worker processes too (it only needs the store's folder): everything it needs
    travels in ``chunk``.
    """
    store = Store(root)
    rec = chunk.configs[0]["record"]["metrics"]
    save_m = "matrices" in rec or "heldout_rmse" in rec
    t0 = time.perf_counter()
    try:
        with quietly(RuntimeWarning):  # each run's status is stored with it
            results, probs = _run_batch(chunk.configs, save_m)
    except Exception:  # noqa: BLE001 - fall back to one run at a time, below
        results = None
    status: dict[str, str] = {}
    for i, (key, cfg) in enumerate(zip(chunk.keys, chunk.configs, strict=True)):
        if key in skip:
            status[key] = "done"
            continue
        try:
            if results is None:
                with quietly(RuntimeWarning):
                    (res,), (prob,) = _run_batch([cfg], save_m)
            else:
                res, prob = results[i], probs[i]
            if isinstance(res, Exception):
                raise res
            arrays = _arrays(res, cfg, prob)
            store.write_run(key, arrays)
            status[key] = "done"
        except OSError:
            raise  # a full disk or a lost folder is not the run's fault: stop the sweep
        except Exception as e:  # noqa: BLE001 - the run failed; record why and go on
            msg = f"{type(e).__name__}: {e}"
            store.write_failure(key, cfg, msg)
            status[key] = msg
    status["__wall__"] = f"{time.perf_counter() - t0:.3f}"
    return status


def _num_sv(cfg: dict) -> int:
    """How many values a run records as ``singular_values``: ``min(m, n)``; a diagonal
    network's ``d`` (the singular values of ``diag(beta)``, ``Model.spectrum``)."""
    shape = cfg["problem"]["shape"]
    return shape[0] if cfg.get("model", {}).get("type") == "diagonal" else min(shape)


def manifest_for(sweep: Sweep, versions: dict) -> dict:
    """The ``experiment.json`` of a sweep: config, axes, keys in grid order, time grid."""
    methods = {r.config["dynamics"]["method"] for r in sweep.runs}
    method = methods.pop()
    grids = set()
    for r in sweep.runs:
        d = r.config["dynamics"]
        if method == "flow":
            grid_d = save_times(
                d["t_max"], d["n_save"], d["t_min"], d.get("save_at"), d.get("save_spacing", "log")
            )
            grids.add(tuple(grid_d.tolist()))
        elif method == "glrl":  # the rank of each plateau (glrl_path)
            ranks = (
                d["max_rank"] if d["max_rank"] is not None else min(r.config["problem"]["shape"])
            )
            grids.add(tuple(float(s) for s in range(ranks + 1)))
        else:
            steps_d = save_steps(
                d["steps"], d["n_save"], d.get("save_at"), d.get("save_spacing", "log")
            )
            grids.add(tuple(float(s) for s in steps_d))
    grid = sorted(set().union(*grids))
    metrics = sweep.base["record"]["metrics"]
    scalar = ["distance_to_truth"] if "distance_to_truth" in metrics else []
    if "heldout_rmse" in metrics:
        scalar.append("final_heldout_rmse")
    return {
        "format": 1,
        "kind": "sweep",
        "name": sweep.name,
        "description": sweep.description,
        "config": sweep.raw,
        "method": method,
        "time_dim": "time" if method == "flow" else "step",
        "time_grid": grid,
        "metrics": metrics,
        "scalar_metrics": scalar,
        "custom": sweep.base["record"]["custom"],
        "max_rank": max(_num_sv(r.config) for r in sweep.runs),
        "axes": [
            {"name": a.name, "keys": list(a.keys), "values": [list(v) for v in a.values]}
            for a in sweep.axes
        ],
        "runs": [r.key for r in sweep.runs],
        "batch_size": sweep.chunk_size,  # the stored manifest keeps its key
        "versions": versions,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
