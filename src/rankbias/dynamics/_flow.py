"""The old home of the gradient-flow engine, now :mod:`rankbias.dynamics.flow` (one job per
module). Kept so that existing imports work: nothing inside rankbias should import it (import
from the module that defines a name instead).

``from rankbias.dynamics._flow import ...`` still gives the public functions and the names
that were imported from here: :func:`gradient_flow`, :func:`gradient_flow_batch`,
:func:`save_times`, :func:`flow_defaults`, ``SOLVERS``, ``MAX_SAVE``, ``MAX_STEPS_CAP``,
``DENSE_LIMIT``, ``ATOL_MAX_RATIO``, and the private ``_vector_field``,
``_check_initial_state``, ``_steady_event``, ``_tols``.
"""

from __future__ import annotations

from ..options import MAX_SAVE, MAX_STEPS_CAP, SOLVERS
from .flow.api import gradient_flow, gradient_flow_batch
from .flow.initial import check_initial_state as _check_initial_state
from .flow.precision import (
    ATOL_MAX_RATIO,
    below_rounding_floor,
    default_atol,
    flow_defaults,
    warn_resolution,
)
from .flow.save import check_save_at, save_times
from .flow.settings import traced_tolerances as _tols
from .flow.solvers import DENSE_LIMIT, DENSE_STAGES, KRYLOV_RANK, vector_field as _vector_field
from .flow.steady import steady_event as _steady_event

__all__ = [
    "gradient_flow",
    "gradient_flow_batch",
    "SOLVERS",
    "save_times",
    "flow_defaults",
    "check_save_at",
    "default_atol",
    "below_rounding_floor",
    "warn_resolution",
    "MAX_SAVE",
    "MAX_STEPS_CAP",
    "DENSE_LIMIT",
    "DENSE_STAGES",
    "KRYLOV_RANK",
    "ATOL_MAX_RATIO",
    "_check_initial_state",
    "_steady_event",
    "_tols",
    "_vector_field",
]
