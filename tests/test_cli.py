"""The command line: every command, and clean errors (no tracebacks) for user mistakes."""

import errno

import pytest
from _configs import tiny_flow_sweep, tiny_sweep

from rankbias.cli import main

TINY = tiny_sweep(
    "tiny-cli", "{ alpha = [1e-2, 1e-3], depth = [2], seed = [0, 1] }", steps=100, n_save=10
)


@pytest.fixture()
def cfg(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "quick-demo" in out and "glrl-depth" in out
    assert all(len(line.split()) >= 2 for line in out.strip().splitlines())


def test_run_status_plot_report(cfg, tmp_path, capsys):
    out = tmp_path / "res"
    assert (
        main(["run", str(cfg), "--out", str(out), "--set", "alphas=[1e-2,1e-4]", "--no-progress"])
        == 0
    )
    assert "4/4 done" in capsys.readouterr().out
    assert main(["status", str(out), "--verify"]) == 0
    assert "4/4 done, 0 pending, 0 failed" in capsys.readouterr().out
    assert main(["plot", str(out), "--figure", "distance-vs-alpha"]) == 0
    assert (out / "figures" / "distance-vs-alpha.svg").exists()
    assert (out / "figures" / "distance-vs-alpha.png").exists()
    assert main(["report", str(out)]) == 0
    assert str(out / "report.html") in capsys.readouterr().out
    import rankbias.experiments as ex

    assert list(ex.load(out)["alpha"].values) == [1e-2, 1e-4]


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (
            ["run", "no-such-experiment", "--out", "{tmp}/o"],
            2,
            "unknown experiment 'no-such-experiment'",
        ),
        (["run", "{tmp}/missing.toml", "--out", "{tmp}/o"], 2, "config file not found"),
        (["run", "{bad}", "--out", "{tmp}/o"], 2, "invalid TOML"),
        (
            ["run", "{cfg}", "--out", "{tmp}/o", "--set", "dynamics.lr=-1"],
            2,
            "dynamics.lr must be > 0, got -1",
        ),
        (["run", "{cfg}", "--out", "{tmp}/o", "--set", "nonsense=1"], 2, "unknown key 'nonsense'"),
        (["run", "{cfg}", "--out", "{tmp}/o", "--scheduler", "tcp://x:1"], 2, "--scheduler needs"),
        (["run", "{cfg}", "--out", "{tmp}/file/sub"], 1, "cannot write to results folder"),
        (["status", "{tmp}/nowhere"], 1, "no results folder"),
        (["plot", "{tmp}"], 1, "not a rankbias results folder"),
        (["run"], 2, "the following arguments are required"),
    ],
)
def test_user_errors(argv, code, message, cfg, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    argv = [a.format(tmp=tmp_path, cfg=cfg, bad=bad) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    assert rc == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_full_disk_is_a_clean_error(cfg, tmp_path, capsys, monkeypatch):
    import rankbias.store as store

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path))

    monkeypatch.setattr(store, "atomic_write_npz", full)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err


