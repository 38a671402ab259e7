"""The old home of the gradient-flow engine, now the :mod:`rankbias.dynamics.flow` subpackage
(one job per module). Kept so that existing imports work; nothing inside rankbias should
import it (import from the module that defines a name instead).

Still importable from here: :func:`gradient_flow`, :func:`gradient_flow_batch`,
:func:`save_times`, :func:`flow_defaults`, ``SOLVERS``, ``MAX_SAVE``, ``MAX_STEPS_CAP``,
``DENSE_LIMIT``, ``ATOL_MAX_RATIO``, :func:`check_save_at`, :func:`default_atol`, and the
private ``_vector_field`` (now :func:`rankbias.dynamics.flow.solvers.vector_field`).
"""

from __future__ import annotations

from ..options import MAX_SAVE, MAX_STEPS_CAP, SOLVERS
from .flow.api import gradient_flow, gradient_flow_batch
from .flow.precision import ATOL_MAX_RATIO, default_atol, flow_defaults
from .flow.save import check_save_at, save_times
from .flow.solvers import DENSE_LIMIT, vector_field as _vector_field

__all__ = [
    "gradient_flow",
    "gradient_flow_batch",
    "SOLVERS",
    "save_times",
    "flow_defaults",
    "check_save_at",
    "default_atol",
    "MAX_SAVE",
    "MAX_STEPS_CAP",
    "DENSE_LIMIT",
    "ATOL_MAX_RATIO",
    "_vector_field",
]
