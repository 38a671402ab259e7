"""Configs (parsing, validation, overrides, grid expansion), batching, executors, reproductions."""

import json
import re
import textwrap

import numpy as np
import pytest
import xarray as xr
from _configs import tiny_sweep

import rankbias.experiments as ex
from rankbias.experiments.config import ConfigError
from rankbias.experiments.executors import DaskExecutor, ExecutorError
from rankbias.problems import MatrixCompletion
from rankbias.store import Store, run_key

TINY = tiny_sweep(
    "tiny",
    "{ alpha = [1e-2, 1e-3], seed = [0, 1, 2] }",
    steps=200,
    n_save=12,
    depth=2,
    chunk_size=2,
)


# TINY with the gradient flow: GD's lr and steps would be refused (another method's keys)
TINY_FLOW = TINY.replace('method = "gd"\nlr = 0.2\nsteps = 200\n', 'method = "flow"\n')
assert TINY_FLOW != TINY


def parse(text):
    return ex.parse_config(textwrap.dedent(text))


def with_(extra, base=TINY):
    return parse(base + "\n" + textwrap.dedent(extra))


# ---------------------------------------------------------------------------- parsing/validation


def test_defaults_and_expansion_order():
    sw = ex.expand(parse(TINY))
    assert sw.shape == (2, 3)
    assert [a.name for a in sw.axes] == ["alpha", "seed"]
    assert len(sw.runs) == 6
    # C order: the last axis varies fastest
    assert [r.index for r in sw.runs[:3]] == [(0, 0), (0, 1), (0, 2)]
    assert [r.config["init"]["scale"] for r in sw.runs] == [1e-2] * 3 + [1e-3] * 3
    assert [r.config["init"]["seed"] for r in sw.runs[:3]] == [0, 1, 2]
    cfg = sw.runs[0].config
    assert cfg["model"] == {"type": "deep", "depth": 2, "width": None}
    assert "t_max" not in cfg["dynamics"] and cfg["dynamics"]["lr"] == 0.2  # unused keys dropped
    assert "measurements" not in cfg["problem"]
    assert len({r.key for r in sw.runs}) == 6


def test_zip_axes_and_product():
    raw = parse(
        TINY.replace(
            "grid = { alpha = [1e-2, 1e-3], seed = [0, 1, 2] }",
            "grid = { alpha = [1e-2, 1e-3] }\n"
            "zip = { problem = [0, 1, 2], fraction = [0.5, 0.6, 0.7] }",
        )
    )
    sw = ex.expand(raw)
    assert [a.name for a in sw.axes] == ["alpha", "problem"]
    assert sw.axes[1].keys == ("problem.seed", "problem.fraction")
    assert len(sw.runs) == 6
    pairs = [(r.config["problem"]["seed"], r.config["problem"]["fraction"]) for r in sw.runs[:3]]
    assert pairs == [(0, 0.5), (1, 0.6), (2, 0.7)]


def test_run_key_depends_on_config_and_version():
    cfg = ex.expand(parse(TINY)).runs[0].config
    assert run_key(cfg, "1") == run_key(json.loads(json.dumps(cfg)), "1")
    assert run_key(cfg, "1") != run_key(cfg, "2")
    other = json.loads(json.dumps(cfg))
    other["dynamics"]["lr"] = 0.21
    assert run_key(other, "1") != run_key(cfg, "1")


