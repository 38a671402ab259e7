"""rankbias: the implicit low-rank bias of gradient descent/flow in matrix factorization.

Importing rankbias turns on JAX's float64 mode (``jax_enable_x64``): every computation is
float64 unless a function is asked for ``dtype=float32``; and JAX's persistent compilation
cache, in ``~/.cache/rankbias/jax`` unless JAX already has a cache folder
(``RANKBIAS_JAX_CACHE`` moves it, ``RANKBIAS_JAX_CACHE=0`` turns it off; see
:mod:`rankbias._cache`).
"""

from ._startup import guard as _guard_startup

_guard_startup()  # the `rankbias` command only: a Ctrl-C during the imports below is one line

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from ._cache import cache_dir, setup_cache as _setup_cache

_setup_cache()

# experiments: xarray/dask load lazily
from . import (
    baselines,
    dynamics,
    experiments,
    metrics,
    models,
    optimizers,
    problems,
    ratings,
    splits,
    theory,
)
from ._version import __version__
from .compare import compare_with_glrl
from .diagonal import DiagonalNetwork
from .diagonal_limits import (
    DiagonalLimit,
    activation_order,
    diagonal_limit,
    diagonal_time_scale,
    fit_distance_rate,
    limit_path_distance,
    measured_jump_times,
    saddle_to_saddle,
)
from .dynamics import (
    RKC,
    DivergenceError,
    PrecisionWarning,
    ResolutionWarning,
    gradient_descent,
    gradient_descent_batch,
    gradient_flow,
    gradient_flow_batch,
    sharpness,
    train,
    train_batch,
)
from .dynamics._validation_stop import EarlyStopping
from .early_stopping import early_stopping
from .flow_distance import distance_to_flow
from .glrl import glrl
from .metrics import effective_rank, singular_values
from .models import DeepFactorization, SymmetricFactorization
from .problems import (
    CustomLoss,
    LinearRegression,
    MatrixCompletion,
    MatrixEstimation,
    MatrixSensing,
    Problem,
    matrix_from_spectrum,
    random_low_rank,
)
from .status import RunStatus
from .trajectory import Trajectory

__all__ = [
    "Problem",
    "MatrixCompletion",
    "MatrixSensing",
    "MatrixEstimation",
    "CustomLoss",
    "random_low_rank",
    "matrix_from_spectrum",
    "DeepFactorization",
    "SymmetricFactorization",
    "DiagonalNetwork",
    "LinearRegression",
    "gradient_flow",
    "gradient_flow_batch",
    "gradient_descent",
    "gradient_descent_batch",
    "DivergenceError",
    "PrecisionWarning",
    "ResolutionWarning",
    "RKC",
    "sharpness",
    "effective_rank",
    "singular_values",
    "Trajectory",
    "RunStatus",
    "EarlyStopping",
    "train",
    "train_batch",
    "distance_to_flow",
    "optimizers",
    "theory",
    "early_stopping",
    "experiments",
    "glrl",
    "compare_with_glrl",
    "baselines",
    "ratings",
    "splits",
    "cache_dir",
    "saddle_to_saddle",
    "diagonal_limit",
    "DiagonalLimit",
    "diagonal_time_scale",
    "limit_path_distance",
    "measured_jump_times",
    "activation_order",
    "fit_distance_rate",
]
