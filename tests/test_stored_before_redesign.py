"""Results already on a user's disk survive refactors: three tiny sweep folders (a gradient
flow, a GD and an optimizer sweep, two runs each) were written by main at commit 0fab6b2,
before the redesign of issue 25 (option objects, split modules). Running their configs into
copies of those folders must find every run done and recompute nothing: same run keys, same
files, byte for byte."""

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


@pytest.mark.parametrize("method", ["flow", "gd", "optax"])
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