@pytest.mark.parametrize(
    "extra, message",
    [
        ("[bogus]\nx = 1", "unknown section 'bogus'"),
        ("[init]\nscal = 1.0", "unknown key init.scal"),
        ("[init]\nscale = -1.0", "init.scale must be > 0, got -1.0"),
        ("[problem.x]\n", "unknown key problem.x"),
    ],
)
def test_unknown_and_bad_values_name_the_key(extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        with_(extra)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("lr = 0.2", "lr = -1", "dynamics.lr must be > 0, got -1"),
        ("steps = 200", "steps = 1.5", "dynamics.steps must be an integer"),
        ('method = "gd"', 'method = "sgd"', "dynamics.method must be one of"),
        ("shape = [6, 6]", "shape = [6]", "problem.shape must be a pair"),
        ("fraction = 0.7", "fraction = 1.5", r"problem.fraction must be in \(0, 1\]"),
        ("alpha = [1e-2, 1e-3]", "alpha = []", "sweep.grid.alpha must be a non-empty list"),
        ("alpha = [1e-2, 1e-3]", "alpha = [1e-2, -1.0]", r"sweep.grid.alpha\[1\] must be > 0"),
        ("alpha = [1e-2, 1e-3]", "alhpa = [1e-2]", "unknown sweep key 'alhpa'"),
        ("chunk_size = 2", "chunk_size = 0", "sweep.chunk_size must be >= 1"),
        ("chunk_size = 2", "chunksize = 2", "unknown key sweep.chunksize"),
        ('kind = "sweep"', 'kind = "other"', "kind must be"),
        ('name = "tiny"', "", "name must be a non-empty string"),
    ],
)
def test_bad_values(old, new, message):
    with pytest.raises(ConfigError, match=message):
        parse(TINY.replace(old, new))


def test_semantic_errors_at_expansion():
    with pytest.raises(ConfigError, match="problem.rank=7 exceeds"):
        ex.expand(parse(TINY.replace("rank = 1", "rank = 7")))
    with pytest.raises(ConfigError, match="dynamics.method cannot be swept"):
        parse(
            TINY.replace("chunk_size = 2", 'chunk_size = 2\nzip = { "dynamics.method" = ["gd"] }')
        )
    with pytest.raises(ConfigError, match="zipped lists must have equal lengths"):
        parse(
            TINY.replace(
                "chunk_size = 2", "chunk_size = 2\nzip = { problem = [0, 1], fraction = [0.5] }"
            )
        )
    with pytest.raises(ConfigError, match="swept twice"):
        parse(TINY.replace("chunk_size = 2", 'chunk_size = 2\nzip = { "init.scale" = [0.1] }'))


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        ex.parse_config("name = ")
    with pytest.raises(ConfigError, match="config file not found"):
        ex.resolve(tmp_path / "nope.toml")
    with pytest.raises(ex.UnknownExperimentError, match="unknown experiment 'nope'"):
        ex.resolve("nope")


