r"""Train/test splits of ratings: each returns a :class:`RatingsSplit`.

A :class:`RatingsSplit` unpacks as ``(train, heldout)``: a
:class:`~rankbias.MatrixCompletion` on the training ratings and a
:class:`~rankbias.problems.HeldOut` with the test ratings (score a prediction with
``heldout.rmse(W)``). It also records the split: ``kind``, ``seed``, the sizes, the
positions (in file order) of the train and test ratings, and the
:class:`~rankbias.ratings.Ratings` it came from (its id mapping turns rows and columns back
into the file's ids).

* :func:`load_ratings`: read a ratings file and split it with :func:`random_split`;
* :func:`random_split`: a seeded random fraction (the split of ``load_ratings``);
* :func:`index_split`: the test ratings given by their positions in file order;
* :func:`file_order_split`: the first ``n_train`` ratings train, the rest are held out (the
  split of Arora et al.'s reference code);
* :func:`per_user_split`: ``k`` (or a fraction) of each user's ratings held out, at least one
  kept for training;
* :func:`kfold_split`: fold ``i`` of ``k`` seeded folds (disjoint, covering);
* :func:`movielens_split`: MovieLens' own ``u1.base`` / ``u1.test`` files, one id mapping.

Every split also takes ``duplicates`` (``"error"``, ``"mean"`` or ``"last"``: a rating
given twice for one entry) and ``normalization`` (``"sum"`` or ``"mean"``) of the
training :class:`~rankbias.MatrixCompletion` (see
:meth:`~rankbias.MatrixCompletion.from_triplets`).
"""

from __future__ import annotations

import numpy as np

from .._repr import render, render_html
from .._validation import check_int, check_int_seed, check_positive, check_seed
from ..ratings import Ratings, read_ratings
from .completion import MatrixCompletion, _check_indices
from .heldout import HeldOut

__all__ = [
    "load_ratings",
    "RatingsSplit",
    "random_split",
    "index_split",
    "file_order_split",
    "per_user_split",
    "kfold_split",
    "movielens_split",
]


class RatingsSplit(tuple):
    """``(train, heldout)`` of a split, with the split recorded.

    Attributes:
        train: the :class:`~rankbias.MatrixCompletion` on the training ratings.
        heldout: the :class:`~rankbias.problems.HeldOut` test ratings.
        ratings: the :class:`~rankbias.ratings.Ratings` split (ids: ``ratings.user_ids``,
            ``ratings.item_ids``).
        kind: ``"random"``, ``"index"``, ``"file_order"``, ``"per_user"``, ``"kfold"`` or
            ``"movielens"``; ``seed``: its seed (``None`` for deterministic kinds).
        train_index, test_index: positions in ``ratings`` (file order) of each part.
        info: ``kind``, ``seed``, ``n_train``, ``n_test`` and the kind's parameters.
    """

    train: MatrixCompletion
    heldout: HeldOut
    ratings: Ratings
    kind: str
    seed: int | None
    train_index: np.ndarray
    test_index: np.ndarray
    info: dict

    def __new__(cls, train, heldout, **attrs):
        self = super().__new__(cls, (train, heldout))
        self.train, self.heldout = train, heldout
        for k, v in attrs.items():
            setattr(self, k, v)
        return self

    def __getnewargs__(self):  # pickle and deepcopy: the attributes follow as __dict__
        return (self.train, self.heldout)

    def _rows(self):
        rows = [(k, str(v)) for k, v in self.info.items() if k != "kind"]
        return rows + [("shape", str(self.train.shape))]

    def __repr__(self) -> str:
        return render(f"RatingsSplit(kind={self.kind!r})", self._rows())

    def _repr_html_(self) -> str:
        return render_html(f"RatingsSplit(kind={self.kind!r})", self._rows())


def _make(
    ratings: Ratings,
    train,
    test,
    kind: str,
    seed,
    params: dict,
    *,
    duplicates: str = "error",
    normalization: str = "sum",
) -> RatingsSplit:
    train, test = np.asarray(train, np.int64), np.asarray(test, np.int64)
    if train.size == 0:
        raise ValueError(
            f"the {kind} split ({', '.join(f'{k}={v}' for k, v in params.items())}) leaves "
            f"no training rating of {len(ratings)}"
        )
    r, c, v = ratings.rows, ratings.cols, ratings.values
    prob = MatrixCompletion.from_triplets(
        r[train], c[train], v[train], ratings.shape, duplicates=duplicates,
        normalization=normalization,
    )  # fmt: skip
    held = HeldOut(r[test], c[test], v[test], ratings.shape)
    info = {"kind": kind, "seed": seed, "n_train": int(train.size), "n_test": int(test.size)}
    info.update(params)
    return RatingsSplit(
        prob, held, ratings=ratings, kind=kind, seed=seed, train_index=train, test_index=test,
        info=info,
    )  # fmt: skip


def _check_ratings(ratings) -> Ratings:
    if not isinstance(ratings, Ratings):
        raise TypeError(
            f"`ratings` must be a rankbias.ratings.Ratings (from rb.ratings.read_ratings), "
            f"got {type(ratings).__name__}"
        )
    return ratings


