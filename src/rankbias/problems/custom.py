r"""Your own loss: any differentiable JAX function ``f(W) -> scalar``."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validation import check_shape
from .base import Problem

__all__ = ["CustomLoss"]


class CustomLoss(Problem):
    """Any differentiable JAX function ``f(W) -> scalar`` of a matrix of shape ``shape``.

    ``convex`` states whether ``f`` is convex (default ``False``: GLRL then warns that its
    KKT stop certifies stationarity only). ``f`` is a static field: a new function object
    triggers a recompilation.
    """

    f: Callable = eqx.field(static=True)
    convex: bool = eqx.field(static=True)

    def __init__(self, f: Callable, shape, *, convex: bool = False):
        if not callable(f):
            raise ValueError(f"`f` must be callable, got {type(f).__name__}")
        self.shape = check_shape(shape, dense=True)  # W is dense in every solver
        probe = jax.eval_shape(f, jax.ShapeDtypeStruct(self.shape, jnp.float64))
        if probe.shape != ():
            raise ValueError(f"`f` must return a scalar, got an array of shape {probe.shape}")
        self.f = f
        self.convex = bool(convex)

    @property
    def is_convex(self) -> bool:
        return self.convex

    def loss(self, W):
        return self.f(W)
