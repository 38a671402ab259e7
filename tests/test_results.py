"""Result objects: short reprs, exact equality and round trips, clear load errors, to_xarray."""

import dataclasses
import json
import warnings

import numpy as np
import pytest

import rankbias as rb
from rankbias.trajectory import TrajectoryFileError

MAX_LINES = 15


@pytest.fixture(scope="module")
def problem():
    M = rb.random_low_rank((6, 6), 2, psd=True, seed=0)
    return rb.MatrixCompletion.uniform(M, 0.6, seed=0, symmetric=True)


@pytest.fixture(scope="module")
def gf(problem):
    model = rb.DeepFactorization((6, 6), 2)
    return rb.gradient_flow(problem, model, model.init("gaussian", scale=1e-3, seed=0), t_max=1e4)


@pytest.fixture(scope="module")
def gd(problem):
    model = rb.DeepFactorization((6, 6), 2)
    return rb.gradient_descent(
        problem,
        model,
        model.init("gaussian", scale=1e-3, seed=0),
        0.1,
        300,
        n_save=60,
        save_matrices=True,
    )


def _check_repr(obj, *must):
    text = repr(obj)
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES, text
    assert max(len(x) for x in lines) < 160, text
    assert "array(" not in text and "[[" not in text  # no array dumps
    for m in must:
        assert m in text, (m, text)
    html = obj._repr_html_() if hasattr(obj, "_repr_html_") else None
    if html is not None:
        assert html.startswith("<div>") and "<table" in html and len(html) < 6000
    return text


# ---------------------------------------------------------------- Trajectory repr
def test_trajectory_repr_is_short_and_says_status_and_final_loss(gf, gd):
    for tr in (gf, gd):
        text = _check_repr(tr, tr.status, f"{tr.loss[-1]:.4g}", f"{len(tr)}")
        assert len(text) < 1500  # was 20-90 KB of arrays
    assert "steps 0..300" in repr(gd) and f"matrices ({len(gd)}, 6, 6)" in repr(gd)
    assert "steady_state" in gf._repr_html_()


# ---------------------------------------------------------------- equality
def test_save_load_round_trip_is_equal(gf, gd, tmp_path):
    for name, tr in (("gf", gf), ("gd", gd)):
        back = rb.Trajectory.load(tr.save(tmp_path / name))
        assert back == tr and tr == back
    assert gf != gd


def test_equality_sees_every_array_and_info(gd):
    base = dataclasses.replace(gd, info=dict(gd.info), effective_ranks=dict(gd.effective_ranks))
    assert base == gd
    for field, change in [
        ("loss", lambda a: a + np.where(np.arange(a.size) == 5, 1e-15, 0)),
        ("times", lambda a: a * (1 + 1e-16) + 1e-300),
        ("singular_values", lambda a: a[:, ::-1]),
        ("matrices", lambda a: a[:-1]),
        ("steps", lambda a: a + 1),
    ]:
        other = dataclasses.replace(gd, **{field: change(np.array(getattr(gd, field)))})
        assert other != gd, field
    assert dataclasses.replace(gd, steps=None) != gd
    assert dataclasses.replace(gd, info=dict(gd.info, lr=0.2)) != gd
    assert dataclasses.replace(gd, final_params=gd.final_params[:1]) != gd
    p = [np.array(x) for x in gd.final_params]
    p[1][0, 0] += 1e-12
    assert dataclasses.replace(gd, final_params=tuple(p)) != gd
    assert (gd == "not a trajectory") is False


def test_replace_builds_a_variant_and_leaves_the_run_alone(gd):
    before = dataclasses.replace(gd, info=dict(gd.info), effective_ranks=dict(gd.effective_ranks))
    shifted = gd.replace(times=gd.times + 1.0)
    assert np.array_equal(shifted.times, gd.times + 1.0) and shifted.loss is gd.loss
    shifted.info["note"] = "variant"  # the copy's info is its own
    assert "note" not in gd.info and gd == before and gd.replace() == gd
    sv = np.array(gd.singular_values)
    sv[:, 1:] = 0.0  # rank one: the effective ranks follow the new singular values
    one = gd.replace(singular_values=sv)
    assert np.allclose(one.effective_rank("ratio"), 1.0)
    assert not np.allclose(gd.effective_rank("ratio"), 1.0)
    with pytest.raises(TypeError):
        gd.replace(time=gd.times)
    with pytest.raises(dataclasses.FrozenInstanceError):  # a run is a record
        gd.times = gd.times + 1.0  # pyright: ignore[reportAttributeAccessIssue]


def test_equality_is_nan_aware_and_trajectories_are_unhashable(gd, tmp_path):
    loss = np.array(gd.loss)
    loss[3] = np.nan
    a = dataclasses.replace(gd, loss=loss, info=dict(gd.info, note=float("nan"), pair=(1, 2)))
    back = rb.Trajectory.load(a.save(tmp_path / "nan"))
    assert back == a  # NaN == NaN in arrays and info; the tuple is saved as a list
    with pytest.raises(TypeError):
        hash(gd)