def test_overrides():
    raw = ex.apply_overrides(
        parse(TINY), ["alphas=[1e-4,1e-8]", "dynamics.steps=50", "depth=[2, 3]"]
    )
    sw = ex.expand(raw)
    assert sw.axes[0].values == ((1e-4, 1e-8),)
    assert [a.name for a in sw.axes] == ["alpha", "seed", "depth"]
    assert sw.runs[0].config["dynamics"]["steps"] == 50
    with pytest.raises(ConfigError, match="unknown key 'wat'"):
        ex.apply_overrides(parse(TINY), ["wat=1"])
    with pytest.raises(ConfigError, match="dynamics.lr must be > 0"):
        ex.apply_overrides(parse(TINY), ["dynamics.lr=0"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        ex.apply_overrides(parse(TINY), ["alphas"])
    # Every gradient-flow solver is a valid choice, the new hybrid included.
    flow = ex.apply_overrides(parse(TINY_FLOW), ["dynamics.solver=hybrid"])
    assert ex.expand(flow).runs[0].config["dynamics"]["solver"] == "hybrid"
    with pytest.raises(ConfigError, match="dynamics.solver"):
        ex.apply_overrides(parse(TINY_FLOW), ["dynamics.solver=euler"])


def test_shipped_configs_are_valid():
    exps = {e.name: e for e in ex.list_experiments()}
    assert {"quick-demo", "glrl-depth"} <= set(exps)
    for e in exps.values():
        assert e.kind in ("sweep", "reproduction"), (e.name, e.description)
        raw, _ = ex.resolve(e.name)
        if e.kind == "sweep":
            sw = ex.expand(raw)
            assert len(sw.runs) > 0


# ---------------------------------------------------------------------------- batching


def test_chunks_group_by_shape_and_are_deterministic():
    raw = parse(TINY.replace("chunk_size = 2", "chunk_size = 4\nzip = { problem = [0, 1] }"))
    sw = ex.expand(raw)
    chunks = ex.plan_chunks(sw)
    assert sum(len(c) for c in chunks) == 12
    for c in chunks:
        assert len(c) <= 4
        probs = [ex.build_problem(cfg) for cfg in c.configs]
        assert all(isinstance(p, MatrixCompletion) for p in probs)
        nobs = {p.num_observed for p in probs if isinstance(p, MatrixCompletion)}
        assert len(nobs) == 1  # one batch shares array shapes
    assert [c.keys for c in ex.plan_chunks(ex.expand(raw))] == [c.keys for c in chunks]


def test_ten_thousand_runs_plan_quickly():
    import time

    raw = ex.apply_overrides(
        parse(TINY),
        ["alphas=" + str([10.0**-k for k in range(1, 11)]), "seeds=" + str(list(range(1000)))],
    )
    t0 = time.perf_counter()
    sw = ex.expand(raw)
    chunks = ex.plan_chunks(sw)
    assert len(sw.runs) == 10_000 and sum(len(c) for c in chunks) == 10_000
    assert time.perf_counter() - t0 < 30


# ---------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def inprocess(tmp_path_factory):
    out = tmp_path_factory.mktemp("inproc")
    st = ex.run_sweep(ex.expand(parse(TINY)), out, progress=False)
    assert st["done"] == 6 and st["failed"] == 0
    return out


def test_inprocess_dataset(inprocess):
    ds = ex.load(inprocess)
    assert dict(ds.sizes) == {"alpha": 2, "seed": 3, "step": 12, "sv": 6}
    import dask.array as da

    assert isinstance(ds["loss"].data, da.Array)  # lazy
    ds = ds.load()
    assert bool(ds["done"].all())
    assert np.all(np.isfinite(ds["loss"].values))
    assert np.all(ds["loss"].isel(step=-1) < ds["loss"].isel(step=0))
    assert np.all(ds["distance_to_truth"].values > 0)


def test_rerun_skips_and_is_bit_identical(inprocess, tmp_path):
    mt = {p: p.stat().st_mtime_ns for p in (inprocess / "runs").rglob("*.npz")}
    st = ex.run_sweep(ex.expand(parse(TINY)), inprocess, progress=False)
    assert st["done"] == 6
    assert {p: p.stat().st_mtime_ns for p in (inprocess / "runs").rglob("*.npz")} == mt
    ex.run_sweep(ex.expand(parse(TINY)), tmp_path, progress=False)
    xr.testing.assert_identical(ex.load(inprocess).load(), ex.load(tmp_path).load())


def test_dask_localcluster_matches_inprocess(inprocess, tmp_path):
    st = ex.run_sweep(ex.expand(parse(TINY)), tmp_path, executor="dask", workers=2, progress=False)
    assert st["done"] == 6
    xr.testing.assert_identical(ex.load(inprocess).load(), ex.load(tmp_path).load())


def test_local_processes_match_inprocess(inprocess, tmp_path):
    st = ex.run_sweep(
        ex.expand(parse(TINY)), tmp_path, executor="processes", workers=2, progress=False
    )
    assert st["done"] == 6
    xr.testing.assert_identical(ex.load(inprocess).load(), ex.load(tmp_path).load())


def test_process_workers_are_terminated_on_interrupt():
    import time

    import psutil

    from rankbias.experiments.executors import ProcessExecutor

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with pytest.raises(KeyboardInterrupt):
        with ProcessExecutor(2) as pool:
            assert pool._pool is not None
            for _ in range(6):  # what map() submits, without blocking on the first result
                pool._pool.submit(time.sleep, 60)
            t0 = time.time()
            while time.time() - t0 < 60:
                kids = [
                    p
                    for p in me.children()
                    if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())
                ]
                if len(kids) >= 2:
                    break
                time.sleep(0.05)
            assert len(kids) >= 2
            raise KeyboardInterrupt
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]


