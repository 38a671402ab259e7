"""One self-contained HTML page per results folder: config, figures, tables, versions.

Figures are embedded as base64 ``data:`` URIs (PNG, and SVG where no PNG of the same name
exists), so the page can be mailed or archived alone. For a sweep the figures are drawn from
the store (:mod:`rankbias.plots`) into ``figures/``; for a reproduction every PNG/SVG that its
function wrote into the folder is included, with the numbers of ``summary.json``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path

import numpy as np

from ._io import atomic_write_text
from .experiments.errors import ConfigError
from .experiments.toml_io import dump_toml
from .plots._marks import not_ended_well
from .plots._stats import seed_dims
from .plots.files import plot_all
from .status import describe, ended_well
from .store import Store, load

__all__ = ["write_report", "summary_table"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.muted{color:#777;font-size:.85em}
"""

# Lets a headless browser (and a reader) check that every figure decoded.
_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.figure');
  var ok = 0;
  imgs.forEach(function (im) { if (im.complete && im.naturalWidth > 0 && im.naturalHeight > 0) ok++; });
  document.body.setAttribute('data-figures', String(imgs.length));
  document.body.setAttribute('data-figures-rendered', String(ok));
});
"""


def _img(path: Path) -> str:
    mime = "image/png" if path.suffix == ".png" else "image/svg+xml"
    data = base64.b64encode(path.read_bytes()).decode()
    cap = html.escape(path.stem.replace("-", " "))
    return (
        f'<figure><img class="figure" alt="{cap}" src="data:{mime};base64,{data}">'
        f"<figcaption>{cap} ({html.escape(path.name)})</figcaption></figure>"
    )


def _figures_in(root: Path) -> list[Path]:
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix in (".png", ".svg") and "runs" not in p.relative_to(root).parts
    )
    pngs = {p.with_suffix("") for p in files if p.suffix == ".png"}
    return [p for p in files if p.suffix == ".png" or p.with_suffix("") not in pngs]


def _table(rows: list[dict]) -> str:
    if not rows:
        return '<p class="muted">(none)</p>'
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _flatten(d, prefix=""):
    out = []
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, name + ".")
        elif isinstance(v, list) and len(v) > 12:
            out.append((name, f"[{len(v)} values]"))
        else:
            out.append((name, v))
    return out


def _config_text(cfg: dict) -> str:
    try:
        return dump_toml(cfg)
    except ConfigError:
        return json.dumps(cfg, indent=2, default=str)


def _config_html(man: dict, root: Path) -> str:
    """The config of the manifest (the one that ran: ``--set`` overrides and ``--quick``
    applied), then the earlier configs of a folder run into with ``--add``."""
    out = ""
    if man.get("quick"):
        out += '<p class="muted">run with --quick</p>'
    if "config" in man:
        out += f"<pre>{html.escape(_config_text(man['config']))}</pre>"
    else:  # a manifest without its config: show the file
        cfg = root / "config.toml"
        out += f"<pre>{html.escape(cfg.read_text() if cfg.exists() else '(not recorded)')}</pre>"
    for i, h in enumerate(man.get("history", []), 1):
        out += (
            f"<h3>Earlier config {i} in this folder ({len(set(h.get('runs', [])))} runs, "
            f"created {html.escape(str(h.get('created', '?')))})</h3>"
            f"<pre>{html.escape(_config_text(h.get('config') or {}))}</pre>"
        )
    return out


def _not_well(ds):
    """Boolean per run: done and did not end well (``status``; all False without it)."""
    if "status" not in ds:
        return ds["done"] & False
    st = ds["status"]
    return st.copy(data=not_ended_well(st.values)) & ds["done"]


def summary_table(ds) -> list[dict]:
    """Per point of the non-seed axes: mean (std) over seeds of the final quantities, the
    runs done and, in ``not ended well``, how many of those did not end well (a flow
    stopped at ``t_max``/``max_steps`` without a steady state, a diverged run, ...; see
    :mod:`rankbias.status`); their values are in the means, marked, not dropped."""
    axes = list(ds["done"].dims)
    seeds = seed_dims(ds)  # the axes the figures summarise too
    keep = [d for d in axes if d not in seeds]
    tdim = "time" if "time" in ds.dims else "step"
    scal = {"final loss": ds["final_loss"], "t_final": ds["t_final"]}
    if "rank_ratio" in ds:
        scal["final eff. rank"] = ds["rank_ratio"].isel({tdim: -1})
    for v in ds.data_vars:
        skip = ("final_loss", "t_final", "steady_state", "done", "status")
        if v not in skip and ds[v].dims == tuple(axes):
            scal[v.replace("_", " ")] = ds[v]
    stacked = {
        k: (v.mean(seeds, skipna=True), v.std(seeds, skipna=True)) if seeds else (v, None)
        for k, v in scal.items()
    }
    done = ds["done"].sum(seeds) if seeds else ds["done"].astype(int)
    bad = _not_well(ds)
    bad = bad.sum(seeds) if seeds else bad.astype(int)
    n = ds["done"].size // max(done.size, 1)
    rows = []
    for idx in np.ndindex(*(ds.sizes[d] for d in keep)):
        sel = {d: i for d, i in zip(keep, idx, strict=True)}
        row = {d: ds[d].values[i].item() for d, i in sel.items()}
        row["runs done"] = f"{int(done.isel(sel).values)}/{n}"
        if "status" in ds:
            row["not ended well*"] = f"{int(bad.isel(sel).values)}/{int(done.isel(sel).values)}"
        for k, (m, s) in stacked.items():
            mv = float(m.isel(sel).values)
            row[k] = f"{mv:.4g}" + (f" ± {float(s.isel(sel).values):.2g}" if s is not None else "")
        rows.append(row)
    return rows


def _status_html(status: dict) -> str:
    """The status table (counts, and the done runs by how they ended)."""
    keys = ("total", "done", "pending", "failed")
    row = {k: status[k] for k in keys}
    if status.get("kind") != "reproduction":
        row["not ended well"] = status.get("not_ended_well", 0)
    out = "<h2>Status</h2>" + _table([row])
    if status.get("statuses"):
        rows = [
            {
                "how the done runs ended": k or "(not recorded)",
                "runs": n,
                "meaning": describe(k) if k else "",
                "ended well": "yes" if ended_well(k) else "no",
            }
            for k, n in status["statuses"].items()
        ]
        out += _table(rows)
    return out


def _not_well_html(ds) -> str:
    """A footnote under the summary: what ``not ended well`` counts, and those runs."""
    bad = _not_well(ds)
    k = int(bad.sum())
    if not k:
        return ""
    axes = list(ds["done"].dims)
    rows = []
    for idx in zip(*np.nonzero(bad.values), strict=True):
        sel = dict(zip(axes, idx, strict=True))
        row = {d: ds[d].values[i].item() for d, i in sel.items()}
        row["status"] = str(ds["status"].isel(sel).values.item())
        row["t_final"] = float(ds["t_final"].isel(sel).values)
        rows.append(row)
    more = f" (the first 50 of {k})" if k > 50 else ""
    return (
        f'<p class="muted">* not ended well: {k} of {int(ds["done"].sum())} done runs did '
        f"not reach a certified steady state (flows) or a stationary point (GD, optimizers); "
        f"they are marked with an x in the figures; a run that stopped before the end of "
        f"the time grid has no values after its <code>t_final</code> (NaN), so its end values "
        f"are left out of the means above. These runs{more}:</p>" + _table(rows[:50])
    )


def write_report(root: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write ``root/report.html`` (redrawing a sweep's figures first); returns its path."""
    root = Path(root)
    store = Store(root)
    man = store.manifest()
    parts = []
    status = store.status()
    name = man.get("name", root.name)
    parts.append(f"<h1>{html.escape(title or name)}</h1>")
    parts.append(f"<p>{html.escape(man.get('description', ''))}</p>")
    parts.append(
        f'<p class="muted">results folder <code>{html.escape(str(root.resolve()))}'
        f"</code>; created {html.escape(man.get('created', '?'))}; report written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}</p>"
    )
    parts.append(_status_html(status))
    if status.get("failures"):
        rows = []
        for key, p in list(status["failures"].items())[:50]:
            try:
                err = json.loads(Path(p).read_text()).get("error", "")
            except (OSError, ValueError):
                err = "(unreadable)"
            rows.append({"run": key, "error": err})
        parts.append("<h3>Failed runs</h3>" + _table(rows))
    if man.get("kind") == "reproduction":
        figs = _figures_in(root)
        summ = root / "summary.json"
        numbers = []
        if summ.exists():
            s = json.loads(summ.read_text())
            numbers = [{"quantity": k, "value": v} for k, v in _flatten(s.get("results", {}))]
            numbers.append({"quantity": "wall time (s)", "value": s.get("wall_time")})
        parts.append(
            "<h2>Figures</h2>"
            + ("".join(_img(p) for p in figs) or '<p class="muted">(no figures)</p>')
        )
        parts.append("<h2>Numbers</h2>" + _table(numbers))
    else:
        ds = load(root).load()
        made = plot_all(ds, root / "figures")
        figs = [paths[0] for paths in made.values()]
        parts.append(
            "<h2>Figures</h2>"
            + ("".join(_img(p) for p in figs) or '<p class="muted">(no figures)</p>')
        )
        parts.append("<h2>Summary</h2>" + _table(summary_table(ds)) + _not_well_html(ds))
    parts.append("<h2>Config as run</h2>" + _config_html(man, root))
    parts.append(
        "<h2>Software</h2>"
        + _table([{"package": k, "version": v} for k, v in man.get("versions", {}).items()])
    )
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title or name)} - rankbias report</title>"
        f"<style>{_CSS}</style><script>{_CHECK_JS}</script></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    return atomic_write_text(root / "report.html", page)
