"""Experiments as data: TOML configs, sweeps, executors and the named experiments.

>>> import rankbias as rb
>>> rb.experiments.run("quick-demo", "results/demo")      # doctest: +SKIP
>>> ds = rb.experiments.load("results/demo")              # doctest: +SKIP

``load`` returns an :class:`xarray.Dataset` indexed by the sweep's axes and time.
"""

from ..store import load
from . import config  # noqa: F401 - the public module path rankbias.experiments.config
from .errors import ConfigError
from .executors import EXECUTORS, ExecutorError, make_executor, run_sweep
from .expand import Axis, RunSpec, Sweep, expand
from .folder import ResultsFolderError
from .registry import (
    Experiment,
    ReproductionError,
    UnknownExperimentError,
    list_experiments,
    resolve,
    run_experiment,
    run_reproduction,
)
from .runner import Chunk, build_model, build_problem, plan_chunks, run_chunk
from .schema import ALIASES
from .toml_io import apply_overrides, apply_quick, dump_toml, load_config, parse_config
from .validate import validate

run = run_experiment

__all__ = [
    "load",
    "run",
    "run_experiment",
    "run_sweep",
    "run_reproduction",
    "list_experiments",
    "resolve",
    "expand",
    "validate",
    "apply_overrides",
    "load_config",
    "parse_config",
    "ConfigError",
    "ExecutorError",
    "UnknownExperimentError",
    "Experiment",
    "Sweep",
    "Axis",
    "RunSpec",
    "Chunk",
    "plan_chunks",
    "run_chunk",
    "build_problem",
    "build_model",
    "make_executor",
    "EXECUTORS",
    "ALIASES",
    "apply_quick",
    "dump_toml",
    "ResultsFolderError",
    "ReproductionError",
]
