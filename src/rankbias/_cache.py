"""JAX's persistent compilation cache, on by default for rankbias.

A second Python process that runs the same shapes loads the compiled solvers from disk
instead of compiling them again. The folder is, in order:

* left alone if JAX already has one (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config.update("jax_compilation_cache_dir", ...)`` before ``import rankbias``);
* ``$RANKBIAS_JAX_CACHE`` if set (``0``, ``off``, ``false``, ``no`` or empty: no cache);
* ``$XDG_CACHE_HOME/rankbias/jax``, else ``~/.cache/rankbias/jax``.

Every compilation is cached (:data:`MIN_COMPILE_SECS` = 0; JAX's default, 1 s, skips many
of rankbias's smaller solvers, which still cost 0.2-1 s each, and the ~30 small eager
operations of a GLRL call, 1 s of a second process's 2 s: GLRL 30 x 30 in a second process
went from 2.0 to 1.1 s, for 30 files and 0.36 MB of cache).
"""

from __future__ import annotations

import os

import jax

__all__ = ["cache_dir", "setup_cache", "MIN_COMPILE_SECS", "ENV"]

ENV = "RANKBIAS_JAX_CACHE"
MIN_COMPILE_SECS = 0.0
_OFF = ("", "0", "off", "false", "no", "none")


def _default_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rankbias", "jax")


def setup_cache() -> str | None:
    """Turn the persistent cache on (see the module docstring); returns its folder or
    ``None`` (disabled, or the folder cannot be created: then nothing is cached)."""
    configured = jax.config.jax_compilation_cache_dir  # pyright: ignore[reportAttributeAccessIssue]  # option attributes are not in the stub
    if configured:
        return configured
    env = os.environ.get(ENV)
    if env is not None and env.strip().lower() in _OFF:
        return None
    path = os.path.abspath(os.path.expanduser(env)) if env is not None else _default_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    if jax.config.jax_persistent_cache_min_compile_time_secs > MIN_COMPILE_SECS:  # pyright: ignore[reportAttributeAccessIssue]  # option attributes are not in the stub
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    return path


def cache_dir() -> str | None:
    """The folder of JAX's persistent compilation cache in this process (``None``: off)."""
    return jax.config.jax_compilation_cache_dir or None  # pyright: ignore[reportAttributeAccessIssue]  # option attributes are not in the stub
