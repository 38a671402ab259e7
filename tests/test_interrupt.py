"""Ctrl-C during a foreground run returns the run so far with status ``interrupted`` (issue 29).

A child process runs a gradient flow (or gradient descent) whose chunk hook
(:func:`rankbias.dynamics._interrupt.add_chunk_hook`) prints ``CHUNK`` after its first chunk
and then waits; the parent sends it a real SIGINT. The oracle is an uninterrupted run of the
same configuration in the parent: the child's records are its first records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import rankbias as rb
from rankbias.dynamics import _interrupt
from rankbias.dynamics.descent import loop
from rankbias.dynamics.flow import api as flow_api

M = rb.random_low_rank(shape=(10, 10), rank=2, psd=True, seed=0)
PROB = rb.MatrixCompletion.uniform(M, fraction=0.7, seed=0, symmetric=True)
MODEL = rb.DeepFactorization(shape=(10, 10), depth=3)
P0 = MODEL.init("gaussian", scale=1e-3, seed=0)
# the flow takes 2673 RKC steps: two chunks of at most 2000 (to t = 1e4: 2608 steps before
# issue 30, 1986 since, one chunk)
T_MAX, STEPS = 1e5, 3000

_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rankbias as rb
    from rankbias.dynamics._interrupt import add_chunk_hook

    M = rb.random_low_rank(shape=(10, 10), rank=2, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, fraction=0.7, seed=0, symmetric=True)
    model = rb.DeepFactorization(shape=(10, 10), depth=3)
    p0 = model.init("gaussian", scale=1e-3, seed=0)

    def hook(report):  # after the first chunk: tell the parent, then wait for its SIGINT
        print("CHUNK", flush=True)
        time.sleep(120)

    add_chunk_hook(hook)
    if sys.argv[1] == "flow":
        tr = rb.gradient_flow(prob, model, p0, t_max=1e5)
    else:
        tr = rb.gradient_descent(prob, model, p0, lr=0.3, steps=3000)
    np.savez(sys.argv[2], times=tr.times, loss=tr.loss, sv=tr.singular_values,
             status=tr.status, steps=-1 if tr.steps is None else tr.steps)
    print("DONE", flush=True)
    """
)


