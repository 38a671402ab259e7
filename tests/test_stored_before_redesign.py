"""Results already on a user's disk survive refactors: three tiny sweep folders (a gradient
flow, a GD and an optimizer sweep, two runs each) were written by main at commit 0fab6b2,
before the redesign of issue 25 (option objects, split modules). Running their configs into
copies of those folders must find every run done and recompute nothing: same run keys, same
files, byte for byte. Except where a method's numbers changed on purpose since (a bump in
``rankbias.store.METHOD_RESULTS``): the flow folder's runs (``flow.2``, issue 30: the RKC-based
solvers take other steps) are then reported as made by an older results version and
recomputed, and the results already on disk are left as they were."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from rankbias.cli import main

DATA = Path(__file__).with_name("data") / "before-redesign"


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.npz"))
    }


@pytest.mark.parametrize("method", ["gd", "optax"])
def test_a_folder_written_before_the_redesign_resumes_with_nothing_recomputed(
    method, tmp_path, capsys
):
    folder = tmp_path / method
    shutil.copytree(DATA / method, folder)
    before = _files(folder)
    assert len(before) == 2  # two runs, one file each
    rc = main(["run", str(DATA / f"{method}.toml"), "--out", str(folder), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2/2 done, 0 pending, 0 failed" in out, out
    assert _files(folder) == before  # the same keys (file names) and the same bytes
    rc = main(["status", str(folder)])
    assert rc == 0, capsys.readouterr().out


def test_a_flow_folder_of_an_older_results_version_is_recomputed_and_kept(tmp_path, capsys):
    """What a user of a flow folder written before ``flow.2`` sees: ``status`` says both runs
    were made by an older results version (work remains, exit code 3); ``run`` recomputes
    them under their new keys; the old files stay, byte for byte; ``status`` is then clean."""
    folder = tmp_path / "flow"
    shutil.copytree(DATA / "flow", folder)
    before = _files(folder)
    assert len(before) == 2
    assert main(["status", str(folder)]) == 3
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("2/2 done, 0 pending, 0 failed, 2 made by an older results version")
    rc = main(["run", str(DATA / "flow.toml"), "--out", str(folder), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2/2 done, 0 pending, 0 failed" in out, out
    after = _files(folder)
    assert len(after) == 4  # two new runs beside the two of before
    assert {k: after[k] for k in before} == before  # the results on disk are left alone
    assert main(["status", str(folder)]) == 0
    assert "older results version" not in capsys.readouterr().out
