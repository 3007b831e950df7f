"""Metrics on hand-computed micro data (the expected values are worked out in comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mfcore.errors import ConfigError
from mfcore.metrics import (
    error_breakdown,
    iter_score_batches,
    mae,
    ranking_metrics,
    ranking_metrics_from_lists,
    ranking_users,
    rating_class_report,
    rmse,
)

# ----------------------------------------------------------------------------- rmse/mae


def test_rmse_mae_by_hand() -> None:
    # errors 0, -1, -2, 0 -> MSE = (0 + 1 + 4 + 0) / 4 = 1.25; MAE = 3 / 4
    pred, true = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 5.0, 4.0]
    assert rmse(pred, true) == pytest.approx(math.sqrt(1.25))
    assert mae(pred, true) == pytest.approx(0.75)


def test_rmse_accepts_torch_and_accumulates_in_float64() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    true = np.array([1.0, 3.0, 5.0, 4.0], dtype=np.float32)
    assert rmse(pred, true) == pytest.approx(math.sqrt(1.25))
    # 2M float32 errors of 0.1: a float32 running sum would drift visibly
    big = np.full(2_000_000, 0.1, dtype=np.float32)
    assert rmse(big, np.zeros_like(big)) == pytest.approx(0.1, rel=1e-7)
    assert mae(torch.from_numpy(big), np.zeros_like(big)) == pytest.approx(0.1, rel=1e-7)


def test_rmse_errors() -> None:
    with pytest.raises(ConfigError, match=r"pred: has 3 values but true has 4; pass one prediction per rating"):
        rmse([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ConfigError, match=r"true: is empty: there are no ratings to score"):
        mae([], [])
    with pytest.raises(ConfigError, match=r"pred: must be 1-D, got shape \(2, 2\)"):
        rmse([[1, 2], [3, 4]], [1, 2, 3, 4])


# ----------------------------------------------------------------------------- classes


def test_rating_class_report_by_hand() -> None:
    # grid 1 on 1..5: pred rounds to 5, 3, 2, 1 (0.1 clipped up), 5 (5.4), 5
    pred = [4.6, 3.2, 1.9, 0.1, 5.4, 5.0]
    true = [5, 3, 2, 1, 4, 5]
    # per class (pred count / true count / hits): 1: 1/1/1, 2: 1/1/1, 3: 1/1/1,
    # 4: 0/1/0 -> P = R = F = 0, 5: 3/2/2 -> P = 2/3, R = 1, F = 0.8
    rep = rating_class_report(pred, true, grid=1, scale=(1, 5))
    assert rep["accuracy"] == pytest.approx(5 / 6)
    assert rep["precision_macro"] == pytest.approx((3 + 0 + 2 / 3) / 5)
    assert rep["recall_macro"] == pytest.approx(4 / 5)
    assert rep["f1_macro"] == pytest.approx((3 + 0 + 0.8) / 5)
    # weighted by support 1, 1, 1, 1, 2 (total 6)
    assert rep["precision_weighted"] == pytest.approx((3 + 0 + 2 * 2 / 3) / 6)
    assert rep["recall_weighted"] == pytest.approx((3 + 0 + 2) / 6)
    assert rep["f1_weighted"] == pytest.approx((3 + 0 + 2 * 0.8) / 6)
    per = rep["per_class"]
    assert list(per.index) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert per.loc[5.0, "precision"] == pytest.approx(2 / 3)
    assert per.loc[4.0, "support"] == 1


def test_rating_class_report_half_stars() -> None:
    # (3.74 - 0.5) / 0.5 = 6.48 -> 3.5; 3.76 -> 6.52 -> 4.0; 5.3 clipped to 5.0
    rep = rating_class_report([3.74, 3.76, 5.3], [3.5, 4.0, 5.0], grid=0.5, scale=(0.5, 5))
    assert rep["accuracy"] == 1.0
    assert list(rep["per_class"].index) == [3.5, 4.0, 5.0]


def test_rating_class_report_errors() -> None:
    with pytest.raises(ConfigError, match=r"grid: must be a positive number, got 0; e.g. 0.5"):
        rating_class_report([1.0], [1.0], grid=0)
    with pytest.raises(ConfigError, match=r"scale: must be finite with min < max, got \(5, 1\)"):
        rating_class_report([1.0], [1.0], scale=(5, 1))
    with pytest.raises(ConfigError, match=r"scale: must be \(min, max\), got 5"):
        rating_class_report([1.0], [1.0], scale=5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- ranking

# 6 items, k = 2, relevant = test rating >= 4.
# train: user 0 -> {0}; user 1 -> {1, 2}; user 2 -> nothing
# test:  user 0 -> 1 (5.0), 2 (3.0), 3 (4.0): relevant {1, 3}
#        user 1 -> 0 (4.5): relevant {0};  user 2 -> 5 (2.0): none, so not averaged
# user 0 scores, item 0 masked: top 2 = [1, 2] -> hits [1, 0]
#   P = 1/2, R = 1/2, DCG = 1, IDCG = 1 + 1/log2(3), AP = (1/1) / min(2, 2) = 1/2
# user 1 scores, items 1, 2 masked: top 2 = [4, 0] -> hits [0, 1]
#   P = 1/2, R = 1/1, DCG = 1/log2(3), IDCG = 1, AP = (1/2) / min(1, 2) = 1/2
# user 2: top 2 = [0, 5]; recommended overall {1, 2, 4, 0, 5} -> coverage 5/6
TRAIN_U, TRAIN_I = np.array([0, 1, 1]), np.array([0, 1, 2])
TEST_U, TEST_I = np.array([0, 0, 0, 1, 2]), np.array([1, 2, 3, 0, 5])
TEST_R = np.array([5.0, 3.0, 4.0, 4.5, 2.0])
SCORES = np.array(
    [
        [9.0, 8.0, 7.0, 1.0, 0.0, 2.0],
        [2.5, 9.0, 9.0, 2.0, 3.0, 0.0],
        [5.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    ]
)
EXPECTED = {
    "precision_at_k": 0.5,
    "recall_at_k": 0.75,
    "ndcg_at_k": (1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 2,
    "map_at_k": 0.5,
    "coverage": 5 / 6,
    "n_users": 2.0,
    "k": 2.0,
}
ARGS = dict(n_items=6, train_user_idx=TRAIN_U, train_item_idx=TRAIN_I, test_user_idx=TEST_U,
            test_item_idx=TEST_I, test_rating=TEST_R, k=2, threshold=4.0)


def test_ranking_metrics_by_hand() -> None:
    scores = SCORES.copy()
    got = ranking_metrics([(np.array([0, 1, 2]), scores)], **ARGS)
    assert got == pytest.approx(EXPECTED)
    assert np.array_equal(scores, SCORES)  # masking happened on a copy


def test_ranking_metrics_batches_and_torch_agree() -> None:
    assert ranking_metrics([(np.arange(3), SCORES.astype(np.float32))], **ARGS) == pytest.approx(EXPECTED)
    batches = [(np.array([0]), torch.tensor(SCORES[:1])), (np.array([1, 2]), torch.tensor(SCORES[1:]))]
    assert ranking_metrics(batches, **ARGS) == pytest.approx(EXPECTED)
    by_fn = iter_score_batches(lambda users: SCORES[users], np.array([0, 1, 2]), batch_size=2)
    assert ranking_metrics(by_fn, **ARGS) == pytest.approx(EXPECTED)


def test_ranking_metrics_from_lists_by_hand() -> None:
    lists = np.array([[1, 2, 3], [4, 0, -1], [0, 5, -1]])  # only the first k = 2 count
    got = ranking_metrics_from_lists(np.array([0, 1, 2]), lists, n_items=6, test_user_idx=TEST_U,
                                     test_item_idx=TEST_I, test_rating=TEST_R, k=2)
    assert got == pytest.approx(EXPECTED)


def test_ranking_users_and_fewer_candidates_than_k() -> None:
    assert ranking_users(TEST_U, TEST_R, 4.0).tolist() == [0, 1]
    # 3 items, user 0 trained on {0, 1}: the only candidate is 2, relevant -> 1 hit
    # P = 1/5 (k = 5), R = 1, NDCG = 1, AP = 1 / min(1, 5) = 1; -inf never recommended
    got = ranking_metrics([(np.array([0]), np.array([[5.0, 4.0, 1.0]]))], n_items=3,
                          train_user_idx=[0, 0], train_item_idx=[0, 1], test_user_idx=[0],
                          test_item_idx=[2], test_rating=[5.0], k=5)
    assert got["precision_at_k"] == pytest.approx(0.2)
    assert got["recall_at_k"] == got["ndcg_at_k"] == got["map_at_k"] == pytest.approx(1.0)
    assert got["coverage"] == pytest.approx(1 / 3)


def test_ranking_metrics_no_relevant_users_gives_nan() -> None:
    got = ranking_metrics([(np.array([2]), SCORES[2:])], **ARGS)
    assert got["n_users"] == 0 and math.isnan(got["precision_at_k"])


def test_ranking_metrics_errors() -> None:
    with pytest.raises(ConfigError, match=r"k: must be a positive integer, got 0; e.g. 10"):
        ranking_metrics([], **{**ARGS, "k": 0})
    with pytest.raises(ConfigError, match=r"threshold: must be a finite rating, got nan"):
        ranking_metrics([], **{**ARGS, "threshold": float("nan")})
    with pytest.raises(ConfigError, match=r"n_items: must be a positive integer \(the catalogue size\)"):
        ranking_metrics([], **{**ARGS, "n_items": 0})
    with pytest.raises(ConfigError, match=r"scores: a batch has shape \(1, 5\), expected \(1, 6\)"):
        ranking_metrics([(np.array([0]), np.zeros((1, 5)))], **ARGS)
    with pytest.raises(ConfigError, match=r"top_items: must have shape \(2, N\), got \(3,\)"):
        ranking_metrics_from_lists([0, 1], [1, 2, 3], n_items=6, test_user_idx=TEST_U,
                                   test_item_idx=TEST_I, test_rating=TEST_R)
    with pytest.raises(ConfigError, match=r"batch_size: must be a positive integer, got 0"):
        list(iter_score_batches(lambda u: u, [0], batch_size=0))


# ----------------------------------------------------------------------------- breakdown


def test_error_breakdown_by_hand() -> None:
    # train counts: users [0, 3, 30], items [250, 7]; user -1 is unknown (cold)
    # rows (user, item, error): (0, 0, +1) (1, 0, -1) (1, 1, +2) (2, 1, 0) (-1, 1, +3)
    true = np.zeros(5)
    pred = np.array([1.0, -1.0, 2.0, 0.0, 3.0])
    out = error_breakdown(pred, true, [0, 1, 1, 2, -1], [0, 0, 1, 1, 1], [0, 3, 30], [250, 7])
    users = out["user_activity"].set_index("bin")
    assert list(users.index) == ["0 (cold)", "1-5", "6-20", "21-50", "51-200", "201+"]
    # cold: errors 1, 3 -> RMSE sqrt(10/2), MAE 2;  1-5: errors -1, 2 -> sqrt(5/2), 1.5, mean 0.5
    assert users.loc["0 (cold)", "count"] == 2
    assert users.loc["0 (cold)", "rmse"] == pytest.approx(math.sqrt(5))
    assert users.loc["0 (cold)", "mae"] == pytest.approx(2.0)
    assert users.loc["1-5", "rmse"] == pytest.approx(math.sqrt(2.5))
    assert users.loc["1-5", "mean_error"] == pytest.approx(0.5)
    assert users.loc["6-20", "count"] == 0 and math.isnan(users.loc["6-20", "rmse"])
    assert users.loc["21-50", "rmse"] == 0.0
    items = out["item_popularity"].set_index("bin")
    # 201+: errors 1, -1 -> RMSE 1, mean 0;  6-20: errors 2, 0, 3 -> sqrt(13/3), MAE 5/3
    assert items.loc["201+", "rmse"] == pytest.approx(1.0)
    assert items.loc["201+", "mean_error"] == pytest.approx(0.0)
    assert items.loc["6-20", "rmse"] == pytest.approx(math.sqrt(13 / 3))
    assert items.loc["6-20", "mae"] == pytest.approx(5 / 3)
    assert int(items["count"].sum()) == 5
    assert isinstance(out["item_popularity"], pd.DataFrame)


def test_error_breakdown_custom_bins_and_errors() -> None:
    out = error_breakdown([1.0, 2.0], [1.0, 1.0], [0, 1], [0, 0], [1, 10], [5], bins=(0, 5))
    assert out["user_activity"]["bin"].tolist() == ["0-4", "5+"]
    assert out["user_activity"]["count"].tolist() == [1, 1]
    with pytest.raises(ConfigError, match=r"bins: must be increasing integer lower edges starting at 0"):
        error_breakdown([1.0], [1.0], [0], [0], [1], [1], bins=(1, 5))
    with pytest.raises(ConfigError, match=r"user_idx: has 2 values but there are 1 ratings"):
        error_breakdown([1.0], [1.0], [0, 1], [0], [1], [1])