def random_split(
    ratings: Ratings,
    test_fraction: float = 0.1,
    seed: int | np.random.Generator = 0,
    *,
    duplicates: str = "error",
    normalization: str = "sum",
) -> RatingsSplit:
    """Hold out ``round(test_fraction * N)`` ratings drawn by a seeded permutation.

    The permutation is ``np.random.default_rng(seed).permutation(N)``, its first ratings
    are the test set: the split of :func:`rankbias.problems.load_ratings` (and of sweeps'
    ``problem.type = "ratings"``).

    Raises:
        ValueError: ``test_fraction`` outside ``[0, 1)``, no training rating left.
    """
    ratings = _check_ratings(ratings)
    tf = check_positive(test_fraction, "test_fraction", allow_zero=True)
    if tf >= 1:
        raise ValueError(f"`test_fraction` must be in [0, 1), got {tf}")
    rng_seed = check_seed(seed)  # a Generator too, as load_ratings always took
    perm = np.random.default_rng(rng_seed).permutation(len(ratings))
    k = int(round(tf * len(ratings)))
    if k == len(ratings):
        raise ValueError(f"`test_fraction`={tf} leaves no training rating of {len(ratings)}")
    return _make(
        ratings, perm[k:], perm[:k], "random", rng_seed if isinstance(rng_seed, int) else None,
        {"test_fraction": tf}, duplicates=duplicates, normalization=normalization,
    )  # fmt: skip


def index_split(
    ratings: Ratings, test_index, *, duplicates: str = "error", normalization: str = "sum"
) -> RatingsSplit:
    """Hold out the ratings at positions ``test_index`` (0-based, in file order).

    Raises:
        ValueError: positions that are not integers, out of ``[0, N)`` or repeated.
    """
    ratings = _check_ratings(ratings)
    t = _check_indices(test_index, "test_index")
    N = len(ratings)
    if t.size and (t.min() < 0 or t.max() >= N):
        raise ValueError(
            f"`test_index` must lie in [0, {N - 1}] (positions of the {N} ratings), got "
            f"range [{t.min()}, {t.max()}]"
        )
    if np.unique(t).size != t.size:
        raise ValueError("`test_index` repeats a position: give each held-out rating once")
    keep = np.ones(N, bool)
    keep[t] = False
    return _make(
        ratings,
        np.flatnonzero(keep),
        t,
        "index",
        None,
        {},
        duplicates=duplicates,
        normalization=normalization,
    )


def file_order_split(
    ratings: Ratings, n_train: int, *, duplicates: str = "error", normalization: str = "sum"
) -> RatingsSplit:
    """The first ``n_train`` ratings (in file order) train, the rest are held out: the
    split of Arora et al.'s reference code (no shuffling).

    Raises:
        ValueError: ``n_train`` not in ``[1, N]``.
    """
    ratings = _check_ratings(ratings)
    N = len(ratings)
    n = check_int(n_train, "n_train", minimum=1, maximum=N)
    idx = np.arange(N)
    return _make(
        ratings,
        idx[:n],
        idx[n:],
        "file_order",
        None,
        {"n_train": n},
        duplicates=duplicates,
        normalization=normalization,
    )


def per_user_split(
    ratings: Ratings, k: int | None = None, *, fraction: float | None = None, seed: int = 0,
    duplicates: str = "error", normalization: str = "sum",
) -> RatingsSplit:  # fmt: skip
    """Hold out, for each user, ``k`` of their ratings (or ``round(fraction * n_u)``),
    drawn at random (seeded), always keeping at least one for training: a user with
    ``n_u <= k`` ratings holds out ``n_u - 1``.

    Give exactly one of ``k`` (``>= 1``) and ``fraction`` (in ``(0, 1)``).

    Raises:
        ValueError: both or neither of ``k`` and ``fraction``, out of range.
    """
    ratings = _check_ratings(ratings)
    if (k is None) == (fraction is None):
        raise ValueError(
            f"give exactly one of `k` (ratings per user) and `fraction`, got k={k!r}, "
            f"fraction={fraction!r}"
        )
    if k is not None:
        k = check_int(k, "k", minimum=1)
    else:
        fraction = check_positive(fraction, "fraction")
        if fraction >= 1:
            raise ValueError(f"`fraction` must be in (0, 1), got {fraction}")
    seed = check_int_seed(seed)
    rng = np.random.default_rng(seed)
    # a random order, then stable-sorted by user: each user's ratings in random order
    order = rng.permutation(len(ratings))
    order = order[np.argsort(ratings.rows[order], kind="stable")]
    users, start, counts = np.unique(ratings.rows[order], return_index=True, return_counts=True)
    if k is not None:
        want = np.full(counts.size, k)
    else:
        want = np.round(float(fraction or 0) * counts).astype(int)
    want = np.minimum(want, counts - 1)
    pos_in_user = np.arange(order.size) - np.repeat(start, counts)
    is_test = pos_in_user < np.repeat(want, counts)
    test, train = np.sort(order[is_test]), np.sort(order[~is_test])
    params = {"k": k} if k is not None else {"fraction": fraction}
    return _make(
        ratings,
        train,
        test,
        "per_user",
        seed,
        params,
        duplicates=duplicates,
        normalization=normalization,
    )


