"""A noisy completion at full width (issue 30): how far a gradient flow gets in a time budget.

Instance (pinned here so that later changes are measured on the same problem): a 200 x 150
rank-3 truth ``random_low_rank((200, 150), 3, seed=0)``, 30% of the entries observed
(``MatrixCompletion.uniform(..., 0.3, seed=0)``'s mask), each observation plus gaussian noise
of standard deviation 0.1 x the RMS of the truth (seed 1). Full-width ``DeepFactorization``
depth 3 from ``init("gaussian", scale=1e-3, seed=0)``, ``t_max = 1e6``, the default stop
(certificate and gradient test), rtol default. A full-width model on noisy data has no
steady state short of fitting the noise (gradient-flow guide, "What the cost depends on"), so
the flow runs until the certificate or ``t_max``. Run each tree in its own process under a
wall-clock budget sent as Ctrl-C (``timeout -s INT``): the flow returns what it reached
(status ``interrupted``) and the script prints the time reached, steps and errors.

Usage (the two at once on a 2-core machine: a flow keeps about one core busy)::

    timeout -s INT 1140 python benchmarks/bench_noisy_flow.py                    # this tree
    PYTHONPATH=OLD/src timeout -s INT 1140 python benchmarks/bench_noisy_flow.py  # another
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import rankbias as rb


def instance():
    """(problem, truth) of the pinned noisy completion."""
    M = np.asarray(rb.random_low_rank((200, 150), 3, seed=0))
    mask = np.asarray(rb.MatrixCompletion.uniform(M, 0.3, seed=0).mask)
    rng = np.random.default_rng(1)
    noisy = M + 0.1 * np.sqrt(np.mean(M**2)) * rng.normal(size=M.shape)
    return rb.MatrixCompletion(noisy, mask, truth=M), M


def main() -> None:
    prob, M = instance()
    model = rb.DeepFactorization((200, 150), depth=3)
    p0 = model.init("gaussian", scale=1e-3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rb.gradient_flow(prob, model, p0, t_max=1.0, progress=False)  # compile
        t0 = time.perf_counter()
        tr = rb.gradient_flow(prob, model, p0, t_max=1e6, progress=False, save_matrices=True)
    wall = time.perf_counter() - t0
    W = np.asarray(tr.final_matrix)
    err = np.linalg.norm(W - M) / np.linalg.norm(M)
    print(
        f"rankbias {rb.__file__}: wall {wall:.1f} s, status {tr.status}, t_end "
        f"{float(tr.times[-1]):.4g}, steps {tr.info.get('num_steps')}, rejected "
        f"{tr.info.get('num_rejected')}, loss {float(tr.loss[-1]):.4g}, error to truth "
        f"{err:.4g}",
        flush=True,
    )


if __name__ == "__main__":
    main()
