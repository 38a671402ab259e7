"""Traced programs stored across processes: ``jax.export`` of rankbias's compiled solvers.

JAX's persistent compilation cache (:mod:`rankbias._cache`) stores XLA executables, but a
new process still traces and lowers the Python function before it can look one up: for a
diffrax solve that is most of a second-process call (measured 18.5 of 26.6 s for a 15 x 15
gradient flow on a loaded machine). :func:`aot_jit` removes that step. On a cache miss it
traces the function once with :func:`jax.export.export`, writes the serialized StableHLO
next to the compilation cache, and runs the program through the deserialized
:class:`jax.export.Exported`; a later process reads the file and calls it without tracing.
Both processes compile the same ``Exported.call`` module, so the persistent cache serves
the XLA compilation of the second one.

A file is named by the SHA-256 of: the function's module and name, a hash of rankbias's
source files, the versions of jax, jaxlib, equinox and diffrax, the backend and device
kind, ``jax_enable_x64``, ``EQX_ON_ERROR``, the argument tree (static fields included:
model shapes, solver names, ...) with the shape, dtype and weak type of each array leaf,
and the repr of every non-array leaf. Writes are atomic (:func:`rankbias._io.atomic_write`).
A file that cannot be read or deserialized, or whose avals differ, is ignored and
rewritten: never an error for the user.

Not stored (the function then runs as a plain :func:`equinox.filter_jit`): calls whose
static part has no stable text (a function or object printed with its address, e.g. an
``lr_schedule``), outputs with non-array leaves or custom pytree nodes, and programs that
``jax.export`` refuses (host callbacks, non-stable custom calls); these are counted in
:data:`STATS` (``"unsupported"``). Off with the compilation cache
(``RANKBIAS_JAX_CACHE=off``).

This process keeps the programs it ran in a table (one compiled executable each), at most
:func:`table_size` of them (:data:`ENV`, default :data:`DEFAULT_TABLE_SIZE`): past it the
least recently used program is dropped, with its executable, and a later call of its shapes
reads the file again (a deserialization and a hit of the persistent compilation cache, no
trace). Without a bound a process that compiles thousands of distinct shapes (a notebook
looping over sizes) reaches Linux's per-process limit of memory mappings
(``vm.max_map_count``, 65,530: each XLA CPU executable maps its own code) and crashes inside
XLA.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from ._cache import cache_dir
from ._io import atomic_write_bytes

__all__ = ["aot_jit", "aot_dir", "table_size", "STATS", "ENV", "DEFAULT_TABLE_SIZE"]

#: Counts of this process: ``stored`` (traced and written), ``loaded`` (read from disk),
#: ``memory`` (served from this process's table), ``rebuilt`` (a bad file replaced),
#: ``unsupported`` (run as a plain filter_jit), ``evicted`` (dropped from the full table).
STATS: dict[str, int] = dict(stored=0, loaded=0, memory=0, rebuilt=0, unsupported=0, evicted=0)
#: The environment variable that bounds this process's table of programs.
ENV = "RANKBIAS_PROGRAM_CACHE"
#: Programs a process keeps by default. Measured (2026-12-08, jax 0.10.2, CPU): a small
#: program maps 12 regions, and a gradient-descent shape with its two programs and the eager
#: operations around them (not in this table) ~150; 256 programs stay far below
#: ``vm.max_map_count`` (65,530) and above what a sweep of distinct shapes re-uses.
DEFAULT_TABLE_SIZE = 256
_FORMAT = "1"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: key -> compiled call, least recently used first (a dict keeps insertion order).
_TABLE: dict[str, Callable] = {}
_UNSUPPORTED: set[str] = set()


def table_size() -> int:
    """How many programs this process keeps compiled: ``$RANKBIAS_PROGRAM_CACHE`` (an integer
    ``>= 1``), else :data:`DEFAULT_TABLE_SIZE`. Read at every new program, so setting
    ``os.environ`` in a running process takes effect at once.

    Raises:
        ValueError: the variable is not an integer ``>= 1``.
    """
    text = os.environ.get(ENV)
    if text is None or not text.strip():
        return DEFAULT_TABLE_SIZE
    try:
        n = int(text.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(
            f"`{ENV}` must be an integer >= 1 (the number of compiled programs a process "
            f"keeps), got {text!r}: set it to e.g. {DEFAULT_TABLE_SIZE} or unset it"
        )
    return n


def _remember(key: str, call: Callable) -> None:
    """Put ``call`` in the table as the most recently used, dropping the least recently used
    programs past :func:`table_size` (their executables go with the last reference)."""
    size = table_size()
    _TABLE[key] = call
    while len(_TABLE) > size:
        del _TABLE[next(iter(_TABLE))]
        STATS["evicted"] += 1


def aot_dir() -> str | None:
    """The folder of the stored programs (``None``: off with the compilation cache)."""
    base = cache_dir()
    return None if base is None else os.path.join(base, "rankbias-export")


@functools.cache
def _environment() -> str:
    root = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
    versions = []
    for pkg in ("jax", "jaxlib", "equinox", "diffrax"):
        try:
            versions.append(f"{pkg}={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            versions.append(f"{pkg}=?")
    dev = jax.devices()[0]
    return "|".join(
        [_FORMAT, h.hexdigest(), *versions, jax.default_backend(), str(dev.device_kind)]
    )


def _key(fun: Callable, treedef, leaves: list, statics: list) -> str | None:
    """The file name of a call, or ``None`` when its static part has no stable text."""
    static_text = repr(statics)
    tree_text = str(treedef)
    if _ADDRESS.search(static_text) or _ADDRESS.search(tree_text):
        return None
    avals = [(tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False))) for x in leaves]
    text = "\n".join(
        [
            _environment(),
            f"{fun.__module__}.{fun.__qualname__}",
            f"x64={jax.config.jax_enable_x64}",  # pyright: ignore[reportAttributeAccessIssue]  # option attributes are not in the stub
            f"eqx={os.environ.get('EQX_ON_ERROR', '')}",
            tree_text,
            repr(avals),
            static_text,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path: str, in_avals: list) -> Any:
    """The stored :class:`jax.export.Exported`, or ``None`` (missing, corrupt, other avals)."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError:
        return None
    try:
        exp = jax.export.deserialize(bytearray(blob))
        ok = [(tuple(a.shape), str(a.dtype)) for a in exp.in_avals] == in_avals
    except Exception:  # any corruption: rebuild
        ok = False
    if not ok:
        STATS["rebuilt"] += 1
        return None
    return exp


