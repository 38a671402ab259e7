r"""``movielens``: deep factorizations of depth 1-3 on a ratings file, against simple baselines.

The workflow of Arora, Cohen, Hu & Luo (2019, Figure 3 and their code
``roosephu/deep_matrix_factorization``) on a file the user supplies (MovieLens' licence
forbids shipping its ratings; the docs say where to get them): read the ratings
(:func:`rankbias.ratings.read_ratings`), split them (``"file_order"``: the first ``n_train``
lines train, the reference code's split; or ``"random"``: a seeded ``test_fraction``), then

* for each depth ``L``: gradient descent ``theta <- theta - lr grad L(theta)`` on
  ``L(theta) = f(W_L ... W_1)`` with ``f(W) = 1/(2N) sum_Omega (W_ij - M_ij)^2``
  (``normalization="mean"``; the reference's ``lr`` is ``lr / 2`` here, see the Real data
  guide), from ``init`` at end-to-end scale ``scale``, recording the held-out RMSE
  ``sqrt(mean_test (W_ij - R_ij)^2)`` and the training RMSE every ``eval_every`` steps;
* the simple predictors: global mean and mean plus user and item biases
  (:func:`rankbias.baselines.mean_baseline`, :func:`~rankbias.baselines.bias_baseline`);
* Soft-Impute along ``lams`` (:func:`rankbias.baselines.soft_impute_path`, on the ``"sum"``
  loss so that ``lam`` is in rating units).

Each depth runs on the shared engine, ``rb.gradient_descent`` (its ``backend="auto"``: the
dense backend at the default full width, where a step is about 3 products of ``(m, k) x (k,
n)`` per factor; the sparse backend, COO layout for rating data, for narrow widths), with a
record every ``eval_every`` steps that scores the held-out RMSE inside the compiled record
(``heldout=``); the training RMSE comes from the recorded loss.

Writes ``movielens.{png,svg,json,md}`` into the output folder: the curves (test RMSE against
the step, per depth, baselines as horizontal lines), the table of the best and final test RMSE
per depth and of each baseline, with the settings and wall times.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .._io import atomic_write_text
from ..baselines.predictors import bias_baseline, mean_baseline
from ..baselines.proximal import soft_impute_path
from ..dynamics.descent.api import gradient_descent
from ..dynamics.descent.hints import DivergenceError
from ..models import INITS, DeepFactorization
from ..problems.completion import MatrixCompletion
from ..problems.splits import file_order_split, random_split
from ..ratings import read_ratings
from ._output import dump_json, plt, save_figure

__all__ = ["movielens_study"]

#: The reference code's minimum test MSE on ML-100K (``plot.ipynb``, Figure 3: SGD, lr 0.01 on
#: their MSE, identity init of scale 1e-3, first 10,000 ratings train), as RMSE per depth.
REFERENCE_RMSE = {1: math.sqrt(13.7281), 2: math.sqrt(1.4498), 3: math.sqrt(1.3976)}


def _depth_curve(problem, model, params, lr: float, steps: int, eval_every: int, heldout) -> dict:
    r"""One depth of the study: ``rb.gradient_descent`` (the shared engine, its ``"auto"``
    backend) with a linear record every ``eval_every`` steps (``steps`` rounded up to a
    multiple of it), the held-out RMSE scored in the records (``heldout=``) and the training
    RMSE from the loss: ``f = c/2 sum_Omega r^2`` gives ``sqrt(2 f / (c N))``.

    Returns ``{"steps", "test_rmse", "train_rmse"}`` (``(T,)`` arrays), ``diverged``,
    ``wall_time`` and ``backend``; a diverged run (:class:`DivergenceError`) keeps its first
    record and a NaN at the step where it diverged."""
    for name, v in (("steps", steps), ("eval_every", eval_every)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {v!r}")
    ent = problem.observed_entries()
    assert ent is not None  # a MatrixCompletion from the split
    steps = -(-int(steps) // int(eval_every)) * int(eval_every)
    to_rmse = lambda f: np.sqrt(2.0 * np.asarray(f, np.float64) / (ent.weight * ent.rows.size))
    t0 = time.perf_counter()
    try:
        traj = gradient_descent(
            problem, model, params, lr=lr, steps=steps, n_save=steps // eval_every + 1,
            save_spacing="linear", heldout=heldout, dtype=params[0].dtype, progress=False,
        )  # fmt: skip
    except DivergenceError as e:
        W0 = np.asarray(model.product(params), np.float64)
        r, c, v = np.asarray(ent.rows), np.asarray(ent.cols), np.asarray(ent.values)
        return {
            "steps": np.asarray([0, e.step]),
            "test_rmse": np.asarray([heldout.rmse(W0), np.nan]),
            "train_rmse": np.asarray([np.sqrt(np.mean((W0[r, c] - v) ** 2)), np.nan]),
            "diverged": True,
            "wall_time": time.perf_counter() - t0,
            "backend": "",
        }
    return {
        "steps": np.asarray(traj.steps),
        "test_rmse": np.asarray(traj.metrics["heldout_rmse"], np.float64),
        "train_rmse": to_rmse(traj.loss),
        "diverged": False,
        "wall_time": float(traj.info["wall_time"]),
        "backend": traj.info["backend"],
    }


def _split(R, split: str, n_train: int, test_fraction: float, seed: int, normalization: str):
    if split == "file_order":
        return file_order_split(R, min(int(n_train), len(R) - 1), normalization=normalization)
    if split == "random":
        return random_split(R, test_fraction, seed, normalization=normalization)
    raise ValueError(f"`split` must be 'file_order' or 'random', got {split!r}")


def movielens_study(
    out_dir: Path,
    quick: bool = False,
    path: str | None = None,
    split: str = "file_order",
    n_train: int = 10_000,
    test_fraction: float = 0.2,
    seed: int = 0,
    depths=(1, 2, 3),
    width: int | None = None,
    init: str = "identity",
    scale: float = 1e-3,
    lr: float = 5.0,
    steps: int = 2000,
    eval_every: int = 50,
    lams=(20.0, 10.0, 5.0),
    bias_lam: float = 1.0,
    dtype: str = "float32",
) -> dict:
    r"""Run the study on the ratings file ``path``; writes ``movielens.{png,svg,json,md}``.

    Arguments:
        path: a ratings file (``user item rating [timestamp]``, ``::`` or CSV with a header:
            :func:`~rankbias.ratings.read_ratings`); required.
        split: ``"file_order"`` (the first ``n_train`` ratings train: the reference code's
            split) or ``"random"`` (``test_fraction`` held out, ``seed``).
        depths, width, init, scale: the models ``DeepFactorization(shape, L, width)``
            (default width ``min(m, n)``) from ``init`` at end-to-end scale ``scale``
            (``"identity"``: ``W(0) = scale I``, the reference's Figure 3 start).
        lr, steps, eval_every: gradient descent on the ``"mean"`` loss (the reference's SGD
            at ``lr / 2``), the held-out RMSE every ``eval_every`` steps.
        lams: Soft-Impute's ``lambda`` (rating units; empty: no Soft-Impute).
        bias_lam: the bias baseline's ridge ``lambda``. dtype: of the factors.

    ``quick``: 60 steps, depths 1 and 2, one Soft-Impute ``lambda`` (seconds on a 60 x 80
    file). Cost (full defaults, ML-100K, 943 x 1682, 2 shared CPU cores, float32): see the
    Real data guide; it grows as ``steps * depth * m n k``.

    Returns the table (best and final test RMSE per depth, with the step of the best; each
    baseline's test RMSE), the reference's numbers and the settings.
    """
    if path is None:
        raise ValueError(
            "`path` is required: the ratings file to run on (`rankbias run movielens --data "
            "PATH`, or --set params.path=PATH); MovieLens-100K's u.data is at "
            "https://grouplens.org/datasets/movielens/100k/"
        )
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {init!r}")
    if quick:
        steps, eval_every, depths, lams = 60, 10, (1, 2), tuple(lams)[:1]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    R = read_ratings(path)
    s = _split(R, split, n_train, test_fraction, seed, "mean")
    train, held = s
    shape = train.shape
    log_lines: list[str] = []

    def log(msg: str) -> None:
        log_lines.append(f"{time.strftime('%H:%M:%S')} {msg}")
        atomic_write_text(out_dir / "movielens.log", "\n".join(log_lines) + "\n")

    log(f"{R.shape} ratings {len(R)}; split {s.kind}: {s.info}")
    baselines: dict[str, dict] = {}
    for name, fit in (
        ("global mean", lambda: mean_baseline(train)),
        (f"mean + biases (lam {bias_lam:g})", lambda: bias_baseline(train, lam=bias_lam)),
    ):
        t0 = time.perf_counter()
        pred = fit()
        baselines[name] = {"test_rmse": pred.rmse(held), "wall_time": time.perf_counter() - t0}
        log(f"{name}: test RMSE {baselines[name]['test_rmse']:.4f}")
    if len(lams):
        ent = train.observed_entries()
        summed = MatrixCompletion.from_triplets(ent.rows, ent.cols, ent.values, shape)
        t_si = [time.perf_counter()]

        def got(lam, X):
            now = time.perf_counter()
            r = float(np.sqrt(np.mean((X[held.rows, held.cols] - held.values) ** 2)))
            baselines[f"Soft-Impute (lam {lam:g})"] = {"test_rmse": r, "wall_time": now - t_si[0]}
            log(f"Soft-Impute lam {lam:g}: test RMSE {r:.4f}, {now - t_si[0]:.1f} s")
            t_si[0] = now

        done = soft_impute_path(summed, list(lams), on_result=got)
        if len(done) < len(lams):
            # the path returns what it finished when interrupted (Ctrl-C, SIGTERM through the
            # CLI); the study stops there too rather than start the depths
            raise KeyboardInterrupt("interrupted during Soft-Impute")
    curves: dict[int, dict] = {}
    for L in (int(d) for d in depths):
        model = DeepFactorization(shape, depth=L, width=width)
        p0 = tuple(jnp.asarray(a, dtype) for a in model.init(init, scale, seed))
        c = _depth_curve(train, model, p0, float(lr), int(steps), int(eval_every), held)
        curves[L] = c
        i = int(np.nanargmin(c["test_rmse"]))
        log(
            f"depth {L}: best test RMSE {c['test_rmse'][i]:.4f} at step {c['steps'][i]}, "
            f"final {c['test_rmse'][-1]:.4f}, {c['wall_time']:.1f} s"
            + (" (diverged)" if c["diverged"] else "")
        )
    table = {
        f"depth {L}": {
            "best_test_rmse": float(np.nanmin(c["test_rmse"])),
            "best_step": int(c["steps"][int(np.nanargmin(c["test_rmse"]))]),
            "final_test_rmse": float(c["test_rmse"][-1]),
            "final_train_rmse": float(c["train_rmse"][-1]),
            "wall_time": c["wall_time"],
            "diverged": c["diverged"],
        }
        for L, c in curves.items()
    }
    settings = dict(
        path=str(path), split=s.kind, split_info=s.info, shape=list(shape), depths=list(curves),
        width=width, init=init, scale=scale, lr=lr, normalization="mean", steps=int(steps),
        eval_every=int(eval_every), lams=list(lams), bias_lam=bias_lam, dtype=dtype,
    )  # fmt: skip
    result = {
        "settings": settings,
        "table": table,
        "baselines": baselines,
        "reference_rmse": {f"depth {k}": v for k, v in REFERENCE_RMSE.items()},
        "curves": {
            f"depth {L}": {
                k: np.asarray(c[k]).tolist() for k in ("steps", "test_rmse", "train_rmse")
            }
            for L, c in curves.items()
        },
        "wall_time": time.perf_counter() - t_all,
    }
    _figure(out_dir, curves, baselines)
    dump_json(out_dir, "movielens", result)
    atomic_write_text(out_dir / "movielens.md", _markdown(result))
    return {k: result[k] for k in ("table", "baselines", "settings", "wall_time")}


def _figure(out_dir: Path, curves: dict, baselines: dict) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for L, c in curves.items():
        ax.plot(c["steps"], c["test_rmse"], label=f"depth {L}", color=f"C{L - 1}")
    for j, (name, b) in enumerate(baselines.items()):
        ax.axhline(b["test_rmse"], ls=":", lw=1, color=f"C{j + 4}", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("test RMSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, out_dir, "movielens")


def _markdown(r: dict) -> str:
    lines = [
        "| predictor | best test RMSE | at step | final test RMSE | wall (s) |",
        "|---|---|---|---|---|",
    ]
    for name, t in r["table"].items():
        lines.append(
            f"| {name} | {t['best_test_rmse']:.4f} | {t['best_step']} | "
            f"{t['final_test_rmse']:.4f}{' (diverged)' if t['diverged'] else ''} | "
            f"{t['wall_time']:.1f} |"
        )
    for name, b in r["baselines"].items():
        lines.append(f"| {name} | {b['test_rmse']:.4f} | | | {b['wall_time']:.1f} |")
    s = r["settings"]
    lines += ["", f"Settings: {s}", "", f"Total wall time: {r['wall_time']:.1f} s", ""]
    return "\n".join(lines)
