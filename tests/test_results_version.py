"""The results-version policy: a stored run is recomputed when the numbers change, never else.

Run keys hash the config and ``rankbias.store.RESULTS_VERSION`` (not ``__version__``). The
golden file ``results_golden.json`` holds the numbers of three tiny runs (a gradient flow,
a GD and an optimizer run, each through the sweep runner into a store) and the
RESULTS_VERSION they were made with. If a change alters those numbers while
RESULTS_VERSION stays, stored runs on users' disks would be silently stale: the test fails
and says to bump it. Regenerate the file after a bump with::

    PYTHONPATH=src python3 tests/test_results_version.py --regenerate
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).with_name("results_golden.json")
REGENERATE = "PYTHONPATH=src python3 tests/test_results_version.py --regenerate"
# Another XLA/BLAS build may reorder sums (~1e-14 relative per operation, ~1e-11 after a
# run); a change of method or tolerance moves these runs by far more than 1e-8.
RTOL = 1e-8

_PROBLEM = """
[problem]
type = "completion"
shape = [4, 4]
rank = 1
fraction = 0.8
seed = 3
[init]
scale = 0.1
seed = 1
"""
#: name -> dynamics table of one tiny run (each runs in well under a second once compiled).
RUNS = {
    "flow": '[dynamics]\nmethod = "flow"\nt_max = 200.0\nn_save = 6',
    "gd": '[dynamics]\nmethod = "gd"\nlr = 0.2\nsteps = 60\nn_save = 6',
    "optax": '[dynamics]\nmethod = "optax"\noptimizer = "adam"\nlr = 0.02\nsteps = 60\nn_save = 6',
}


def _numbers(name: str, root: Path) -> dict:
    """Run ``RUNS[name]`` through the runner into a store at ``root``; its recorded numbers."""
    from rankbias.experiments.config import expand
    from rankbias.experiments.runner import Chunk, run_chunk
    from rankbias.store import Store

    raw = tomllib.loads(f'name = "golden-{name}"\nkind = "sweep"\n{_PROBLEM}{RUNS[name]}\n')
    (spec,) = expand(raw).runs
    Store(root).create()
    res = run_chunk(str(root), Chunk((spec.key,), (spec.config,)))
    assert res[spec.key] == "done", res[spec.key]
    a = Store(root).read_run(spec.key)
    info = json.loads(str(a["info"]))
    t = a["times"] if name == "flow" else a["steps"]
    return {
        "status": info.get("status"),
        "t": np.asarray(t, dtype=float).tolist(),
        "loss": np.asarray(a["loss"], dtype=float).tolist(),
        "singular_values": np.asarray(a["singular_values"], dtype=float)[-1].tolist(),
        "distance_to_truth": float(a["metric_distance_to_truth"]),
    }


def _differences(want: dict, got: dict) -> list[str]:
    out = []
    for k, w in want.items():
        g = got.get(k)
        if isinstance(w, str) or w is None:
            if g != w:
                out.append(f"{k}: {w!r} -> {g!r}")
            continue
        w, g = np.asarray(w, dtype=float), np.asarray(g, dtype=float)
        if w.shape != g.shape:
            out.append(f"{k}: shape {w.shape} -> {g.shape}")
        elif not np.allclose(g, w, rtol=RTOL, atol=0.0):
            rel = np.max(np.abs(g - w) / np.maximum(np.abs(w), 1e-300))
            out.append(f"{k}: relative change up to {rel:.2e}")
    return out


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def _version(name: str) -> str:
    """The results version of the golden run ``name`` (base plus its method's bump)."""
    from rankbias.experiments.config import expand
    from rankbias.store import results_version

    raw = tomllib.loads(f'name = "golden-{name}"\nkind = "sweep"\n{_PROBLEM}{RUNS[name]}\n')
    return results_version(expand(raw).runs[0].config)


def test_golden_file_is_of_this_results_version(golden):
    assert set(golden["runs"]) == set(RUNS)
    for name in RUNS:
        made = golden["runs"][name].get("results_version")
        assert made == _version(name), (
            f"the {name} run's results version is {_version(name)!r} but {GOLDEN.name} was "
            f"made with {made!r}: regenerate it with `{REGENERATE}`"
        )


@pytest.mark.parametrize("name", sorted(RUNS))
def test_results_unchanged_at_this_results_version(name, golden, tmp_path):
    if golden["runs"][name].get("results_version") != _version(name):
        pytest.skip("golden run of another results version (the test above says so)")
    want = {k: v for k, v in golden["runs"][name].items() if k != "results_version"}
    diff = _differences(want, _numbers(name, tmp_path))
    assert not diff, (
        f"the results changed ({name} run: {'; '.join(diff)}): bump RESULTS_VERSION (or "
        f"the method's entry of METHOD_RESULTS) in src/rankbias/store.py (stored runs must be "
        f"recomputed) and regenerate with `{REGENERATE}`"
    )


# Keys made by the code before RESULTS_VERSION existed (main at 29d86aa, __version__ 0.1.0):
# RESULTS_VERSION starts at the string the keys hashed then, so with the base version they are
# the same keys; GD and optimizer runs got a method bump (METHOD_RESULTS: they now classify how
# they ended), and so did flows (flow.2: the RKC-based solvers take other steps, issue 30), so
# their old keys are recomputed, on purpose.
_OLD_CONFIG = {"problem": {"shape": [6, 6], "rank": 1}, "dynamics": {"method": "gd", "lr": 0.2}}
_OLD_KEY = "48fa4879336cf6873825bf69dbc209f8"
_OLD_SWEEP_KEY = "bd8c0b257b5bce12a8e52c7cd0dc26b0"  # tiny_sweep("tiny-key", alpha 1e-2, seed 0)
_OLD_FLOW_CONFIG = {
    "problem": {"shape": [6, 6], "rank": 1},
    "dynamics": {"method": "flow", "t_max": 100.0},
}
_OLD_FLOW_KEY = "e86cc7e5cd773261c129960ad2bac4e4"
_OLD_FLOW_SWEEP_KEY = "f668de222b76e15441dd9ad903e04189"
_FLOW_SWEEP = """
name = "tiny-flow-key"
kind = "sweep"
[problem]
type = "completion"
shape = [6, 6]
rank = 1
fraction = 0.7
[dynamics]
method = "flow"
t_max = 100.0
n_save = 10
[sweep]
grid = { alpha = [1e-2], seed = [0] }
"""


def test_existing_flow_keys_follow_their_method_bump():
    """Stored flows of before flow.2 are recomputed (their steps changed), and only because of
    the bump: with the base results version the formula gives the keys on disk."""
    from rankbias.experiments.config import expand
    from rankbias.store import METHOD_RESULTS, RESULTS_VERSION, run_key

    assert METHOD_RESULTS["flow"] == "flow.2"
    assert run_key(_OLD_FLOW_CONFIG) != _OLD_FLOW_KEY
    assert run_key(_OLD_FLOW_CONFIG, RESULTS_VERSION) == _OLD_FLOW_KEY
    spec = expand(tomllib.loads(_FLOW_SWEEP)).runs[0]
    assert spec.key != _OLD_FLOW_SWEEP_KEY
    assert run_key(spec.config, RESULTS_VERSION) == _OLD_FLOW_SWEEP_KEY


def test_gd_keys_follow_their_method_bump():
    from _configs import tiny_sweep

    from rankbias.experiments.config import expand
    from rankbias.store import METHOD_RESULTS, RESULTS_VERSION, run_key

    assert METHOD_RESULTS["gd"] == "gd.2" and METHOD_RESULTS["optax"] == "optax.2"
    assert run_key(_OLD_CONFIG) != _OLD_KEY  # GD runs of before are recomputed
    assert run_key(_OLD_CONFIG, RESULTS_VERSION) == _OLD_KEY  # the same formula, base version
    raw = tomllib.loads(
        tiny_sweep("tiny-key", "{ alpha = [1e-2], seed = [0] }", steps=100, n_save=10)
    )
    spec = expand(raw).runs[0]
    assert spec.key != _OLD_SWEEP_KEY
    assert run_key(spec.config, RESULTS_VERSION) == _OLD_SWEEP_KEY


def test_package_version_does_not_enter_keys(monkeypatch):
    import rankbias
    import rankbias.store as store

    before = store.run_key(_OLD_CONFIG)
    flow = store.run_key(_OLD_FLOW_CONFIG)
    monkeypatch.setattr(rankbias, "__version__", "9.9.9")
    assert store.run_key(_OLD_CONFIG) == before
    assert store.versions()["rankbias"] == "9.9.9"  # still recorded with the results
    monkeypatch.setattr(store, "METHOD_RESULTS", {**store.METHOD_RESULTS, "gd": "gd.3"})
    assert store.run_key(_OLD_CONFIG) != before and store.run_key(_OLD_FLOW_CONFIG) == flow
    monkeypatch.setattr(store, "RESULTS_VERSION", "0.1.0+changed")
    assert store.run_key(_OLD_FLOW_CONFIG) != flow


def _regenerate() -> None:  # pragma: no cover - run by hand after a RESULTS_VERSION bump
    import tempfile

    import rankbias  # noqa: F401 - float64 on
    from rankbias.store import RESULTS_VERSION

    runs = {}
    for name in sorted(RUNS):
        with tempfile.TemporaryDirectory() as d:
            runs[name] = {"results_version": _version(name), **_numbers(name, Path(d))}
    GOLDEN.write_text(
        json.dumps({"results_version": RESULTS_VERSION, "runs": runs}, indent=1) + "\n"
    )
    print(f"wrote {GOLDEN} (RESULTS_VERSION {RESULTS_VERSION!r})")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(f"usage: {REGENERATE}")
    _regenerate()
