"""End-of-run evaluation on hand-computed data."""

import numpy as np
import pytest
import torch

from mfcore.config import ModelConfig
from mfcore.evaluation import evaluate, star_grid
from mfcore.model import MFModel
from tests.factories import all_train_split, tiny_data


def _model(data, bias_per_item):
    m = MFModel(data.n_users, data.n_items, ModelConfig(n_factors=1, init_std=0.0), global_mean=3.0,
                rating_scale=(1.0, 5.0))
    with torch.no_grad():
        m.item_bias.copy_(torch.tensor(bias_per_item).view(-1, 1))
    return m


def test_errors_and_star_classes_by_hand():
    data = tiny_data()
    # tiny ratings by row: 5 3 4 4 2 1 5 3 4 ; test rows 0 (item 7: 5), 4 (item 9: 2), 6 (item 9: 5)
    split = all_train_split(data, test_rows=(0, 4, 6))
    model = _model(data, [1.0, 0.0, -1.0])  # predictions: item 7 -> 4, item 8 -> 3, item 9 -> 2
    out = evaluate(model, data, split)
    # errors: 4-5=-1, 2-2=0, 2-5=-3 -> RMSE sqrt(10/3), MAE 4/3
    assert out["test_rmse"] == pytest.approx(np.sqrt(10 / 3))
    assert out["test_mae"] == pytest.approx(4 / 3)
    assert out["class_accuracy"] == pytest.approx(1 / 3)
    assert star_grid(data) == 1.0


def test_ranking_metrics_by_hand():
    data = tiny_data()
    # user 10 rated 7 (5), 8 (3), 9 (4). Hold out items 7 and 9 (relevant: >= 4).
    split = all_train_split(data, test_rows=(0, 2))
    model = _model(data, [1.0, 0.0, 0.5])  # ranking for user 10 among unseen {7, 9}: 7 then 9
    out = evaluate(model, data, split, ranking=True, k=1, threshold=4.0)
    # top-1 = item 7, relevant: precision 1, recall 1/2, NDCG 1 (ideal DCG@1 = 1), AP@1 = 1/min(2,1) = 1
    assert out["rank_precision_at_k"] == pytest.approx(1.0)
    assert out["rank_recall_at_k"] == pytest.approx(0.5)
    assert out["rank_ndcg_at_k"] == pytest.approx(1.0)
    assert out["rank_n_users"] == 1
