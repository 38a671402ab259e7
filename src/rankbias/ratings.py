r"""Ratings files: read ``user, item, rating`` triplets and map the ids to matrix indices.

:func:`read_ratings` reads the common text layouts, one rating a line:

* whitespace or tab separated (MovieLens-100K ``u.data``: ``196\t242\t3\t881250949``),
* ``::`` separated (MovieLens-1M/10M ``ratings.dat``: ``1::1193::5::978300760``),
* comma separated with a header (MovieLens ``ratings.csv``: ``userId,movieId,rating,timestamp``),
* any other single-string ``delimiter``, with the ``columns`` given as indices or header names.

Ids become row (user) and column (item) indices of an ``(m, n)`` matrix in one of two ways,
chosen per axis by ``ids``:

* ``"index"``: integer ids are indices, ``row = id - 1`` (``one_based=True``, MovieLens) or
  ``row = id``; the matrix has as many rows as the largest id needs.
* ``"map"``: the distinct ids (strings, or sparse integers) sorted (numerically for
  integers) are numbered ``0, 1, ...``; no empty rows.

``"auto"`` (default) takes ``"index"`` when the first rating's id on that axis is an integer
and ``"map"`` otherwise; a later non-integer id in an ``"index"`` axis is then an error with
its line number (pass ``ids="map"``), not a silent switch. The mapping is kept on the result
(:attr:`Ratings.user_ids`, :attr:`Ratings.item_ids`: the id of each row / column) so that
predictions map back to the file's ids.

Splits of a :class:`Ratings` into a training problem and held-out ratings are in
:mod:`rankbias.splits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._repr import render, render_html
from ._validation import check_bool, check_choice, check_finite, check_shape

__all__ = ["Ratings", "read_ratings"]

_HINT = "is it a ratings file ('user item rating [timestamp]' a line)?"


@dataclass(frozen=True, eq=False)
class Ratings:
    """The ratings of one or more files, in file order.

    Attributes:
        rows, cols: ``(N,)`` int64 row (user) and column (item) indices, 0-based.
        values: ``(N,)`` float ratings.
        shape: ``(m, n)`` of the rating matrix.
        user_ids, item_ids: ``(m,)`` and ``(n,)`` arrays, the file's id of each row and
            column (ints for ``"index"`` axes: ``arange(m) + base``; the ids as read for
            ``"map"`` axes, ints or strings).
        sources: the files read, in order; ``lines``: ``(N,)`` the line number of each rating
            in its file; ``file``: ``(N,)`` the index in ``sources`` of its file.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    user_ids: np.ndarray
    item_ids: np.ndarray
    sources: tuple[str, ...]
    lines: np.ndarray
    file: np.ndarray

    def __len__(self) -> int:
        return int(self.values.size)

    def rows_of(self, users) -> np.ndarray:
        """Row indices of the user ids ``users`` (as in the file; ``ValueError`` if unknown)."""
        return _lookup(self.user_ids, users, "users")

    def cols_of(self, items) -> np.ndarray:
        """Column indices of the item ids ``items`` (``ValueError`` if unknown)."""
        return _lookup(self.item_ids, items, "items")

    def _rows(self):
        return [
            ("ratings", str(len(self))),
            ("shape", str(self.shape)),
            ("files", ", ".join(self.sources)),
            ("range", f"[{self.values.min():g}, {self.values.max():g}]" if len(self) else "-"),
        ]

    def __repr__(self) -> str:
        return render("Ratings", self._rows())

    def _repr_html_(self) -> str:
        return render_html("Ratings", self._rows())


def _lookup(ids: np.ndarray, wanted, name: str) -> np.ndarray:
    table = {k: i for i, k in enumerate(ids.tolist())}
    want = np.atleast_1d(np.asarray(wanted, dtype=object)).ravel().tolist()
    try:
        return np.asarray([table[k] for k in want], np.int64)
    except KeyError as e:
        raise ValueError(f"`{name}`: id {e.args[0]!r} is not in the ratings") from None


def _split_line(s: str, delimiter: str | None) -> list[str]:
    return s.split() if delimiter is None else [p.strip() for p in s.split(delimiter)]


def _guess_delimiter(s: str) -> str | None:
    if "::" in s:
        return "::"
    if "," in s:
        return ","
    return None  # any run of spaces and tabs


