"""Ratings files, splits and the simple predictors, against independent oracles: triplets
written by the test itself, set partitions, a dense least-squares solve, closed forms."""

import numpy as np
import pytest

import rankbias as rb
from rankbias import baselines, splits
from rankbias.ratings import read_ratings


def _triplets(seed=0, users=9, items=7, p=0.6):
    """Random ``(user, item, rating)`` with ids from 1, each user with >= 2 ratings."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(1, users + 1):
        its = [i for i in range(1, items + 1) if rng.random() < p] or [1]
        if len(its) == 1:
            its.append(2 if its[0] != 2 else 3)
        out += [(u, i, float(rng.integers(1, 6)) + 0.5 * (u % 2)) for i in its]
    order = rng.permutation(len(out))  # file order is not sorted
    return [out[k] for k in order]


def _write(path, trip, fmt):
    if fmt == "tab":
        body = "".join(f"{u}\t{i}\t{r:g}\t88125{k}\n" for k, (u, i, r) in enumerate(trip))
    elif fmt == "space3":
        body = "# a comment\n\n" + "".join(f"{u}  {i} {r:g}\n" for u, i, r in trip)
    elif fmt == "dat":
        body = "".join(f"{u}::{i}::{r:g}::97830{k}\n" for k, (u, i, r) in enumerate(trip))
    elif fmt == "csv":
        body = "userId,movieId,rating,timestamp\n" + "".join(
            f"{u},{i},{r:g},1{k}\n" for k, (u, i, r) in enumerate(trip)
        )
    else:  # reordered columns, a ';' delimiter, string ids
        body = "ts;rating;item;user\n" + "".join(
            f"{k};{r:g};film-{i};u{u:02d}\n" for k, (u, i, r) in enumerate(trip)
        )
    path.write_text(body)
    return path


@pytest.mark.parametrize("fmt", ["tab", "space3", "dat", "csv"])
def test_each_format_parses_to_the_written_triplets(tmp_path, fmt):
    trip = _triplets()
    R = read_ratings(_write(tmp_path / f"r.{fmt}", trip, fmt))
    got = list(zip(R.user_ids[R.rows], R.item_ids[R.cols], R.values, strict=True))
    assert got == trip  # file order, ids and values
    assert R.shape == (max(t[0] for t in trip), max(t[1] for t in trip))


def test_named_columns_delimiter_and_string_ids_round_trip(tmp_path):
    trip = _triplets(1)
    path = _write(tmp_path / "r.txt", trip, "other")
    R = read_ratings(path, delimiter=";", columns=("user", "item", "rating"))
    users = sorted({f"u{u:02d}" for u, _, _ in trip})
    items = sorted({f"film-{i}" for _, i, _ in trip})
    assert R.shape == (len(users), len(items))  # no empty row or column
    assert R.user_ids.tolist() == users and R.item_ids.tolist() == items
    got = list(zip(R.user_ids[R.rows], R.item_ids[R.cols], R.values, strict=True))
    assert got == [(f"u{u:02d}", f"film-{i}", r) for u, i, r in trip]
    np.testing.assert_array_equal(R.rows_of(R.user_ids), np.arange(R.shape[0]))
    assert R.cols_of("film-3")[0] == items.index("film-3")
    with pytest.raises(ValueError, match="id 'nobody' is not in the ratings"):
        R.rows_of("nobody")
    # the same columns by index
    R2 = read_ratings(path, delimiter=";", columns=(3, 2, 1), header=True)
    # NumPy integer column indices detect the header like Python ints
    R3 = read_ratings(path, delimiter=";", columns=tuple(np.int64(i) for i in (3, 2, 1)))
    assert R3.shape == R2.shape and np.array_equal(R3.values, R2.values)
    np.testing.assert_array_equal(R2.rows, R.rows)
    np.testing.assert_array_equal(R2.values, R.values)


def test_sparse_integer_ids_are_mapped_on_request(tmp_path):
    (tmp_path / "s.csv").write_text("u,i,r\n1000,7,4\n5,99999,3\n1000,99999,2\n")
    R = read_ratings(tmp_path / "s.csv", ids="map")
    assert R.shape == (2, 2)
    assert R.user_ids.tolist() == [5, 1000] and R.item_ids.tolist() == [7, 99999]  # numeric
    assert R.rows.tolist() == [1, 0, 1] and R.cols.tolist() == [0, 1, 1]
    assert read_ratings(tmp_path / "s.csv").shape == (1000, 99999)  # "index": ids are rows


def test_load_ratings_keeps_the_mapping_and_old_unpacking(tmp_path):
    trip = _triplets(2)
    path = _write(tmp_path / "r.csv", trip, "csv")
    train, held = out = rb.problems.load_ratings(path, test_fraction=0.25, seed=4)
    assert out.kind == "random" and out.info["n_test"] == len(held) == round(0.25 * len(trip))
    assert out.ratings.user_ids[0] == 1 and train.num_observed + len(held) == len(trip)
    # the permutation of the old loader: default_rng(seed).permutation(N), first k held out
    perm = np.random.default_rng(4).permutation(len(trip))
    want = {(trip[k][0] - 1, trip[k][1] - 1) for k in perm[: len(held)]}
    assert set(zip(held.rows.tolist(), held.cols.tolist(), strict=True)) == want


def test_malformed_files_name_the_line_not_its_text(tmp_path):
    (tmp_path / "a.dat").write_text("1::2::5::9\n1::SECRET::4::0::7\n")
    with pytest.raises(ValueError, match=r"a.dat:2: expected 3 or 4 fields") as e:
        read_ratings(tmp_path / "a.dat")
    assert "SECRET" not in str(e.value)
    (tmp_path / "b.txt").write_text("1 2 3\n1 SECRET 4\n")
    with pytest.raises(ValueError, match=r"b.txt:2: user and item must be integers") as e:
        read_ratings(tmp_path / "b.txt")
    assert "SECRET" not in str(e.value) and "ids='map'" in str(e.value)
    with pytest.raises(ValueError, match=r"`columns`: 'nope' is not a field of the header"):
        read_ratings(_write(tmp_path / "c.csv", _triplets(), "csv"), columns=("nope", 1, 2))
    with pytest.raises(ValueError, match=r"`shape`=\(1, 1\) is smaller than the ids need"):
        read_ratings(tmp_path / "b.txt", shape=(1, 1), ids="map")
    with pytest.raises(ValueError, match="`columns` must give 3 columns"):
        read_ratings(tmp_path / "b.txt", columns=(0, 1))


# --------------------------------------------------------------------------------- splits
@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    path = tmp_path_factory.mktemp("r") / "u.data"
    return read_ratings(_write(path, _triplets(3, users=12, items=10), "tab"))


def _pairs(prob_or_held):
    r, c = np.asarray(prob_or_held.rows), np.asarray(prob_or_held.cols)
    return set(zip(r.tolist(), c.tolist(), strict=True))


def _assert_partition(split, ratings):
    train, held = split
    allp = set(zip(ratings.rows.tolist(), ratings.cols.tolist(), strict=True))
    assert not _pairs(train) & _pairs(held)
    assert _pairs(train) | _pairs(held) == allp
    assert train.num_observed + len(held) == len(ratings) == split.info["n_train"] + len(held)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([split.train_index, split.test_index])), np.arange(len(ratings))
    )
    truth = dict(
        zip(
            zip(ratings.rows.tolist(), ratings.cols.tolist(), strict=True),
            ratings.values,
            strict=True,
        )
    )
    assert all(
        truth[p] == v
        for p, v in zip(zip(held.rows, held.cols, strict=True), held.values, strict=True)
    )


def test_kfold_folds_are_disjoint_and_cover(ratings):
    tests = []
    for f in range(4):
        s = splits.kfold_split(ratings, f, 4, seed=2)
        _assert_partition(s, ratings)
        tests.append(s.test_index)
        assert s.info == {"kind": "kfold", "seed": 2, "n_train": len(ratings) - len(s.heldout),
                          "n_test": len(s.heldout), "fold": f, "k": 4}  # fmt: skip
    allt = np.concatenate(tests)
    assert np.array_equal(np.sort(allt), np.arange(len(ratings)))  # disjoint and covering
    assert max(map(len, tests)) - min(map(len, tests)) <= 1


def test_file_order_and_index_splits(ratings):
    s = splits.file_order_split(ratings, 20)
    _assert_partition(s, ratings)
    assert s.train_index.tolist() == list(range(20))  # the first 20 lines
    assert _pairs(s.train) == set(
        zip(ratings.rows[:20].tolist(), ratings.cols[:20].tolist(), strict=True)
    )
    s = splits.index_split(ratings, [3, 0, 7])
    _assert_partition(s, ratings)
    assert s.test_index.tolist() == [3, 0, 7] and len(s.heldout) == 3
    with pytest.raises(ValueError, match="`n_train`"):
        splits.file_order_split(ratings, 0)
    with pytest.raises(ValueError, match=r"`test_index` must lie in \[0, "):
        splits.index_split(ratings, [len(ratings)])
    with pytest.raises(ValueError, match="repeats a position"):
        splits.index_split(ratings, [1, 1])


@pytest.mark.parametrize("kw", [{"k": 2}, {"k": 50}, {"fraction": 0.3}])
def test_per_user_holdout_keeps_a_training_rating_per_user(ratings, kw):
    s = splits.per_user_split(ratings, seed=1, **kw)
    _assert_partition(s, ratings)
    n_u = np.bincount(ratings.rows, minlength=ratings.shape[0])
    t_u = np.bincount(s.heldout.rows, minlength=ratings.shape[0])
    want = np.round(kw["fraction"] * n_u) if "fraction" in kw else np.full_like(n_u, kw["k"])
    np.testing.assert_array_equal(t_u, np.minimum(want, n_u - 1))
    assert np.all(np.bincount(np.asarray(s.train.rows), minlength=len(n_u))[n_u > 0] >= 1)
    with pytest.raises(ValueError, match="exactly one of `k`"):
        splits.per_user_split(ratings)


def test_movielens_base_test_share_one_mapping(tmp_path):
    trip = _triplets(4)
    b = _write(tmp_path / "u1.base", trip[:-5], "tab")
    t = _write(tmp_path / "u1.test", trip[-5:], "tab")
    s = splits.movielens_split(b, t)
    assert s.kind == "movielens" and len(s.heldout) == 5
    assert s.train.shape == (max(x[0] for x in trip), max(x[1] for x in trip))
    assert (
        list(zip(s.heldout.rows + 1, s.heldout.cols + 1, s.heldout.values, strict=True))
        == trip[-5:]
    )
    # string ids: one mapping over both files (an id only in the test file still has a row)
    b2 = _write(tmp_path / "b.txt", trip[:-5], "other")
    t2 = _write(tmp_path / "t.txt", trip[-5:], "other")
    s2 = splits.movielens_split(b2, t2, delimiter=";", columns=("user", "item", "rating"))
    R = s2.ratings
    got = list(zip(R.user_ids[s2.heldout.rows], R.item_ids[s2.heldout.cols], strict=True))
    assert got == [(f"u{u:02d}", f"film-{i}") for u, i, _ in trip[-5:]]


# ------------------------------------------------------------------------- simple baselines
def test_global_mean_rmse_is_the_closed_form(ratings):
    train, held = splits.random_split(ratings, 0.3, seed=0)
    pred = baselines.mean_baseline(train)
    tv = np.asarray(train.values)
    assert pred.mu == pytest.approx(tv.sum() / tv.size, rel=1e-15)
    want = np.sqrt(np.mean(held.values**2) - 2 * pred.mu * held.values.mean() + pred.mu**2)
    assert pred.rmse(held) == pytest.approx(want, rel=1e-12)
    assert rb.problems.heldout_rmse(pred, held) == pytest.approx(want, rel=1e-12)


def test_user_and_item_means(ratings):
    train, held = splits.random_split(ratings, 0.3, seed=0)
    r, c, v = (np.asarray(a) for a in (train.rows, train.cols, train.values))
    for kind, idx, other in (("user", r, held.rows), ("item", c, held.cols)):
        pred = baselines.mean_baseline(train, kind)
        for k, o in zip(other, pred.predict(held.rows, held.cols), strict=True):
            assert o == pytest.approx(v[idx == k].mean() if np.any(idx == k) else v.mean())


def test_biases_match_a_dense_least_squares_solve(ratings):
    train, held = splits.random_split(ratings, 0.2, seed=5)
    lam = 0.7
    r, c, v = (np.asarray(a) for a in (train.rows, train.cols, train.values))
    m, n = train.shape
    # one-hot design [1 | users | items], the penalty as extra rows sqrt(lam) I
    X = np.zeros((v.size + m + n, 1 + m + n))
    X[np.arange(v.size), 0] = 1
    X[np.arange(v.size), 1 + r] = 1
    X[np.arange(v.size), 1 + m + c] = 1
    X[v.size :, 1:] = np.sqrt(lam) * np.eye(m + n)
    y = np.concatenate([v, np.zeros(m + n)])
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    pred = baselines.bias_baseline(train, lam)
    assert abs(pred.mu - beta[0]) < 1e-8
    np.testing.assert_allclose(pred.user_bias, beta[1 : 1 + m], atol=1e-8, rtol=0)
    np.testing.assert_allclose(pred.item_bias, beta[1 + m :], atol=1e-8, rtol=0)
    W = beta[0] + beta[1 : 1 + m, None] + beta[None, 1 + m :]
    assert pred.rmse(held) == pytest.approx(rb.problems.heldout_rmse(W, held), abs=1e-8)
    assert "MeanPredictor(kind='biases')" in repr(pred) and "lam" in repr(pred)


def test_clipping_and_bad_arguments(ratings):
    train, held = splits.random_split(ratings, 0.2, seed=5)
    pred = baselines.bias_baseline(train, 0.01, clip=(1.0, 5.0))
    free = baselines.bias_baseline(train, 0.01)
    np.testing.assert_array_equal(pred.matrix, np.clip(free.matrix, 1.0, 5.0))
    lo, hi = float(np.min(train.values)), float(np.max(train.values))
    assert baselines.mean_baseline(train, "user", clip=True).clip == (lo, hi)
    with pytest.raises(ValueError, match="`lam` must be"):
        baselines.bias_baseline(train, 0.0)
    with pytest.raises(ValueError, match="`clip` must have lo <= hi"):
        baselines.mean_baseline(train, clip=(5, 1))
    with pytest.raises(TypeError, match="`train` must be a rankbias.MatrixCompletion"):
        baselines.mean_baseline(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="`rtol` must be"):
        baselines.bias_baseline(train, 1.0, rtol=-1.0)


@pytest.mark.parametrize("dense_max", [0, 10**9])
def test_biases_both_solvers_on_a_wide_case(ratings, monkeypatch, dense_max):
    # more items than users (the eliminated side swaps) and the conjugate-gradient path
    monkeypatch.setattr(baselines.predictors, "_BIAS_DENSE_MAX", dense_max)
    R = ratings
    T = rb.MatrixCompletion.from_triplets(R.cols, R.rows, R.values, R.shape[::-1])
    pred = baselines.bias_baseline(T, 0.05)
    assert pred.info["method"] == ("cg" if dense_max == 0 else "cholesky")
    ref = baselines.bias_baseline(
        rb.MatrixCompletion.from_triplets(R.rows, R.cols, R.values, R.shape), 0.05
    )  # the transposed problem: biases swap roles
    np.testing.assert_allclose(pred.user_bias, ref.item_bias, atol=1e-8, rtol=0)
    np.testing.assert_allclose(pred.item_bias, ref.user_bias, atol=1e-8, rtol=0)


def test_optional_timestamp_bom_and_copies(tmp_path):
    # u.data-style lines with and without a timestamp were accepted before: still are
    (tmp_path / "mixed.txt").write_text("1 2 4 881250949\n2 1 3\n2 2 5 881250950\n")
    R = read_ratings(tmp_path / "mixed.txt")
    assert R.values.tolist() == [4.0, 3.0, 5.0] and R.lines.tolist() == [1, 2, 3]
    # a CSV saved with a byte-order mark keeps its first header name
    (tmp_path / "bom.csv").write_bytes("userId,movieId,rating\n7,8,2.5\n".encode("utf-8-sig"))
    B = read_ratings(tmp_path / "bom.csv", columns=("userId", "movieId", "rating"))
    assert B.shape == (7, 8) and B.values.tolist() == [2.5]
    import copy
    import pickle

    s = rb.problems.load_ratings(tmp_path / "mixed.txt", test_fraction=0.4, seed=1)
    for c in (copy.deepcopy(s), pickle.loads(pickle.dumps(s))):
        assert c.info == s.info and c.test_index.tolist() == s.test_index.tolist()
        assert c.heldout.values.tolist() == s.heldout.values.tolist()
    g = rb.problems.load_ratings(tmp_path / "mixed.txt", seed=np.random.default_rng(1))
    assert g.seed is None and len(g) == 2  # a Generator seed, as before; not recorded


def test_header_detection_does_not_swallow_a_bad_first_rating(tmp_path):
    # "1 2 x" was an error at line 1 and stays one (a header would drop a rating silently)
    (tmp_path / "x.txt").write_text("1 2 x\n1 3 4\n")
    with pytest.raises(ValueError, match=r"x.txt:1: the rating \(column 2\) must be a number"):
        read_ratings(tmp_path / "x.txt")
    (tmp_path / "h.txt").write_text("user item rating ts\n1 2 4 0\n1 3 4\n")
    assert len(read_ratings(tmp_path / "h.txt")) == 2  # a header, then 4- and 3-field lines
    # a line too short for the columns asked for is named, not an IndexError
    with pytest.raises(ValueError, match=r"h.txt:3: expected at least 4 whitespace-separated"):
        read_ratings(tmp_path / "h.txt", columns=(0, 1, 3))
    with pytest.raises(ValueError, match="3 different columns"):
        read_ratings(tmp_path / "h.txt", columns=(0, 0, 2))


def test_a_sweep_reads_a_csv_with_string_ids(tmp_path):
    # problem.type = "ratings" goes through load_ratings: a CSV with string ids was refused
    from rankbias import experiments as ex

    trip = _triplets(5)
    path = _write(tmp_path / "r.csv", [(f"u{u}", f"m{i}", r) for u, i, r in trip], "csv")
    raw = ex.parse_config(f'name = "r"\n[problem]\ntype = "ratings"\npath = "{path}"\n')
    cfg = ex.expand(raw).runs[0].config["problem"]
    assert cfg["shape"] == [len({t[0] for t in trip}), len({t[1] for t in trip})]