def _interrupted_child(kind: str, tmp_path) -> dict:
    script, out = tmp_path / "child.py", tmp_path / "out.npz"
    script.write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen(
        [sys.executable, str(script), kind, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # blocks until the first chunk is done
        assert line.strip() == "CHUNK", child.stderr.read() if child.stderr else line
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    assert "interrupted (Ctrl-C)" in err  # the RuntimeWarning
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
def test_sigint_returns_the_flow_so_far(tmp_path):
    got = _interrupted_child("flow", tmp_path)
    ref = rb.gradient_flow(PROB, MODEL, P0, t_max=T_MAX)
    assert str(got["status"]) == "interrupted" and ref.status == "t_max"
    t = got["times"]
    assert np.all(np.diff(t) > 0) and t[-1] < T_MAX
    # The records at the save times reached are the uninterrupted run's first records; the
    # last one is the end point of the first chunk (no save time).
    n = len(t) - 1
    assert 1 < n < len(ref)
    np.testing.assert_array_equal(t[:n], ref.times[:n])
    np.testing.assert_allclose(got["loss"][:n], ref.loss[:n], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["sv"][:n], ref.singular_values[:n], rtol=1e-10, atol=1e-300)
    assert ref.times[n - 1] <= t[-1] < ref.times[n]


@pytest.mark.slow
def test_sigint_returns_gradient_descent_so_far(tmp_path):
    got = _interrupted_child("gd", tmp_path)
    ref = rb.gradient_descent(PROB, MODEL, P0, lr=0.3, steps=STEPS)
    assert str(got["status"]) == "interrupted"
    n = len(got["times"])
    assert loop.CHUNK_RECORDS <= n < len(ref)  # the first chunk's records (and step 0)
    np.testing.assert_array_equal(got["steps"], ref.steps[:n])  # pyright: ignore[reportOptionalSubscript]
    np.testing.assert_array_equal(got["times"], ref.times[:n])
    np.testing.assert_allclose(got["loss"], ref.loss[:n], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["sv"], ref.singular_values[:n], rtol=1e-10, atol=1e-300)


def _interrupt_after(n_chunks: int):
    """A chunk hook that raises KeyboardInterrupt at the ``n_chunks``-th chunk (what Ctrl-C
    does to the host loop), in process."""
    seen = []

    def hook(report):
        seen.append(report)
        if len(seen) == n_chunks:
            raise KeyboardInterrupt

    return hook, seen


def test_interrupt_in_process_gd_and_raise_interrupts_propagates():
    hook, seen = _interrupt_after(2)
    _interrupt.add_chunk_hook(hook)
    try:
        with pytest.warns(RuntimeWarning, match="interrupted"):
            tr = rb.gradient_descent(PROB, MODEL, P0, lr=0.3, steps=STEPS)
        assert tr.status == rb.RunStatus.INTERRUPTED and not rb.status.ended_well(tr.status)
        assert len(tr) == 1 + 2 * loop.CHUNK_RECORDS and seen[1].done == tr.steps[-1]  # pyright: ignore[reportOptionalSubscript]
        seen.clear()
        with _interrupt.raise_interrupts(), pytest.raises(KeyboardInterrupt):
            rb.gradient_descent(PROB, MODEL, P0, lr=0.3, steps=STEPS)
    finally:
        _interrupt.remove_chunk_hook(hook)


def test_chunked_runs_equal_one_call_runs(monkeypatch):
    """Chunking is invisible: a flow cut into 37-step chunks and GD with long record
    intervals split every 7 steps give the one-call run's records, counts and status."""
    one = rb.gradient_flow(PROB, MODEL, P0, t_max=T_MAX)
    monkeypatch.setattr(flow_api, "CHUNK_STEPS", 37)
    hook, seen = _interrupt_after(-1)
    _interrupt.add_chunk_hook(hook)
    try:
        many = rb.gradient_flow(PROB, MODEL, P0, t_max=T_MAX)
    finally:
        _interrupt.remove_chunk_hook(hook)
    assert len(seen) == -(-one.info["num_steps"] // 37)
    for key in ("status", "num_steps", "num_rejected", "num_vf_evals", "t_final"):
        assert many.info[key] == one.info[key], key
    np.testing.assert_allclose(many.singular_values, one.singular_values, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(many.final_matrix, one.final_matrix, rtol=0, atol=1e-12)

    gd_one = rb.gradient_descent(PROB, MODEL, P0, lr=0.3, steps=STEPS, save_at=[2999])
    monkeypatch.setattr(loop, "chunk_steps", lambda model: 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        gd_many = rb.gradient_descent(PROB, MODEL, P0, lr=0.3, steps=STEPS, save_at=[2999])
    assert gd_many.status == gd_one.status
    np.testing.assert_array_equal(gd_many.steps, gd_one.steps)
    np.testing.assert_allclose(gd_many.loss, gd_one.loss, rtol=1e-12, atol=0)
    np.testing.assert_allclose(gd_many.final_matrix, gd_one.final_matrix, rtol=0, atol=1e-12)


@pytest.mark.parametrize("where", ["between phases", "inside a phase"])
def test_glrl_interrupt_returns_the_phases_finished(where):
    """Oracle: phase r of GLRL on f = 1/2 ||W - Y||^2 adds lam_r v_r v_r^T (closed form)."""
    spec = np.array([3.0, 2.0, 1.0, -0.5, -1.0])
    Y = rb.matrix_from_spectrum(spec, (5, 5), seed=1, symmetric=True)
    seen = []

    def hook(report):
        seen.append(report.method)
        # "between": at the end of phase 1; "inside": at the first chunk of phase 2's flow.
        if (where == "between phases" and report.method == "glrl") or (
            where == "inside a phase" and seen.count("glrl") == 1 and report.method != "glrl"
        ):
            raise KeyboardInterrupt

    _interrupt.add_chunk_hook(hook)
    try:
        with pytest.warns(RuntimeWarning, match="interrupted"):
            res = rb.glrl(rb.MatrixEstimation(Y), eps=1e-30, tol=1e-9)
    finally:
        _interrupt.remove_chunk_hook(hook)
    assert res.status == rb.RunStatus.INTERRUPTED and len(res.phases) == 1
    w, V = np.linalg.eigh(Y)
    np.testing.assert_allclose(res.matrix, 3.0 * np.outer(V[:, -1], V[:, -1]), atol=1e-8)
    assert res.loss == pytest.approx(0.5 * np.sum(spec[1:] ** 2), rel=1e-8)
