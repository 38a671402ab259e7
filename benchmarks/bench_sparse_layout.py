"""The sparse backend's layouts on skewed ratings (issue 26): one GD step at 943 x 1682.

Problem: MovieLens-100K's entries (``--data``, an npz with ``us`` (item, -1 meaning the last),
``vs`` (user, -1 the last) and ``ys``; not shipped) or, without it, synthetic skewed ratings
(item counts drawn from a Zipf-like law, seeded); the first ``N`` entries train (10,000 and
80,000). For DeepFactorization depth 2 and 3 at full width (943, ``min(m, n)``; ``--widths``
for others), float32, init identity of scale 1e-3,
compiled separately: a jitted scan of ``--steps`` GD steps ``theta -= lr grad L`` with the
engines' :func:`rankbias.dynamics._sparse.loss_and_grad` on

* ``dense``: the problem itself (``W`` formed each step);
* ``padded``: the sparse backend's padded row/column tables (forced);
* ``coo``: the sparse backend's COO layout (entry lists, segment sums; what
  ``from_problems`` picks for such a pattern).

Prints a markdown table of the median seconds per step over ``--reps`` timed calls.

    python benchmarks/bench_sparse_layout.py [--data PATH.npz] [--steps 20] [--reps 3] [--widths 943 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import rankbias as rb
from rankbias.dynamics import _sparse
from rankbias.dynamics._sparse import SparseCompletion, loss_and_grad

ITEMS, USERS = 1682, 943


def entries(path: str | None, seed: int = 0):
    """``(rows, cols, values)`` of 100,000 ratings in file order (items x users)."""
    if path is not None:
        d = np.load(path)
        us, vs = np.asarray(d["us"]), np.asarray(d["vs"])
        return np.where(us < 0, ITEMS - 1, us), np.where(vs < 0, USERS - 1, vs), d["ys"]
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, ITEMS + 1) ** 0.9
    rows = rng.choice(ITEMS, 100_000, p=w / w.sum())
    cols = rng.integers(0, USERS, 100_000)
    return rows, cols, rng.integers(1, 6, 100_000).astype(np.float32)


def problem(rows, cols, vals, n: int) -> rb.MatrixCompletion:
    key = rows[:n].astype(np.int64) * USERS + cols[:n]
    _, first = np.unique(key, return_index=True)  # synthetic draws may repeat an entry
    r, c, v = rows[:n][first], cols[:n][first], vals[:n][first]
    return rb.MatrixCompletion.from_triplets(r, c, v, (ITEMS, USERS), normalization="mean")


def step_time(data, model, params, steps: int, reps: int) -> float:
    @jax.jit
    def run(d, p):
        def body(q, _):
            _, g, _ = loss_and_grad(d, model, q)
            return tuple(a - 1.0 * b for a, b in zip(q, g, strict=True)), None

        return jax.lax.scan(body, p, None, length=steps)[0]

    jax.block_until_ready(run(data, params))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(run(data, params))
        ts.append((time.perf_counter() - t0) / steps)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--n-train", type=int, nargs="+", default=[10_000, 80_000])
    ap.add_argument("--widths", type=int, nargs="+", default=[USERS])
    a = ap.parse_args()
    rows, cols, vals = entries(a.data)
    print("| entries | depth | width | dense (s/step) | padded (s/step) | COO (s/step) | padding |")
    print("|---|---|---|---|---|---|---|")
    for n in a.n_train:
        prob = problem(rows, cols, vals, n).astype(jnp.float32)
        for L, k in ((L, k) for L in a.depths for k in a.widths):
            model = rb.DeepFactorization((ITEMS, USERS), depth=L, width=k)
            params = tuple(jnp.asarray(p, jnp.float32) for p in model.init("identity", 1e-3, 0))
            coo = SparseCompletion.from_problems(prob, model)
            keep = _sparse.COO_PADDING
            _sparse.COO_PADDING = float("inf")
            _sparse._TABLES.clear()
            try:
                ell = SparseCompletion.from_problems(prob, model)
            finally:
                _sparse.COO_PADDING = keep
                _sparse._TABLES.clear()
            assert coo.layout == "coo" and ell.layout == "ell", (coo.layout, ell.layout)
            assert ell.ridx is not None and ell.cidx is not None and coo.rows is not None
            pad = (ell.ridx.size + ell.cidx.size) / (2 * coo.rows.size)
            t = [step_time(d, model, params, a.steps, a.reps) for d in (prob, ell, coo)]
            print(
                f"| {coo.rows.size} | {L} | {k} | {t[0]:.4f} | {t[1]:.4f} | {t[2]:.4f} | {pad:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