def _is_number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def _parse(path, delimiter, columns, header):
    """Tokens of one file: user and item strings, ratings and line numbers."""
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    lines: list[int] = []
    cols = None
    width = None
    # Errors give the line number and what is wrong, never the line itself: `path` may be
    # any file the user (or a config) names, and its content is not ours to print.
    try:
        # utf-8-sig: a CSV saved with a byte-order mark keeps its first header name
        with open(path, encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, 1):
                s = line.strip()
                if not s or s.startswith("#"):
                    continue
                if cols is None:  # the first line that is not blank or a comment
                    if delimiter is None:
                        delimiter = _guess_delimiter(s)
                    parts = _split_line(s, delimiter)
                    is_header = header
                    if header is None:
                        # a header's rating field is not a number and its id fields are not
                        # integers: "1 2 x" stays a malformed rating (an error), not a header
                        idx = [0, 1, 2] if not columns else columns
                        f = [
                            parts[int(i)]
                            if isinstance(i, (int, np.integer)) and i < len(parts)
                            else None
                            for i in idx
                        ]
                        is_header = any(isinstance(c, str) for c in columns or ()) or (
                            f[2] is not None
                            and not _is_number(f[2])
                            and not any(x is not None and _is_int(x) for x in f[:2])
                        )
                    if is_header:
                        cols = _resolve_columns(columns, parts, path, lineno)
                        width = len(parts)
                        continue
                    cols = _resolve_columns(columns, None, path, lineno)
                parts = _split_line(s, delimiter)
                if width is None:
                    width = len(parts)
                need = max(max(cols) + 1, 3)
                if len(parts) < need:
                    where = "whitespace" if delimiter is None else repr(delimiter)
                    raise ValueError(
                        f"{path}:{lineno}: expected at least {need} {where}-separated fields, "
                        f"got {len(parts)}; {_HINT}"
                    )
                if len(parts) != width and not (width in (3, 4) and len(parts) in (3, 4)):
                    # 3 or 4: the timestamp is optional line by line, as it always was
                    want = "3 or 4" if width in (3, 4) else f"{width}"
                    raise ValueError(
                        f"{path}:{lineno}: expected {want} fields (as on the first line), "
                        f"got {len(parts)}; {_HINT}"
                    )
                try:
                    rt = float(parts[cols[2]])
                except ValueError:
                    raise ValueError(
                        f"{path}:{lineno}: the rating (column {cols[2]}) must be a number; {_HINT}"
                    ) from None
                users.append(parts[cols[0]])
                items.append(parts[cols[1]])
                ratings.append(rt)
                lines.append(lineno)
    except UnicodeDecodeError:
        # its message quotes the undecodable bytes
        raise ValueError(f"{path}: not a UTF-8 text file; {_HINT}") from None
    if not ratings:
        raise ValueError(f"{path}: no rating found")
    return users, items, np.asarray(ratings), np.asarray(lines, np.int64)


def _resolve_columns(columns, header_fields, path, lineno) -> tuple[int, int, int]:
    if columns is None:
        return (0, 1, 2)
    out = []
    for c in columns:
        if isinstance(c, str):
            if header_fields is None:
                raise ValueError(
                    f"`columns` names {c!r} but {path} has no header line; give column "
                    f"indices (e.g. columns=(0, 1, 2)) or header=True"
                )
            if c not in header_fields:
                # header names are the file's words: say which name was not found, and where
                raise ValueError(
                    f"`columns`: {c!r} is not a field of the header ({path}:{lineno}); "
                    f"give one of its names or a column index"
                )
            out.append(header_fields.index(c))
        else:
            out.append(int(c))
    return out[0], out[1], out[2]


def _as_ints(tokens: list[str], name: str, paths, lines, file) -> np.ndarray:
    try:
        return np.asarray([int(t) for t in tokens], np.int64)
    except ValueError:
        pass
    for k, t in enumerate(tokens):
        try:
            int(t)
        except ValueError:
            raise ValueError(
                f"{paths[file[k]]}:{lines[k]}: user and item must be integers and the rating "
                f"a number ({name} ids are integers from the first rating on: pass "
                f"ids='map' for string ids); {_HINT}"
            ) from None
    raise AssertionError  # pragma: no cover


def _axis(tokens, mode, base, name, paths, lines, file):
    """``(indices, ids of each index, size)`` of one axis."""
    if mode == "auto":
        mode = "index" if tokens and _is_int(tokens[0]) else "map"
    if mode == "index":
        ids = _as_ints(tokens, name, paths, lines, file)
        idx = ids - base
        return idx, None, int(idx.max()) + 1, ids.min()
    if all(_is_int(t) for t in tokens):
        uniq, idx = np.unique(np.asarray([int(t) for t in tokens], np.int64), return_inverse=True)
    else:
        uniq, idx = np.unique(np.asarray(tokens, dtype=object), return_inverse=True)
    return idx.astype(np.int64), uniq, int(uniq.size), None


def _is_int(t: str) -> bool:
    try:
        int(t)
    except ValueError:
        return False
    return True


