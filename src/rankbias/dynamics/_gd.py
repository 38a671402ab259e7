"""The old home of gradient descent, kept importable: its names now live in
:mod:`rankbias.dynamics.descent` (one job per module). Internals import the defining module;
this module only re-exports for code written against the old path."""

from __future__ import annotations

from ..options import MAX_SAVE, MAX_STEPS
from .descent.api import gradient_descent, gradient_descent_batch
from .descent.batching import VMAP_MAX_DIM, batch_strategy
from .descent.grid import check_save_steps, record_steps, save_steps
from .descent.hints import DivergenceError, Rerun, check_divergence, end_stationarity
from .descent.loop import LoopConfig as _GDConfig, _run, _run_batched, _run_jit
from .descent.rules import GDRule as _GDRule
from .descent.settings import check_steps
from .descent.sharpness import sharpness
from .descent.stationarity import (
    DESCENT_RTOL,
    GRAD_RTOL,
    RISE_FRACTION,
    SADDLE_RTOL,
    STALL_RATIO,
    loop_stationarity,
    stationarity,
    warn_not_stationary,
)

# Everything here is a re-export (the public names and those that other modules, tests and
# benchmarks import from this path).
__all__ = [
    "gradient_descent",
    "gradient_descent_batch",
    "DivergenceError",
    "save_steps",
    "sharpness",
    "MAX_SAVE",
    "MAX_STEPS",
    "VMAP_MAX_DIM",
    "batch_strategy",
    "check_save_steps",
    "record_steps",
    "Rerun",
    "check_divergence",
    "end_stationarity",
    "_GDConfig",
    "_run",
    "_run_batched",
    "_run_jit",
    "_GDRule",
    "check_steps",
    "DESCENT_RTOL",
    "GRAD_RTOL",
    "RISE_FRACTION",
    "SADDLE_RTOL",
    "STALL_RATIO",
    "loop_stationarity",
    "stationarity",
    "warn_not_stationary",
]
