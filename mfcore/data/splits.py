"""Train/test splits of a :class:`RatingData`: pure, seeded, vectorised functions.

A :class:`Split` holds *row indices* into the parallel rating arrays of one
``RatingData`` (int64, sorted ascending), never copies of the ratings, so a split of
25M ratings costs two index arrays. Every function here returns the same split for
the same data and seed, and draws nothing from global random state.

Split specs (the strings the CLI and the app use) are parsed by
:func:`parse_split_spec`; :func:`make_split` applies one::

    random:0.1         10% of all ratings, uniformly at random
    user:0.2           20% of each user's ratings (each user keeps >= 1 in train)
    temporal:0.1       the latest 10% of all ratings (needs timestamps)
    temporal-user:0.1  the latest 10% of each user's ratings (needs timestamps)
    u1 .. u5, ua, ub   ml-100k's official splits
    kfold:5:1          fold 1 of 5 (folds numbered 1..K) as the test set
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfcore.data.dataset import RatingData
from mfcore.errors import ConfigError, DataError

__all__ = [
    "Split",
    "SplitSpec",
    "random_split",
    "per_user_split",
    "temporal_split",
    "predefined_split",
    "kfold_splits",
    "kfold_split",
    "parse_split_spec",
    "make_split",
    "split_report",
    "SPEC_HELP",
]

SPEC_HELP = (
    "use random:F, user:F, temporal:F, temporal-user:F (F a fraction strictly between 0 and 1, "
    "e.g. random:0.1), kfold:K:I (fold I of K, 1 <= I <= K, e.g. kfold:5:1), "
    "or an official ml-100k split u1..u5, ua, ub"
)
_PREDEFINED_NAMES = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


@dataclass(frozen=True, eq=False)
class Split:
    """A train/test partition as sorted int64 row indices into one ``RatingData``.

    ``eq=False``: two splits are compared by their arrays (``np.array_equal``), not ``==``.
    """

    name: str
    train: np.ndarray
    test: np.ndarray

    @property
    def n_train(self) -> int:
        return int(len(self.train))

    @property
    def n_test(self) -> int:
        return int(len(self.test))

    @property
    def test_fraction(self) -> float:
        """Share of the split's rows that are held out."""
        total = self.n_train + self.n_test
        return self.n_test / total if total else 0.0

    def describe(self) -> str:
        """One line for a log or a caption, e.g. ``random:0.1: 90,000 train / 10,000 test (10.0%)``."""
        return (
            f"{self.name}: {self.n_train:,} train / {self.n_test:,} test ratings "
            f"({100.0 * self.test_fraction:.1f}% held out)"
        )


# ----------------------------------------------------------------------------- checks


def _check_fraction(value: Any, field: str = "test_fraction") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(field, f"must be a number strictly between 0 and 1, got {value!r}; e.g. 0.1")
    f = float(value)
    if not math.isfinite(f) or not 0.0 < f < 1.0:
        raise ConfigError(field, f"must be strictly between 0 and 1, got {value!r}; e.g. 0.1 holds out 10%")
    return f


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ConfigError("seed", f"must be a non-negative integer, got {seed!r}; e.g. 0")
    return int(seed)


def _check_int(value: Any, field: str, low: int, high: int | None = None) -> int:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Integral)
    if ok and int(value) >= low and (high is None or int(value) <= high):
        return int(value)
    span = f">= {low}" if high is None else f"between {low} and {high}"
    raise ConfigError(field, f"must be an integer {span}, got {value!r}")


def _check_data(data: RatingData) -> int:
    n = data.n_ratings
    if n < 2:
        raise DataError(f"dataset {data.name!r} has {n} rating(s); a split needs at least 2")
    return n


def _from_mask(name: str, test_mask: np.ndarray) -> Split:
    train = np.flatnonzero(~test_mask).astype(np.int64, copy=False)
    return Split(name, train, np.flatnonzero(test_mask).astype(np.int64, copy=False))


def _n_held_out(fraction: float, n: int) -> int:
    """round(fraction * n), kept within [1, n - 1] so neither side is empty."""
    return int(min(max(round(fraction * n), 1), n - 1))


# Sorting packed int64 keys is several times faster than argsort/lexsort on 25M rows
# (measured: np.sort ~0.5 s, np.argsort ~5-7 s), so orders are built by packing
# (major key, ..., row) into one int64 whenever the bits fit.