def test_unreachable_scheduler(cfg, tmp_path, capsys, monkeypatch):
    from rankbias.experiments.executors import DaskExecutor

    monkeypatch.setattr(DaskExecutor.__init__, "__defaults__", (None, None, 1.0, 1))
    rc = main(
        [
            "run",
            str(cfg),
            "--out",
            str(tmp_path / "o"),
            "--executor",
            "dask",
            "--scheduler",
            "tcp://127.0.0.1:9",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_counterexample_search_command(tmp_path):
    import json

    from rankbias.cli import main

    assert (
        main(
            ["counterexample", "search", "--out", str(tmp_path), "--trials", "6", "--certify", "1"]
        )
        == 0
    )
    res = json.loads((tmp_path / "counterexamples.json").read_text())
    best = res["best"]
    assert best["certified"] and best["excess"] > 1e-3
    assert best["duality_gap"] < 1e-4 and all(g["distance"] <= 1e-4 for g in best["gf"])


# ------------------------------------------------------------------ issue 15 point 5, issue 16


def _rc(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse (--version, usage errors)
        return e.code


def test_version_and_python_m(capsys):
    import subprocess
    import sys

    import rankbias

    assert _rc(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rankbias {rankbias.__version__}"
    r = subprocess.run(
        [sys.executable, "-m", "rankbias", "--version"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and r.stdout.strip() == f"rankbias {rankbias.__version__}", r.stderr


def _nfiles(out):
    return len(list((out / "runs").rglob("*.npz")))


def test_another_config_into_a_folder_is_refused_unless_add(cfg, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "0 already done, 4 to run" in capsys.readouterr().out
    man0 = (out / "experiment.json").read_text()
    rc = main(["run", str(cfg), "--out", str(out), "--set", "alphas=1e-4", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert str(out) in err and "holds another experiment" in err
    assert "sweep.grid.alpha: [0.01, 0.001] -> [0.0001]" in err
    assert "--add" in err and "new --out folder" in err
    assert (out / "experiment.json").read_text() == man0 and _nfiles(out) == 4  # untouched
    # the same config resumes, saying so
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "4 already done, 0 to run" in capsys.readouterr().out
    # --add runs it and records both configs
    assert (
        main(["run", str(cfg), "--out", str(out), "--set", "alphas=1e-4", "--add", "--no-progress"])
        == 0
    )
    o = capsys.readouterr().out
    assert "2/2 done" in o and "1 earlier config" in o
    import json

    man = json.loads((out / "experiment.json").read_text())
    assert man["config"]["sweep"]["grid"]["alpha"] == 1e-4 or man["config"]["sweep"]["grid"][
        "alpha"
    ] == [1e-4]
    assert [h["config"]["sweep"]["grid"]["alpha"] for h in man["history"]] == [[1e-2, 1e-3]]
    assert len(man["history"][0]["runs"]) == 4 and _nfiles(out) == 6
    # the configuration as run (overrides included) is what the folder and the report show
    import rankbias.experiments as ex

    assert ex.parse_config((out / "config.toml").read_text()) == man["config"]
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "alpha = [0.0001]" in page and "Earlier config 1" in page


def test_quick_sweep(tmp_path, capsys):
    p = tmp_path / "q.toml"
    p.write_text(TINY)
    rc = main(["run", str(p), "--out", str(tmp_path / "a"), "--quick", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "defines no quick variant" in err and not (tmp_path / "a").exists()
    p.write_text(TINY + "[quick]\nseeds = [0]\ndynamics = { steps = 20 }\n")
    assert main(["run", str(p), "--out", str(tmp_path / "b"), "--quick", "--no-progress"]) == 0
    assert "2/2 done" in capsys.readouterr().out
    import rankbias.experiments as ex

    ds = ex.load(tmp_path / "b")
    assert list(ds["seed"].values) == [0] and float(ds["step"][-1]) == 20
    # the full sweep is another config: refused in that folder
    assert main(["run", str(p), "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "--quick: True -> False" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["", " "])
def test_empty_out_is_refused(cfg, out, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(cfg), "--out", out, "--no-progress"]) == 2
    assert "--out is empty" in capsys.readouterr().err
    assert not (tmp_path / "experiment.json").exists() and not (tmp_path / "runs").exists()


def test_foreign_folder_is_refused(cfg, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["run", str(cfg), "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not empty and is not a rankbias results folder" in err and "notes.txt" in err
    assert not (tmp_path / "runs").exists()


def test_other_experiment_store_is_not_replaced(cfg, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    other = tmp_path / "other.toml"
    other.write_text(TINY.replace('name = "tiny-cli"', 'name = "other"'))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["run", str(other), "--out", str(out), "--no-progress"]) == 2
    assert "name: 'tiny-cli' -> 'other'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_status_verify_exits_1_on_corrupt_runs(cfg, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    f = next((out / "runs").rglob("*.npz"))
    f.write_bytes(f.read_bytes()[:100])
    capsys.readouterr()
    assert main(["status", str(out)]) == 0  # without --verify: files are not read
    assert main(["status", str(out), "--verify"]) == 1
    o = capsys.readouterr().out
    assert "3/4 done" in o and "1 corrupt" in o and str(f) in o


def test_manifest_without_runs_is_one_line(cfg, tmp_path, capsys):
    import json

    out = tmp_path / "res"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    man = json.loads((out / "experiment.json").read_text())
    del man["runs"]
    (out / "experiment.json").write_text(json.dumps(man))
    capsys.readouterr()
    for argv in (["status", str(out)], ["plot", str(out)], ["report", str(out)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "missing 'runs'" in err and "Traceback" not in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def done_cli(tmp_path_factory):
    out = tmp_path_factory.mktemp("done") / "res"
    cfg = out.parent / "tiny.toml"
    cfg.write_text(TINY)
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "runs",
            [{"a": 1}],
            'runs must be a list of run keys (32 hex digits each), got [{"a": 1}]',
        ),
        ("runs", [1, 2, 3], "runs must be a list of run keys (32 hex digits each), got [1, 2, 3]"),
        ("runs", "abc", 'runs must be a list of run keys (32 hex digits each), got "abc"'),
        ("axes", [{"name": "alpha"}], 'axes[0] must be an object {"name": str'),
        ("description", 5, "description must be a string, got 5"),
        ("time_grid", "abc", "time_grid must be a non-empty list of finite numbers"),
        ("time_grid", [0, "x", 3], 'in increasing order, got [0, "x", 3]'),
        ("time_grid", [5.0, 1.0, 2.0], "in increasing order, got [5.0, 1.0, 2.0]"),
        ("time_grid", [], "in increasing order, got []"),
        ("max_rank", "6", 'max_rank must be a positive integer, got "6"'),
    ],
)
def test_hand_edited_manifest_is_one_line(done_cli, tmp_path, capsys, field, value, message):
    """A hand edit of experiment.json fails when the manifest is loaded: exit 1, one line
    naming the file, the field, the expected and the received value, and the way out."""
    import json
    import shutil

    out = tmp_path / "res"
    shutil.copytree(done_cli, out)
    man = json.loads((out / "experiment.json").read_text())
    man[field] = value
    (out / "experiment.json").write_text(json.dumps(man))
    capsys.readouterr()
    for argv in (["status", str(out), "--verify"], ["plot", str(out)], ["report", str(out)]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"{out / 'experiment.json'} is not a valid rankbias manifest: " in err
        assert message in err
        assert "edit it back or re-create the folder" in err
    assert not (out / "report.html").exists() and not (out / "figures").exists()


def test_axes_must_match_the_runs(done_cli, tmp_path, capsys):
    import json
    import shutil

    out = tmp_path / "res"
    shutil.copytree(done_cli, out)
    man = json.loads((out / "experiment.json").read_text())
    man["axes"][0]["values"] = [[1e-2]]  # 1 x 1 x 2 grid points for 4 runs
    (out / "experiment.json").write_text(json.dumps(man))
    assert main(["plot", str(out)]) == 1
    err = capsys.readouterr().err
    assert "runs must be 2 run keys (one per point of the axes' grid), got 4" in err


def test_failing_reproduction_runner_is_one_line(tmp_path, capsys, monkeypatch):
    mod = tmp_path / "failing_repro_mod.py"
    mod.write_text("def reproduce(out, quick=False):\n    raise RuntimeError('boom at step 3')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = tmp_path / "r.toml"
    p.write_text(
        'name = "failing"\nkind = "reproduction"\nrunner = "failing_repro_mod:reproduce"\n'
    )
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "reproduction 'failing' failed" in err and "RuntimeError: boom at step 3" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_long_values_are_cut(cfg, tmp_path, capsys):
    big = "[" + ",".join(["-1.0"] * 20000) + "]"
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--set", f"alphas={big}"]) == 2
    err = capsys.readouterr().err
    assert "must be > 0" in err and len(err) < 600, len(err)
    assert main(["run", "x" * 100_000, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment" in err and len(err) < 2000, len(err)


def test_duplicate_sweep_values_are_refused(cfg, tmp_path, capsys):
    dup = "[" + ",".join(["1e-3"] * 20000) + "]"
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--set", f"alphas={dup}"]) == 2
    err = capsys.readouterr().err
    assert "repeats values" in err and "appears 20000 times" in err and len(err) < 600
    assert (
        main(["run", str(cfg), "--out", str(tmp_path / "o"), "--set", "alphas=[1e-3, 0.001]"]) == 2
    )  # the same float twice
    assert "repeats values" in capsys.readouterr().err


def test_plot_with_nothing_to_draw_exits_1(tmp_path, capsys):
    p = tmp_path / "nm.toml"
    p.write_text(TINY + '[record]\nmetrics = ["final_matrix"]\n')
    out = tmp_path / "o"
    assert main(["run", str(p), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["plot", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no figure applies" in err and "final_matrix" in err


@pytest.mark.parametrize(
    "setting, message",
    [
        ("dynamics.n_save=100000000", "dynamics.n_save must be between 2 and 100,000"),
    ],
)
def test_config_bounds_on_the_command_line(cfg, tmp_path, capsys, setting, message):
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--set", setting]) == 2
    assert message in capsys.readouterr().err


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_one(cfg, tmp_path, capsys):
    import json
    import socket
    import subprocess
    import sys

    out = tmp_path / "res"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(
            json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "then"})
        )
        assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert f"in use by another `rankbias run` (pid {sleeper.pid} on " in err
        assert _nfiles(out) == 0
    finally:
        sleeper.kill()
        sleeper.wait()
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0  # dead: taken over
    o = capsys.readouterr().out
    assert "taking over the stale lock" in o and f"pid {sleeper.pid}" in o and "4/4 done" in o
    assert not (out / ".lock").exists()


def test_interrupt_while_parsing_is_one_line(capsys, monkeypatch):
    import rankbias.cli as cli

    def interrupted():  # the imports of _parser (plots, matplotlib) take ~1 s: a Ctrl-C lands there
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupted)
    assert cli.main(["list"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_interrupt_during_teardown_exits_130_without_traceback():
    import subprocess
    import sys

    child = (
        "import atexit, os, signal, time\n"
        "import rankbias.cli as cli\n"
        "def slow_teardown():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "atexit.register(slow_teardown)\n"
        "cli.main = lambda argv=None: 0\n"
        "cli.run()\n"
    )
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert "interrupted while exiting" in r.stderr and "Traceback" not in r.stderr


def test_interrupt_after_the_atexit_handlers_exits_with_the_code():
    """CPython resets the signal handlers to the default after the ``atexit`` handlers and
    then tears the modules down; a Ctrl-C there killed the command silently (exit -2). Here it
    is sent from a module global's finaliser, i.e. from that teardown: with
    ``_startup.finish`` the process has ended with its own code before it."""
    import subprocess
    import sys

    child = (
        "import os, signal, sys\n"
        "sys.argv = ['rankbias', 'list']\n"  # what the console script's process looks like
        "import rankbias.cli as cli\n"
        "class Late:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "late = Late()\n"
        "cli.main = lambda argv=None: 3\n"
        "cli.run()\n"
    )
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and not r.stderr.strip(), (r.returncode, r.stderr)


def _start_in_import(cmd, sig, after, env=None):
    """Start the command with SIGINT at its default (as from an interactive shell, even when
    pytest itself runs as a background job and ignores it), wait until it is inside
    ``import rankbias`` (NumPy's extension is mapped: JAX is being imported, after the guard
    at the top of ``rankbias/__init__.py``) plus ``after`` seconds, and send ``sig``.
    Returns the exit code, stderr, and whether the signal was sent (not if the command had
    ended by then)."""
    import signal
    import subprocess
    import time

    def default_sigint():  # runs in the child before exec; SIG_DFL survives exec, SIG_IGN too
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])

    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=default_sigint,
    )
    maps, t0 = f"/proc/{proc.pid}/maps", time.time()
    sent = False
    try:
        while proc.poll() is None and time.time() - t0 < 60:
            try:
                with open(maps) as f:
                    if "_multiarray_umath" in f.read():
                        break
            except OSError:
                pass
            time.sleep(0.01)
        assert proc.poll() is None, "the command ended before it was signalled"
        time.sleep(after)
        if proc.poll() is None:
            proc.send_signal(sig)
            sent = True
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, sent


_SPAN: dict[str, float] = {}


def _import_to_exit_seconds(cmd) -> float:
    """How long ``cmd`` runs from NumPy's import to its exit on this machine now (the longer
    of two runs), so that the signals below land at fixed fractions
    of the command's life whatever the machine's speed (a fixed 2.5 s was in the teardown on
    one machine and after the exit on another)."""
    import subprocess
    import time

    key = " ".join(cmd)
    if key not in _SPAN:
        spans = []
        for _ in range(2):
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            seen = None
            while proc.poll() is None:
                if seen is None:
                    try:
                        with open(f"/proc/{proc.pid}/maps") as f:
                            if "_multiarray_umath" in f.read():
                                seen = time.time()
                    except OSError:
                        pass
                time.sleep(0.005)
            assert proc.returncode == 0 and seen is not None
            spans.append(time.time() - seen)
        _SPAN[key] = max(spans)
    return _SPAN[key]


def _interrupt_cases(delays):
    import signal
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "rankbias"  # the console script
    cases = []
    for i, after in enumerate(delays):
        cmd = [str(script), "list"] if i % 2 == 0 else [sys.executable, "-m", "rankbias", "list"]
        kind = "script" if i % 2 == 0 else "m"
        cases.append(pytest.param(cmd, signal.SIGINT, 130, after, id=f"{kind}-int-{after}"))
    cases.append(
        pytest.param(
            [sys.executable, "-m", "rankbias", "run", "quick-demo", "--out", "OUT"],
            signal.SIGTERM,
            143,
            0.0,
            id="m-rankbias-run-term",
        )
    )
    return cases


def _check_interrupted_in_import(tmp_path, cmd, sig, code, after, late_ok=False):
    import os
    import sys

    if not os.path.exists(f"/proc/{os.getpid()}/maps"):
        pytest.skip("needs /proc/PID/maps to see when the child is importing")
    if not os.path.exists(cmd[0]) and cmd[0] != sys.executable:
        pytest.skip(f"no console script at {cmd[0]}")
    cmd = [str(tmp_path / "out") if a == "OUT" else a for a in cmd]
    rc, err, sent = _start_in_import(cmd, sig, after)
    if not sent:  # the command was faster this time than when measured: it must have succeeded
        assert late_ok, f"the command ended within {after:.2f} s, before it was signalled"
        assert rc == 0 and not err.strip(), (rc, err[-2000:])
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code and "Traceback" not in err, (rc, err[-2000:])
    assert len(lines) == 1, err[-2000:]
    # right at the start the message must be the startup guard's; later the import may have
    # finished and main's own message is just as good, or, in the teardown, run()'s
    assert any(
        m in lines[0] for m in ("while starting (nothing was run)", "resume", "while exiting")
    ), lines
    if after == 0.0:
        assert "while starting" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing was run


@pytest.mark.parametrize(("cmd", "sig", "code", "after"), _interrupt_cases([0.0, 0.0]))
def test_interrupt_during_import_is_one_line(tmp_path, cmd, sig, code, after):
    """Ctrl-C (SIGTERM) while ``import rankbias`` runs inside ``rankbias ...`` or ``python -m
    rankbias ...``: exit 130 (143) and one line, not a KeyboardInterrupt traceback out of
    JAX's import (before the startup guard: exit codes -2, -6, -11, 1 and 0 were measured)."""
    _check_interrupted_in_import(tmp_path, cmd, sig, code, after)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cmd", "sig", "code", "fraction"),
    _interrupt_cases([0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.85, 0.92, 0.97]),
)
def test_interrupt_at_any_point_of_the_import_is_one_line(tmp_path, cmd, sig, code, fraction):
    """A signal at a fraction of the command's life, from the import to the teardown after
    the output (the last ~20 %; CPython resets the handlers to the default at the end of it,
    where a Ctrl-C killed the process silently with -2 before ``_startup.finish``). The
    command's time varies by ~25 % between runs, so from 0.6 on it may have ended first."""
    after = fraction * _import_to_exit_seconds(cmd) if fraction else 0.0
    _check_interrupted_in_import(tmp_path, cmd, sig, code, after, late_ok=fraction >= 0.6)


FLOW_CUT_SHORT = tiny_flow_sweep(
    "tiny-flow-cut", '{ "dynamics.t_max" = [1e6, 1.0], "dynamics.max_steps" = [5, 100000] }'
)


def test_runs_cut_short_are_counted_by_status_not_just_done(tmp_path, capsys):
    cfg = tmp_path / "cut.toml"
    cfg.write_text(FLOW_CUT_SHORT)
    out = tmp_path / "res"
    # both runs end without a steady state: results, counted on the first line, exit 0
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    want = [
        "2/2 done, 0 pending, 0 failed; 2 done run(s) did not end well: 1 max_steps, 1 t_max",
        "  1 max_steps: ran out of solver steps (max_steps)",
        "  1 t_max: stopped at t_max without a steady state",
    ]
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == want
    assert main(["status", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == want


def test_status_exit_codes_done_pending_failed(cfg, tmp_path, capsys):
    from rankbias.cli import EXIT_FAILURE, EXIT_OK, EXIT_PENDING
    from rankbias.store import Store

    assert (EXIT_OK, EXIT_FAILURE, EXIT_PENDING) == (0, 1, 3)
    out = tmp_path / "res"
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    store = Store(out)
    keys = store.manifest()["runs"]
    capsys.readouterr()

    # the counts, before any "; k done run(s) did not end well" (these tiny GD runs may end
    # not_stationary: results, not failures, so they leave the exit code alone)
    def counts() -> str:
        return capsys.readouterr().out.splitlines()[0].split(";")[0]

    assert main(["status", str(out)]) == 0
    assert counts() == "4/4 done, 0 pending, 0 failed"
    store.remove(keys[0])
    assert main(["status", str(out)]) == 3
    assert counts() == "3/4 done, 1 pending, 0 failed"
    store.remove(keys[1])
    store.write_failure(keys[1], {}, "FloatingPointError: boom")
    assert main(["status", str(out)]) == 1  # failed wins over pending
    o = capsys.readouterr().out
    assert o.split(";")[0].split("\n")[0] == "2/4 done, 1 pending, 1 failed" and "boom" in o
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0  # resumes all
    assert main(["status", str(out)]) == 0


@pytest.mark.parametrize(
    "counts, code",
    [
        ({"pending": 0, "failed": 0}, 0),
        ({"pending": 2, "failed": 0}, 3),
        ({"pending": 2, "failed": 1}, 1),
        ({"pending": 2, "failed": 0, "lost_chunks_runs": 2}, 1),  # a worker lost them
    ],
)
def test_run_exit_code_of_what_remains(counts, code, cfg, tmp_path, monkeypatch, capsys):
    import rankbias.experiments as ex

    st = {"total": 4, "done": 4 - counts["pending"] - counts["failed"], **counts}
    monkeypatch.setattr(ex, "run_experiment", lambda *a, **k: dict(st, failures={}))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == code


def test_status_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as e:
        main(["status", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 every run done" in text and "3 runs still pending" in text
    assert "1 failed runs" in text and "2 bad input" in text


def test_statuses_are_counted_by_name_even_unknown_ones(capsys):
    from rankbias.cli import _print_status

    st: dict = {"total": 5, "done": 4, "pending": 1, "failed": 0}
    st["statuses"] = {"completed": 1, "not_stationary": 1, "exploded": 1, "": 1}
    _print_status(st)
    assert capsys.readouterr().out.splitlines() == [
        "4/5 done, 1 pending, 0 failed; 3 done run(s) did not end well: "
        "1 not_stationary, 1 exploded, 1 no status",
        "  1 not_stationary: all steps, but far from a stationary point",
        "  1 exploded: exploded",  # a status of a newer version: shown as it is
        "  1 no status: the run file records none",
    ]


# One child process importing rankbias per case: the console script's argv0 in the default
# suite, ``python -m rankbias``'s (the same check of the --multiprocessing-fork tail) in the slow one.
@pytest.mark.parametrize(
    "argv0", ["rankbias", pytest.param("/site/rankbias/__main__.py", marks=pytest.mark.slow)]
)
def test_workers_of_the_command_print_nothing_on_signals(argv0):
    """A spawned worker of the command (its argv copied from the command's, its own command
    line ending in --multiprocessing-fork) gets no startup guard: SIGTERM keeps its default
    action (no "terminated while starting" when the command stops it) and SIGINT is ignored
    (the command handles Ctrl-C and stops its workers)."""
    import subprocess
    import sys

    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"sys.argv = [{argv0!r}, 'run', 'x']\n"
        "import rankbias._startup as s\n"
        "s.guard()\n"
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,"
        " signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, "--multiprocessing-fork"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"], r.stdout


def test_runs_of_an_older_results_version_are_stale_not_done(cfg, tmp_path, monkeypatch, capsys):
    import rankbias.store as store

    out = tmp_path / "res"
    # a GD folder written before GD runs classified how they ended (no method bump then)
    monkeypatch.setattr(store, "METHOD_RESULTS", {})
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["status", str(out)]) == 3  # work remains: the next run recomputes them
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(
        "4/4 done, 0 pending, 0 failed, 4 made by an older results version (their code "
        "changed what they compute: `rankbias run` recomputes them)"
    )
    assert main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "older results version" not in capsys.readouterr().out
