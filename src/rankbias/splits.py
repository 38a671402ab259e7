"""Train/test splits of ratings (see :mod:`rankbias.problems.splits`, where they live next to
the completion problem they build; this module keeps the public path ``rankbias.splits``)."""

from .problems.splits import (
    RatingsSplit,
    file_order_split,
    index_split,
    kfold_split,
    movielens_split,
    per_user_split,
    random_split,
)

__all__ = [
    "RatingsSplit",
    "random_split",
    "index_split",
    "file_order_split",
    "per_user_split",
    "kfold_split",
    "movielens_split",
]
