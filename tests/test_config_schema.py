"""The TOML schema against the library, and configs that are never silently misread: keys of
another method, all errors at once, bounds, unreadable files, custom metrics checked first."""

import inspect
import json
import textwrap

import pytest
from _configs import tiny_sweep

import rankbias as rb
import rankbias.experiments as ex
from rankbias.cli import main
from rankbias.experiments import config as C
from rankbias.experiments.config import ConfigError
from rankbias.experiments.schema import DYNAMICS, dynamics_spec
from rankbias.store import RESULTS_VERSION, Store, run_key

TINY = tiny_sweep("tiny", "{ alpha = [1e-2], seed = [0] }", steps=20, n_save=5)
FLOW = TINY.replace('method = "gd"\nlr = 0.2\nsteps = 20\n', 'method = "flow"\nt_max = 100.0\n')
assert FLOW != TINY


def parse(text):
    return ex.parse_config(textwrap.dedent(text))


# ------------------------------------------------------------------ the schema is the library's

# Library arguments a config does not offer as a dynamics key, and why.
NOT_IN_SCHEMA = {
    "problem": "built from [problem]",
    "problems": "built from [problem]",
    "model": "built from [model]",
    "params": "built from [init]",
    "params_list": "built from [init]",
    "save_matrices": "record.metrics = ['matrices']",
    "lr_schedule": "a Python function, not a TOML value",
    "on_failure": "a sweep records each failed run (run_chunk) and goes on",
    "on_divergence": "a sweep records each diverged run and goes on",
    "symmetric": "deprecated spelling of glrl's psd (the schema has the new word only)",
    "strategy": "how the batch loop is compiled (the same numbers), not what is run",
    "error_estimate": "a diagnostic of a single flow, not stored by a sweep",
    "hyperparams": "one dynamics key per optimizer hyper-parameter (alpha, b1, ...)",
    "progress": "display only; sweep workers never show it",
    "heldout": "a ratings sweep scores its held-out split (record.metrics heldout_rmse)",
    "early_stopping": "validation early stopping is a single-run API option (not in sweeps)",
}
# Library argument -> schema key, where the names differ.
RENAMED = {("train", "seed"): "batch_seed", ("train_batch", "seed"): "batch_seed"}
# Arguments the library requires (no default) and the schema gives one.
SCHEMA_DEFAULT_ONLY = {"lr", "steps", "optimizer"}
METHOD_OF = {
    "gradient_flow": "flow",
    "gradient_flow_batch": "flow",
    "gradient_descent": "gd",
    "gradient_descent_batch": "gd",
    "train": "optax",
    "train_batch": "optax",
    "glrl": "glrl",
}


@pytest.mark.parametrize("fname", sorted(METHOD_OF))
def test_schema_offers_every_library_option_with_its_default(fname):
    method = METHOD_OF[fname]
    dyn = C.SCHEMA["dynamics"]
    keys = []
    for name, prm in inspect.signature(getattr(rb, fname)).parameters.items():
        if name in NOT_IN_SCHEMA:
            continue
        key = RENAMED.get((fname, name), name)
        assert key in dyn, f"{fname}({name}=...) is not offered by the schema ([dynamics] {key})"
        keys.append(key)
        if prm.default is inspect.Parameter.empty:
            assert key in SCHEMA_DEFAULT_ONLY, f"{fname}({name}) is required"
        elif not (method == "optax" and name == "lr"):  # None: only for an optax factory
            default = dynamics_spec(method)[key][1]  # a shared key: its method's default
            assert default == prm.default, (
                f"[dynamics] {key}: schema {default!r}, {fname} {prm.default!r}"
            )
    for key in keys:  # and the schema takes it under this method
        assert method in C._METHODS.get(key, (method,)), f"{key} is refused for {method}"


def test_every_schema_dynamics_key_reaches_the_library():
    """Each dynamics key is an argument of its method's function (or a hyper-parameter)."""
    names = {m: set(inspect.signature(getattr(rb, f)).parameters) for f, m in METHOD_OF.items()}
    hyper = {h for o in rb.optimizers.OPTIMIZERS.values() for h in o.defaults}
    for key in C.SCHEMA["dynamics"]:
        if key in ("method", "optimizer", "batch_seed") or key in hyper:
            continue
        for m in C._METHODS.get(key, ("flow", "gd", "optax")):
            assert key in names[m], (key, m)


