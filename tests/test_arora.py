"""arora2019-completion (the Arora et al. 2019 completion study) and the held-out RMSE
sweep metric."""

import inspect
import json
import textwrap
from typing import Any

import numpy as np
import pytest

import rankbias.experiments as ex
from rankbias.experiments.config import ConfigError
from rankbias.problems import MatrixCompletion
from rankbias.reproduce import arora2019 as ar
from rankbias.store import Store


def test_registered_with_params_the_runner_accepts():
    (e,) = [e for e in ex.list_experiments() if e.name == "arora2019-completion"]
    assert e.kind == "reproduction"
    assert "nuclear norm" in e.description and "depth" in e.description
    raw, _ = ex.resolve("arora2019-completion")
    fn = ex.registry._runner(raw["runner"])
    assert fn is ar.completion_study
    sig = inspect.signature(fn)
    sig.bind("out", quick=True, **raw["params"])  # every param is an argument
    p = raw["params"]
    assert p["depths"] == [2, 3, 4] and p["seeds"] == 5
    assert min(p["counts"]) <= 1000 and max(p["counts"]) >= 5000
    assert sig.parameters["d"].default == 100 and sig.parameters["rank"].default == 5
    assert sig.parameters["init_std"].default == 1e-3  # the paper's: factor entries' std
    assert raw["params"]["init_std"] == 1e-3


def test_observed_entries_nested_exact_and_seeded():
    r1, c1 = ar.observed_entries(20, 50, seed=3)
    r2, c2 = ar.observed_entries(20, 120, seed=3)
    a, b = (
        set(zip(r1.tolist(), c1.tolist(), strict=True)),
        set(zip(r2.tolist(), c2.tolist(), strict=True)),
    )
    assert len(a) == 50 and len(b) == 120 and a <= b  # exact counts, nested
    assert max(r2) < 20 and max(c2) < 20
    r3, c3 = ar.observed_entries(20, 50, seed=4)
    assert set(zip(r3.tolist(), c3.tolist(), strict=True)) != a
    with pytest.raises(ValueError, match="`k`"):
        ar.observed_entries(5, 26, seed=0)


def test_init_has_the_papers_entry_std():
    """init_std is the std of every factor entry (Arora et al.), not rankbias's end-to-end
    scale: at d = 100, depth 3, each factor holds N(0, 1e-6) entries."""
    import rankbias as rb

    model = rb.DeepFactorization((100, 100), depth=3)
    for W in ar._flow_init(model, 100, 0, 1e-3, None):
        assert np.std(np.asarray(W)) == pytest.approx(1e-3, rel=0.03)
    W0 = model.product(ar._flow_init(model, 100, 0, None, 1e-3))
    assert np.linalg.norm(np.asarray(W0), 2) < 1e-2  # end-to-end scale 1e-3 (order)


def test_relative_error_against_explicit_sums():
    rng = np.random.default_rng(0)
    M, W = rng.standard_normal((7, 5)), rng.standard_normal((7, 5))
    num = sum((W[i, j] - M[i, j]) ** 2 for i in range(7) for j in range(5))
    den = sum(M[i, j] ** 2 for i in range(7) for j in range(5))
    assert ar.relative_error(W, M) == pytest.approx(np.sqrt(num / den), rel=1e-13)
    assert ar.relative_error(M, M) == 0.0
    with pytest.raises(ValueError, match="shape"):
        ar.relative_error(W, M.T)


def test_nuclear_run_is_certified_and_scored_independently():
    """A 12x12 rank-1 instance with 120 entries: the min nuclear norm recovers it (certified
    by the duality gap) and the stored error is the explicit relative error."""
    M, prob = ar._instance(12, 1, 120, seed=0)
    a = ar._nuclear_run(M, prob, "SCS")
    sol = ar.min_nuclear_norm(prob, solver="SCS")
    W = np.asarray(sol)
    assert float(a["error"]) == pytest.approx(
        np.sqrt(((W - M) ** 2).sum() / (M**2).sum()), rel=1e-6, abs=1e-12
    )
    assert float(a["error"]) < 1e-6
    assert float(a["duality_gap"]) < 1e-6 and float(a["residual"]) < 1e-6


# -- held-out RMSE in sweeps -------------------------------------------------------------------


def _ratings_file(path, users=8, items=6, seed=0):
    """A rank-1 ratings matrix, all entries given, in the u.data layout (1-based ids)."""
    rng = np.random.default_rng(seed)
    R = np.outer(rng.uniform(1, 2, users), rng.uniform(1, 2, items)) + 0.05 * rng.standard_normal(
        (users, items)
    )
    lines = [
        f"{u + 1}\t{i + 1}\t{R[u, i]:.6f}\t88125{u}{i}" for u in range(users) for i in range(items)
    ]
    path.write_text("# user item rating timestamp\n" + "\n".join(lines) + "\n")
    return R