def read_ratings(
    paths,
    *,
    delimiter: str | None = None,
    columns: Sequence[int | np.integer | str] | None = None,
    header: bool | None = None,
    ids: str = "auto",
    one_based: bool = True,
    shape=None,
) -> Ratings:
    r"""Read one ratings file (or several sharing one id mapping) into a :class:`Ratings`.

    Blank lines and lines starting with ``#`` are skipped; every data line must have the
    number of fields of the first one.

    Arguments:
        paths: a file, or a list of files (e.g. MovieLens ``u1.base`` and ``u1.test``)
            read in order and mapped together (:attr:`Ratings.file` says which file a
            rating came from).
        delimiter: ``None`` (default): guessed from the first line: ``"::"`` if it holds
            one, else ``","`` if it holds one, else any run of spaces and tabs. Or the
            separator string itself.
        columns: the user, item and rating columns: indices (0-based) or header names,
            e.g. ``("userId", "movieId", "rating")``. Default ``(0, 1, 2)``.
        header: whether the first line is a header. ``None`` (default): it is when its
            rating field is not a number and its user and item fields are not integers (so
            ``1 2 x`` is a malformed rating, an error), or when ``columns`` names fields.
        ids: ``"auto"`` (default), ``"index"`` or ``"map"``, or a pair for users and
            items, e.g. ``("index", "map")``: see the module docstring.
        one_based: for ``"index"`` axes, whether ids start at 1 (MovieLens; default).
        shape: ``(m, n)``, at least what the ids need; default: exactly that.

    Raises:
        ValueError: a malformed line (its file and number are given, its text never is:
            the file may be any file), a file that is not UTF-8 text, no rating, a
            non-integer id on an ``"index"`` axis, an id below the base, a non-finite
            rating, a header name that is not in the header, a ``shape`` too small.
    """
    many = isinstance(paths, (list, tuple))
    plist = [str(p) for p in (paths if many else [paths])]
    if not plist:
        raise ValueError("`paths` is empty: give a ratings file or a list of files")
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter.strip()):
        raise ValueError(
            f"`delimiter` must be a non-blank string (None: guess; whitespace: None), "
            f"got {delimiter!r}"
        )
    if columns is not None:
        if isinstance(columns, str) or len(columns) != 3:
            raise ValueError(
                f"`columns` must give 3 columns (user, item, rating), as indices or header "
                f"names, got {columns!r}"
            )
        for c in columns:
            if not isinstance(c, str) and not (
                isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0
            ):
                raise ValueError(
                    f"`columns` entries must be column indices >= 0 or header names, got {c!r}"
                )
        if len(set(columns)) != 3:
            raise ValueError(
                f"`columns` must name 3 different columns (user, item, rating), got {columns!r}"
            )
    if header is not None:
        header = check_bool(header, "header")
    modes = (ids, ids) if isinstance(ids, str) else tuple(ids)
    if len(modes) != 2:
        raise ValueError(f"`ids` must be a string or a (users, items) pair, got {ids!r}")
    for k, md in enumerate(modes):
        check_choice(md, "ids" if isinstance(ids, str) else f"ids[{k}]", ("auto", "index", "map"))
    one_based = check_bool(one_based, "one_based")
    users, items, values, lines, file = [], [], [], [], []
    for f, p in enumerate(plist):
        u, i, v, ln = _parse(p, delimiter, columns, header)
        users += u
        items += i
        values.append(v)
        lines.append(ln)
        file.append(np.full(v.size, f, np.int64))
    v = np.concatenate(values)
    ln, fl = np.concatenate(lines), np.concatenate(file)
    check_finite(v, "ratings")
    base = 1 if one_based else 0
    r, uids, m, umin = _axis(users, modes[0], base, "user", plist, ln, fl)
    c, iids, n, imin = _axis(items, modes[1], base, "item", plist, ln, fl)
    if (umin is not None and umin < base) or (imin is not None and imin < base):
        got = ", ".join(
            f"min {w} {x}" for w, x in (("user", umin), ("item", imin)) if x is not None
        )
        raise ValueError(
            f"{', '.join(plist)}: ids must be >= {base} (one_based={one_based}), got {got}; "
            f"pass one_based=False for ids from 0, or ids='map'"
        )
    if shape is not None:
        sm, sn = check_shape(shape)
        if sm < m or sn < n:
            raise ValueError(
                f"`shape`={(sm, sn)} is smaller than the ids need ({m}, {n}); pass a "
                f"larger shape or none"
            )
        m, n = sm, sn
    user_ids = np.arange(m) + base if uids is None else _pad(uids, m)
    item_ids = np.arange(n) + base if iids is None else _pad(iids, n)
    return Ratings(r, c, v, (m, n), user_ids, item_ids, tuple(plist), ln, fl)


def _pad(ids: np.ndarray, size: int) -> np.ndarray:
    # rows added by a larger `shape` have no id in the file
    if ids.size == size:
        return ids
    out = np.empty(size, dtype=object)
    out[: ids.size] = ids
    return out
