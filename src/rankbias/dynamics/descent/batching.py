"""Batches of gradient-descent or optimizer runs: how they run (one vmapped program or the
single run's program in a loop, :func:`batch_strategy`) and how their results come back (one
per run, a :class:`~.hints.DivergenceError` in a diverged run's place on request)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax

from .._common import check_initial_loss, index_tree
from .hints import DivergenceError

if TYPE_CHECKING:
    from ...trajectory import Trajectory

__all__ = ["VMAP_MAX_DIM", "batch_strategy", "run_problem", "check_initial_losses", "collect"]


#: :func:`batch_strategy`: on the CPU, batches of models whose largest dimension (matrix
#: side or width) exceeds this run one by one.
VMAP_MAX_DIM = 200


def batch_strategy(model, batch: int) -> str:
    """How :func:`gradient_descent_batch` runs ``batch`` runs of ``model`` by default.

    ``"loop"`` (the single run's compiled program, shared with :func:`gradient_descent`)
    for one run; on accelerators ``"vmap"``; on the CPU ``"vmap"`` while the model's largest
    dimension ``max(m, n, widths)`` is at most :data:`VMAP_MAX_DIM` (200), ``"loop"`` above.
    Measured on 2 CPU cores, float64, 16 runs: vmap took 0.60-0.92x the one-by-one time at
    15 x 15 and 30 x 30 (depth 2 and 3) and 0.39x at 100 x 100 depth 3
    (``benchmarks/bench_batch_gd.py --grid``, loaded machine); from the per-step times of
    ``bench_gd.py`` (idle machine, depth 3) batch 16 against 16 single steps: 0.80x at
    d = 100, 1.18x at d = 300 and 1.05x at d = 1000 (matmul-bound: one large product runs
    closer to the matmul rate than a batched one).

    Returns:
        ``"vmap"`` or ``"loop"``.
    """
    if batch == 1:
        return "loop"
    if jax.default_backend() != "cpu":
        return "vmap"
    dims = (*model.shape, *(n for shape in model.param_shapes for n in shape))
    return "vmap" if max(dims) <= VMAP_MAX_DIM else "loop"


def run_problem(problem, p_axis, i: int):
    """Run ``i``'s problem: ``problem`` itself when shared (``p_axis is None``), else its
    ``i``-th slice."""
    return problem if p_axis is None else index_tree(problem, i)


def check_initial_losses(problem, p_axis, model, params, B: int) -> None:
    """:func:`check_initial_loss` of every run, naming ``params_list[i]``."""
    for i in range(B):
        check_initial_loss(
            run_problem(problem, p_axis, i),
            model,
            index_tree(params, i),
            name=f"params_list[{i}]",
        )


def collect(B: int, finish: Callable[[int], Trajectory], on_divergence: str):
    """``(results, ended)``: ``finish(i)`` of each run in order; a
    :class:`~.hints.DivergenceError` is raised (``on_divergence="raise"``) or put in the run's
    place (``"return"``). ``ended``: ``(i, lr, stationarity)`` of the runs that finished, for
    :func:`~.stationarity.warn_not_stationary`, which the public function calls itself (the
    warning points at the user's call)."""
    result, ended = [], []
    for i in range(B):
        try:
            traj = finish(i)
        except DivergenceError as e:
            if on_divergence == "raise":
                raise
            result.append(e)
            continue
        result.append(traj)
        ended.append((i, traj.info["lr"], traj.info["stationarity"]))
    return result, ended
