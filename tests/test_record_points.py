"""Record points the user chooses (issue 26): ``save_spacing="linear"|"log"`` and explicit
``save_at``, in the API (flow, GD, train) and in a sweep's TOML; and ``rb.train``'s sparse
backend against its dense one."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import numpy as np
import pytest
from _configs import tiny_sweep

import rankbias as rb
import rankbias.experiments as ex
from rankbias.store import Store


@pytest.fixture(scope="module")
def small():
    M = rb.random_low_rank((6, 5), 2, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.7, seed=0)
    model = rb.DeepFactorization((6, 5), depth=2)
    return prob, model, model.init(scale=0.1, seed=0)


def test_gd_and_train_linear_and_explicit_steps(small):
    prob, model, p = small
    tr = rb.gradient_descent(prob, model, p, 0.1, 20, n_save=5, save_spacing="linear")
    np.testing.assert_array_equal(tr.steps, [0, 5, 10, 15, 20])  # 20 j / 4
    tr = rb.train(prob, model, p, "sgd", lr=0.1, steps=20, n_save=5, save_spacing="linear")
    np.testing.assert_array_equal(tr.steps, [0, 5, 10, 15, 20])
    tr = rb.train(prob, model, p, "adam", lr=0.01, steps=9, n_save=4, save_spacing="linear")
    np.testing.assert_array_equal(tr.steps, [0, 3, 6, 9])
    # n_save = 2: step 0, one log-spaced step (1) and the end, then save_at
    tr = rb.gradient_descent(prob, model, p, 0.1, 20, n_save=2, save_at=[7, 3])
    np.testing.assert_array_equal(tr.steps, [0, 1, 3, 7, 20])
    # log (the default): 0, then round(geomspace(1, steps, n_save - 1)), and the end
    tr = rb.gradient_descent(prob, model, p, 0.1, 100, n_save=4)
    np.testing.assert_array_equal(tr.steps, [0, 1, 10, 100])
    with pytest.raises(ValueError, match="save_spacing"):
        rb.gradient_descent(prob, model, p, 0.1, 20, save_spacing="geometric")


def test_flow_linear_and_explicit_times(small):
    prob, model, p = small
    tr = rb.gradient_flow(prob, model, p, 10.0, n_save=6, gtol=None, save_spacing="linear")
    np.testing.assert_allclose(tr.times, [0, 2, 4, 6, 8, 10], rtol=0, atol=1e-12)
    # 0, n_save - 1 = 2 log-spaced times from t_min = t_max / 1e4 to t_max, then save_at
    tr = rb.gradient_flow(prob, model, p, 10.0, n_save=3, gtol=None, save_at=[2.5, 0.5])
    np.testing.assert_allclose(tr.times, [0, 1e-3, 0.5, 2.5, 10], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="save_spacing"):
        rb.gradient_flow(prob, model, p, 10.0, save_spacing="lin")


def _sweep(extra: str, method: str = "gd") -> str:
    text = tiny_sweep("points", "{ seed = [0] }", steps=20, n_save=5)
    if method == "optax":
        text = text.replace('method = "gd"', 'method = "optax"\noptimizer = "sgd"')
    return text.replace("n_save = 5\n", f"n_save = 5\n{extra}\n")


@pytest.mark.parametrize(
    ("extra", "method", "want"),
    [
        ('save_spacing = "linear"', "gd", [0, 5, 10, 15, 20]),
        ('save_spacing = "linear"', "optax", [0, 5, 10, 15, 20]),
        # log steps round(geomspace(1, 20, 4)) = 1, 3, 7, 20, and save_at
        ("save_at = [4, 11]", "gd", [0, 1, 3, 4, 7, 11, 20]),
    ],
)
def test_a_sweep_records_the_requested_steps(tmp_path, extra, method, want):
    sw = ex.expand(ex.parse_config(textwrap.dedent(_sweep(extra, method))))
    ex.run_sweep(sw, tmp_path, progress=False)
    store = Store(tmp_path)
    run = store.read_run(sw.runs[0].key)
    np.testing.assert_array_equal(run["steps"], want)
    np.testing.assert_array_equal(store.manifest()["time_grid"], want)  # the dataset's axis
    assert json.loads(str(run["info"]))["backend"] == "dense"


def test_default_spacing_leaves_the_run_key_alone():
    base = ex.expand(ex.parse_config(textwrap.dedent(_sweep("")))).runs[0].key
    log = ex.expand(ex.parse_config(textwrap.dedent(_sweep('save_spacing = "log"')))).runs[0]
    lin = ex.expand(ex.parse_config(textwrap.dedent(_sweep('save_spacing = "linear"')))).runs[0]
    assert log.key == base and lin.key != base


def test_a_sweep_refuses_save_at_beyond_the_run():
    with pytest.raises(ex.ConfigError, match="save_at"):
        ex.expand(ex.parse_config(textwrap.dedent(_sweep("save_at = [3, 70]"))))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_sparse_backend_matches_dense(optimizer):
    """The factor-form loss and gradient against the dense product: the same trajectory."""
    M = rb.random_low_rank((12, 9), 2, seed=1)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=1)
    model = rb.DeepFactorization((12, 9), depth=3, width=4)
    p = model.init(scale=0.3, seed=2)
    kw: dict[str, Any] = dict(lr=0.05 if optimizer == "sgd" else 0.01, steps=40, n_save=6)
    dense = rb.train(prob, model, p, optimizer, backend="dense", **kw)
    sparse = rb.train(prob, model, p, optimizer, backend="sparse", **kw)
    assert dense.info["backend"] == "dense" and sparse.info["backend"] == "sparse"
    np.testing.assert_allclose(sparse.loss, dense.loss, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(sparse.singular_values, dense.singular_values, atol=1e-10)
    for a, b in zip(sparse.final_params, dense.final_params, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)
    with pytest.raises(ValueError, match="batch_size"):
        rb.train(prob, model, p, optimizer, backend="sparse", batch_size=5, **kw)
    mb = rb.train(prob, model, p, optimizer, batch_size=5, **kw)
    assert mb.info["backend"] == "dense"


def test_glrl_records_its_backend():
    M = rb.random_low_rank((4, 4), 1, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.8, 0, symmetric=True)
    assert rb.glrl(prob, max_rank=1).info["backend"] == "dense"  # d <= 200: the dense path


def test_a_flow_sweep_records_at_the_requested_times(tmp_path):
    text = _sweep('save_spacing = "linear"').replace(
        'method = "gd"\nlr = 0.2\nsteps = 20\n', 'method = "flow"\nt_max = 100.0\n'
    )
    assert 'method = "flow"' in text
    sw = ex.expand(ex.parse_config(textwrap.dedent(text)))
    ex.run_sweep(sw, tmp_path, progress=False)
    store = Store(tmp_path)
    want = [0.0, 25.0, 50.0, 75.0, 100.0]  # t_max j / (n_save - 1)
    np.testing.assert_allclose(store.manifest()["time_grid"], want, rtol=1e-12)
    times = store.read_run(sw.runs[0].key)["times"]
    np.testing.assert_allclose(times, want[: len(times)], rtol=1e-12)  # a steady state may
    # end the flow early; every record it made is at a requested time


def test_train_batch_sparse_matches_train():
    M = rb.random_low_rank((12, 9), 2, seed=1)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=1)
    model = rb.DeepFactorization((12, 9), depth=2, width=3)
    ps = [model.init(scale=0.3, seed=s) for s in (0, 1)]
    kw: dict[str, Any] = dict(steps=20, n_save=4, backend="sparse")
    batch = rb.train_batch(prob, model, ps, "sgd", lr=[0.05, 0.02], **kw)
    for tr, p, lr in zip(batch, ps, (0.05, 0.02), strict=True):
        one = rb.train(prob, model, p, "sgd", lr=lr, backend="dense", steps=20, n_save=4)
        assert tr.info["backend"] == "sparse"
        np.testing.assert_allclose(tr.loss, one.loss, rtol=1e-10, atol=1e-14)
