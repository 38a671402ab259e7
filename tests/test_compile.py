"""No recompilation between runs that differ only in values (issue 15), and the persistent
compilation cache's environment variable.

Compilations are counted with JAX's monitoring events: every lowering of a jaxpr to MLIR
(``/jax/core/compile/jaxpr_to_mlir_module_duration``) is an in-memory cache miss, whether or
not the persistent cache then supplies the executable.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import weakref
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb

_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"


@contextlib.contextmanager
def _count_events(name: str):
    """The names of the functions for which JAX reports the duration event ``name``."""
    events: list[str] = []

    def listener(event: str, duration_secs: float, **kw: str | int) -> None:
        if event == name:
            events.append(str(kw.get("fun_name", "?")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def count_compiles():
    """Lowerings (jaxpr -> MLIR) while the context is open: each is a new compiled program."""
    return _count_events(_LOWER)


D = 6


@pytest.fixture(scope="module")
def setup():
    M = rb.random_low_rank((D, D), 2, psd=True, seed=3)
    prob = rb.MatrixCompletion.uniform(M, 0.6, seed=3, symmetric=True)
    model = rb.DeepFactorization(shape=(D, D), depth=3, width=D)
    return prob, model


def test_counter_sees_a_compile():
    # The oracle of the tests below: a fresh jitted function is counted.
    with count_compiles() as ev:
        jax.jit(lambda x: x * 3.0 + 1.0)(np.ones(7))
    assert len(ev) >= 1


def test_gradient_flow_does_not_recompile(setup):
    prob, model = setup
    kw: dict[str, Any] = dict(t_max=50.0, n_save=20)
    rb.gradient_flow(prob, model, model.init("gaussian", scale=1e-2, seed=0), **kw)
    # Other init (seed and scale: the default atol follows it), other data of the same
    # shapes, other tolerances, t_max, max_steps, t_min: nothing is compiled.
    M2 = rb.random_low_rank((D, D), 2, psd=True, seed=9)
    prob2 = rb.MatrixCompletion(
        M2, (np.asarray(prob.rows), np.asarray(prob.cols)), truth=M2, symmetric=True
    )
    with count_compiles() as ev:
        tr = rb.gradient_flow(prob, model, model.init("gaussian", scale=3e-2, seed=1), **kw)
        rb.gradient_flow(
            prob2,
            model,
            model.init("gaussian", scale=1e-2, seed=2),
            t_max=80.0,
            n_save=20,
            rtol=1e-7,
            atol=1e-11,
            gtol=1e-9,
            max_steps=50_000,
            t_min=1e-3,
            certificate_tol=1e-5,
            curvature_tol=1e-5,
        )
    assert ev == [], f"recompiled: {ev}"
    assert tr.info["status"] in ("t_max", "steady_state")


def test_gradient_flow_batch_does_not_recompile(setup):
    prob, model = setup
    inits = [model.init("gaussian", scale=1e-2, seed=s) for s in range(2)]
    rb.gradient_flow_batch(prob, model, inits, t_max=30.0, n_save=10)
    with count_compiles() as ev:
        rb.gradient_flow_batch(
            prob,
            model,
            [model.init("gaussian", scale=5e-2, seed=s) for s in (5, 6)],
            t_max=40.0,
            n_save=10,
            rtol=1e-7,
        )
    assert ev == [], f"recompiled: {ev}"


def test_gradient_descent_does_not_recompile(setup):
    prob, model = setup
    rb.gradient_descent(
        prob, model, model.init("gaussian", scale=1e-2, seed=0), lr=0.1, steps=300, n_save=30
    )
    with count_compiles() as ev:
        # steps changes the number of distinct log-spaced record steps: padded, not recompiled
        tr = rb.gradient_descent(
            prob,
            model,
            model.init("gaussian", scale=2e-2, seed=1),
            lr=0.05,
            steps=1234,
            n_save=30,
            divergence_factor=1e6,
        )
        rb.gradient_descent(
            prob, model, model.init("gaussian", scale=2e-2, seed=2), lr=0.2, steps=7, n_save=30
        )
    assert ev == [], f"recompiled: {ev}"
    assert tr.steps is not None  # GD records its steps
    assert tr.steps[-1] == 1234 and tr.times[-1] == pytest.approx(1234 * 0.05)


def test_sharpness_does_not_recompile(setup):
    prob, model = setup
    rb.sharpness(prob, model, model.init("gaussian", scale=1.0, seed=0))
    with count_compiles() as ev:
        rb.sharpness(prob, model, model.init("gaussian", scale=2.0, seed=1), iters=50)
    assert ev == [], f"recompiled: {ev}"


def _children(values: list[str | None], tmp_path) -> list[str]:
    """``rb.cache_dir()`` as printed by one child process per ``RANKBIAS_JAX_CACHE`` value
    (``None``: unset), the children started together (each one is mostly Python's import)."""
    code = (
        "import jax, jax.numpy as jnp, rankbias as rb\n"
        "jax.jit(lambda x: jnp.linalg.qr(x @ x.T + 1)[0].sum())(jnp.ones((300, 300)))\n"
        "print(rb.cache_dir())\n"
    )
    procs = []
    for value in values:
        env = dict(os.environ)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
        env.pop("RANKBIAS_JAX_CACHE", None)
        if value is not None:
            env["RANKBIAS_JAX_CACHE"] = value
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr
        out.append(stdout.strip().splitlines()[-1])
    return out


def test_cache_env_var_moves_and_disables_the_cache(tmp_path):
    target = tmp_path / "mycache"
    moved, off, zero, default = _children([str(target), "off", "0", None], tmp_path)
    assert moved == str(target)
    assert target.is_dir()
    assert off == "None"
    assert zero == "None"
    # Default: under XDG_CACHE_HOME.
    assert default == str(tmp_path / "xdg" / "rankbias" / "jax")


def test_cache_leaves_a_configured_jax_cache_alone(tmp_path):
    env = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jaxown"),
        RANKBIAS_JAX_CACHE=str(tmp_path / "ours"),
    )
    out = subprocess.run(
        [sys.executable, "-c", "import rankbias as rb; print(rb.cache_dir())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "jaxown")


# --- traced programs stored across processes (rankbias._aot) -----------------------------

_TRACE = "/jax/core/compile/jaxpr_trace_duration"


def count_traces():
    """Python traces while the context is open (a stored program is loaded without one)."""
    return _count_events(_TRACE)


def _affine_sum(x, y, scale):
    return {"s": jnp.sum(jnp.sin(x) * y) * scale, "parts": (x + y, None)}


@pytest.fixture
def aot_folder(tmp_path, monkeypatch):
    from rankbias import _aot

    monkeypatch.setattr(_aot, "aot_dir", lambda: str(tmp_path / "export"))
    monkeypatch.setattr(_aot, "_TABLE", {})
    monkeypatch.setattr(_aot, "_UNSUPPORTED", set())
    return tmp_path / "export"


def test_aot_stores_loads_and_rebuilds(aot_folder):
    from rankbias import _aot

    f = _aot.aot_jit(_affine_sum)
    x, y = np.linspace(0.0, 1.0, 5), np.arange(5.0)
    ref = eqx.filter_jit(_affine_sum)(x, y, 2.5)  # the oracle: a plain filter_jit
    before = dict(_aot.STATS)
    out = f(x, y, 2.5)
    assert _aot.STATS["stored"] == before["stored"] + 1
    files = list(aot_folder.iterdir())
    assert len(files) == 1 and files[0].suffix == ".jaxexport"
    assert out["parts"][1] is None
    np.testing.assert_array_equal(out["s"], ref["s"])  # bitwise
    np.testing.assert_array_equal(out["parts"][0], ref["parts"][0])
    # Another static value is another program; other array values of the same shapes are not.
    f(x, y, 3.0)
    assert len(list(aot_folder.iterdir())) == 2
    # A "new process": the in-memory table is empty, the file is read and nothing is traced.
    _aot._TABLE.clear()
    with count_traces() as ev:
        again = f(x + 1.0, y, 2.5)
    assert "_affine_sum" not in ev, ev
    assert _aot.STATS["loaded"] == before["loaded"] + 1
    np.testing.assert_array_equal(again["s"], eqx.filter_jit(_affine_sum)(x + 1.0, y, 2.5)["s"])
    # A corrupt file is ignored, traced again and rewritten (no error for the user).
    for p in aot_folder.iterdir():
        p.write_bytes(b"not a jax.export blob")
    _aot._TABLE.clear()
    with count_traces() as ev:
        fixed = f(x, y, 2.5)
    assert "_affine_sum" in ev
    assert _aot.STATS["rebuilt"] >= before["rebuilt"] + 1
    np.testing.assert_array_equal(fixed["s"], ref["s"])
    good = [p for p in aot_folder.iterdir() if p.read_bytes() != b"not a jax.export blob"]
    assert len(good) == 1
    jax.export.deserialize(bytearray(good[0].read_bytes()))  # a valid blob again


def test_aot_leaves_unstable_statics_to_filter_jit(aot_folder):
    from rankbias import _aot

    f = _aot.aot_jit(lambda x, fn: fn(x))
    before = _aot.STATS["unsupported"]
    np.testing.assert_array_equal(f(np.ones(3), jnp.cos), np.cos(np.ones(3)))
    # jnp.cos prints with an address: no stable key, nothing written
    assert _aot.STATS["unsupported"] == before + 1
    assert not aot_folder.exists()


def test_aot_table_is_a_bounded_lru_and_an_evicted_program_runs_again(aot_folder, monkeypatch):
    from rankbias import _aot

    monkeypatch.setenv(_aot.ENV, "2")
    f = _aot.aot_jit(_affine_sum)

    def data(n):
        return np.linspace(0.0, 1.0, n), np.arange(float(n))

    before = dict(_aot.STATS)
    f(*data(2), 2.5)
    first = weakref.ref(next(iter(_aot._TABLE.values())))
    for n in (3, 4, 5):  # four shapes, four programs, a table of two
        f(*data(n), 2.5)
        assert len(_aot._TABLE) <= 2
    assert _aot.STATS["stored"] == before["stored"] + 4
    assert _aot.STATS["evicted"] == before["evicted"] + 2
    gc.collect()
    assert first() is None  # nothing else holds an evicted program (nor its executable)
    # Least recently used, not first in: using n = 4 keeps it when n = 6 arrives.
    f(*data(4), 2.5)
    assert _aot.STATS["memory"] == before["memory"] + 1
    f(*data(6), 2.5)
    kept = set(_aot._TABLE)
    f(*data(4), 2.5)  # still in the table (a FIFO would have dropped it for n = 6)
    assert _aot.STATS["memory"] == before["memory"] + 2 and set(_aot._TABLE) == kept
    # An evicted shape runs again from its file, untraced, with filter_jit's bits.
    with count_traces() as ev:
        again = f(*data(2), 2.5)
    assert "_affine_sum" not in ev, ev
    assert _aot.STATS["loaded"] == before["loaded"] + 1 and len(_aot._TABLE) == 2
    ref = eqx.filter_jit(_affine_sum)(*data(2), 2.5)
    np.testing.assert_array_equal(again["s"], ref["s"])
    np.testing.assert_array_equal(again["parts"][0], ref["parts"][0])


@pytest.mark.parametrize("value", ["0", "-3", "many", "2.5"])
def test_aot_table_size_refuses_a_bad_variable(monkeypatch, value):
    from rankbias import _aot

    monkeypatch.setenv(_aot.ENV, value)
    with pytest.raises(ValueError, match="RANKBIAS_PROGRAM_CACHE` must be an integer >= 1"):
        _aot.table_size()
    monkeypatch.setenv(_aot.ENV, " 7 ")
    assert _aot.table_size() == 7
    monkeypatch.delenv(_aot.ENV)
    assert _aot.table_size() == _aot.DEFAULT_TABLE_SIZE


_SECOND_PROCESS = """
import json, jax, numpy as np, rankbias as rb
from rankbias import _aot
traced = []
jax.monitoring.register_event_duration_secs_listener(
    lambda e, d, **kw: traced.append(str(kw.get("fun_name"))) if e.endswith("trace_duration") else None)
M = rb.random_low_rank((6, 6), 2, psd=True, seed=3)
prob = rb.MatrixCompletion.uniform(M, 0.6, seed=3, symmetric=True)
model = rb.DeepFactorization(shape=(6, 6), depth=3, width=6)
p0 = model.init("gaussian", scale=1e-2, seed=0)
out = {}
for kind in KINDS:
    if kind == "gd":
        tr = rb.gradient_descent(prob, model, p0, lr=0.1, steps=200, n_save=20)
    else:
        tr = rb.gradient_flow(prob, model, p0, t_max=50.0, n_save=20)
    out[kind] = [np.asarray(tr.final_matrix).tobytes().hex(), tr.loss.tobytes().hex()]
print(json.dumps(dict(out=out, traced=traced, stats=_aot.STATS, folder=_aot.aot_dir())))
"""


def _second_process_child(cache: str, kinds: tuple[str, ...]) -> dict:
    import json

    env = dict(os.environ, RANKBIAS_JAX_CACHE=cache)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    res = subprocess.run(
        [sys.executable, "-c", _SECOND_PROCESS.replace("KINDS", repr(kinds))],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def _check_second_process(tmp_path, kinds: tuple[str, ...], names: set[str]) -> None:
    cache = str(tmp_path / "cache")
    # one stored program per traced function: GD runs host-driven chunks (a start and a chunk)
    first = _second_process_child(cache, kinds)
    assert first["stats"]["stored"] == len(names) and first["stats"]["loaded"] == 0
    assert names <= set(first["traced"])
    second = _second_process_child(cache, kinds)
    assert second["stats"]["loaded"] == len(names) and second["stats"]["stored"] == 0
    assert not names & set(second["traced"]), second["traced"]  # nothing of them traced
    assert second["out"] == first["out"]  # bitwise
    off = _second_process_child("off", kinds)
    assert off["folder"] is None and off["stats"]["stored"] == off["stats"]["loaded"] == 0
    assert off["out"] == first["out"]  # the plain filter_jit gives the same bits


@pytest.mark.slow  # three child processes: ~15 s idle, 45 s on the loaded 2-core VM
def test_second_process_reuses_the_exported_gd(tmp_path):
    _check_second_process(tmp_path, ("gd",), {"_chunk_start", "_chunk"})


@pytest.mark.slow
def test_second_process_reuses_the_exported_flow(tmp_path):
    _check_second_process(tmp_path, ("gf",), {"_solve"})


def test_glrl_dense_phases_and_refinements_are_one_program(aot_folder):
    """Every phase flow of a dense GLRL and each phase's ``t_mid`` refinement run the same
    stored program (padded width, equal record counts, same ``save_matrices``): one compile
    for the whole call (a phase longer than one chunk adds the continuation program once),
    then none for another truth on the same mask (two before: the first
    30 x 30 call took 9.1 s, now 6.1 s)."""
    M = rb.random_low_rank((8, 8), 2, psd=True, seed=3)
    prob = rb.MatrixCompletion.uniform(M, 0.5, seed=3, symmetric=True)
    res = rb.glrl(prob)
    assert res.rank == 2 and all(np.isfinite(p.t_mid) for p in res.phases)
    # the first chunk's program, and the continuation's when a phase needs more than one chunk
    assert len(list(aot_folder.iterdir())) <= 2
    mask = (np.asarray(prob.rows), np.asarray(prob.cols))
    # a truth whose second phase takes more than one chunk (CHUNK_STEPS = 2,000): after it
    # both programs exist (first chunk, continuation)
    M2 = rb.random_low_rank((8, 8), 2, psd=True, seed=4)
    rb.glrl(rb.MatrixCompletion(M2, mask, symmetric=True, truth=M2))
    assert len(list(aot_folder.iterdir())) == 2
    M3 = rb.random_low_rank((8, 8), 2, psd=True, seed=5)
    other = rb.MatrixCompletion(M3, mask, symmetric=True, truth=M3)
    with count_compiles() as ev:
        rb.glrl(other)
    assert not [e for e in ev if "solve" in e or e == "call"], ev
