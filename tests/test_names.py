"""One word per concept (issue 25): the old spellings still work, mean the same, warn once per
process with a FutureWarning naming the new spelling, and refuse to be combined with it."""

import warnings

import pytest

import rankbias as rb
from rankbias import _deprecation

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
