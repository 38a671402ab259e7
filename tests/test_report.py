"""The HTML report: self-contained, and its figures render in headless Chromium."""

import json
import re
import textwrap

import pytest
from _browser import chromium, dump_dom
from _configs import tiny_sweep

import rankbias.experiments as ex
from rankbias.report import write_report

TINY = tiny_sweep(
    "tiny-report",
    "{ depth = [2, 3], alpha = [1e-2, 1e-3], seed = [0, 1] }",
    steps=100,
    n_save=10,
    description="report test",
)


def render(html_path, tmp_path) -> str:
    exe = chromium()
    if exe is None:
        pytest.skip(
            "chromium is not installed (apt-get install -y chromium) and could not "
            "be found on PATH; the report cannot be rendered"
        )
    return dump_dom(exe, html_path.as_uri(), tmp_path / "chr", budget_ms=10000, timeout=120)


def _search(pattern: str, text: str) -> re.Match:
    m = re.search(pattern, text)
    assert m is not None, f"{pattern!r} not found in the rendered DOM"
    return m


def _rendered(dom: str) -> tuple[int, int]:
    body = _search(r"<body[^>]*>", dom).group(0)
    n = int(_search(r'data-figures="(\d+)"', body).group(1))
    ok = int(_search(r'data-figures-rendered="(\d+)"', body).group(1))
    return n, ok


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    ex.run_sweep(ex.expand(ex.parse_config(TINY)), out, progress=False, config_text=TINY)
    return out


@pytest.fixture(scope="module")
def sweep_report(sweep_dir):
    """The report of ``sweep_dir``, written once (its figures take most of the time)."""
    return write_report(sweep_dir)


def test_sweep_report_is_self_contained_and_renders(sweep_dir, sweep_report, tmp_path):
    path = sweep_report
    html = path.read_text()
    assert "tiny-report" in html and "Software" in html and "jax" in html
    assert 'src="data:image/png;base64,' in html
    assert not re.search(r'src="(?!data:)', html)  # nothing fetched from outside
    assert "Config as run" in html and "[sweep.grid]" in html  # the config as run
    assert "depth = [2, 3]" in html and "alpha = [0.01, 0.001]" in html
    assert "final loss" in html and "distance to truth" in html  # summary table
    for fig in ("loss", "singular-values", "effective-rank", "distance-vs-alpha"):
        assert (sweep_dir / "figures" / f"{fig}.png").exists()
        assert (sweep_dir / "figures" / f"{fig}.svg").exists()
    n, ok = _rendered(render(path, tmp_path))
    assert n == 4 and ok == 4


def test_reproduction_report_renders(tmp_path, monkeypatch):
    (tmp_path / "rep_mod_x.py").write_text(
        textwrap.dedent("""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def run(out_dir, quick=False, k=2):
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3], [k, 1, k])
            fig.savefig(out_dir / "fig-a.png"); fig.savefig(out_dir / "fig-b.svg")
            plt.close(fig)
            return {"slope": 1.5, "k": k}
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = ex.parse_config(
        'name = "rx"\nkind = "reproduction"\nrunner = "rep_mod_x:run"\n[params]\nk = 3\n'
    )
    out = tmp_path / "out"
    ex.run_reproduction(raw, out, quick=True)
    assert json.loads((out / "summary.json").read_text())["results"] == {"slope": 1.5, "k": 3}
    html = write_report(out).read_text()
    assert "slope" in html and "image/svg+xml" in html
    n, ok = _rendered(render(out / "report.html", tmp_path))
    assert n == 2 and ok == 2


def test_summary_counts_and_lists_the_runs_that_did_not_end_well():
    import numpy as np
    import xarray as xr

    from rankbias.report import _not_well_html, summary_table

    status = np.array([["steady_state", "t_max", "max_steps"], ["steady_state", "", "t_max"]])
    ds = xr.Dataset(
        {
            "final_loss": (("alpha", "seed"), np.ones((2, 3))),
            "t_final": (("alpha", "seed"), [[5.0, 10.0, 0.4], [7.0, np.nan, 10.0]]),
            "done": (("alpha", "seed"), status != ""),
            "status": (("alpha", "seed"), status.astype(object)),
        },
        coords={"alpha": [0.1, 0.01], "seed": [0, 1, 2]},
    )
    rows = summary_table(ds)
    assert [(r["alpha"], r["runs done"], r["not ended well*"]) for r in rows] == [
        (0.1, "3/3", "2/3"),
        (0.01, "2/3", "1/2"),
    ]
    note = _not_well_html(ds)
    assert "3 of 5 done runs did not reach a certified steady state" in note
    assert note.count("<tr>") == 1 + 3  # the header and the three runs
    assert "<td>max_steps</td><td>0.4</td>" in note
    assert "not ended well*" not in str(summary_table(ds.drop_vars("status")))


def test_sweep_report_counts_the_runs_by_status(sweep_dir, sweep_report):
    from collections import Counter

    from rankbias.status import describe, ended_well

    # the oracle: each run's status as stored in its own file, counted here
    statuses = Counter(str(s) for s in ex.load(sweep_dir).load()["status"].values.ravel())
    bad = sum(n for s, n in statuses.items() if not ended_well(s))
    html = sweep_report.read_text()
    status = html[html.index("<h2>Status</h2>") : html.index("<h2>Figures</h2>")]
    assert (
        "<th>not ended well</th>" in status
        and f"<tr><td>8</td><td>8</td><td>0</td><td>0</td><td>{bad}</td></tr>" in status
    )
    for s, n in statuses.items():
        assert f"<td>{s}</td><td>{n}</td><td>{describe(s)}</td>" in status
    assert "not ended well*" in html
    assert ("did not reach" in html) == (bad > 0)  # the footnote lists them, if any