def aot_jit(fun: Callable) -> Callable:
    """``equinox.filter_jit(fun)`` whose traced programs persist across processes.

    Array leaves of the arguments (``jax.Array``, NumPy arrays) are traced; every other leaf
    is static, as for :func:`equinox.filter_jit`. The result is the same as that of
    ``filter_jit(fun)`` bit for bit (one StableHLO program compiled by the same XLA).
    """
    plain = eqx.filter_jit(fun)

    @functools.wraps(fun)
    def wrapper(*args):
        folder = aot_dir()
        if folder is None:
            return plain(*args)
        dyn, static = eqx.partition(args, eqx.is_array)
        leaves, treedef = jax.tree_util.tree_flatten(dyn)
        statics = jax.tree_util.tree_leaves(static)
        key = _key(fun, treedef, leaves, statics)
        if key is None or key in _UNSUPPORTED:
            STATS["unsupported"] += 1
            return plain(*args)
        call = _TABLE.pop(key, None)
        if call is not None:
            _TABLE[key] = call  # the most recently used again
            STATS["memory"] += 1
            return call(*leaves)
        path = os.path.join(folder, key + ".jaxexport")
        in_avals = [(tuple(x.shape), str(x.dtype)) for x in leaves]
        exp = _read(path, in_avals)
        if exp is not None:
            STATS["loaded"] += 1
        else:

            def flat(*xs):
                return fun(*eqx.combine(jax.tree_util.tree_unflatten(treedef, list(xs)), static))

            flat.__name__ = flat.__qualname__ = fun.__name__
            specs = [
                jax.ShapeDtypeStruct(x.shape, x.dtype, weak_type=getattr(x, "weak_type", False))
                for x in leaves
            ]
            try:
                blob = jax.export.export(jax.jit(flat))(*specs).serialize()
                # Deserialized here too: both processes compile the same module, so the
                # persistent compilation cache serves the second one.
                exp = jax.export.deserialize(blob)
            except Exception:
                # non-array outputs, custom pytree nodes, host callbacks, unstable custom calls
                STATS["unsupported"] += 1
                _UNSUPPORTED.add(key)
                return plain(*args)
            try:
                atomic_write_bytes(Path(path), bytes(blob))
            except OSError:
                pass  # read-only or full disk: this process still uses the program
            STATS["stored"] += 1
        call = jax.jit(exp.call)
        _remember(key, call)
        return call(*leaves)

    return wrapper