def test_flow_gd_and_optax_read_a_shared_key_alike():
    """SCHEMA["dynamics"] holds one entry per key: the option classes of flow, gd and optax
    agree on it (GLRL reads rtol, atol, solver, n_save and eps its own way)."""
    for key, entry in C.SCHEMA["dynamics"].items():
        for m in ("flow", "gd", "optax"):
            if key in DYNAMICS[m]:
                assert DYNAMICS[m][key] == entry, (key, m)


def test_runner_passes_the_new_options():
    from rankbias.experiments.runner import _dyn_kwargs

    raw = parse(
        FLOW.replace(
            "t_max = 100.0",
            't_max = 100.0\ndtype = "float32"\nbackend = "dense"\ncertificate_tol = 1e-3',
        )
    )
    d = ex.expand(raw).runs[0].config["dynamics"]
    kw = _dyn_kwargs(d)
    assert kw["dtype"] == "float32" and kw["backend"] == "dense" and kw["certificate_tol"] == 1e-3
    # the float32 defaults, resolved into the run config (and its key)
    assert kw["rtol"] == 1e-5 and kw["gtol"] == 1e-5
    gd = ex.expand(parse(TINY.replace("lr = 0.2", "lr = 0.2\ndivergence_factor = 1e4")))
    assert _dyn_kwargs(gd.runs[0].config["dynamics"])["divergence_factor"] == 1e4


def test_dtype_and_backend_reach_the_run(tmp_path):
    """What the library recorded, not what the config said: the run's own info."""
    raw = parse(TINY.replace("lr = 0.2", 'lr = 0.2\ndtype = "float32"\nbackend = "sparse"'))
    sw = ex.expand(raw)
    ex.run_sweep(sw, tmp_path, progress=False)
    info = json.loads(str(Store(tmp_path).read_run(sw.runs[0].key)["info"]))
    assert info["dtype"] == "float32" and info["backend"] == "sparse"


# Keys computed by main before this change (commit 29d86aa, rankbias 0.1.0; the version enters the key): the new keys
# must leave them alone.
MAIN_KEYS = {
    "gd": "95585d999d6533f0a27fbc3e23b3a05f",
    "flow": "4d468d443dab1eb4fc32e59150908e2e",
    "flow_nsave_unset": "40e7f13ac3fceb6d90c9adf11265be01",
}


def _main_configs():
    grid = "{ alpha = [1e-2, 1e-3], seed = [0, 1, 2] }"
    tiny = tiny_sweep("tiny", grid, steps=200, n_save=12, depth=2, chunk_size=2)
    flow = tiny.replace(
        'method = "gd"\nlr = 0.2\nsteps = 200\n', 'method = "flow"\nt_max = 100.0\n'
    )
    return tiny, flow, flow.replace("n_save = 12\n", "")


def test_run_keys_of_stored_sweeps_are_unchanged(tmp_path):
    from rankbias.experiments.registry import _keep_stored_keys

    tiny, flow, unset = _main_configs()
    # GD keys moved on purpose (store.METHOD_RESULTS: GD runs now classify how they ended);
    # with the base results version they are main's keys, so the config part is unchanged
    gd = ex.expand(parse(tiny)).runs[0]
    assert gd.key != MAIN_KEYS["gd"]
    assert run_key(gd.config, RESULTS_VERSION) == MAIN_KEYS["gd"]
    # flow keys too (flow.2, issue 30: the RKC-based solvers take other steps)
    fl = ex.expand(parse(flow)).runs[0]
    assert fl.key != MAIN_KEYS["flow"]
    assert run_key(fl.config, RESULTS_VERSION) == MAIN_KEYS["flow"]
    # n_save unset: 200 now (the library's default), so a new run has another key ...
    raw = parse(unset)
    new = ex.expand(raw)
    assert new.runs[0].config["dynamics"]["n_save"] == 200
    assert new.runs[0].key != MAIN_KEYS["flow_nsave_unset"]
    # ... but a folder written by main with the old default (100) is resumed with it (its
    # config; the key moved with the flow.2 bump, its base-version key is main's)
    legacy = ex.expand(raw, defaults=C.LEGACY_DEFAULTS)
    assert run_key(legacy.runs[0].config, RESULTS_VERSION) == MAIN_KEYS["flow_nsave_unset"]
    man = {"kind": "sweep", "config": raw, "runs": [r.key for r in legacy.runs]}
    (tmp_path / "experiment.json").write_text(json.dumps(man))
    kept = _keep_stored_keys(new, tmp_path)
    assert [r.key for r in kept.runs] == [r.key for r in legacy.runs]
    assert kept.runs[0].config["dynamics"]["n_save"] == 100
    # another config in that folder: not this rule's business (claim() refuses it)
    other = ex.expand(ex.apply_overrides(raw, ["alphas=[1e-4]"]))
    assert _keep_stored_keys(other, tmp_path) is other
    assert _keep_stored_keys(new, tmp_path / "nothing-there") is new


