"""Named experiments: the TOML configs shipped in ``rankbias/experiments/configs/``.

:func:`list_experiments` reads every ``*.toml`` there (sweeps and paper reproductions);
:func:`resolve` turns a name or a path into a validated config; :func:`run_experiment` runs
either kind into a results folder.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .._io import atomic_write_text, canonical_json
from ..store import MANIFEST, Store, versions
from .errors import ConfigError, short
from .executors import run_sweep
from .expand import LEGACY_DEFAULTS, Sweep, expand
from .folder import check_out, claim
from .toml_io import (
    apply_overrides,
    apply_quick,
    dump_toml,
    load_config,
    parse_config,
    read_config_text,
)

__all__ = [
    "Experiment",
    "CONFIG_DIR",
    "list_experiments",
    "resolve",
    "run_experiment",
    "run_reproduction",
    "UnknownExperimentError",
    "ReproductionError",
]

CONFIG_DIR = Path(__file__).parent / "configs"


class UnknownExperimentError(ConfigError):
    """No named experiment and no config file by that name."""


class ReproductionError(RuntimeError):
    """A reproduction's runner raised; the message names the experiment and the error."""


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: str
    description: str
    path: Path


def _config_dirs(config_dir: Path | None) -> list[Path]:
    if config_dir is not None:
        return [Path(config_dir)]
    extra = [Path(p) for p in os.environ.get("RANKBIAS_CONFIG_PATH", "").split(os.pathsep) if p]
    return [CONFIG_DIR] + extra


def list_experiments(config_dir: Path | None = None) -> list[Experiment]:
    """Every named experiment, sorted by name: the shipped configs, then those in the folders
    of ``$RANKBIAS_CONFIG_PATH`` (``os.pathsep``-separated). A broken config is listed with its
    error as description rather than hiding the others."""
    out = []
    files = [p for d in _config_dirs(config_dir) for p in sorted(d.glob("*.toml"))]
    for p in files:
        try:
            raw = load_config(p)
            out.append(
                Experiment(raw["name"], raw.get("kind", "sweep"), raw.get("description", ""), p)
            )
        except ConfigError as e:
            out.append(Experiment(p.stem, "invalid", f"invalid config: {e}", p))
    return out


def resolve(
    name_or_path: str | os.PathLike,
    overrides: list[str] | None = None,
    config_dir: Path | None = None,
) -> tuple[dict, str]:
    """A config (validated, overrides applied) and its TOML text, from a name or a file."""
    s = str(name_or_path)
    p = Path(s)
    try:
        exists = p.exists()
    except OSError:  # e.g. a name too long to be a path: then it is not a file
        exists = False
    if s.endswith(".toml") or exists:
        if not p.is_file():
            raise UnknownExperimentError(f"config file not found: {short(s)}")
        text = read_config_text(p)
        raw = parse_config(text, source=s)
    else:
        known = {e.name: e for e in list_experiments(config_dir)}
        if s not in known:
            names = ", ".join(sorted(known)) or "(none)"
            raise UnknownExperimentError(
                f"unknown experiment {short(s)}; `rankbias list` shows the "
                f"named experiments: {names}"
            )
        text = read_config_text(known[s].path)
        raw = parse_config(text, source=str(known[s].path))
    if overrides:
        raw = apply_overrides(raw, overrides)
    return raw, text


