"""Experiment configs: the TOML schema, its validation, overrides and grid expansion.

Two kinds of config share a header (``name``, ``description``, ``kind``):

* ``kind = "reproduction"``: ``runner = "module:function"`` and a ``[params]`` table; the
  function ``f(out_dir, quick=False, **params) -> dict`` does everything itself.
* ``kind = "sweep"``: ``[problem]``, ``[model]``, ``[init]``, ``[dynamics]``, ``[sweep]`` and
  ``[record]`` tables (see :data:`SCHEMA` and ``docs/experiments.md``). :func:`expand` turns it
  into one fully resolved run config per point of the sweep.

Every error is a :class:`ConfigError` (a ``ValueError``) naming the key path, e.g.
``dynamics.lr must be > 0, got -1``.

This module is the public path of the names below; each is defined in a module of one job:
:mod:`~rankbias.experiments.schema` (the schema, generated from :mod:`rankbias.options`),
:mod:`~rankbias.experiments.validate` (validation and its messages),
:mod:`~rankbias.experiments.overrides` (``--set`` and ``[quick]``),
:mod:`~rankbias.experiments.toml_io` (read, write, compare) and
:mod:`~rankbias.experiments.expand` (runs and their keys). Code inside the package imports
those modules, not this one.
"""

from ..options import MAX_STEPS
from .errors import ConfigError, short
from .expand import (
    LEGACY_DEFAULTS,
    Axis,
    RunSpec,
    Sweep,
    _normalise_run,  # noqa: F401 - read by tests
    expand,
)
from .schema import _METHODS, ALIASES, DEFAULT_BATCH, METRICS, SCHEMA, schema_table  # noqa: F401 - read by tests
from .toml_io import (
    apply_overrides,
    apply_quick,
    config_diff,
    dump_toml,
    load_config,
    parse_config,
    read_config_text,
)
from .validate import check_custom, check_value, validate

_check_value = check_value  # the name before the split into modules

__all__ = [
    "ConfigError",
    "Axis",
    "Sweep",
    "RunSpec",
    "SCHEMA",
    "ALIASES",
    "load_config",
    "read_config_text",
    "parse_config",
    "validate",
    "apply_overrides",
    "apply_quick",
    "expand",
    "dump_toml",
    "config_diff",
    "check_custom",
    "short",
    "MAX_STEPS",
    "LEGACY_DEFAULTS",
]
