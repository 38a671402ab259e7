"""The default hidden width of DeepFactorization is min(m, n) (issue 26), every init works at
that width, and only the run keys of non-square default-width runs changed; problem.normalization
in sweep files enters the key only at "mean"."""

from __future__ import annotations

import numpy as np
import pytest

import rankbias as rb
from rankbias.experiments.config import ConfigError
from rankbias.experiments.expand import expand
from rankbias.experiments.runner import build_problem
from rankbias.experiments.toml_io import parse_config
from rankbias.store import METHOD_RESULTS, RESULTS_VERSION, run_key


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
@pytest.mark.parametrize("depth", [2, 3])
def test_default_width_is_min_m_n(shape, depth):
    m, n = shape
    model = rb.DeepFactorization(shape, depth=depth)
    k = min(m, n)
    assert model.widths == (k,) * (depth - 1)
    assert model.param_shapes[0] == (k, n) and model.param_shapes[-1] == (m, k)
    assert model.max_rank == k


@pytest.mark.parametrize("shape", [(3, 5), (5, 3)])
def test_every_init_at_width_min(shape):
    m, n = shape
    L, scale = 3, 0.3
    model = rb.DeepFactorization(shape, depth=L)
    a = scale ** (1 / L)
    W = lambda ps: np.asarray(model.product(ps))
    # identity: product of rectangular identities a I, W(0) = scale I_{m x n}
    np.testing.assert_allclose(W(model.init("identity", scale)), scale * np.eye(m, n), atol=1e-15)
    # perturbed identity: W_1 = (a - beta) I, the others a I
    b = 0.1
    np.testing.assert_allclose(
        W(model.init("perturbed_identity", scale, beta=b)),
        a ** (L - 1) * (a - b) * np.eye(m, n),
        atol=1e-15,
    )
    # orthogonal: each W_j = a Q_j with Q_j semi-orthogonal (all singular values a)
    for P in model.init("orthogonal", scale, seed=1):
        np.testing.assert_allclose(np.linalg.svd(np.asarray(P), compute_uv=False), a, rtol=1e-12)
    # balanced: W_{j+1}^T W_{j+1} = W_j W_j^T and ||W(0)||_2 = scale
    ps = [np.asarray(p) for p in model.init("balanced", scale, seed=2)]
    for lo, hi in zip(ps[:-1], ps[1:], strict=True):
        np.testing.assert_allclose(hi.T @ hi, lo @ lo.T, atol=1e-13)
    assert np.linalg.norm(W(tuple(ps)), 2) == pytest.approx(scale, rel=1e-12)
    # gaussian: factor shapes at width min(m, n), finite product
    g = model.init("gaussian", scale, seed=3)
    assert [tuple(p.shape) for p in g] == list(model.param_shapes)
    assert np.all(np.isfinite(W(g)))


def _runs(toml: str):
    return expand(parse_config(toml)).runs


def _sweep(shape, depth=2, width=None, method="gd", normalization=None, ptype="completion"):
    lines = [
        "name = 't'",
        "[problem]",
        f"type = '{ptype}'",
        f"shape = {list(shape)}",
        "rank = 1",
        "psd = false",
    ]
    if normalization is not None:
        lines.append(f"normalization = '{normalization}'")
    lines += ["[model]", f"depth = {depth}"] + ([f"width = {width}"] if width else [])
    dyn = "t_max = 10.0" if method == "flow" else "lr = 0.1\nsteps = 5"
    lines += ["[dynamics]", f"method = '{method}'", dyn]
    return _runs("\n".join(lines) + "\n")[0]


def _old_key(cfg: dict) -> str:
    # the key before issue 26: RESULTS_VERSION plus the method's bump, nothing else
    bump = METHOD_RESULTS.get(cfg["dynamics"]["method"])
    return run_key(cfg, RESULTS_VERSION if bump is None else f"{RESULTS_VERSION}+{bump}")


@pytest.mark.parametrize("method", ["gd", "flow"])
def test_only_non_square_default_width_runs_get_new_keys(method):
    square = _sweep((4, 4), method=method)
    assert square.key == _old_key(square.config)
    explicit = _sweep((3, 5), width=5, method=method)
    assert explicit.key == _old_key(explicit.config)
    shallow = _sweep((3, 5), depth=1, method=method)
    assert shallow.key == _old_key(shallow.config)
    changed = _sweep((3, 5), method=method)
    assert changed.key != _old_key(changed.config)
    assert rb.store.results_version(changed.config).endswith("+width.2")  # pyright: ignore[reportAttributeAccessIssue]


def test_normalization_key_is_out_of_the_key_at_sum_and_builds_the_problem():
    plain = _sweep((4, 4))
    assert "normalization" not in plain.config["problem"]
    assert _sweep((4, 4), normalization="sum").key == plain.key
    mean = _sweep((4, 4), normalization="mean")
    assert mean.key != plain.key
    p_sum, p_mean = build_problem(plain.config), build_problem(mean.config)
    N = p_sum.observed_entries().rows.size  # pyright: ignore[reportOptionalMemberAccess]
    W = np.ones((4, 4))
    # f_mean = f_sum / |Omega|
    assert float(p_mean.loss(W)) == pytest.approx(float(p_sum.loss(W)) / N, rel=1e-12)


def test_normalization_refused_for_sensing():
    with pytest.raises(ConfigError, match="problem.normalization"):
        _sweep((4, 4), normalization="mean", ptype="sensing")