# ---------------------------------------------------------------------- keys of another method


def test_alpha_under_flow_names_the_init_scale():
    with pytest.raises(ConfigError) as e:
        parse(FLOW.replace("t_max = 100.0", "t_max = 100.0\nalpha = 1e-8"))
    assert str(e.value) == (
        "dynamics.alpha belongs to method 'optax' (an optimizer hyper-parameter); for method "
        "'flow' did you mean init.scale (the init scale, which the sweep alias `alpha` sets)?"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (
            TINY.replace("lr = 0.2", "lr = 0.2\nt_max = 5.0"),
            "dynamics.t_max belongs to method 'flow'; for method 'gd' did you mean dynamics.steps",
        ),
        (
            TINY.replace("lr = 0.2", "lr = 0.2\nrtol = 1e-6"),
            "dynamics.rtol belongs to method 'flow'; method 'gd' has no such setting: remove it, "
            "or set dynamics.method = 'flow'",
        ),
        (
            FLOW.replace("t_max = 100.0", "steps = 100"),
            "dynamics.steps belongs to methods 'gd' and 'optax'; for method 'flow' did you mean "
            "dynamics.t_max",
        ),
        (
            FLOW.replace("{ alpha = [1e-2], seed = [0] }", "{ lr = [0.1, 0.2] }"),
            "sweep.grid.lr: dynamics.lr belongs to methods 'gd' and 'optax'",
        ),
        (
            TINY.replace("[dynamics]", "[init]\nalpha = 1e-3\n[dynamics]"),
            "unknown key init.alpha (allowed: name, scale, per_factor, beta, seed); did you "
            "mean init.scale (what the alias `alpha` sets)?",
        ),
    ],
)
def test_keys_of_another_method_are_refused(text, message):
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert message in str(e.value)


def test_all_errors_are_reported_at_once():
    text = TINY.replace("lr = 0.2", "lr = -1\nstpes = 3").replace("rank = 1", "rnak = 1")
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert e.value.errors == [
        "unknown key problem.rnak (allowed: type, shape, rank, psd, spectrum, fraction, "
        "measurements, noise, seed, path, test_fraction, normalization); did you mean "
        "problem.rank?",
        "dynamics.lr must be > 0, got -1.0",
        "unknown key dynamics.stpes (allowed for method 'gd': method, dtype, backend, lr, "
        "steps, divergence_factor, n_save, save_spacing, save_at); did you mean dynamics.steps?",
    ]
    assert str(e.value).startswith("3 problems in the config:\n  - unknown key problem.rnak")
    # the errors of the runs of a grid too (at expansion)
    text = TINY.replace("rank = 1", "rank = 9").replace('type = "completion"', 'type = "sensing"')
    with pytest.raises(ConfigError) as e:
        ex.expand(parse(text.replace("fraction = 0.7", "psd = false\nspectrum = [1.0, 2.0]")))
    assert len(e.value.errors) == 2, e.value.errors


# ---------------------------------------------------------------------------------- bounds


