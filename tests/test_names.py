"""One word per concept (issue 25): the old spellings still work, mean the same, warn once per
process with a FutureWarning naming the new spelling, and refuse to be combined with it."""

import warnings

import numpy as np
import pytest

import rankbias as rb
from rankbias import _deprecation
from rankbias.glrl import kkt_residuals, top_direction

M = rb.random_low_rank((6, 6), 2, psd=True, seed=0)
PROB = rb.MatrixCompletion.uniform(M, 0.6, seed=0)
MODEL = rb.DeepFactorization((6, 6), depth=2)
P0 = MODEL.init("gaussian", scale=0.3, seed=1)


@pytest.fixture(autouse=True)
def fresh_process():
    """Each test starts as a fresh process would: no alias warned yet."""
    _deprecation._WARNED.clear()
    yield
    _deprecation._WARNED.clear()


def test_renamed_warns_once_and_refuses_both():
    with pytest.warns(FutureWarning, match=r"`old` of f\(\) is deprecated.*use `new`"):
        assert _deprecation.renamed("f()", "old", 1, "new", 0, 0) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second use does not warn again
        assert _deprecation.renamed("f()", "old", 2, "new", 0, 0) == 2
        assert _deprecation.renamed("f()", "old", None, "new", 5, 0) == 5
    with pytest.raises(ValueError, match="pass `new` only"):
        _deprecation.renamed("f()", "old", 1, "new", 5, 0)


@pytest.mark.parametrize("engine", ["gd", "train"])
def test_on_divergence_is_on_failure(engine):
    def run(**kw):
        if engine == "gd":
            return rb.gradient_descent_batch(PROB, MODEL, [P0, P0], [0.05, 50.0], 100, **kw)
        return rb.train_batch(PROB, MODEL, [P0, P0], "sgd", lr=[0.05, 50.0], steps=100, **kw)

    new = run(on_failure="return")
    with pytest.warns(FutureWarning, match="`on_divergence`.*use `on_failure`"):
        old = run(on_divergence="return")
    for out in (new, old):
        assert isinstance(out[0], rb.Trajectory) and isinstance(out[1], rb.DivergenceError)
    assert (old[0].loss == new[0].loss).all()
    with pytest.raises(ValueError, match="pass `on_failure` only"):
        run(on_failure="return", on_divergence="raise")
    with pytest.raises(ValueError, match="on_failure"):
        run(on_failure="ignore")


def test_batch_runs_is_the_run_count_of_every_batch():
    flows = rb.gradient_flow_batch(PROB, MODEL, [P0, P0], t_max=1.0, n_save=5)
    gds = rb.gradient_descent_batch(PROB, MODEL, [P0, P0], 0.05, 10, n_save=5)
    trains = rb.train_batch(PROB, MODEL, [P0, P0], "sgd", lr=0.05, steps=10, n_save=5)
    for runs in (flows, gds, trains):
        assert [r.info["batch_runs"] for r in runs] == [2, 2]
        assert [r.info["batch_index"] for r in runs] == [0, 1]
    for runs in (flows, gds):  # the deprecated spelling, kept for one release
        assert [r.info["batch_size"] for r in runs] == [2, 2]
    assert trains[0].info["batch_size"] is None  # train's: the minibatch size


def test_glrl_symmetric_is_psd():
    Y = rb.matrix_from_spectrum([2.0, -1.0], (4, 4), seed=0, symmetric=True)
    prob = rb.MatrixEstimation(Y)
    new = rb.glrl(prob, psd=False)
    with pytest.warns(FutureWarning, match=r"`symmetric` of glrl\(\).*use `psd`"):
        old = rb.glrl(prob, symmetric=False)
    assert not old.psd and not new.psd
    assert (old.matrix == new.matrix).all()
    with pytest.warns(FutureWarning, match="`symmetric` of GLRLResult"):
        assert new.symmetric is False  # the old attribute, a read-only alias
    with pytest.raises(ValueError, match="pass `psd` only"):
        rb.glrl(prob, psd=False, symmetric=True)
    with pytest.raises(ValueError, match="`symmetric` must be True or False"):
        rb.glrl(prob, symmetric="no")  # pyright: ignore[reportArgumentType]
    negG = -np.asarray(prob.grad(np.zeros((4, 4))))
    with pytest.warns(FutureWarning, match="top_direction"):
        assert top_direction(negG, symmetric=False)[0] == top_direction(negG, psd=False)[0]
    with pytest.warns(FutureWarning, match="kkt_residuals"):
        old_k = kkt_residuals(prob, Y, symmetric=False)
    assert old_k == kkt_residuals(prob, Y, psd=False)


def test_glrl_sweep_key_is_psd():
    import textwrap

    import rankbias.experiments as ex
    from rankbias.experiments.config import ConfigError

    def config(key: str):
        return ex.parse_config(
            textwrap.dedent(f"""
            name = "g"
            [problem]
            type = "estimation"
            shape = [4, 3]
            psd = false
            [dynamics]
            method = "glrl"
            {key}
            """)
        )

    sweep = ex.expand(config("psd = false"))
    assert sweep.runs[0].config["dynamics"]["psd"] is False
    with pytest.raises(ConfigError, match="dynamics.psd = true"):
        ex.expand(config("psd = true"))
    with pytest.raises(ConfigError, match="symmetric"):  # glrl sweeps are new: no alias
        config("symmetric = false")


def test_sweep_batch_size_is_chunk_size():
    import textwrap

    from _configs import tiny_sweep

    import rankbias.experiments as ex
    from rankbias.experiments.config import ConfigError
    from rankbias.experiments.folder import _same

    new = tiny_sweep("t", "{ seed = [0, 1, 2] }", steps=5, n_save=2, chunk_size=2)
    old = new.replace("chunk_size = 2", "batch_size = 2")
    with pytest.warns(FutureWarning, match=r"`batch_size` of \[sweep\].*use `chunk_size`"):
        sweep_old = ex.expand(ex.parse_config(textwrap.dedent(old)))
    sweep_new = ex.expand(ex.parse_config(textwrap.dedent(new)))
    assert sweep_old.chunk_size == sweep_new.chunk_size == 2
    assert [r.key for r in sweep_old.runs] == [r.key for r in sweep_new.runs]
    # a folder written with the old spelling is the same experiment as the config rewritten
    assert _same(sweep_old.raw, sweep_new.raw)
    with pytest.raises(ConfigError, match="deprecated spelling of sweep.chunk_size"):
        ex.parse_config(
            textwrap.dedent(old.replace("batch_size = 2", "batch_size = 2\nchunk_size = 2"))
        )
    with pytest.raises(ConfigError, match="sweep.batch_size must be >= 1"):
        ex.parse_config(textwrap.dedent(old.replace("batch_size = 2", "batch_size = 0")))
