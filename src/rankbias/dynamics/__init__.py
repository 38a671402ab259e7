"""Dynamics: gradient descent and gradient flow on factorized models.

* :func:`gradient_descent`, :func:`gradient_descent_batch` (``_gd.py``)
* :func:`gradient_flow`, :func:`gradient_flow_batch` (``_flow.py``)
* :func:`train`, :func:`train_batch`: optax optimizers on the GD engine (``_train.py``)
* :func:`choose_backend`: dense or sparse (factor-form completion) evaluation (``_sparse.py``)
* :class:`RKC`, the stiff-capable stabilised explicit solver (``_rkc.py``)
"""

from ._common import PrecisionWarning, ResolutionWarning
from ._flow import SOLVERS, flow_defaults, gradient_flow, gradient_flow_batch, save_times
from ._gd import (
    MAX_STEPS,
    DivergenceError,
    batch_strategy,
    gradient_descent,
    gradient_descent_batch,
    save_steps,
    sharpness,
    stationarity,
)
from ._rkc import RKC
from ._sparse import BACKENDS, choose_backend
from ._train import train, train_batch

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
