"""Baselines: hand-computed micro data and RMSE bands on real MovieLens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfcore.baselines import bias_baseline, evaluate_baselines, global_mean_baseline
from mfcore.data.dataset import RatingData, from_frame
from mfcore.data.splits import Split, make_split
from mfcore.errors import ConfigError, DataError

COLUMNS = ["user", "item", "rating", "timestamp"]


def _read_100k(folder: Path, name: str) -> pd.DataFrame:
    # a local read: the dataset loader module is not what these tests are about
    return pd.read_csv(folder / "ml-100k" / name, sep="\t", names=COLUMNS)


@pytest.fixture(scope="module")
def tiny() -> tuple[RatingData, Split]:
    # train: (u0, i0, 4) (u0, i1, 2) (u1, i0, 5); test: (u1, i1, 3)
    frame = pd.DataFrame({"user": [0, 0, 1, 1], "item": [0, 1, 0, 1], "rating": [4.0, 2.0, 5.0, 3.0]})
    return from_frame(frame, name="tiny", rating_scale=(1, 5)), Split("hand", np.array([0, 1, 2]), np.array([3]))


def test_global_mean_by_hand(tiny: tuple[RatingData, Split]) -> None:
    data, split = tiny
    model = global_mean_baseline(data, split)
    # mu = 11/3; test error |3 - 11/3| = 2/3
    assert model.global_mean == pytest.approx(11 / 3)
    assert model.test_rmse == pytest.approx(2 / 3) and model.test_mae == pytest.approx(2 / 3)


def test_bias_baseline_by_hand(tiny: tuple[RatingData, Split]) -> None:
    data, split = tiny
    # residuals r - mu: 1/3, -5/3, 4/3.  One sweep, no regularisation:
    # b_i0 = (1/3 + 4/3) / 2 = 5/6, b_i1 = -5/3; b_u1 = (4/3 - 5/6) / 1 = 1/2
    # prediction (u1, i1) = 11/3 + 1/2 - 5/3 = 5/2 -> error 1/2
    plain = bias_baseline(data, split, reg_user=0, reg_item=0, sweeps=1)
    assert plain.item_bias == pytest.approx([5 / 6, -5 / 3])
    assert plain.user_bias[1] == pytest.approx(0.5)
    assert plain.test_rmse == pytest.approx(0.5)
    # reg 1/1: b_i0 = (5/3) / 3 = 5/9, b_i1 = (-5/3) / 2 = -5/6, b_u1 = (4/3 - 5/9) / 2 = 7/18
    # prediction = 11/3 + 7/18 - 5/6 = 29/9 -> error 2/9
    reg = bias_baseline(data, split, reg_user=1, reg_item=1, sweeps=1)
    assert reg.test_rmse == pytest.approx(2 / 9) and reg.test_mae == pytest.approx(2 / 9)
    assert (reg.reg_user, reg.reg_item, reg.sweeps) == (1.0, 1.0, 1)


def test_predict_unknown_falls_back_and_clips(tiny: tuple[RatingData, Split]) -> None:
    data, split = tiny
    m = bias_baseline(data, split, reg_user=0, reg_item=0, sweeps=1)
    mu, b_u0, b_i0 = m.global_mean, m.user_bias[0], m.item_bias[0]
    pred = m.predict(np.array([-1, 0, -1, 99]), np.array([0, -1, -1, 0]))
    assert pred == pytest.approx([mu + b_i0, mu + b_u0, mu, mu + b_i0])
    big = type(m)(**{**m.__dict__, "global_mean": 9.0})
    assert big.predict([0], [0]).tolist() == [5.0]
    assert big.predict([0], [0], clip=False)[0] > 5.0


def test_errors(tiny: tuple[RatingData, Split]) -> None:
    data, split = tiny
    with pytest.raises(ConfigError, match=r"reg_user: must be a finite number >= 0, got -1; e.g. 10"):
        bias_baseline(data, split, reg_user=-1)
    with pytest.raises(ConfigError, match=r"reg_item: must be a finite number >= 0, got nan"):
        bias_baseline(data, split, reg_item=float("nan"))
    with pytest.raises(ConfigError, match=r"sweeps: must be a positive integer, got 0; e.g. 10"):
        bias_baseline(data, split, sweeps=0)
    with pytest.raises(DataError, match=r"split 'empty' has no train ratings; a baseline needs some"):
        global_mean_baseline(data, Split("empty", np.zeros(0, np.int64), np.arange(4)))


def test_empty_test_set_gives_nan(tiny: tuple[RatingData, Split]) -> None:
    data, _ = tiny
    model = bias_baseline(data, Split("all", np.arange(4), np.zeros(0, np.int64)))
    assert np.isnan(model.test_rmse) and np.isnan(model.test_mae)


@pytest.fixture(scope="module")
def ml100k(shared_data: Path) -> RatingData:
    return from_frame(_read_100k(shared_data, "u.data"), name="ml-100k")


def test_ml100k_random_split_band(ml100k: RatingData) -> None:
    out = evaluate_baselines(ml100k, make_split(ml100k, "random:0.1", 0))
    # measured: global mean 1.1149, baseline 0.9230
    assert 1.09 < out["global_mean_rmse"] < 1.14
    assert 0.915 < out["baseline_rmse"] < 0.935
    assert 0.73 < out["baseline_mae"] < 0.76 < out["global_mean_mae"]


def test_ml100k_official_u1_band(shared_data: Path) -> None:
    base, test = _read_100k(shared_data, "u1.base"), _read_100k(shared_data, "u1.test")
    data = from_frame(pd.concat([base, test], ignore_index=True), name="ml-100k")
    data.predefined_splits["u1"] = (np.arange(len(base)), np.arange(len(base), len(base) + len(test)))
    out = evaluate_baselines(data, make_split(data, "u1", 0))
    # measured: global mean 1.1537, baseline 0.9531
    assert 1.13 < out["global_mean_rmse"] < 1.18
    assert 0.94 < out["baseline_rmse"] < 0.96


def test_ml_latest_small_band(shared_data: Path) -> None:
    frame = pd.read_csv(shared_data / "ml-latest-small" / "ratings.csv")
    frame.columns = COLUMNS
    data = from_frame(frame, name="ml-latest-small")
    out = evaluate_baselines(data, make_split(data, "random:0.2", 0))
    # measured: global mean 1.0415, baseline 0.8647
    assert 1.02 < out["global_mean_rmse"] < 1.06
    assert 0.855 < out["baseline_rmse"] < 0.875