# ---------------------------------------------------------------- load errors
@pytest.fixture()
def saved(gd, tmp_path):
    return gd.save(tmp_path / "ok")


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "case, reason",
    [
        ("empty", "empty file"),
        ("truncated", "BadZipFile"),
        ("random", ""),
        ("keyless", "missing key(s) loss"),
        ("npy", "single .npy array"),
        ("bad_info", "unreadable info"),
        ("bad_shape", "'loss' has shape"),
    ],
)
def test_load_says_not_a_trajectory_file(case, reason, saved, gd, tmp_path):
    p = tmp_path / f"{case}.npz"
    arrays = gd.to_arrays()
    arrays["info"] = np.array(json.dumps(gd.info))
    if case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        data = saved.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif case == "random":
        p.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "keyless":
        arrays.pop("loss")
        _npz(p, **arrays)
    elif case == "npy":
        p = tmp_path / "a.npy"
        np.save(p, np.zeros(3))
    elif case == "bad_info":
        arrays["info"] = np.array("{not json")
        _npz(p, **arrays)
    elif case == "bad_shape":
        arrays["loss"] = arrays["loss"][:-1]
        _npz(p, **arrays)
    with pytest.raises(TrajectoryFileError) as e:
        rb.Trajectory.load(p)
    msg = str(e.value)
    assert msg.startswith(f"not a rankbias trajectory file: {p} (") and reason in msg
    assert isinstance(e.value, ValueError)


def test_load_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        rb.Trajectory.load(tmp_path / "nope.npz")


# ---------------------------------------------------------------- to_xarray
def test_to_xarray_has_the_arrays_and_json_safe_info(gf, gd, tmp_path):
    for tr in (gf, gd):
        ds = tr.to_xarray()
        assert ds["loss"].dims == ("time",) and ds["singular_values"].dims == ("time", "sv")
        np.testing.assert_array_equal(ds["time"].values, tr.times)
        np.testing.assert_array_equal(ds["loss"].values, tr.loss)
        np.testing.assert_array_equal(ds["grad_norm"].values, tr.grad_norm)
        np.testing.assert_array_equal(ds["singular_values"].values, tr.singular_values)
        np.testing.assert_array_equal(ds["final_matrix"].values, tr.final_matrix)
        for k, v in tr.effective_ranks.items():
            np.testing.assert_array_equal(ds[f"rank_{k}"].values, v)
        assert list(ds["sv"].values) == list(range(1, tr.singular_values.shape[1] + 1))
        assert json.loads(ds.attrs["info"]) == json.loads(json.dumps(tr.info))
        assert ds.attrs["status"] == tr.status
        for v in ds.attrs.values():
            assert isinstance(v, (int, float, str)) and not isinstance(v, bool)
    ds = gd.to_xarray()
    np.testing.assert_array_equal(ds["step"].values, gd.steps)
    assert ds["step"].dims == ("time",)
    np.testing.assert_array_equal(ds["matrices"].values, gd.matrices)
    assert "step" not in gf.to_xarray().coords and "matrices" not in gf.to_xarray()
    # JSON-safe attrs: the dataset writes to netCDF and reads back equal.
    xr = pytest.importorskip("xarray")
    pytest.importorskip("scipy")
    p = tmp_path / "gf.nc"
    gf.to_xarray().to_netcdf(p, engine="scipy")
    with xr.open_dataset(p, engine="scipy") as back:
        np.testing.assert_array_equal(back["loss"].values, gf.loss)
        assert back.attrs["info"] == ds.attrs["info"] or json.loads(back.attrs["info"])


# ---------------------------------------------------------------- other result objects
def test_glrl_reprs_are_short():
    Y = rb.matrix_from_spectrum([3.0, 2.0, -1.0], (3, 3), seed=1, symmetric=True)
    with warnings.catch_warnings():
        # GLRL's own deliberately tiny atol must not surface as a user PrecisionWarning.
        warnings.simplefilter("error", rb.PrecisionWarning)
        res = rb.glrl(rb.MatrixEstimation(Y))
    text = _check_repr(res, "status='kkt'", "rank=2", "PSD", "phase 1", "phase 2")
    assert f"{res.loss:.4g}" in text
    _check_repr(res.phases[0], "rank=1", "converged=True", f"{res.phases[0].lam:.4g}")


def test_theory_baseline_and_stopping_reprs_are_short(gd):
    from rankbias import theory as T

    d = T.identical_init([3.0, 2.0, 1.0, -1.0], depth=3, alpha=0.1, lr=0.01, steps=3000)
    _check_repr(d, "identical", "depth=3", "(3001, 4)")
    _check_repr(d.escape_steps(), "fraction=0.5", "simulated")
    rep = T.layerwise_check(d, warn=False, every=100)
    _check_repr(rep, "drifted=", "drift step")
    M = rb.random_low_rank((5, 5), 1, psd=True, seed=0)
    sol = rb.baselines.min_nuclear_norm(
        rb.MatrixCompletion.uniform(M, 0.7, seed=0, symmetric=True), psd=True
    )
    _check_repr(sol, sol.status, "objective", "duality gap")
    Y = rb.matrix_from_spectrum([3.0, 2.0, 1.0, -0.5], (4, 4), seed=1, symmetric=True)
    model = rb.DeepFactorization((4, 4), 3)
    tr = rb.gradient_descent(
        rb.MatrixEstimation(Y),
        model,
        model.init("identity", scale=0.1, per_factor=True),
        0.05,
        3000,
        n_save=300,
    )
    stop = rb.early_stopping(tr)
    _check_repr(stop, "rule='auto'", f"step {stop.step}")