def _order_by(*keys: tuple[np.ndarray, int]) -> np.ndarray:
    """Row order sorted by ``keys`` (major first; each a non-negative int array and its
    maximum), ties broken by row index. Falls back to ``np.lexsort`` when the keys do
    not fit into 63 bits."""
    n = len(keys[0][0])
    row_bits = max(1, int(n - 1).bit_length())
    bits = [max(1, int(top).bit_length()) for _, top in keys]
    if sum(bits) + row_bits > 63:
        return np.lexsort(tuple(np.asarray(arr) for arr, _ in reversed(keys))).astype(np.int64)
    # In-place shifts: on 25M rows every fresh 200 MB array costs more than the sort.
    packed = np.asarray(keys[0][0]).astype(np.int64)
    for (arr, _), b in zip(keys[1:], bits[1:]):
        packed <<= b
        packed |= np.asarray(arr)
    packed <<= row_bits
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    packed &= (1 << row_bits) - 1
    return packed


def _random_bits(n: int, *tops: int) -> int:
    """How many random bits fit beside ``tops`` and a row index in 63 bits (at most 32)."""
    used = max(1, int(n - 1).bit_length()) + sum(max(1, int(t).bit_length()) for t in tops)
    return max(1, min(32, 63 - used))


def _fold_bounds(n: int, k: int) -> np.ndarray:
    """Boundaries of k nearly equal consecutive folds (as ``np.array_split`` makes them)."""
    size, extra = divmod(n, k)
    sizes = np.full(k, size, dtype=np.int64)
    sizes[:extra] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def _ranked_bins(keys: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Bin of each row when rows are ranked by ``keys``: rank r goes to bin b where
    ``bounds[b] <= r < bounds[b + 1]``. Uses ``np.partition`` (no full sort); exact
    ties between float keys (vanishingly rare) fall back to a stable argsort."""
    n = len(keys)
    cuts = bounds[1:-1] - 1
    if len(cuts):
        edges = np.partition(keys, cuts)[cuts]
        bins = np.searchsorted(edges, keys, side="left")
        if np.array_equal(np.bincount(bins, minlength=len(bounds) - 1), np.diff(bounds)):
            return bins
    bins = np.empty(n, dtype=np.int64)
    bins[np.argsort(keys, kind="stable")] = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    return bins


# ----------------------------------------------------------------------------- splits


def random_split(data: RatingData, test_fraction: float, seed: int) -> Split:
    """Hold out a uniformly random ``test_fraction`` of the ratings.

    The test rows are the first ``round(fraction * n)`` of
    ``numpy.random.default_rng(seed).permutation(n)`` (kept within ``[1, n - 1]``), so
    anyone can rebuild the split in one line of numpy. This is the protocol the peers'
    figures in benchmarks/quality.py were measured on. Users/items whose ratings all
    land in test are cold in training; :func:`split_report` counts them.
    """
    f = _check_fraction(test_fraction)
    rng = np.random.default_rng(_check_seed(seed))
    n = _check_data(data)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: _n_held_out(f, n)]] = True
    return _from_mask(f"random:{f:g}", mask)


def _rank_in_group(counts: np.ndarray) -> np.ndarray:
    """For rows grouped by a key with group sizes ``counts``: each row's rank in its group."""
    starts = np.cumsum(counts) - counts
    ranks = np.arange(int(counts.sum()), dtype=np.int64)
    ranks -= np.repeat(starts, counts)
    return ranks


def _per_user_quota(counts: np.ndarray, fraction: float, min_train: int) -> np.ndarray:
    """Test ratings per user: round(f * n_u), leaving at least ``min_train`` in train.

    Users with a single rating keep it in train. Rounding is half to even, like ``round``.
    """
    quota = np.rint(fraction * counts).astype(np.int64)
    quota = np.minimum(quota, np.maximum(counts - min_train, 0))
    quota[counts < 2] = 0
    return quota


def per_user_split(data: RatingData, test_fraction: float, seed: int, min_train: int = 1) -> Split:
    """Hold out ``round(test_fraction * n_u)`` random ratings of every user.

    Every user with >= 2 ratings keeps at least ``min_train`` of them in train (users
    with one rating keep it), so no user is cold at test time.
    """
    f = _check_fraction(test_fraction)
    rng = np.random.default_rng(_check_seed(seed))
    min_train = _check_int(min_train, "min_train", 1)
    n = _check_data(data)
    # Grouped by user, in random order inside each user (ties of the random key,
    # rare with >= 20 random bits, fall back to row order).
    top_user = data.n_users - 1
    bits = _random_bits(n, top_user)
    # Too few spare bits (astronomically large data): 32 bits, via the lexsort path.
    rand_top = (1 << (bits if bits >= 16 else 32)) - 1
    order = _order_by((data.user_idx, top_user), (rng.integers(0, rand_top + 1, n, dtype=np.int64), rand_top))
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    quota = _per_user_quota(counts, f, min_train)
    mask = np.zeros(n, dtype=bool)
    mask[order[_rank_in_group(counts) < np.repeat(quota, counts)]] = True
    name = f"user:{f:g}" if min_train == 1 else f"user:{f:g} (min_train={min_train})"
    return _from_mask(name, mask)


def temporal_split(
    data: RatingData, test_fraction: float, per_user: bool = False, *, min_train: int = 1
) -> Split:
    """Hold out the latest ratings: the latest ``round(f * n)`` overall, or per user.

    Ties in time are broken by row order (a later row counts as later). With
    ``per_user=True`` each user holds out ``round(f * n_u)`` latest ratings and keeps at
    least ``min_train`` in train, as in :func:`per_user_split`. Raises
    :class:`DataError` when the data has no timestamps.
    """
    f = _check_fraction(test_fraction)
    min_train = _check_int(min_train, "min_train", 1)
    n = _check_data(data)
    if data.timestamp is None:
        raise DataError(
            f"dataset {data.name!r} has no timestamps, so a temporal split is impossible; "
            "use random:F or user:F instead"
        )
    ts = np.asarray(data.timestamp, dtype=np.int64)
    t0 = int(ts.min())
    by_time = _order_by((ts - t0, int(ts.max()) - t0))
    mask = np.zeros(n, dtype=bool)
    if not per_user:
        mask[by_time[n - _n_held_out(f, n) :]] = True
        return _from_mask(f"temporal:{f:g}", mask)
    # Stable regrouping by user keeps the time order (and its row tie-break) inside.
    order = by_time[_order_by((data.user_idx[by_time], data.n_users - 1))]
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    quota = _per_user_quota(counts, f, min_train)
    # Rows of each user are time-ordered: the last ``quota`` of each group are the latest.
    from_end = np.repeat(counts - 1, counts) - _rank_in_group(counts)
    mask[order[from_end < np.repeat(quota, counts)]] = True
    return _from_mask(f"temporal-user:{f:g}", mask)


def predefined_split(data: RatingData, name: str) -> Split:
    """One of the dataset's official splits (ml-100k: ``u1``..``u5``, ``ua``, ``ub``)."""
    available = sorted(data.predefined_splits)
    if name not in data.predefined_splits:
        if available:
            hint = f"dataset {data.name!r} has: {', '.join(available)}"
        else:
            hint = f"dataset {data.name!r} has no predefined splits; use e.g. random:0.1 or user:0.1"
        raise ConfigError("split", f"unknown predefined split {name!r}; {hint}")
    train, test = data.predefined_splits[name]
    return Split(name, np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64)))


