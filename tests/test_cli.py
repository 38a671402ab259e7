"""The command line: every command, and clean errors (no tracebacks) for user mistakes."""

import errno
import pytest

from rankbias.cli import main

from _configs import tiny_sweep

TINY = tiny_sweep("tiny-cli", "{ alpha = [1e-2, 1e-3], depth = [2], seed = [0, 1] }", steps=100,
                  n_save=10)


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
    assert main(["run", str(cfg), "--out", str(out), "--set", "alphas=[1e-2,1e-4]",
                 "--no-progress"]) == 0
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


@pytest.mark.parametrize("argv, code, message", [
    (["run", "no-such-experiment", "--out", "{tmp}/o"], 2, "unknown experiment 'no-such-experiment'"),
    (["run", "{tmp}/missing.toml", "--out", "{tmp}/o"], 2, "config file not found"),
    (["run", "{bad}", "--out", "{tmp}/o"], 2, "invalid TOML"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "dynamics.lr=-1"], 2,
     "dynamics.lr must be > 0, got -1"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--set", "nonsense=1"], 2, "unknown key 'nonsense'"),
    (["run", "{cfg}", "--out", "{tmp}/o", "--scheduler", "tcp://x:1"], 2, "--scheduler needs"),
    (["run", "{cfg}", "--out", "{tmp}/file/sub"], 1, "cannot write to results folder"),
    (["status", "{tmp}/nowhere"], 1, "no results folder"),
    (["plot", "{tmp}"], 1, "not a rankbias results folder"),
    (["run"], 2, "the following arguments are required"),
])
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
    rc = main(["run", str(cfg), "--out", str(tmp_path / "o"), "--executor", "dask",
               "--scheduler", "tcp://127.0.0.1:9"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_counterexample_search_command(tmp_path):
    import json

    from rankbias.cli import main

    assert main(["counterexample", "search", "--out", str(tmp_path), "--trials", "6",
                 "--certify", "1"]) == 0
    res = json.loads((tmp_path / "counterexamples.json").read_text())
    best = res["best"]
    assert best["certified"] and best["excess"] > 1e-3
    assert best["duality_gap"] < 1e-4 and all(g["distance"] <= 1e-4 for g in best["gf"])
