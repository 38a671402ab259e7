"""Dynamics: gradient descent and gradient flow on factorized models.

* :func:`gradient_descent`, :func:`gradient_descent_batch` (the :mod:`.descent` subpackage)
* :func:`gradient_flow`, :func:`gradient_flow_batch` (the :mod:`.flow` subpackage)
* :func:`train`, :func:`train_batch`: optax optimizers on the GD engine (``_train.py``)
* :func:`choose_backend`: dense or sparse (factor-form completion) evaluation (``_sparse.py``)
* :class:`RKC`, the stiff-capable stabilised explicit solver (``_rkc.py``)
"""

from ..options import BACKENDS, MAX_STEPS, SOLVERS
from ._common import PrecisionWarning, ResolutionWarning
from ._rkc import RKC, spectral_radius
from ._sparse import choose_backend
from ._train import train, train_batch
from .descent.api import gradient_descent, gradient_descent_batch
from .descent.batching import batch_strategy
from .descent.grid import save_steps
from .descent.hints import DivergenceError
from .descent.sharpness import sharpness
from .descent.stationarity import stationarity
from .flow.api import gradient_flow, gradient_flow_batch
from .flow.precision import flow_defaults
from .flow.save import save_times

__all__ = [
    "gradient_flow",
    "gradient_flow_batch",
    "gradient_descent",
    "gradient_descent_batch",
    "batch_strategy",
    "DivergenceError",
    "PrecisionWarning",
    "ResolutionWarning",
    "RKC",
    "spectral_radius",
    "BACKENDS",
    "choose_backend",
    "SOLVERS",
    "save_times",
    "save_steps",
    "MAX_STEPS",
    "stationarity",
    "sharpness",
    "flow_defaults",
    "train",
    "train_batch",
]
