"""Synthetic data: shape, observation pattern, planted truth, factor recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfcore.data.dataset import RatingData
from mfcore.data.synthetic import factor_recovery, make_synthetic, make_synthetic_like, planted_predictions
from mfcore.errors import ConfigError


@pytest.fixture(scope="module")
def data() -> RatingData:
    return make_synthetic(n_users=400, n_items=300, density=0.08, seed=5)


def _item_share_top10(d: RatingData) -> float:
    counts = np.sort(np.bincount(d.item_idx, minlength=d.n_items))[::-1]
    return counts[: d.n_items // 10].sum() / counts.sum()


def test_shape_and_pattern(data: RatingData) -> None:
    assert (data.n_users, data.n_items, data.n_ratings) == (400, 300, round(0.08 * 400 * 300))
    keys = data.user_idx.astype(np.int64) * data.n_items + data.item_idx
    assert len(np.unique(keys)) == data.n_ratings  # no duplicate (user, item)
    assert np.bincount(data.user_idx, minlength=400).min() >= 1
    assert np.bincount(data.item_idx, minlength=300).min() >= 1
    assert data.user_idx.dtype == np.int32 and data.rating.dtype == np.float32
    assert data.rating.min() >= 1.0 and data.rating.max() <= 5.0
    assert len(np.unique(data.rating)) > 1000  # continuous, not rounded to stars
    assert np.all(np.diff(data.timestamp) > 0)
    assert data.user_ids.raw[0] == 1 and data.item_ids.raw[-1] == 300


def test_truth_and_items(data: RatingData) -> None:
    t = data.truth
    assert t is not None
    assert t["user_factors"].shape == (400, 8) and t["item_factors"].shape == (300, 8)
    assert t["user_bias"].shape == (400,) and t["item_bias"].shape == (300,)
    assert float(t["global_mean"]) == pytest.approx(3.5) and float(t["noise"]) == pytest.approx(0.3)
    assert data.title_of(17) == "Synthetic item 17"
    dominant = np.abs(t["item_factors"][16]).argmax()
    sign = "+" if t["item_factors"][16, dominant] >= 0 else "-"
    assert data.items.loc[17, "genres"] == f"Factor {dominant + 1}{sign}"
    # the planted model explains the ratings up to the noise (clipping trims it a little)
    pred = planted_predictions(t, data.user_idx, data.item_idx, data.rating_scale)
    resid = np.sqrt(np.mean((pred - data.rating) ** 2))
    assert 0.26 < resid < 0.31
    assert data.rating.std() > 0.6  # biases and factors carry most of the variance


def test_deterministic_with_seed() -> None:
    a, b = make_synthetic(seed=1, n_users=100, n_items=80), make_synthetic(seed=1, n_users=100, n_items=80)
    c = make_synthetic(seed=2, n_users=100, n_items=80)
    for field in ("user_idx", "item_idx", "rating", "timestamp"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.rating, c.rating)


def test_popularity_skew() -> None:
    kwargs = dict(n_users=500, n_items=400, density=0.05, seed=0)
    skewed, flat = make_synthetic(popularity_skew=1.0, **kwargs), make_synthetic(popularity_skew=0.0, **kwargs)
    assert _item_share_top10(skewed) > 0.3
    assert _item_share_top10(flat) < 0.15
    activity = np.bincount(skewed.user_idx)
    assert activity.max() > 5 * np.median(activity)  # a long tail of users too
    assert np.ptp(np.bincount(flat.user_idx)) <= 1  # uniform activity: equal counts


def test_unbiased_scale_and_dense_corner_cases() -> None:
    d = make_synthetic(n_users=60, n_items=50, density=0.9, biased=False, rating_scale=(0.5, 5), seed=4)
    assert not d.truth["user_bias"].any() and not d.truth["item_bias"].any()
    assert d.rating.min() >= 0.5 and d.rating.max() <= 5.0
    assert float(d.truth["global_mean"]) == pytest.approx(0.5 + 0.625 * 4.5)
    full = make_synthetic(n_users=7, n_items=5, density=1.0)
    assert full.n_ratings == 35  # every cell, still no duplicates
    least = make_synthetic(n_users=3, n_items=10, n_ratings=10)
    assert np.bincount(least.item_idx).min() == 1


def test_make_synthetic_like_ml_shapes() -> None:
    d = make_synthetic_like("ml-100k", seed=0)
    assert (d.n_users, d.n_items, d.n_ratings) == (943, 1682, 100_000)
    assert np.bincount(d.user_idx).min() >= 20 and d.name == "synthetic-ml-100k"
    small = make_synthetic_like("ml-1m", seed=0, rank=4)
    assert (small.n_users, small.n_items, small.n_ratings) == (6040, 3706, 1_000_209)
    assert small.truth["user_factors"].shape == (6040, 4)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"density: gives 10 ratings, but 100 users x 100 items need between 100 "):
        make_synthetic(n_users=100, n_items=100, density=0.001)
    with pytest.raises(ConfigError, match=r"density: must be a finite number > 0 and <= 1, got 0"):
        make_synthetic(density=0)
    with pytest.raises(ConfigError, match=r"n_users: must be an integer >= 1, got 0"):
        make_synthetic(n_users=0)
    with pytest.raises(ConfigError, match=r"noise: must be a finite number >= 0, got nan"):
        make_synthetic(noise=float("nan"))
    with pytest.raises(ConfigError, match=r"rating_scale: must be finite with min < max, got \(5, 1\)"):
        make_synthetic(rating_scale=(5, 1))
    with pytest.raises(ConfigError, match=r"min_user_ratings: is 20 but there are only 10 items"):
        make_synthetic(n_users=5, n_items=10, min_user_ratings=20)
    with pytest.raises(ConfigError, match=r"shape: unknown shape 'ml-2m'; choose one of ml-100k, ml-1m, ml-25m"):
        make_synthetic_like("ml-2m")


def test_factor_recovery_rotation_and_random() -> None:
    rng = np.random.default_rng(11)
    true = rng.standard_normal((500, 8))
    rotation = np.linalg.qr(rng.standard_normal((8, 8)))[0]
    assert factor_recovery(3.0 * true @ rotation, true) == pytest.approx(1.0, abs=1e-9)
    assert factor_recovery(torch.from_numpy(true @ rotation), true) == pytest.approx(1.0, abs=1e-9)
    random = rng.standard_normal((500, 8))
    assert factor_recovery(random, true) < 0.3  # about sqrt(8 / 500) per direction
    # different ranks: the mean is over the smaller one
    assert factor_recovery(true[:, :3], true) == pytest.approx(1.0)
    assert factor_recovery(np.hstack([true, random]), true) == pytest.approx(1.0)
    # a learned matrix with 4 of 8 directions missing scores 1/2; all zeros scores 0
    assert factor_recovery(np.hstack([true[:, :4], np.zeros((500, 4))]), true) == pytest.approx(0.5)
    assert factor_recovery(np.zeros((500, 8)), true) == 0.0


def test_factor_recovery_of_svd_on_a_dense_planted_matrix() -> None:
    d = make_synthetic(n_users=200, n_items=150, density=1.0, noise=0.1, biased=False, seed=2)
    dense = np.zeros((d.n_users, d.n_items))
    dense[d.user_idx, d.item_idx] = d.rating
    u, s, vt = np.linalg.svd(dense - float(d.truth["global_mean"]), full_matrices=False)
    assert factor_recovery(u[:, :8] * s[:8], d.truth["user_factors"]) > 0.95
    assert factor_recovery(vt[:8].T, d.truth["item_factors"]) > 0.95


def test_factor_recovery_errors() -> None:
    with pytest.raises(ConfigError, match=r"learned_factors: has 10 rows but the planted factors have 20"):
        factor_recovery(np.ones((10, 2)), np.ones((20, 2)))
    with pytest.raises(ConfigError, match=r"learned_factors: contains NaN or inf"):
        factor_recovery(np.full((3, 2), np.nan), np.ones((3, 2)))
    with pytest.raises(ConfigError, match=r"true_factors: must be a non-empty 2-D \(rows x rank\) array, got"):
        factor_recovery(np.ones((3, 2)), np.ones(3))
