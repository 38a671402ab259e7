"""The one list of run statuses: every engine's status is one of them."""

import json

import rankbias as rb
from rankbias.status import RunStatus, describe, ended_well


def test_status_is_a_plain_string_in_json_and_comparisons():
    assert RunStatus.STEADY_STATE == "steady_state"
    assert json.dumps({"s": RunStatus.T_MAX}) == '{"s": "t_max"}'
    assert ended_well("steady_state") and ended_well("completed")
    assert not ended_well("t_max") and not ended_well("max_steps")
    assert describe("no_such_status") == "no_such_status"


def test_flow_status_comes_from_the_enum():
    M = rb.random_low_rank(shape=(4, 4), rank=1, seed=0)
    prob = rb.MatrixEstimation(M)
    model = rb.DeepFactorization(shape=(4, 4), depth=2)
    p = model.init("gaussian", scale=1e-3, seed=0)
    short = rb.gradient_flow(prob, model, p, t_max=1.0, n_save=5)
    assert short.status == "t_max" and short.status in set(RunStatus)
    assert type(short.info["status"]) is str  # stored runs stay plain JSON strings
