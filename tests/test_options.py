"""One definition per option (rankbias.options): the library's checks and the sweep schema's
come from it and cannot disagree on a value."""

from __future__ import annotations

import inspect
import math
import textwrap

import pytest

import rankbias as rb
import rankbias.experiments as ex
from rankbias.experiments.errors import ConfigError
from rankbias.experiments.validate import check_value as config_check
from rankbias.options import (
    DescentOptions,
    FlowOptions,
    GLRLOptions,
    TrainOptions,
    check_value,
    options_of,
)

CLASSES = (FlowOptions, DescentOptions, TrainOptions, GLRLOptions)


def _candidates(check) -> list:
    """Values on and around the bounds of a check tuple."""
    if check is None or check[0] == "choice":
        return list(check[1]) + ["no-such-choice"] if check else []
    op, lo = check[0], check[1]
    hi = check[2] if op in ("range", "between") else None
    out = [lo, lo - 1, lo + 1, lo * 2 + 0.5, -1.0, 0.0, 1e-300, 1e300]
    if hi is not None:
        out += [hi, hi + 1, hi - 1, (lo + hi) / 2]
    return [v for v in out if isinstance(v, int | float) and math.isfinite(v)]


def _accepts(f, *args) -> bool:
    try:
        f(*args)
    except (ValueError, ConfigError):
        return False
    return True


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_value_a_config_accepts_the_library_accepts(cls):
    """A TOML value that passes the schema never fails in the engine (nothing would be
    written half: a sweep checks its config before any run starts)."""
    for name, (default, o) in options_of(cls).items():
        assert _accepts(check_value, name, default, o), (cls.__name__, name, default)
        for v in _candidates(o.check):
            if o.kind == "int" and isinstance(v, float) and not v.is_integer():
                continue
            v = int(v) if o.kind == "int" and isinstance(v, float) else v
            in_toml = _accepts(config_check, f"dynamics.{name}", o.kind, o.check, v)
            in_library = _accepts(check_value, name, v, o)
            if o.validate is None:  # the same check both ways
                assert in_toml == in_library, (cls.__name__, name, v, in_toml, in_library)
            else:  # the library may accept more (sequences, dtype objects), never less
                assert in_library or not in_toml, (cls.__name__, name, v)


def test_a_divergence_factor_the_library_refuses_is_refused_by_the_config():
    # Before: the schema accepted 0 < divergence_factor <= 1 and every GD run then failed.
    text = textwrap.dedent(
        """
        name = "t"
        kind = "sweep"
        [problem]
        shape = [4, 4]
        rank = 1
        [dynamics]
        method = "gd"
        lr = 0.1
        steps = 5
        divergence_factor = 0.5
        """
    )
    with pytest.raises(ConfigError, match=r"divergence_factor must be > 1 \(a growth factor"):
        ex.parse_config(text)
    with pytest.raises(ValueError, match=r"`divergence_factor` must be > 1 \(a growth factor"):
        DescentOptions(divergence_factor=0.5)


@pytest.mark.parametrize(
    ("fname", "cls"),
    [
        ("gradient_flow", FlowOptions),
        ("gradient_descent", DescentOptions),
        ("train", TrainOptions),
        ("glrl", GLRLOptions),
    ],
)
def test_public_defaults_are_the_options_defaults(fname, cls):
    """Each keyword of a public function that is an option has the option's default (the
    required ``lr``/``steps``/``optimizer`` and train's ``lr=None`` are a config's defaults,
    documented on the class)."""
    sig = inspect.signature(getattr(rb, fname)).parameters
    for name, (default, _) in options_of(cls).items():
        if name not in sig or sig[name].default is inspect.Parameter.empty:
            continue
        if (fname, name) == ("train", "lr"):
            assert sig[name].default is None
            continue
        assert sig[name].default == default, (fname, name, sig[name].default, default)


def test_the_library_validates_through_the_options():
    """The engines' errors are the options' messages (one definition)."""
    M = rb.random_low_rank((4, 4), 1, psd=True, seed=0)
    prob = rb.MatrixCompletion.uniform(M, 0.8, 0, symmetric=True)
    model = rb.DeepFactorization((4, 4), depth=2)
    p = model.init("gaussian", 1e-2, 0)
    for call in (
        lambda: rb.gradient_descent(prob, model, p, lr=0.1, steps=5, divergence_factor=1.0),
        lambda: rb.train(prob, model, p, "sgd", lr=0.1, steps=5, divergence_factor=1.0),
    ):
        with pytest.raises(ValueError, match=r"must be > 1 \(a growth factor of the loss\)"):
            call()
    with pytest.raises(ValueError, match=r"`n_save` must be <= 100000 \(each record holds"):
        rb.gradient_flow(prob, model, p, n_save=10**6)
    with pytest.raises(ValueError, match=r"`n_save` must be <= 100000 \(each record holds"):
        rb.gradient_descent(prob, model, p, lr=0.1, steps=5, n_save=10**6)
