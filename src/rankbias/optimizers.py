r"""Optimizers for :func:`rankbias.train`: GroupRMSprop and the named optax optimizers.

* :func:`group_rmsprop`: the default optimizer of the Arora, Cohen, Hu & Luo (2019) code, as an
  optax ``GradientTransformation``: one adaptive step size shared by all parameters,

  .. math::

      v_k = \alpha v_{k-1} + (1 - \alpha) \sum_j \|g_{j,k}\|_F^2, \qquad
      \eta_k = \frac{\mathrm{lr}}{\sqrt{v_k / (1 - \alpha^k)} + \varepsilon}, \qquad
      W_{j,k} = W_{j,k-1} - \eta_k\, g_{j,k}

  (``v_0 = 0``, ``k = 1, 2, ...``; ``g_{j,k}`` the gradient of factor ``j`` at step ``k``).
* :data:`OPTIMIZERS`: the names :func:`rankbias.train` accepts (``"sgd"``, ``"momentum"``,
  ``"nesterov"``, ``"adam"``, ``"rmsprop"``, ``"group_rmsprop"``), each with its numeric
  hyper-parameters and defaults. Named optimizers are built *inside* the compiled loop from
  traced hyper-parameters, so a sweep over ``lr`` (or ``b1``...) does not recompile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "group_rmsprop",
    "GroupRMSpropState",
    "OPTIMIZERS",
    "make_optimizer",
    "check_hyperparams",
]


class GroupRMSpropState(NamedTuple):
    """``num_steps``: steps taken ``k``; ``square_avg``: ``v_k``; ``step_size``: the last ``eta_k``."""

    num_steps: jax.Array
    square_avg: jax.Array
    step_size: jax.Array


def group_rmsprop(
    learning_rate: float | Callable = 1e-3, alpha: float = 0.99, eps: float = 1e-6
) -> optax.GradientTransformation:
    r"""GroupRMSprop (Arora et al. 2019): one RMSprop step size for all parameters together.

    ``v_k = alpha v_{k-1} + (1 - alpha) sum_j ||g_j||^2`` (the squared norm of the whole
    gradient), ``eta_k = lr / (sqrt(v_k / (1 - alpha^k)) + eps)``, update ``-eta_k g``: plain
    GD with a step that adapts to the gradient's overall scale, so the path stays that of
    gradient descent (every factor moves along its gradient) and the effective time
    ``sum_k eta_k`` is defined. The Arora et al. code's defaults are ``alpha = 0.99``,
    ``eps = 1e-6``; their experiments use ``lr = 1e-3``.

    Parameters
    ----------
    learning_rate: ``lr`` (a scalar, possibly traced) or an optax schedule ``k -> lr_k``
        (``k = 0, 1, ...``).
    alpha: EMA decay of the squared gradient norm, in ``[0, 1)``.
    eps: added to the root, ``>= 0``.

    Returns
    -------
    optax.GradientTransformation whose state (:class:`GroupRMSpropState`) carries ``eta_k``.

    Raises
    ------
    ValueError: for a non-positive ``learning_rate``, ``alpha`` outside ``[0, 1)`` or a
        negative ``eps`` (checked when they are Python numbers).
    """
    if all(isinstance(v, (int, float)) for v in (learning_rate, alpha, eps)):
        _check_numbers("group_rmsprop", {"lr": learning_rate, "alpha": alpha, "eps": eps})

    def init(params):
        leaves = jax.tree_util.tree_leaves(params)
        dt = jnp.result_type(*leaves) if leaves else jnp.float64
        z = jnp.zeros((), dt)
        return GroupRMSpropState(jnp.zeros((), jnp.int64), z, z)

    def update(updates, state, params=None):
        del params
        sq = sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(updates))
        v = alpha * state.square_avg + (1 - alpha) * sq
        count = state.num_steps + 1
        lr = learning_rate(state.num_steps) if callable(learning_rate) else learning_rate
        eta = lr / (jnp.sqrt(v / (1 - alpha**count)) + eps)
        return (
            jax.tree_util.tree_map(lambda g: -eta * g, updates),
            GroupRMSpropState(count, v, jnp.asarray(eta, v.dtype)),
        )

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------------
# Named optimizers

_UNIT = ("unit", 0.0, 1.0)  # in [0, 1)


@dataclass(frozen=True)
class _Named:
    build: Callable  # hyper (dict of scalars, maybe traced) -> GradientTransformation
    defaults: dict  # numeric hyper-parameter -> (default, check)
    # effective step of step k (0-based) from (state after the update, hyper, k); None: undefined
    effective: Callable | None
    doc: str


def _momentum_eff(h, k):
    # Heavy ball under a constant gradient: the k-th update is lr (1 - b^(k+1)) / (1 - b) g.
    b = h["momentum"]
    return h["lr"] * (1 - b ** (k + 1)) / (1 - b)


def _nesterov_eff(h, k):
    b = h["momentum"]
    return h["lr"] * (1 + b * (1 - b ** (k + 1)) / (1 - b))


OPTIMIZERS: dict[str, _Named] = {
    "sgd": _Named(
        lambda h: optax.sgd(h["lr"]),
        {},
        lambda s, h, k: h["lr"],
        "optax.sgd(lr): params - lr * grad",
    ),
    "momentum": _Named(
        lambda h: optax.sgd(h["lr"], momentum=h["momentum"]),
        {"momentum": (0.9, _UNIT)},
        lambda s, h, k: _momentum_eff(h, k),
        "optax.sgd(lr, momentum): heavy ball",
    ),
    "nesterov": _Named(
        lambda h: optax.sgd(h["lr"], momentum=h["momentum"], nesterov=True),
        {"momentum": (0.9, _UNIT)},
        lambda s, h, k: _nesterov_eff(h, k),
        "optax.sgd(lr, momentum, nesterov=True)",
    ),
    "adam": _Named(
        lambda h: optax.adam(h["lr"], b1=h["b1"], b2=h["b2"], eps=h["eps"]),
        {"b1": (0.9, _UNIT), "b2": (0.999, _UNIT), "eps": (1e-8, (">=", 0.0))},
        None,
        "optax.adam(lr, b1, b2, eps)",
    ),
    "rmsprop": _Named(
        lambda h: optax.rmsprop(h["lr"], decay=h["decay"], eps=h["eps"]),
        {"decay": (0.9, _UNIT), "eps": (1e-8, (">=", 0.0))},
        None,
        "optax.rmsprop(lr, decay, eps)",
    ),
    "group_rmsprop": _Named(
        lambda h: group_rmsprop(h["lr"], alpha=h["alpha"], eps=h["eps"]),
        {"alpha": (0.99, _UNIT), "eps": (1e-6, (">=", 0.0))},
        lambda s, h, k: s.step_size,
        "rankbias.optimizers.group_rmsprop",
    ),
}


def _check_numbers(name: str, values: dict, checks: dict | None = None) -> None:
    checks = checks or {"alpha": _UNIT, "eps": (">=", 0.0)}
    for k, v in values.items():
        where = f"`{k}` of optimizer {name!r}"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where} must be a finite number, got {v!r}")
        chk = (">", 0.0) if k == "lr" else checks[k]
        if chk[0] == ">" and not v > chk[1]:
            raise ValueError(f"{where} must be > {chk[1]:g}, got {v!r}")
        if chk[0] == ">=" and not v >= chk[1]:
            raise ValueError(f"{where} must be >= {chk[1]:g}, got {v!r}")
        if chk[0] == "unit" and not 0.0 <= v < 1.0:
            raise ValueError(f"{where} must be in [0, 1), got {v!r}")


def check_hyperparams(name, lr, hyper: dict) -> dict:
    """Validate a named optimizer's ``lr`` and hyper-parameters; returns all of them (floats,
    defaults filled in).

    Raises
    ------
    ValueError: naming an unknown optimizer (and the known ones), an unknown hyper-parameter
        (and the allowed ones), a missing ``lr`` or a value out of range.
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(
            f"unknown `optimizer` {name!r}; use an optax GradientTransformation, "
            f"a factory such as optax.adam, or one of {', '.join(map(repr, OPTIMIZERS))}"
        )
    spec = OPTIMIZERS[name]
    unknown = sorted(set(hyper) - set(spec.defaults))
    if unknown:
        allowed = ", ".join(["lr"] + list(spec.defaults))
        raise ValueError(
            f"optimizer {name!r} has no hyper-parameter {', '.join(map(repr, unknown))} "
            f"(allowed: {allowed})"
        )
    if lr is None:
        raise ValueError(f"optimizer {name!r} needs `lr` (the learning rate), got None")
    out = {"lr": lr}
    for k, (default, _) in spec.defaults.items():
        out[k] = hyper.get(k, default)
    _check_numbers(name, out, {k: c for k, (_, c) in spec.defaults.items()})
    return {k: float(v) for k, v in out.items()}


def make_optimizer(name: str, hyper: dict) -> optax.GradientTransformation:
    """The named optimizer with hyper-parameters ``hyper`` (scalars, traced inside jit)."""
    return OPTIMIZERS[name].build(hyper)