def test_interrupted_pool_releases_its_semaphores():
    """After an interrupt the pool's 5 semaphores are unlinked before the command's
    ``os._exit`` (else the resource tracker warns of "5 leaked semaphore objects")."""
    import time
    from multiprocessing import synchronize, util

    from rankbias.experiments.executors import ProcessExecutor

    def semaphores():
        cleanup = synchronize.SemLock._cleanup  # pyright: ignore[reportAttributeAccessIssue]
        registry = util._finalizer_registry  # pyright: ignore[reportAttributeAccessIssue]
        return {
            f._args[0] for f in list(registry.values()) if getattr(f, "_callback", None) is cleanup
        }

    before = semaphores()
    pools: set = set()
    with pytest.raises(KeyboardInterrupt):
        with ProcessExecutor(1) as pool:
            assert pool._pool is not None
            pool._pool.submit(time.sleep, 60)
            pools = semaphores() - before
            assert len(pools) == 5  # the call queue's 3, the result queue's 2
            raise KeyboardInterrupt
    assert not pools & semaphores()


def test_unreachable_scheduler():
    with pytest.raises(ExecutorError, match="cannot connect to the Dask scheduler"):
        with DaskExecutor("tcp://127.0.0.1:9", timeout=1):
            pass


def test_failed_runs_are_recorded_and_retried(tmp_path):
    raw = parse(
        TINY.replace("lr = 0.2", "lr = 50.0").replace("alpha = [1e-2, 1e-3]", "alpha = [0.5]")
    )
    st = ex.run_sweep(ex.expand(raw), tmp_path, progress=False)
    assert st["failed"] == 3 and st["done"] == 0
    note = next(iter(st["failures"].values()))
    assert "DivergenceError" in json.loads(note.read_text())["error"]
    # fixing the step size re-runs them (new keys); the old notes do not count
    # (another config in the same folder: only with add=True, i.e. `rankbias run --add`)
    st = ex.run_sweep(
        ex.expand(ex.apply_overrides(raw, ["dynamics.lr=0.2"])), tmp_path, progress=False, add=True
    )
    assert st["done"] == 3 and st["failed"] == 0


def test_flow_sweep_steady_state_hold(tmp_path):
    raw = parse(
        TINY.replace(
            'method = "gd"', 'method = "flow"\nt_max = 1e4\nrtol = 1e-6\natol = 1e-9\ngtol = 1e-7'
        )
        .replace("lr = 0.2\nsteps = 200\n", "")
        .replace("seed = [0, 1, 2]", "seed = [0]")
    )
    ex.run_sweep(ex.expand(raw), tmp_path, progress=False)
    ds = ex.load(tmp_path, lazy=False)
    assert "time" in ds.dims and ds["time"].values[0] == 0
    stopped = ds["t_final"].values < 1e4
    assert np.all(ds["steady_state"].values[stopped] == 1)
    # after a steady-state stop the last value is held, not NaN
    assert np.all(np.isfinite(ds["loss"].values))


# ---------------------------------------------------------------------------- reproductions