def _sweep(path, metrics='["loss", "final_matrix", "heldout_rmse"]', extra=""):
    return textwrap.dedent(
        f"""
        name = "ratings"
        kind = "sweep"
        [problem]
        type = "ratings"
        path = "{path}"
        test_fraction = 0.25
        {extra}
        [model]
        depth = 2
        [init]
        scale = 0.1
        [dynamics]
        method = "gd"
        lr = 0.05
        steps = 300
        n_save = 5
        [sweep]
        grid = {{ seed = [0, 1] }}
        [record]
        metrics = {metrics}
        """
    )


def test_heldout_rmse_sweep_metric_on_a_ratings_file(tmp_path):
    R = _ratings_file(tmp_path / "u.data")
    cfg = tmp_path / "ratings.toml"
    cfg.write_text(_sweep(tmp_path / "u.data"))
    sweep = ex.expand(ex.parse_config(cfg.read_text()))
    assert sweep.runs[0].config["problem"]["shape"] == [8, 6]  # inferred from the ids
    assert len(sweep.runs[0].config["problem"]["sha256"]) == 64
    assert sweep.runs[0].key != sweep.runs[1].key
    st = ex.run_experiment(cfg, tmp_path / "out", progress=False)
    assert st["done"] == 2
    store = Store(tmp_path / "out")
    lines = [ln.split() for ln in (tmp_path / "u.data").read_text().splitlines()[1:]]
    for run in sweep.runs:
        a = store.read_run(run.key)
        # independent split: the same seeded permutation over the file's lines
        seed = run.config["problem"]["seed"]
        perm = np.random.default_rng(seed).permutation(len(lines))
        test = perm[: round(0.25 * len(lines))]
        W = a["final_matrix"]
        sq = [
            (W[int(lines[t][0]) - 1, int(lines[t][1]) - 1] - float(lines[t][2])) ** 2 for t in test
        ]
        want = float(np.sqrt(np.mean(sq)))
        assert float(a["metric_final_heldout_rmse"]) == pytest.approx(want, rel=1e-12)
        assert a["heldout_rmse"].shape == a["times"].shape
        assert a["heldout_rmse"][-1] == pytest.approx(want, rel=1e-12)
        assert a["heldout_rmse"][0] > 2 * a["heldout_rmse"][-1]  # GD learned the ratings
        assert "matrices" not in a  # used for the metric, not stored unless asked
    ds = ex.load(tmp_path / "out", lazy=False)
    assert "heldout_rmse" in ds and "final_heldout_rmse" in ds
    assert ds["final_heldout_rmse"].shape == (2,)
    assert float(ds["final_heldout_rmse"].max()) < float(np.std(R))  # beats the mean


def test_heldout_rmse_on_synthetic_completion_scores_the_unobserved_truth(tmp_path):
    from rankbias.experiments.runner import build_heldout, build_problem

    sweep = ex.expand(
        ex.parse_config(
            'name = "c"\n[problem]\nshape = [6, 5]\nrank = 1\npsd = false\nfraction = 0.6\n'
            '[record]\nmetrics = ["heldout_rmse"]\n'
        )
    )
    cfg = sweep.runs[0].config
    prob, held = build_problem(cfg), build_heldout(cfg)
    assert isinstance(prob, MatrixCompletion)
    mask, truth = prob.mask, np.asarray(prob.target)
    assert len(held) == int((~mask).sum()) > 0
    np.testing.assert_array_equal(held.values, truth[~mask])  # row-major order, as nonzero
    W = np.zeros((6, 5))
    assert held.rmse(W) == pytest.approx(np.sqrt(np.mean(truth[~mask] ** 2)))


def test_heldout_rmse_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="heldout_rmse needs problem.type"):
        ex.expand(
            ex.parse_config(
                'name = "s"\n[problem]\ntype = "sensing"\n[record]\nmetrics = ["heldout_rmse"]\n'
            )
        )
    with pytest.raises(ConfigError, match="problem.path"):
        ex.expand(ex.parse_config('name = "r"\n[problem]\ntype = "ratings"\n'))
    with pytest.raises(ConfigError, match="cannot read ratings"):
        ex.expand(ex.parse_config(_sweep(tmp_path / "missing.data")))
    _ratings_file(tmp_path / "u.data")
    with pytest.raises(ConfigError, match="smaller than the ids"):
        ex.expand(ex.parse_config(_sweep(tmp_path / "u.data", extra="shape = [4, 6]")))
    # other problem types keep their run keys: the new keys are dropped from them
    base = ex.expand(ex.parse_config('name = "c"\n')).runs[0].config["problem"]
    assert "path" not in base and "test_fraction" not in base


