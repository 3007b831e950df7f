"""In-memory rating data: dense index arrays plus the raw-id vocabularies and metadata.

Raw ids (MovieLens ``userId``/``movieId``, or whatever a custom file uses) are mapped
to dense ``0..n-1`` indices exactly once, here. Everything public in ``mfcore`` takes
and returns raw ids; the dense indices are an implementation detail of training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from mfcore.errors import DataError, UnknownIdError


class IdIndex:
    """A bijection between raw ids (ints or strings) and dense indices ``0..n-1``."""

    def __init__(self, raw_ids: Iterable[Any], kind: str) -> None:
        raw = np.asarray(list(raw_ids) if not isinstance(raw_ids, np.ndarray) else raw_ids)
        self.raw: np.ndarray = raw
        self.kind = kind
        self._lookup = pd.Index(raw)
        if not self._lookup.is_unique:
            raise DataError(f"{kind} ids are not unique")

    def __len__(self) -> int:
        return len(self.raw)

    def __contains__(self, raw_id: object) -> bool:
        try:
            return raw_id in self._lookup
        except TypeError:
            return False

    def index_of(self, raw_id: Any) -> int:
        """Dense index of one raw id; raises :class:`UnknownIdError`."""
        try:
            loc = self._lookup.get_loc(self._coerce(raw_id))
        except (KeyError, TypeError, ValueError):
            raise UnknownIdError(self.kind, raw_id, f"the dataset has {len(self)} {self.kind}s") from None
        if not isinstance(loc, (int, np.integer)):
            raise UnknownIdError(self.kind, raw_id)
        return int(loc)

    def indices_of(self, raw_ids: Iterable[Any]) -> np.ndarray:
        """Dense indices of many raw ids, ``-1`` where unknown (never raises)."""
        values = np.asarray(list(raw_ids) if not isinstance(raw_ids, np.ndarray) else raw_ids)
        if values.size == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            return self._lookup.get_indexer(values.astype(self.raw.dtype, copy=False))
        except (TypeError, ValueError):
            return self._lookup.get_indexer(values)

    def raw_of(self, indices: np.ndarray | int) -> Any:
        """Raw id(s) of dense index/indices."""
        return self.raw[indices]

    def _coerce(self, raw_id: Any) -> Any:
        """Accept ``"42"`` for integer vocabularies (ids typed into a text box)."""
        if np.issubdtype(self.raw.dtype, np.integer) and isinstance(raw_id, str):
            try:
                return int(raw_id.strip())
            except ValueError:
                return raw_id
        if np.issubdtype(self.raw.dtype, np.integer) and isinstance(raw_id, float) and raw_id.is_integer():
            return int(raw_id)
        return raw_id


@dataclass(eq=False)
class RatingData:
    """A whole rating dataset.

    ``user_idx``/``item_idx``/``rating`` (and ``timestamp`` when known) are parallel
    arrays, one entry per rating, in the file's order. ``items`` is indexed by raw item
    id and has at least ``title`` and ``genres`` (``|``-joined, may be empty);
    ``users`` (optional) holds demographics indexed by raw user id. ``source`` says where
    the data came from, in words; what happened while loading it is in fields of its own
    (``duplicates_dropped``), so a UI can phrase it.
    """

    name: str
    user_ids: IdIndex
    item_ids: IdIndex
    user_idx: np.ndarray  # int32, dense
    item_idx: np.ndarray  # int32, dense
    rating: np.ndarray  # float32
    timestamp: np.ndarray | None  # int64 seconds, or None
    rating_scale: tuple[float, float]
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    # name -> (train row indices, test row indices), e.g. ml-100k's u1..u5, ua, ub
    predefined_splits: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # synthetic data only: the planted truth ({"user_factors", "item_factors", ...})
    truth: dict[str, np.ndarray] | None = None
    source: str = ""  # a plain description: "MovieLens ml-100k from <path>", "ratings file <path> (...)"
    # ratings dropped at load time because their (user, item) pair was rated again; the
    # last rating of each pair is kept (latest timestamp, ties broken by the later line)
    duplicates_dropped: int = 0

    def __post_init__(self) -> None:
        n = len(self.rating)
        if not (len(self.user_idx) == len(self.item_idx) == n):
            raise DataError("user, item and rating arrays differ in length")
        if self.timestamp is not None and len(self.timestamp) != n:
            raise DataError("timestamp array differs in length from ratings")

    @property
    def n_ratings(self) -> int:
        return int(len(self.rating))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def density(self) -> float:
        return self.n_ratings / max(1, self.n_users * self.n_items)

    def title_of(self, raw_item: Any) -> str:
        """The title of a raw item id, or ``"item <id>"`` when no title is known."""
        if raw_item in self.items.index and "title" in self.items.columns:
            return str(self.items.at[raw_item, "title"])
        return f"item {raw_item}"

    def to_frame(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """The ratings (optionally a subset of rows) as a frame of raw ids."""
        sel = slice(None) if rows is None else rows
        frame = pd.DataFrame(
            {
                "user": self.user_ids.raw[self.user_idx[sel]],
                "item": self.item_ids.raw[self.item_idx[sel]],
                "rating": self.rating[sel],
            }
        )
        if self.timestamp is not None:
            frame["timestamp"] = self.timestamp[sel]
        return frame

    def summary(self) -> dict[str, Any]:
        """Counts for a data page or a log line."""
        return {
            "name": self.name,
            "ratings": self.n_ratings,
            "users": self.n_users,
            "items": self.n_items,
            "density": self.density,
            "rating_min": self.rating_scale[0],
            "rating_max": self.rating_scale[1],
            "has_timestamps": self.timestamp is not None,
            "has_demographics": self.users is not None,
            "duplicates_dropped": self.duplicates_dropped,
        }


def from_frame(
    frame: pd.DataFrame,
    *,
    name: str,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    rating_scale: tuple[float, float] | None = None,
    source: str = "",
    duplicates_dropped: int = 0,
) -> RatingData:
    """Build :class:`RatingData` from a frame with columns user, item, rating[, timestamp].

    Users and items get dense indices in order of first appearance sorted by raw id,
    so the same file always gives the same indices. ``items`` gains a row (title
    ``"item <id>"``) for every rated item it lacks.
    """
    user_codes, user_raw = pd.factorize(frame["user"], sort=True)
    item_codes, item_raw = pd.factorize(frame["item"], sort=True)
    ratings = frame["rating"].to_numpy(dtype=np.float32)
    if rating_scale is None:
        rating_scale = (float(ratings.min()), float(ratings.max())) if len(ratings) else (1.0, 5.0)
    timestamp = frame["timestamp"].to_numpy(dtype=np.int64) if "timestamp" in frame.columns else None
    items = _complete_items(items, np.asarray(item_raw))
    return RatingData(
        name=name,
        user_ids=IdIndex(np.asarray(user_raw), "user"),
        item_ids=IdIndex(np.asarray(item_raw), "item"),
        user_idx=user_codes.astype(np.int32),
        item_idx=item_codes.astype(np.int32),
        rating=ratings,
        timestamp=timestamp,
        rating_scale=(float(rating_scale[0]), float(rating_scale[1])),
        items=items,
        users=users,
        source=source,
        duplicates_dropped=duplicates_dropped,
    )


def _complete_items(items: pd.DataFrame | None, rated: np.ndarray) -> pd.DataFrame:
    if items is None:
        items = pd.DataFrame(index=pd.Index(rated, name="item"))
    items = items.copy()
    if "title" not in items.columns:
        items["title"] = [f"item {i}" for i in items.index]
    if "genres" not in items.columns:
        items["genres"] = ""
    missing = pd.Index(rated).difference(items.index)
    if len(missing):
        extra = pd.DataFrame(
            {"title": [f"item {i}" for i in missing], "genres": ""}, index=missing
        )
        items = pd.concat([items, extra])
    items.index.name = "item"
    return items