def _repro_module(tmp_path, monkeypatch):
    mod = tmp_path / "tiny_repro_mod.py"
    mod.write_text(
        textwrap.dedent("""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def reproduce(out_dir, quick=False, n=3):
            fig, ax = plt.subplots()
            ax.plot(range(n), [i * i for i in range(n)])
            fig.savefig(out_dir / "squares.png"); fig.savefig(out_dir / "squares.svg")
            plt.close(fig)
            return {"n": n, "quick": quick, "nested": {"sum": float(sum(range(n)))}}
    """)
    )
    cfgs = tmp_path / "configs"
    cfgs.mkdir()
    (cfgs / "tiny-repro.toml").write_text(
        textwrap.dedent("""
        name = "tiny-repro"
        description = "a tiny reproduction for the tests"
        kind = "reproduction"
        runner = "tiny_repro_mod:reproduce"
        [params]
        n = 4
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RANKBIAS_CONFIG_PATH", str(cfgs))
    return cfgs


def test_reproduction_runs_and_stores_summary(tmp_path, monkeypatch):
    _repro_module(tmp_path, monkeypatch)
    assert "tiny-repro" in {e.name for e in ex.list_experiments()}
    out = tmp_path / "out"
    summ = ex.run("tiny-repro", out, quick=True)
    assert summ["results"] == {"n": 4, "quick": True, "nested": {"sum": 6.0}}
    stored = json.loads((out / "summary.json").read_text())
    assert stored["config"]["runner"] == "tiny_repro_mod:reproduce"
    assert "jax" in stored["versions"] and "numpy" in stored["versions"]
    assert (out / "squares.png").exists()
    assert Store(out).status()["done"] == 1
    with pytest.raises(Exception, match="not a sweep"):
        ex.load(out)


def test_reproduction_bad_runner(tmp_path):
    raw = parse('name = "x"\nkind = "reproduction"\nrunner = "no_such_mod_xyz:f"\n')
    with pytest.raises(ConfigError, match="cannot import module 'no_such_mod_xyz'"):
        ex.run_reproduction(raw, tmp_path)
    with pytest.raises(ConfigError, match="runner must be"):
        parse('name = "x"\nkind = "reproduction"\nrunner = "nocolon"\n')


@pytest.mark.slow
def test_dask_external_scheduler_on_loopback(inprocess, tmp_path):
    """A scheduler and a worker started as separate processes, reached by address.

    Slow step: three Python processes (scheduler, worker, its nanny) start for it; the default
    suite checks the same oracle (a Dask run is identical to the in-process one) on a
    LocalCluster (test_dask_localcluster_matches_inprocess)."""
    import subprocess
    import sys
    import time

    sched_file = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(300):
            if sched_file.exists() and sched_file.stat().st_size > 0:
                break
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        out = tmp_path / "res"
        st = ex.run_sweep(
            ex.expand(parse(TINY)), out, executor="dask", scheduler=address, progress=False
        )
        assert st["done"] == 6
        xr.testing.assert_identical(ex.load(inprocess).load(), ex.load(out).load())
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------- config: bounds, quick, as-run TOML


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "n_save = 12",
            "n_save = 100000000",
            "dynamics.n_save must be between 2 and 100,000 (each record holds the loss, the "
            "gradient norm and all singular values), got 100000000",
        ),
        (
            'method = "gd"\nlr = 0.2\nsteps = 200',
            'method = "flow"\nt_max = 10.0\nt_min = 20.0',
            "dynamics.t_min must be < dynamics.t_max=10, got 20",
        ),
        (
            'method = "gd"\nlr = 0.2\nsteps = 200',
            'method = "flow"\nt_max = 10.0\nt_min = 10.0',
            "dynamics.t_min must be <",
        ),
        (
            "seed = [0, 1, 2]",
            "seed = [0, 1, 1]",
            "sweep.grid.seed repeats values (1 appears 2 times",
        ),
    ],
)
def test_bounds_and_orderings(old, new, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ex.expand(parse(TINY.replace(old, new)))


def test_duplicate_zip_points_are_refused():
    raw = TINY.replace(
        "grid = { alpha = [1e-2, 1e-3], seed = [0, 1, 2] }",
        "zip = { problem = [0, 1, 0], fraction = [0.5, 0.6, 0.5] }",
    )
    with pytest.raises(ConfigError, match=r"sweep\.zip\[0\]\.problem/fraction repeats values"):
        parse(raw)


def test_quick_table():
    raw = parse(TINY + "[quick]\nseeds = [0]\n[quick.dynamics]\nsteps = 20\n")
    q = ex.config.apply_quick(raw)
    assert "quick" not in q and q["dynamics"]["steps"] == 20
    sw = ex.expand(q)
    assert sw.shape == (2, 1) and [a.name for a in sw.axes] == ["alpha", "seed"]
    assert ex.expand(raw).shape == (2, 3)  # without --quick the table changes nothing
    with pytest.raises(ConfigError, match="defines no quick variant"):
        ex.config.apply_quick(parse(TINY))
    with pytest.raises(ConfigError, match="quick: dynamics.steps must be between 1 and"):
        parse(TINY + "[quick]\ndynamics = { steps = 0 }\n")


def test_dump_toml_round_trips_every_shipped_config_and_overrides():
    for e in ex.list_experiments():
        raw = ex.load_config(e.path)
        assert ex.parse_config(ex.config.dump_toml(raw)) == raw, e.name
    raw = ex.apply_overrides(
        parse(TINY), ["alphas=[1e-4]", "dynamics.lr=0.1", 'name="a \\"quoted\\" one"']
    )
    assert ex.parse_config(ex.config.dump_toml(raw)) == raw


def test_sweeps_guide_lists_the_schema():
    """docs/guides/sweeps.md quotes config.schema_table(); regenerate it when SCHEMA changes:
    python -c 'from rankbias.experiments.config import schema_table; print(schema_table())'"""
    from pathlib import Path

    guide = (Path(__file__).parents[1] / "docs" / "guides" / "sweeps.md").read_text()
    for row in ex.config.schema_table().splitlines()[2:]:
        assert row in guide, row


GLRL = """
name = "tiny-glrl"
[problem]
type = "completion"
shape = [8, 8]
fraction = 0.7
[dynamics]
method = "glrl"
max_rank = 2
[sweep]
grid = { rank = [1, 2] }
"""


def test_glrl_sweep_stores_the_limit_path_and_its_status(tmp_path):
    """method = "glrl": GLRL's own options, no [model] nor [init]; each run stores its limit
    path, one record per plateau (the `step` axis is the rank), and how it ended."""
    from rankbias.status import RunStatus, ended_well

    sweep = ex.expand(parse(GLRL))
    cfg = sweep.runs[0].config
    assert "model" not in cfg and "init" not in cfg
    assert cfg["dynamics"]["eps"] == 1e-30 and cfg["dynamics"]["solver"] == "auto"
    st = ex.run_sweep(sweep, tmp_path, progress=False)
    assert st["done"] == 2 and st["failed"] == 0
    ds = ex.load(tmp_path)
    assert ds.attrs["method"] == "glrl" and ds["step"].values.tolist() == [0.0, 1.0, 2.0]
    status = ds["status"].values.tolist()
    assert all(s in (RunStatus.KKT, RunStatus.MAX_RANK) for s in status), status
    assert ended_well(status[0])  # a rank-1 truth: one phase, then the KKT test holds
    loss = ds["loss"].sel(rank=1).values
    # a KKT point is the limit: its loss is held after its last plateau, like a steady state
    assert loss[1] < 1e-20 * loss[0] and loss[2] == loss[1]
    assert float(ds["steady_state"].sel(rank=1)) == 1.0
    with pytest.raises(ConfigError, match=r"\[init\] is not used by dynamics.method = 'glrl'"):
        parse(GLRL + "[init]\nscale = 1e-3\n")
    with pytest.raises(ConfigError, match="did you mean dynamics.eps"):
        parse(GLRL.replace("max_rank = 2", "alpha = 1e-3"))