def _check_k(data: RatingData, k: Any) -> tuple[int, int]:
    n = _check_data(data)
    return n, _check_int(k, "k", 2, n)


def _fold_of(data: RatingData, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = data.n_ratings
    return _ranked_bins(rng.random(n), _fold_bounds(n, k))


def kfold_splits(data: RatingData, k: int, seed: int) -> list[Split]:
    """K random folds: the test sets are disjoint and together cover every rating.

    Fold sizes differ by at most one. Split ``i`` (0-based in the list) is named
    ``kfold:K:i+1``, the spec that :func:`make_split` accepts for it.
    """
    seed = _check_seed(seed)
    _, k = _check_k(data, k)
    fold_of = _fold_of(data, k, seed)
    return [_from_mask(f"kfold:{k}:{i + 1}", fold_of == i) for i in range(k)]


def kfold_split(data: RatingData, k: int, fold: int, seed: int) -> Split:
    """Fold ``fold`` (1-based, ``1 <= fold <= k``) of :func:`kfold_splits` as the test set."""
    seed = _check_seed(seed)
    _, k = _check_k(data, k)
    fold = _check_int(fold, "fold", 1, k)
    return _from_mask(f"kfold:{k}:{fold}", _fold_of(data, k, seed) == fold - 1)


# ----------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class SplitSpec:
    """A parsed split spec: ``kind`` plus its parameters; ``apply`` makes the split."""

    kind: str  # "random" | "user" | "temporal" | "temporal-user" | "predefined" | "kfold"
    fraction: float | None = None
    k: int | None = None
    fold: int | None = None
    name: str | None = None  # predefined split name

    @property
    def text(self) -> str:
        """The canonical spec string (``parse_split_spec(spec.text) == spec``)."""
        if self.kind == "predefined":
            return str(self.name)
        if self.kind == "kfold":
            return f"kfold:{self.k}:{self.fold}"
        return f"{self.kind}:{self.fraction:g}"

    @property
    def needs_timestamps(self) -> bool:
        return self.kind.startswith("temporal")

    @property
    def uses_seed(self) -> bool:
        return self.kind in ("random", "user", "kfold")

    def describe(self) -> str:
        """Plain-language description for a caption or a help text."""
        if self.kind == "predefined":
            return f"the official ml-100k split {self.name}"
        if self.kind == "kfold":
            return f"fold {self.fold} of {self.k} random folds held out"
        pct = f"{100.0 * float(self.fraction or 0.0):g}%"
        return {
            "random": f"{pct} of all ratings held out at random",
            "user": f"{pct} of each user's ratings held out at random (every user stays in train)",
            "temporal": f"the latest {pct} of all ratings held out",
            "temporal-user": f"the latest {pct} of each user's ratings held out",
        }[self.kind]

    def apply(self, data: RatingData, seed: int) -> Split:
        """Make this split of ``data`` (``seed`` is ignored by temporal and predefined splits)."""
        if self.kind == "random":
            return random_split(data, float(self.fraction or 0.0), seed)
        if self.kind == "user":
            return per_user_split(data, float(self.fraction or 0.0), seed)
        if self.kind in ("temporal", "temporal-user"):
            return temporal_split(data, float(self.fraction or 0.0), per_user=self.kind == "temporal-user")
        if self.kind == "kfold":
            return kfold_split(data, int(self.k or 0), int(self.fold or 0), seed)
        return predefined_split(data, str(self.name))

    def __call__(self, data: RatingData, seed: int) -> Split:
        return self.apply(data, seed)


def _parse_fraction(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError("split", f"{spec!r}: the fraction {text!r} is not a number; {SPEC_HELP}") from None
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise ConfigError(
            "split", f"{spec!r}: the fraction must be strictly between 0 and 1, got {text}; e.g. random:0.1"
        )
    return value


def parse_split_spec(spec: str) -> SplitSpec:
    """Parse a split spec string (see the module docstring); raises :class:`ConfigError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("split", f"expected a split spec string, got {spec!r}; {SPEC_HELP}")
    text = spec.strip().lower()
    if text in _PREDEFINED_NAMES:
        return SplitSpec("predefined", name=text)
    kind, _, rest = text.partition(":")
    if kind in ("random", "user", "temporal", "temporal-user"):
        if not rest or ":" in rest:
            raise ConfigError("split", f"{spec!r}: {kind} needs one fraction, e.g. {kind}:0.1")
        return SplitSpec(kind, fraction=_parse_fraction(rest, spec))
    if kind == "kfold":
        parts = rest.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError("split", f"{spec!r}: kfold needs two integers kfold:K:I, e.g. kfold:5:1")
        k, fold = (int(p) for p in parts)
        if k < 2:
            raise ConfigError("split", f"{spec!r}: K must be at least 2, e.g. kfold:5:1")
        if not 1 <= fold <= k:
            raise ConfigError("split", f"{spec!r}: the fold I must be between 1 and K={k}, e.g. kfold:{k}:1")
        return SplitSpec("kfold", k=k, fold=fold)
    raise ConfigError("split", f"unknown split spec {spec!r}; {SPEC_HELP}")


def make_split(data: RatingData, spec: str, seed: int) -> Split:
    """Parse ``spec`` and apply it to ``data`` with ``seed``; a split that leaves no test (or
    no training) rating raises DataError (its RMSE would be NaN)."""
    split = parse_split_spec(spec).apply(data, seed)
    if split.n_test == 0 or split.n_train == 0:
        empty = "test" if split.n_test == 0 else "training"
        raise DataError(f"split {spec!r} leaves no {empty} ratings ({split.n_train:,} train / {split.n_test:,} "
                        f"test of {data.n_ratings:,}); choose a larger test fraction or another split")
    return split


# ----------------------------------------------------------------------------- report


def split_report(data: RatingData, split: Split) -> dict[str, Any]:
    """Sizes and cold-start counts of a split, for the UI.

    ``cold_users``/``cold_items``: users/items that appear in test but never in train;
    ``cold_user_ratings``/``cold_item_ratings``: test ratings whose user/item is cold
    (a model can only fall back to the mean and the known bias for them).
    """
    users_train = np.bincount(data.user_idx[split.train], minlength=data.n_users) > 0
    items_train = np.bincount(data.item_idx[split.train], minlength=data.n_items) > 0
    test_u = data.user_idx[split.test]
    test_i = data.item_idx[split.test]
    users_test = np.bincount(test_u, minlength=data.n_users) > 0
    items_test = np.bincount(test_i, minlength=data.n_items) > 0
    return {
        "name": split.name,
        "n_train": split.n_train,
        "n_test": split.n_test,
        "test_fraction": split.test_fraction,
        "train_users": int(users_train.sum()),
        "train_items": int(items_train.sum()),
        "test_users": int(users_test.sum()),
        "test_items": int(items_test.sum()),
        "cold_users": int((users_test & ~users_train).sum()),
        "cold_items": int((items_test & ~items_train).sum()),
        "cold_user_ratings": int((~users_train[test_u]).sum()),
        "cold_item_ratings": int((~items_train[test_i]).sum()),
    }
