"""The gradient-flow engine's structure (issue 25): one options object behind the public
keyword arguments, the public spectral-radius estimate RKC uses, and the old module path."""

from __future__ import annotations

import dataclasses
import inspect

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rankbias as rb
from rankbias.dynamics import RKC, spectral_radius
from rankbias.dynamics.flow.solvers import vector_field
from rankbias.options import FlowOptions


@pytest.mark.parametrize("fn", [rb.gradient_flow, rb.gradient_flow_batch])
def test_public_defaults_are_the_options_defaults(fn):
    # The keyword arguments build a FlowOptions: every field is an argument with its default
    # (dtype: None in both).
    params = inspect.signature(fn).parameters
    for f in dataclasses.fields(FlowOptions):
        assert f.name in params, f.name
        assert params[f.name].default == f.default, f.name


def test_spectral_radius_is_rkcs_power_iteration():
    M = rb.random_low_rank((5, 5), 2, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.7, seed=0)
    model = rb.DeepFactorization((5, 5), depth=2)
    y = model.flatten(model.init("gaussian", 1.0, seed=0))
    vf = vector_field(model)
    fun = lambda z: vf(0.0, z, prob)
    rho = float(spectral_radius(fun, y, 200))
    # Against the dense Jacobian (-H, symmetric: a real spectrum)
    J = np.asarray(jax.jacfwd(fun)(y))
    exact = float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (J + J.T)))))
    assert rho == pytest.approx(exact, rel=1e-6)
    # RKC's private spelling gives the same number (GLRL called it)
    term = diffrax.ODETerm(lambda t, z, args: fun(z))
    v0 = jnp.cos(jnp.arange(y.size, dtype=y.dtype) * 1.618033988749895 + 0.3)
    old = RKC()._power(term, 0.0, y, None, v0 / jnp.linalg.norm(v0), 200)[1]
    assert float(old) == rho


def test_old_module_path_still_exports():
    from rankbias.dynamics import _flow

    for name in ("gradient_flow", "gradient_flow_batch", "flow_defaults", "save_times"):
        assert getattr(_flow, name) is getattr(rb.dynamics, name)
    for name in ("MAX_SAVE", "MAX_STEPS_CAP", "SOLVERS", "_vector_field", "DENSE_LIMIT"):
        assert hasattr(_flow, name)
