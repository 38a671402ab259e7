r"""``optimizers-vs-flow``: how far the optimizers people train with land from gradient flow.

20x20 rank-3 completion, depth 2 and 3, init scales 1e-3 and 1e-6 (end-to-end). From the same
initialization: GD, heavy-ball momentum, SGD (minibatches of observed entries), GroupRMSprop
(Arora et al. 2019) and Adam, against the exact gradient flow (``rb.gradient_flow``, recorded
at the optimizers' effective times) and against asymmetric GLRL (the flow's small-init limit).

Measured per (depth, scale, optimizer): the end point's distance to the flow's end point and
to GLRL's, ``||W - W_ref||_F / ||W_ref||_F``; the largest distance to the flow over the shared
effective time axis (:func:`rankbias.distance_to_flow`; Adam has none, see the guide); the
final loss, relative error to the truth and effective rank. Figure: loss against (effective)
time, and the distance to the flow against time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .._quiet import quietly
from ..dynamics._interrupt import raise_interrupts
from ..dynamics._train import train_batch
from ..dynamics.flow.api import gradient_flow
from ..flow_distance import distance_to_flow
from ..glrl import glrl
from ..models import DeepFactorization
from ..problems.completion import MatrixCompletion
from ..problems.matrices import random_low_rank
from ._output import dump_json, plt, save_figure

__all__ = ["optimizers_vs_flow", "OPTIMIZERS"]

#: name -> (rb.train optimizer, keyword arguments) at the GD step ``lr``: momentum's step is
#: ``lr (1 - b)`` (the same effective step ``lr``), SGD uses half the observed entries per step.
OPTIMIZERS = {
    "GD": ("sgd", lambda lr, n: dict(lr=lr)),
    "momentum 0.9": ("momentum", lambda lr, n: dict(lr=lr * 0.1, momentum=0.9)),
    "SGD (B = N/2)": ("sgd", lambda lr, n: dict(lr=lr, batch_size=n // 2, seed=0)),
    "GroupRMSprop": ("group_rmsprop", lambda lr, n: dict(lr=1e-3)),
    "Adam": ("adam", lambda lr, n: dict(lr=1e-3)),
}


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300))


@raise_interrupts()  # a run cut short would be a wrong result: Ctrl-C propagates
def optimizers_vs_flow(
    out_dir: Path,
    quick: bool = False,
    d: int = 20,
    rank: int = 3,
    fraction: float = 0.5,
    depths=(2, 3),
    scales=(1e-3, 1e-6),
    lr: float = 0.2,
    steps: int = 50_000,
    seed: int = 0,
) -> dict:
    """Run the comparison; writes ``optimizers-vs-flow.{png,svg,json}`` into ``out_dir``.

    ``quick``: depth 2 only, 12,000 steps (the flow's time ``2,400``): the same ordering of
    the optimizers, in about a tenth of the time.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if quick:
        depths, steps = (2,), 12_000
    t_start = time.perf_counter()
    M = random_low_rank((d, d), rank, seed=seed)
    prob = MatrixCompletion.uniform(M, fraction, seed=seed)
    with quietly():
        ref = glrl(prob, psd=False)
    W_glrl = np.asarray(ref.matrix)
    rows, curves = [], {}
    for L in depths:
        model = DeepFactorization((d, d), depth=L)
        inits = [model.init("gaussian", scale=a, seed=seed) for a in scales]
        runs = {}
        for name, (opt, kw) in OPTIMIZERS.items():
            runs[name] = train_batch(
                prob,
                model,
                inits,
                opt,
                steps=steps,
                n_save=300,
                save_matrices=True,
                **kw(lr, prob.num_observed),
            )
        for i, a in enumerate(scales):
            eff = np.concatenate(
                [r[i].times for r in runs.values() if r[i].info["time_axis"] == "effective"]
            )
            t_max = float(eff.max())
            with quietly():
                flow = gradient_flow(
                    prob,
                    model,
                    inits[i],
                    t_max=t_max,
                    save_at=eff,
                    save_matrices=True,
                    rtol=1e-9,
                    n_save=300,
                )
            curves[(L, a, "gradient flow")] = (flow.times, flow.loss, None)
            rows.append(
                dict(
                    depth=L,
                    scale=a,
                    optimizer="gradient flow",
                    to_flow=0.0,
                    to_glrl=_rel(flow.final_matrix, W_glrl),
                    max_to_flow=0.0,
                    loss=float(flow.loss[-1]),
                    error=_rel(flow.final_matrix, M),
                    eff_rank=float(flow.effective_rank()[-1]),
                    time=float(flow.times[-1]),
                    status=flow.status,
                )
            )
            for name, r in runs.items():
                tr = r[i]
                effective = tr.info["time_axis"] == "effective"
                dist = distance_to_flow(tr, flow) if effective else None
                curves[(L, a, name)] = (
                    tr.times if effective else tr.steps.astype(float),
                    tr.loss,
                    dist,
                )
                rows.append(
                    dict(
                        depth=L,
                        scale=a,
                        optimizer=name,
                        to_flow=_rel(tr.final_matrix, flow.final_matrix),
                        to_glrl=_rel(tr.final_matrix, W_glrl),
                        max_to_flow=float(dist.max) if dist else float("nan"),
                        loss=float(tr.loss[-1]),
                        error=_rel(tr.final_matrix, M),
                        eff_rank=float(tr.effective_rank()[-1]),
                        time=float(tr.times[-1]) if effective else float("nan"),
                        status=tr.info["time_axis"],
                    )
                )
    _figure(out_dir, curves, depths, scales)
    out = dict(
        rows=rows,
        glrl=dict(rank=int(ref.rank) if hasattr(ref, "rank") else None, error=_rel(W_glrl, M)),
        settings=dict(
            d=d,
            rank=rank,
            fraction=fraction,
            observed=prob.num_observed,
            depths=list(depths),
            scales=list(scales),
            lr=lr,
            steps=steps,
            quick=quick,
            seed=seed,
        ),
        wall_time=time.perf_counter() - t_start,
    )
    dump_json(out_dir, "optimizers-vs-flow", out)
    return out


def _figure(out_dir: Path, curves: dict, depths, scales) -> None:
    cols = [(L, a) for L in depths for a in scales]
    fig, axes = plt.subplots(2, len(cols), figsize=(4 * len(cols), 6.4), squeeze=False)
    for c, (L, a) in enumerate(cols):
        top, bot = axes[0, c], axes[1, c]
        for (LL, aa, name), (t, loss, dist) in curves.items():
            if (LL, aa) != (L, a):
                continue
            style = dict(c="k", lw=2.5, alpha=0.4) if name == "gradient flow" else {}
            label = name + (" (x: step)" if name == "Adam" else "")
            keep = t > 0
            top.loglog(t[keep], np.maximum(loss[keep], 1e-30), label=label, **style)
            if dist is not None:
                bot.loglog(
                    dist.times[dist.times > 0],
                    np.maximum(dist.distance[dist.times > 0], 1e-16),
                    label=name,
                )
        top.set_title(f"depth {L}, init {a:g}")
        top.set_xlabel("effective time  sum eta_k")
        bot.set_xlabel("effective time")
        top.set_ylabel("loss")
        bot.set_ylabel("||W - W_flow||_F / ||W_flow(T)||_F")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir, "optimizers-vs-flow")
