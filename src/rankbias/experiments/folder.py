"""Which results folder an experiment may write into, and the manifest it leaves there.

A results folder holds one experiment. ``rankbias run`` into a folder that holds the same
resolved config resumes it; into a folder that holds another config it refuses (the runs
of both would mix under one manifest) unless asked to ``add`` the new config, in which case
the earlier config is kept in the manifest's ``history``. A folder that exists, is not empty
and is not a rankbias results folder (the working folder, a home directory) is refused, as
is an empty ``--out``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._io import canonical_json, is_temp_name
from ..store._errors import StoreError
from ..store._manifest import LOCK, MANIFEST
from .errors import ConfigError, short
from .toml_io import config_diff, same_spelling

__all__ = ["ResultsFolderError", "check_out", "claim"]


class ResultsFolderError(ConfigError):
    """The results folder cannot take this experiment (empty path, foreign folder, another
    experiment's store); the message says why and what to do instead."""


def _out_path(out: str | os.PathLike) -> Path:
    """The results folder ``out`` as a path, refusing an empty name (which would be the
    working folder); raises :class:`ResultsFolderError`."""
    if str(out).strip() == "":
        raise ResultsFolderError("--out is empty; name a results folder, e.g. --out results/my")
    return Path(out)


def check_out(out: str | os.PathLike, *, locked: bool = True) -> Path:
    """The results folder ``out`` as a path, refusing an empty name and a folder that is
    neither empty nor a rankbias store; raises :class:`ResultsFolderError`.

    The lock file and writers' temp files (``.*.tmp``) do not count as content. The verdict
    holds only under the folder's lock (``locked``): a writer that holds it may be creating
    the folder (its ``runs/`` appears before ``experiment.json``). Without the lock (a cheap
    first check that touches nothing), a folder with a lock file is not judged."""
    path = _out_path(out)
    if path.is_dir() and not (path / MANIFEST).exists():
        try:
            names = os.listdir(path)
        except OSError as e:
            raise ResultsFolderError(f"cannot list {path}: {e.strerror or e}") from None
        if not locked and LOCK in names:
            return path  # being written: judged again under the lock
        entries = [e for e in names if e != LOCK and not is_temp_name(e)]
        if entries:
            raise ResultsFolderError(
                f"{path} is not empty and is not a rankbias results folder (no {MANIFEST}; it "
                f"holds {short(', '.join(sorted(entries)[:5]), 60)}); choose a new or empty "
                f"folder for --out"
            )
    return path


def _same(a: dict, b: dict) -> bool:
    return canonical_json(same_spelling(a)) == canonical_json(same_spelling(b))


def claim(store, manifest: dict, *, add: bool = False) -> dict:
    """The manifest to write into ``store`` for an experiment described by ``manifest``.

    Same config as the folder's: the folder is resumed (``created`` and ``history`` kept,
    custom metric names merged). Another config: :class:`ResultsFolderError` naming the folder,
    the differences and the ways out, unless ``add`` is true: then the folder's current
    experiment is appended to ``history`` (name, config, run keys, created) and the new one
    becomes current. Reproductions and sweeps never share a folder.
    """
    if not (store.root / MANIFEST).exists():
        return manifest
    try:
        old = store.manifest()
    except StoreError as e:
        raise ResultsFolderError(f"{e}; repair or remove it, or choose another --out") from None
    new = dict(manifest)
    old_kind, new_kind = old.get("kind", "sweep"), new.get("kind", "sweep")
    same_quick = bool(old.get("quick")) == bool(new.get("quick"))  # older manifests: no key
    if _same(old.get("config", {}), new["config"]) and same_quick:
        new["created"] = old.get("created", new["created"])
        if old.get("history"):
            new["history"] = old["history"]
        if old.get("scalar_metrics") and "scalar_metrics" in new:
            new["scalar_metrics"] = sorted(set(new["scalar_metrics"]) | set(old["scalar_metrics"]))
        return new
    what = f"{old.get('name', '?')!s}, a {old_kind}"
    if old_kind == "sweep":
        what += f" of {len(set(old.get('runs', [])))} runs"
    diff = config_diff(old.get("config", {}), new["config"])
    if not same_quick:
        diff.append(f"--quick: {bool(old.get('quick'))} -> {bool(new.get('quick'))}")
    lines = "\n".join(f"  {d}" for d in diff)
    if not add or old_kind != "sweep" or new_kind != "sweep":
        way = (
            "use a new --out folder"
            if old_kind != new_kind or new_kind != "sweep"
            else "use a new --out folder, or --add to run this config into the same folder "
            "(both configs are then recorded in its experiment.json)"
        )
        raise ResultsFolderError(
            f"results folder {store.root} holds another experiment ({what}); "
            f"the config differs:\n{lines}\n{way}"
        )
    entry = {
        "name": old.get("name"),
        "config": old.get("config"),
        "quick": old.get("quick"),
        "runs": old.get("runs", []),
        "created": old.get("created"),
    }
    history = [h for h in old.get("history", []) if not _same(h.get("config", {}), new["config"])]
    new["history"] = history + [entry]
    return new