def _runner(spec: str):
    mod, fn = spec.split(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except ImportError as e:
        raise ConfigError(f"runner {spec!r}: cannot import module {mod!r}: {e}") from None
    except AttributeError:
        raise ConfigError(f"runner {spec!r}: module {mod!r} has no function {fn!r}") from None


def run_reproduction(
    raw: dict,
    out: str | os.PathLike,
    *,
    quick: bool = False,
    config_text: str | None = None,
    log=None,
    workers: int | None = None,
) -> dict:
    """Call ``runner(out_dir, quick=quick, **params)`` and store its summary with the config
    and versions in ``out/summary.json`` (``out/experiment.json`` marks the folder).

    ``workers`` (``--workers``), if given, is passed to a runner that takes a ``workers``
    argument (a :class:`ConfigError` for one that does not). It is how the runs are computed,
    not what they are: it is not part of the recorded config, so a folder resumes with any
    number of workers.

    The folder is checked and locked as for a sweep (:func:`~rankbias.experiments.run_sweep`).
    Raises :class:`ReproductionError` if the runner raises (no summary is written).
    """
    store = Store(check_out(out, locked=False))
    fn = _runner(raw["runner"])
    params = dict(raw.get("params", {}))
    if workers is not None:
        if "workers" not in inspect.signature(fn).parameters:
            raise ConfigError(
                f"--workers: reproduction {raw['name']!r} runs in one process (its runner "
                f"{raw['runner']} takes no `workers`); leave --workers out"
            )
        params["workers"] = workers
    man = {
        "format": 1,
        "kind": "reproduction",
        "name": raw["name"],
        "description": raw.get("description", ""),
        "config": raw,
        "quick": quick,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with store.lock(log):
        check_out(out)  # under the lock: another writer may be creating the folder
        store.create()
        store.clean_temp_files(log)
        man = claim(store, man)
        store.write_manifest(man)
        atomic_write_text(
            Path(out) / "config.toml", config_text if config_text is not None else dump_toml(raw)
        )
        t0 = time.perf_counter()
        try:
            result = fn(Path(out), quick=quick, **params)
        except (KeyboardInterrupt, OSError):
            raise
        except Exception as e:  # noqa: BLE001 - the runner's own failure, reported in one line
            raise ReproductionError(
                f"reproduction {raw['name']!r} failed in {raw['runner']}: "
                f"{type(e).__name__}: {_clip(str(e))} (set "
                f"RANKBIAS_DEBUG=1 for the traceback)"
            ) from e
        wall = time.perf_counter() - t0
        summary = {
            "name": raw["name"],
            "quick": quick,
            "wall_time": wall,
            "results": result if isinstance(result, dict) else {"result": result},
            "config": raw,
            "versions": man["versions"],
        }
        atomic_write_text(Path(out) / "summary.json", json.dumps(summary, indent=1, default=_jd))
    return summary


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _jd(o):
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def run_experiment(
    name_or_path,
    out,
    *,
    overrides=None,
    quick: bool = False,
    executor: str = "inprocess",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    config_dir: Path | None = None,
    add: bool = False,
    log=None,
) -> dict:
    """Run a named experiment or a TOML config file into ``out``; returns a status summary.

    ``overrides`` (``KEY=VALUE`` strings, as ``--set``) and, for a sweep, ``quick`` (its
    ``[quick]`` table; a :class:`ConfigError` if it has none) are applied first; the folder
    then records the config as run. ``add`` lets a sweep join a folder that holds another
    config (both are recorded); ``log`` receives one-line progress messages. ``workers``: a
    sweep's executor processes, or a reproduction's (one whose runner takes ``workers``).
    """
    raw, _ = resolve(name_or_path, overrides, config_dir)
    if raw.get("kind") == "reproduction":
        return run_reproduction(raw, out, quick=quick, log=log, workers=workers)
    if quick:
        raw = apply_quick(raw)
    sweep = _keep_stored_keys(expand(raw), out)
    return run_sweep(
        sweep,
        out,
        executor=executor,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        add=add,
        quick=quick,
        log=log,
    )


def _keep_stored_keys(sweep: Sweep, out) -> Sweep:
    """``sweep``, or the same config expanded with the schema's earlier defaults
    (:data:`~rankbias.experiments.expand.LEGACY_DEFAULTS`) when ``out`` holds exactly those
    runs: a folder written before a default changed (``dynamics.n_save`` 100 -> 200) is
    resumed as it was computed, not silently re-computed under new keys."""
    try:
        man = json.loads((Path(out) / MANIFEST).read_text())
    except (OSError, ValueError):
        return sweep  # no folder yet, or one that claim() will judge
    if not isinstance(man, dict) or man.get("kind", "sweep") != "sweep":
        return sweep
    stored = set(man.get("runs") or [])
    if not stored or stored == {r.key for r in sweep.runs}:
        return sweep
    if canonical_json(man.get("config")) != canonical_json(sweep.raw):
        return sweep
    legacy = expand(sweep.raw, defaults=LEGACY_DEFAULTS)
    return legacy if {r.key for r in legacy.runs} == stored else sweep