def test_steps_have_an_upper_bound():
    with pytest.raises(ConfigError) as e:
        parse(TINY.replace("steps = 20", "steps = 1e13"))
    assert str(e.value).startswith(
        "dynamics.steps must be between 1 and 100,000,000 (10^8 steps already take about half an "
        "hour on the smallest problem;"
    )
    assert str(e.value).endswith("got 10000000000000")
    assert C.MAX_STEPS == rb.dynamics.MAX_STEPS == 10**8
    parse(TINY.replace("steps = 20", "steps = 1e8"))  # the bound itself is allowed


# --------------------------------------------------------------- the folder of another config


def test_config_diff_lists_only_real_differences():
    old = {
        "name": "a",
        "kind": "sweep",
        "dynamics": {"method": "gd", "lr": 0.2, "n_save": 200, "steps": 1000},
        "model": {"depth": 2},
        "sweep": {"grid": {"alpha": [1, 2]}, "chunk_size": 8},
    }
    new = {
        "name": "a",
        "dynamics": {"method": "gd", "lr": 0.3},
        "sweep": {"grid": {"alpha": [1, 3]}},
    }
    assert C.config_diff(old, new) == [
        "dynamics.lr: 0.2 -> 0.3",
        "sweep.grid.alpha: [1, 2] -> [1, 3]",
    ]
    # configs that differ only in writing out defaults: those keys, said so
    assert C.config_diff({"name": "a", "kind": "sweep"}, {"name": "a"}) == [
        "kind: 'sweep' -> '(unset)' (written out at its default)"
    ]


# ----------------------------------------------------------------------- files and the CLI


def test_a_non_utf8_config_is_named_and_hides_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.toml").write_bytes(b'name = "caf\xe9"\n')
    (tmp_path / "mine.toml").write_text(TINY.replace('name = "tiny"', 'name = "mine"'))
    monkeypatch.setenv("RANKBIAS_CONFIG_PATH", str(tmp_path))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    bad = next(line for line in out.splitlines() if line.startswith("bad "))
    assert f"config file {tmp_path / 'bad.toml'} is not UTF-8 text (byte 0xe9" in bad
    raw, _ = ex.resolve("mine")
    assert raw["name"] == "mine"
    assert main(["run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "bad.toml is not UTF-8 text" in capsys.readouterr().err


def test_deeply_nested_toml_is_one_line(tmp_path, capsys):
    p = tmp_path / "deep.toml"
    p.write_text('name = "x"\nq = ' + "[" * 3000 + "]" * 3000 + "\n")
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"rankbias: error: invalid config {p}: its tables or arrays are nested too deeply to "
        "parse (a config needs at most 4 levels)"
    ]
    with pytest.raises(ConfigError, match="nested more than 8 levels"):
        parse('name = "x"\nq = ' + "[" * 20 + "]" * 20)


def test_a_huge_set_value_names_its_key(tmp_path, capsys):
    p = tmp_path / "t.toml"
    p.write_text(TINY)
    rc = main(
        ["run", str(p), "--out", str(tmp_path / "o"), "--set", "dynamics.steps=" + "9" * 100_000]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err) < 600
    assert err.startswith("rankbias: error: --set dynamics.steps: cannot read the value 999")


def test_custom_metric_is_imported_before_any_run(tmp_path):
    text = TINY.replace(
        "[sweep]", '[record]\ncustom = ["no_such_module_xyz:f", "json:nope"]\n[sweep]'
    )
    raw = parse(text)
    with pytest.raises(ConfigError) as e:
        ex.expand(raw)
    assert e.value.errors == [
        "record.custom: cannot import module 'no_such_module_xyz' of 'no_such_module_xyz:f': "
        "No module named 'no_such_module_xyz'; the module must be importable: on PYTHONPATH "
        "(`python -m rankbias` also looks in the working folder, the `rankbias` command does "
        "not)",
        "record.custom: module 'json' has no function 'nope' (from 'json:nope')",
    ]
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError):
        ex.run_experiment(p, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # nothing run, nothing written


def test_a_shape_that_cannot_fit_is_refused_before_the_folder_is_written(tmp_path, capsys):
    p = tmp_path / "huge.toml"
    p.write_text(TINY.replace("shape = [6, 6]", "shape = [200000, 200000]"))
    out = tmp_path / "o"
    assert main(["run", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "a dense 200000 x 200000 matrix (`problem.shape`) needs 320.0 GB" in err
    assert not out.exists()  # nothing written half
