"""Suite-wide fixtures."""

from __future__ import annotations

import gc

import jax
import pytest

from rankbias import _aot


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop this module's compiled programs when it ends.

    Every XLA CPU executable keeps its machine code in memory mappings of its own; one test
    process that held every program of the suite reached Linux's per-process limit
    (``vm.max_map_count``, 65,530: measured 31,000 mappings at a third of the suite) and then
    crashed inside XLA (SIGSEGV while compiling or (de)serializing a program). Programs are
    shared within a module; the next module reloads what it needs from the persistent
    compilation cache. (``rankbias._aot``'s table alone is bounded, ``RANKBIAS_PROGRAM_CACHE``;
    JAX's caches of every other compiled function are not.)"""
    yield
    _aot._TABLE.clear()
    jax.clear_caches()
    gc.collect()
