"""Counter-examples: the shipped instance re-certifies; Razin-Cohen keeps det > 0 and blows up."""

import numpy as np
import pytest

from rankbias import counterexamples as ce


def test_shipped_instance_recertifies():
    c = ce.certify(ce.shipped_instance())
    assert c["certified"]
    assert c["excess"] > 0.1 and c["duality_gap"] < 1e-6
    assert ce.SHIPPED is not None
    assert c["glrl_trace"] == pytest.approx(ce.SHIPPED["glrl_trace"], rel=1e-6)
    assert c["min_trace"] == pytest.approx(ce.SHIPPED["min_trace"], rel=1e-6)
    assert all(g["distance"] < 1e-6 for g in c["gf"])


def test_razin_cohen_log_representation():
    r = ce.razin_cohen(t_max=1e6, alpha=1e-3, n_save=120)
    assert np.all(r["det_sign"] > 0) and np.all(np.isfinite(r["log10_det"]))
    late = r["times"] > 10
    assert np.all(np.diff(np.abs(r["W11"][late])) > 0)
    assert np.all(np.diff(r["log10_sigma_min"][late]) < 0)
    assert r["loss"][-1] < 1e-4 and np.all(np.diff(r["loss"][late]) < 0)
    assert r["effective_rank"][-1] < 1 + 1e-10
    # Along det ~ 0 completions the loss ~ 1/(2 W11^2)... so |W11| grows like t^(1/3).
    assert r["growth_exponent"] == pytest.approx(1 / 3, abs=0.02)


def test_razin_cohen_naive_flags_the_sign_flip():
    with pytest.warns(RuntimeWarning, match="det W changed sign"):
        n = ce.razin_cohen_naive(t_max=1e3, alpha=1e-3, n_save=100)
    assert n["t_flip"] is not None and n["final_det"] == pytest.approx(-1.0, abs=1e-6)