def kfold_split(
    ratings: Ratings,
    fold: int,
    k: int = 5,
    *,
    seed: int = 0,
    duplicates: str = "error",
    normalization: str = "sum",
) -> RatingsSplit:
    """Fold ``fold`` (0-based) of ``k``: a seeded permutation cut into ``k`` near-equal
    parts (sizes differ by at most one); part ``fold`` is held out. Over
    ``fold = 0..k-1`` the test sets are disjoint and cover every rating once.

    Raises:
        ValueError: ``k < 2``, ``k > N``, ``fold`` outside ``[0, k)``.
    """
    ratings = _check_ratings(ratings)
    N = len(ratings)
    k = check_int(k, "k", minimum=2, maximum=N)
    fold = check_int(fold, "fold", minimum=0, maximum=k - 1)
    seed = check_int_seed(seed)
    parts = np.array_split(np.random.default_rng(seed).permutation(N), k)
    test = np.sort(parts[fold])
    train = np.sort(np.concatenate([p for j, p in enumerate(parts) if j != fold]))
    return _make(
        ratings,
        train,
        test,
        "kfold",
        seed,
        {"fold": fold, "k": k},
        duplicates=duplicates,
        normalization=normalization,
    )


def movielens_split(
    base_path, test_path, *, duplicates: str = "error", normalization: str = "sum", **read
) -> RatingsSplit:
    """MovieLens' shipped splits: ``u1.base`` trains, ``u1.test`` is held out (likewise
    ``u2``..``u5``, ``ua``, ``ub``). Both files are read by one
    :func:`~rankbias.ratings.read_ratings` call, so they share one id mapping and shape.
    ``read``: its keyword arguments (``delimiter``, ``columns``, ``ids``, ``shape``...).
    """
    ratings = read_ratings([base_path, test_path], **read)
    is_test = ratings.file == 1
    return _make(
        ratings, np.flatnonzero(~is_test), np.flatnonzero(is_test), "movielens", None,
        {"base": str(base_path), "test": str(test_path)}, duplicates=duplicates,
        normalization=normalization,
    )  # fmt: skip


def load_ratings(
    path,
    *,
    test_fraction: float = 0.1,
    seed: int | np.random.Generator = 0,
    shape=None,
    one_based: bool = True,
    duplicates: str = "error",
    normalization: str = "sum",
    delimiter: str | None = None,
    columns=None,
    header: bool | None = None,
    ids="auto",
) -> RatingsSplit:
    r"""Read a ratings file and split it at random into ``(train, heldout)``.

    The file is read by :func:`rankbias.ratings.read_ratings` (whitespace/tab, ``::`` or
    CSV with a header; ``delimiter``, ``columns``, ``header``, ``ids``, ``one_based``,
    ``shape`` are its arguments): by default a ``user item rating [timestamp]`` line
    (MovieLens ``u.data``) puts the rating at entry ``(user - 1, item - 1)`` of an
    ``(num_users, num_items)`` matrix; string ids are numbered in sorted order. A seeded
    permutation puts ``round(test_fraction * k)`` of the ``k`` ratings in the held-out set;
    the rest make the training :class:`MatrixCompletion` (:func:`rankbias.splits.random_split`;
    other splits are in :mod:`rankbias.splits`). Blank lines and lines starting with ``#``
    are skipped.

    Arguments:
        path: the text file.
        test_fraction: in ``[0, 1)``; ``seed``: of the split.
        shape: ``(num_users, num_items)``; default: what the ids need.
        duplicates: ``"error"``, ``"mean"`` or ``"last"`` (see
            :meth:`MatrixCompletion.from_triplets`).

    Returns:
        A :class:`~rankbias.splits.RatingsSplit`: it unpacks as ``(train, heldout)``, the
        training problem and a :class:`HeldOut` (score a prediction with
        ``heldout.rmse(W)``), and keeps the id mapping (``.ratings.user_ids``,
        ``.ratings.item_ids``) and the split (``.info``).

    Raises:
        ValueError: a malformed line (its number is given, its text never is: the file may
            be any file), a file that is not UTF-8 text, a non-integer id (integer ids from
            the first line on; ``ids="map"`` for strings), an id below the base, a
            non-finite rating, ``test_fraction`` outside ``[0, 1)``, or a split that leaves
            no training entry.
    """
    tf = check_positive(test_fraction, "test_fraction", allow_zero=True)
    if tf >= 1:  # before reading: a bad argument is named before a large file is parsed
        raise ValueError(f"`test_fraction` must be in [0, 1), got {tf}")
    check_seed(seed)
    ratings = read_ratings(
        path, delimiter=delimiter, columns=columns, header=header, ids=ids,
        one_based=one_based, shape=shape,
    )  # fmt: skip
    return random_split(ratings, tf, seed, duplicates=duplicates, normalization=normalization)
