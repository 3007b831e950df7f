"""Splits: partitions, determinism, per-user and temporal guarantees, spec parsing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfcore.data.dataset import RatingData, from_frame
from mfcore.data.splits import (
    Split,
    kfold_split,
    kfold_splits,
    make_split,
    parse_split_spec,
    per_user_split,
    predefined_split,
    random_split,
    split_report,
    temporal_split,
)
from mfcore.data.synthetic import make_synthetic
from mfcore.errors import ConfigError, DataError


def _data(users: list[int], items: list[int], timestamps: list[int] | None = None) -> RatingData:
    frame = pd.DataFrame({"user": users, "item": items, "rating": np.full(len(users), 3.0)})
    if timestamps is not None:
        frame["timestamp"] = timestamps
    return from_frame(frame, name="tiny")


@pytest.fixture(scope="module")
def synth() -> RatingData:
    return make_synthetic(n_users=300, n_items=200, density=0.1, seed=3)


def _assert_partition(split: Split, n: int) -> None:
    assert split.train.dtype == np.int64 and split.test.dtype == np.int64
    assert np.all(np.diff(split.train) > 0) and np.all(np.diff(split.test) > 0)  # sorted, unique
    assert len(np.intersect1d(split.train, split.test)) == 0
    assert np.array_equal(np.union1d(split.train, split.test), np.arange(n))


@pytest.mark.parametrize("spec", ["random:0.1", "user:0.2", "temporal:0.1", "temporal-user:0.3", "kfold:4:2"])
def test_every_spec_partitions_and_is_deterministic(synth: RatingData, spec: str) -> None:
    a, b = make_split(synth, spec, 7), make_split(synth, spec, 7)
    _assert_partition(a, synth.n_ratings)
    assert np.array_equal(a.test, b.test) and a.name == parse_split_spec(spec).text
    if parse_split_spec(spec).uses_seed:
        assert not np.array_equal(a.test, make_split(synth, spec, 8).test)


def test_random_split_size_and_describe(synth: RatingData) -> None:
    s = random_split(synth, 0.1, 0)
    assert s.n_test == round(0.1 * synth.n_ratings)
    assert s.describe() == f"random:0.1: {s.n_train:,} train / {s.n_test:,} test ratings (10.0% held out)"
    tiny = _data([0, 1], [0, 1])
    assert random_split(tiny, 0.01, 0).n_test == 1  # never an empty side
    assert random_split(tiny, 0.99, 0).n_train == 1


def test_per_user_split_quotas_by_hand() -> None:
    # users with 1, 2, 3, 10, 5 ratings; f = 0.5 -> round-half-even(f * n_u), capped at n_u - 1:
    # 1 -> 0 (a single rating stays in train), 2 -> 1, 3 -> round(1.5) = 2, 10 -> 5, 5 -> round(2.5) = 2
    users = [0] + [1] * 2 + [2] * 3 + [3] * 10 + [4] * 5
    data = _data(users, list(range(len(users))))
    s = per_user_split(data, 0.5, 0)
    assert np.bincount(data.user_idx[s.test], minlength=5).tolist() == [0, 1, 2, 5, 2]
    # min_train=3: users with 2 and 3 ratings hold nothing out; 5 ratings -> min(2, 5 - 3)
    s3 = per_user_split(data, 0.5, 0, min_train=3)
    assert np.bincount(data.user_idx[s3.test], minlength=5).tolist() == [0, 0, 0, 5, 2]


def test_per_user_split_keeps_every_user_in_train(synth: RatingData) -> None:
    s = per_user_split(synth, 0.5, 1)
    assert split_report(synth, s)["cold_users"] == 0
    assert np.all(np.bincount(synth.user_idx[s.train], minlength=synth.n_users) >= 1)


def test_temporal_split_holds_out_latest_ties_by_row() -> None:
    # ordered by (time, row): rows 1, 4, 3, 0, 2, 5 -> the latest two are rows 2 and 5
    data = _data([0, 0, 1, 1, 2, 2], [0, 1, 2, 3, 4, 5], timestamps=[5, 1, 5, 3, 2, 5])
    assert temporal_split(data, 1 / 3).test.tolist() == [2, 5]
    assert temporal_split(data, 0.5).test.tolist() == [0, 2, 5]


def test_temporal_split_per_user_holds_out_each_users_latest() -> None:
    # user 0: times 10, 40, 20, 30 -> latest 2 are rows 1, 3; user 1: rows 4, 5 tied -> row 5
    data = _data([0, 0, 0, 0, 1, 1], [0, 1, 2, 3, 0, 1], timestamps=[10, 40, 20, 30, 7, 7])
    s = temporal_split(data, 0.5, per_user=True)
    assert s.test.tolist() == [1, 3, 5]
    assert s.name == "temporal-user:0.5"


def test_temporal_split_on_synthetic_holds_out_the_latest(synth: RatingData) -> None:
    s = temporal_split(synth, 0.2)
    assert synth.timestamp[s.test].min() > synth.timestamp[s.train].max()
    su = temporal_split(synth, 0.2, per_user=True)
    test_u, train_u = synth.user_idx[su.test], synth.user_idx[su.train]
    latest_train = np.full(synth.n_users, -1)
    np.maximum.at(latest_train, train_u, synth.timestamp[su.train])
    assert np.all(synth.timestamp[su.test] > latest_train[test_u])


def test_temporal_split_needs_timestamps() -> None:
    with pytest.raises(DataError, match=r"dataset 'tiny' has no timestamps.*use random:F or user:F"):
        temporal_split(_data([0, 1], [0, 1]), 0.5)


def test_predefined_split() -> None:
    data = _data([0, 1, 2, 3], [0, 1, 2, 3])
    data.predefined_splits["u1"] = (np.array([3, 0, 1]), np.array([2]))
    s = make_split(data, "u1", 0)
    assert s.train.tolist() == [0, 1, 3] and s.test.tolist() == [2] and s.name == "u1"
    with pytest.raises(ConfigError, match=r"split: unknown predefined split 'u2'; dataset 'tiny' has: u1"):
        predefined_split(data, "u2")
    with pytest.raises(ConfigError, match=r"dataset 'tiny' has no predefined splits; use e.g. random:0.1"):
        make_split(_data([0, 1], [0, 1]), "ua", 0)


def test_kfold_partitions_and_single_fold_matches(synth: RatingData) -> None:
    folds = kfold_splits(synth, 5, 2)
    tests = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(tests), np.arange(synth.n_ratings))  # disjoint and covering
    sizes = [f.n_test for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for i, fold in enumerate(folds, start=1):
        _assert_partition(fold, synth.n_ratings)
        assert fold.name == f"kfold:5:{i}"
        assert np.array_equal(kfold_split(synth, 5, i, 2).test, fold.test)
    assert np.array_equal(make_split(synth, "kfold:5:3", 2).test, folds[2].test)


def test_split_report_counts_cold_start() -> None:
    # train rows 0, 1: users {0}, items {0, 1}; test rows 2, 3: user 1 cold (1 rating), item 2 cold
    data = _data([0, 0, 1, 0], [0, 1, 1, 2])
    rep = split_report(data, Split("hand", np.array([0, 1]), np.array([2, 3])))
    assert (rep["cold_users"], rep["cold_items"]) == (1, 1)
    assert (rep["cold_user_ratings"], rep["cold_item_ratings"]) == (1, 1)
    assert (rep["test_users"], rep["test_items"], rep["n_test"]) == (2, 2, 2)


def test_parse_split_spec() -> None:
    assert parse_split_spec(" Random:0.25 ").text == "random:0.25"
    assert parse_split_spec("temporal-user:0.1").needs_timestamps
    assert parse_split_spec("kfold:10:10").describe() == "fold 10 of 10 random folds held out"
    assert parse_split_spec("ub").describe() == "the official ml-100k split ub"
    assert parse_split_spec("user:0.2").describe().startswith("20% of each user's ratings")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("random:0", r"'random:0': the fraction must be strictly between 0 and 1, got 0; e.g. random:0.1"),
        ("user:1", r"the fraction must be strictly between 0 and 1, got 1"),
        ("temporal:nan", r"the fraction must be strictly between 0 and 1, got nan"),
        ("random:-0.1", r"strictly between 0 and 1, got -0.1"),
        ("random:abc", r"the fraction 'abc' is not a number; use random:F"),
        ("random", r"'random': random needs one fraction, e.g. random:0.1"),
        ("kfold:5", r"kfold needs two integers kfold:K:I, e.g. kfold:5:1"),
        ("kfold:1:1", r"K must be at least 2, e.g. kfold:5:1"),
        ("kfold:5:0", r"the fold I must be between 1 and K=5, e.g. kfold:5:1"),
        ("kfold:5:6", r"the fold I must be between 1 and K=5"),
        ("bogus", r"unknown split spec 'bogus'; use random:F"),
        ("", r"expected a split spec string, got ''"),
    ],
)
def test_parse_split_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^split: .*" + message):
        parse_split_spec(spec)


def test_function_argument_errors(synth: RatingData) -> None:
    with pytest.raises(ConfigError, match=r"test_fraction: must be strictly between 0 and 1, got nan"):
        random_split(synth, float("nan"), 0)
    with pytest.raises(ConfigError, match=r"test_fraction: must be a number strictly between 0 and 1, got '0.1'"):
        per_user_split(synth, "0.1", 0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"seed: must be a non-negative integer, got -1"):
        random_split(synth, 0.1, -1)
    with pytest.raises(ConfigError, match=r"min_train: must be an integer >= 1, got 0"):
        per_user_split(synth, 0.1, 0, min_train=0)
    with pytest.raises(ConfigError, match=r"k: must be an integer between 2 and \d+, got 1"):
        kfold_splits(synth, 1, 0)
    with pytest.raises(ConfigError, match=r"fold: must be an integer between 1 and 3, got 4"):
        kfold_split(synth, 3, 4, 0)
    with pytest.raises(DataError, match=r"dataset 'tiny' has 1 rating\(s\); a split needs at least 2"):
        random_split(_data([0], [0]), 0.5, 0)


def test_random_split_is_the_documented_numpy_recipe(synth: RatingData) -> None:
    """Anyone can rebuild the split: the first round(f*n) rows of default_rng(seed).permutation(n)."""
    for fraction, seed in ((0.1, 0), (0.2, 7)):
        n = synth.n_ratings
        test = np.sort(np.random.default_rng(seed).permutation(n)[: round(fraction * n)])
        split = random_split(synth, fraction, seed)
        assert np.array_equal(split.test, test)
        assert np.array_equal(split.train, np.setdiff1d(np.arange(n), test))
