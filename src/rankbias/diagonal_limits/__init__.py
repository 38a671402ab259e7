"""The ``alpha -> 0`` limits of diagonal linear networks and comparisons of flows with them.

* :func:`saddle_to_saddle`: Pesme & Flammarion (NeurIPS 2023), depth 2;
* :func:`diagonal_limit`: Zhao, Wang, Yang, Bai, Zhang (ICML 2026), Algorithm 1, any depth;
* :func:`growth_thresholds`, :func:`diagonal_time_scale`: their thresholds ``t^+-`` and clock
  ``h(alpha)``;
* comparisons on arrays: :func:`limit_path_distance`, :func:`measured_jump_times`,
  :func:`activation_order`, :func:`fit_distance_rate`.

Everything works on numpy arrays ``X`` ``(n, d)``, ``y`` ``(n,)``: no model or engine is
imported, so any flow (rankbias's or an independent integrator) can be compared.
"""

from ._api import diagonal_limit, saddle_to_saddle
from ._compare import (
    RateFit,
    activation_order,
    fit_distance_rate,
    limit_path_distance,
    measured_jump_times,
)
from ._result import DiagonalLimit
from ._thresholds import default_init, diagonal_time_scale, growth_thresholds

__all__ = [
    "saddle_to_saddle",
    "diagonal_limit",
    "DiagonalLimit",
    "growth_thresholds",
    "diagonal_time_scale",
    "default_init",
    "limit_path_distance",
    "measured_jump_times",
    "activation_order",
    "fit_distance_rate",
    "RateFit",
]