# -- the quick study ---------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_study_shows_the_claim(tmp_path):
    out = ex.run_experiment("arora2019-completion", tmp_path / "q", quick=True, progress=False)
    res = out["results"]
    counts = res["settings"]["counts"]
    mid = str(counts[len(counts) // 2])
    t = res["table"]
    assert t["depth 3"][mid]["median"] < t["nuclear norm"][mid]["median"]
    assert t["depth 3"][mid]["median"] < t["depth 2"][mid]["median"]
    for f in ("png", "svg", "json", "md"):
        assert (tmp_path / "q" / f"arora2019-completion.{f}").stat().st_size > 0
    rec = json.loads((tmp_path / "q" / "arora2019-completion.json").read_text())
    assert len(rec["runs"]) == len(counts) * 3 * len(res["settings"]["seeds"])
    # resumable: a second run reads every stored run instead of recomputing
    again = ar.completion_study(tmp_path / "q", quick=True)
    assert again["table"] == res["table"]
    assert again["wall_time"] < 0.5 * res["wall_time"]


# -- workers -----------------------------------------------------------------------------------

_TINY: dict[str, Any] = dict(
    d=12,
    rank=1,
    counts=(60, 100),
    depths=(2,),
    seeds=1,
    t_max=1e3,
    n_save=5,
    nuclear_solver="SCS",
)


@pytest.mark.slow
def test_workers_store_the_same_runs_as_one_process(tmp_path):
    """Two worker processes store the same runs (same keys: the files' names) as the study in
    one process, and the tables are identical; each stored error is the relative error of
    the run's own final point (its error curve's last value, computed separately). A
    folder with one run file removed resumes with workers: only that run is computed."""
    one = ar.completion_study(tmp_path / "one", workers=1, **_TINY)
    two = ar.completion_study(tmp_path / "two", workers=2, **_TINY)
    assert two["table"] == one["table"]
    assert [r["error"] for r in two["runs"]] == [r["error"] for r in one["runs"]]
    keys = sorted(Store(tmp_path / "one").scan().done)
    store = Store(tmp_path / "two")
    assert sorted(store.scan().done) == keys
    assert len(keys) == 4  # 2 counts x (nuclear norm + depth 2)
    for r in two["runs"]:
        assert r["error"] < 1.5
    for key in keys:
        a = store.read_run(key)
        if "error_curve" in a:
            assert float(a["error"]) == pytest.approx(float(a["error_curve"][-1]), rel=1e-12)
    log = (tmp_path / "two" / "runs.log").read_text().splitlines()
    assert len(log) == 4
    store.path(keys[0]).unlink()
    again = ar.completion_study(tmp_path / "two", workers=2, **_TINY)
    assert again["table"] == one["table"]
    assert len((tmp_path / "two" / "runs.log").read_text().splitlines()) == 5


def test_workers_must_be_a_positive_integer(tmp_path):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="`workers`"):
            ar.completion_study(tmp_path, workers=bad, **_TINY)  # type: ignore[arg-type]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_default_workers_two_at_most_one_in_quick_mode(monkeypatch):
    for cores, want in ((None, 1), (1, 1), (2, 2), (16, 2)):
        monkeypatch.setattr(ar.os, "cpu_count", lambda c=cores: c)
        assert ar.default_workers() == want
        assert ar.default_workers(quick=True) == 1


def test_cli_workers_reach_a_reproduction_runner_and_stay_out_of_its_config(tmp_path, monkeypatch):
    """``--workers`` is passed to a runner that takes ``workers`` (not recorded in the
    config: the folder then resumes with another number) and refused for one that does not."""
    seen = []

    def runner(out_dir, quick=False, workers=None, **params):
        seen.append(workers)
        return {"ok": 1}

    monkeypatch.setattr(ar, "completion_study", runner)
    ex.run_experiment("arora2019-completion", tmp_path / "a", workers=2, progress=False)
    ex.run_experiment("arora2019-completion", tmp_path / "a", workers=1, progress=False)
    ex.run_experiment("arora2019-completion", tmp_path / "a", progress=False)
    assert seen == [2, 1, None]
    rec = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert "workers" not in rec["config"]["params"]

    def one_process(out_dir, quick=False, **params):
        return {"ok": 1}

    monkeypatch.setattr(ar, "completion_study", one_process)
    with pytest.raises(ConfigError, match="--workers"):
        ex.run_experiment("arora2019-completion", tmp_path / "b", workers=2, progress=False)
