"""The inspection pages' computations in mfcore.inspect.views: hand-set weights, known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mfcore.config import ModelConfig, TrainConfig
from mfcore.errors import ConfigError, UnknownIdError
from mfcore.inspect import views
from mfcore.model import MFModel
from mfcore.recommender import TrainedModel
from tests.factories import all_train_split, tiny_data

# tiny_data: users 10, 20, 30, 40; items 7 ("Seven", A), 8 ("Eight", B), 9 ("Nine", A|B).
P = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [-1.0, 0.2]])
Q = np.array([[0.5, 0.1], [-0.2, 0.8], [0.4, 0.4]])
BU = np.array([0.1, -0.2, 0.0, 0.3])
BI = np.array([0.2, -0.1, 0.05])
G = 3.5


def trained(output: str = "linear", output_range=None, scale=P, global_bias: str = "mean") -> TrainedModel:
    data = tiny_data()
    config = ModelConfig(n_factors=2, output=output, output_range=output_range, global_bias=global_bias)
    m = MFModel(4, 3, config, global_mean=G, rating_scale=(1.0, 5.0))
    with torch.no_grad():
        m.user_factors.copy_(torch.tensor(scale, dtype=torch.float32))
        m.item_factors.copy_(torch.tensor(Q, dtype=torch.float32))
        m.user_bias.copy_(torch.tensor(BU[:, None], dtype=torch.float32))
        m.item_bias.copy_(torch.tensor(BI[:, None], dtype=torch.float32))
        m.global_bias.fill_(G)
    return TrainedModel(m, data.user_ids, data.item_ids, config, TrainConfig())


def expected(u: int, i: int, p=P) -> float:
    return G + BU[u] + BI[i] + float(p[u] @ Q[i])


# ----------------------------------------------------------------------------- embeddings page


def test_row_order_popularity_sorts_by_count_and_samples_with_a_note():
    X = np.random.default_rng(0).normal(size=(50, 4))
    counts = np.arange(50)
    full = views.row_order(X, counts, "popularity", max_rows=None, what="movies")
    assert list(full.rows[:3]) == [49, 48, 47] and "All 50 movies, most-rated first" in full.note
    sampled = views.row_order(X, counts, "popularity", max_rows=20, seed=1, what="movies")
    assert len(sampled.rows) == 20 and len(set(sampled.rows)) == 20
    assert np.all(np.diff(counts[sampled.rows]) < 0)
    assert "random sample of 20 of the 50 movies (seed 1)" in sampled.note
    again = views.row_order(X, counts, "popularity", max_rows=20, seed=1)
    assert np.array_equal(sampled.rows, again.rows)


def test_row_order_pc1_and_clusters_group_rows_that_point_the_same_way():
    rng = np.random.default_rng(0)
    # Two well separated groups: rows 0..29 around (+3, 0), rows 30..59 around (-3, 0).
    X = np.vstack([rng.normal([3, 0], 0.1, (30, 2)), rng.normal([-3, 0], 0.1, (30, 2))])
    pc = views.row_order(X, np.ones(60), "pc1", max_rows=None)
    assert set(pc.rows[:30]) in ({*range(30)}, {*range(30, 60)})
    cl = views.row_order(X, np.ones(60), "cluster", max_rows=None, n_clusters=2)
    assert cl.groups is not None and list(np.unique(cl.groups)) == [0, 1]
    assert np.all(np.diff(cl.groups) >= 0)  # clusters one after the other
    assert set(cl.rows[cl.groups == 0]) in ({*range(30)}, {*range(30, 60)})
    assert "2 k-means clusters" in cl.note
    with pytest.raises(ConfigError, match="order: must be one of popularity, cluster, pc1"):
        views.row_order(X, np.ones(60), "alphabet")


def test_factor_spread_and_histograms():
    t = trained()
    spread = views.factor_spread(t)
    assert np.allclose(spread["user_std"], P.std(axis=0)) and np.allclose(spread["item_std"], Q.std(axis=0))
    assert spread["share"].sum() == pytest.approx(1.0)
    hist = views.factor_histograms(t.user_factors(), t.item_factors(), [0, 1], bins=5)
    for (f, side), g in hist.groupby(["factor", "side"]):
        assert g["count"].sum() == (4 if side == "users" else 3)
        assert g["percent"].sum() == pytest.approx(100.0)
    # Bins are shared by users and items of one factor.
    f0 = hist[hist["factor"] == 0]
    assert np.array_equal(f0[f0["side"] == "users"]["left"].to_numpy(), f0[f0["side"] == "items"]["left"].to_numpy())


def test_bias_extremes_and_genre_profile():
    t, data = trained(), tiny_data()
    table = views.item_table(t, data)
    low, high = views.bias_extremes(table, n=1)
    assert low["item"].tolist() == [8] and high["item"].tolist() == [7]
    low, high = views.bias_extremes(table, n=3, min_ratings=4)  # nobody has 4 ratings
    assert low.empty and high.empty
    genres = views.genre_profile(t, data, factor=1)
    # A: items 7 (0.1) and 9 (0.4); B: items 8 (0.8) and 9 (0.4); all three: 1.3 / 3.
    assert genres["genre"].tolist() == ["A", "B"]
    assert genres["raw_mean"].tolist() == pytest.approx([0.25, 0.6])
    assert genres["mean"].tolist() == pytest.approx([0.25 - 1.3 / 3, 0.6 - 1.3 / 3])
    assert genres["items"].tolist() == [2, 2]


# ----------------------------------------------------------------------------- one user


def test_user_ratings_errors_and_roles():
    t, data = trained(), tiny_data()
    roles = views.rating_roles(data, all_train_split(data, test_rows=(2,)))
    assert roles.tolist() == [1, 1, 2, 1, 1, 1, 1, 1, 1]
    frame = views.user_ratings(t, data, 10, roles)  # rows 0, 1, 2: items 7, 8, 9
    assert frame["title"].tolist() == ["Eight", "Nine", "Seven"]
    by_item = frame.set_index("item")
    for i, item in enumerate((7, 8, 9)):
        assert by_item.at[item, "predicted"] == pytest.approx(expected(0, i), abs=1e-5)
    assert by_item.at[9, "set"] == "test" and by_item.at[7, "set"] == "train"
    summary = views.error_summary(frame).set_index("set")
    err7, err8 = expected(0, 0) - 5.0, expected(0, 1) - 3.0
    assert summary.at["train", "ratings"] == 2
    assert summary.at["train", "rmse"] == pytest.approx(math.sqrt((err7**2 + err8**2) / 2), abs=1e-5)
    assert summary.at["train", "mae"] == pytest.approx((abs(err7) + abs(err8)) / 2, abs=1e-5)
    assert summary.at["test", "rmse"] == pytest.approx(abs(expected(0, 2) - 4.0), abs=1e-5)
    assert views.user_ratings(t, data, "20")["item"].tolist() == [9, 7]  # ids typed into a text box
    with pytest.raises(UnknownIdError, match="unknown user id 99"):
        views.user_ratings(t, data, 99)


def test_recommendations_skip_excluded_items_and_carry_titles():
    t, data = trained(), tiny_data()
    rec = views.recommendations(t, data, 20, n=5, exclude=[7, 9])
    assert rec["item"].tolist() == [8] and rec["title"].tolist() == ["Eight"]
    assert rec["predicted"].iloc[0] == pytest.approx(expected(1, 1), abs=1e-5)
    all_three = views.recommendations(t, data, 20, n=5)
    assert all_three["rank"].tolist() == [1, 2, 3] and all_three["predicted"].is_monotonic_decreasing
    assert all_three.set_index("item").at[7, "ratings"] == 3


def test_waterfall_adds_up_to_the_prediction_for_a_linear_model():
    t = trained()
    d = views.explain_prediction(t, 30, 8)
    steps = views.waterfall_steps(d)
    assert steps["label"].tolist()[:3] == ["global (g)", "user bias", "item bias"]
    assert steps["measure"].tolist() == ["absolute", "relative", "relative", "relative", "relative", "total"]
    assert steps["value"].iloc[-1] == pytest.approx(expected(2, 1), abs=1e-5)
    assert steps.loc[steps["measure"] != "total", "value"].sum() == pytest.approx(d["prediction"], abs=1e-5)
    # Factors sorted by size: |0.5*0.8| = 0.4 before |0.5*-0.2| = 0.1.
    assert steps["label"].tolist()[3:5] == ["factor 1", "factor 0"]


def test_waterfall_groups_small_factors_and_shows_the_clip():
    big = P * 10  # user 10 gets 3.5 + 0.1 + 0.2 + 10 * 0.5 + 0 = 8.8: clipped to 5
    t = trained(scale=big)
    d = views.explain_prediction(t, 10, 7)
    assert d["raw"] == pytest.approx(expected(0, 0, big), abs=1e-4) and d["prediction"] == 5.0
    steps = views.waterfall_steps(d, max_factors=1)
    assert steps["label"].tolist() == ["global (g)", "user bias", "item bias", "factor 0", "other 1 factors",
                                       "raw sum", "clip to [1, 5]", "prediction"]
    assert steps.set_index("label").at["raw sum", "value"] == pytest.approx(d["raw"])
    assert steps.set_index("label").at["clip to [1, 5]", "value"] == pytest.approx(5.0 - d["raw"], abs=1e-5)
    assert steps.loc[steps["measure"] != "total", "value"].sum() == pytest.approx(5.0, abs=1e-5)


def test_waterfall_shows_the_sigmoid_step():
    t = trained(output="sigmoid", output_range=(0.0, 5.5), global_bias="learned")
    d = views.explain_prediction(t, 20, 9)
    raw = expected(1, 2)
    squashed = 5.5 / (1 + math.exp(-raw))
    assert d["prediction"] == pytest.approx(min(squashed, 5.0), abs=1e-5)
    steps = views.waterfall_steps(d).set_index("label")
    assert steps.at["raw sum", "value"] == pytest.approx(raw, abs=1e-5)
    assert steps.at["sigmoid", "value"] == pytest.approx(squashed - raw, abs=1e-5)
    assert steps.at["prediction", "value"] == pytest.approx(d["prediction"], abs=1e-5)
    assert steps.loc[steps["measure"] != "total", "value"].sum() == pytest.approx(d["prediction"], abs=1e-5)


# ----------------------------------------------------------------------------- one movie


def test_search_items_matches_titles_most_rated_first():
    table = pd.DataFrame({"item": [1, 2, 3, 4], "title": ["Alien (1979)", "Aliens (1986)", "Heat (1995)", "ALIEN 3"],
                          "ratings": [10, 30, 5, 30]})
    assert views.search_items(table, "alien")["item"].tolist() == [4, 2, 1]  # ties by title
    assert views.search_items(table, "")["item"].tolist() == [4, 2, 1, 3]
    assert views.search_items(table, "", limit=2)["item"].tolist() == [4, 2]
    assert views.search_items(table, "(19")["item"].tolist() == [2, 1, 3]  # plain text, not a regex
    assert views.search_items(table, "zzz").empty


def test_movie_ratings_groups_and_similar_movies():
    t, data = trained(), tiny_data()
    actual = views.movie_ratings(data, 9)
    assert actual.to_dict() == {10: 4.0, 20: 2.0, 30: 5.0}
    assert views.movie_ratings(data, 12345).empty
    info = views.movie_across_users(t, data, 9)
    users = info["users"].assign(actual=lambda f: f["user"].map(actual),
                                 band=["young", "young", "old", "old"])
    groups = views.group_table(users, "band").set_index("group")
    assert groups.at["young", "users"] == 2 and groups.at["young", "raters"] == 2
    assert groups.at["young", "mean_actual"] == pytest.approx(3.0)
    assert groups.at["old", "raters"] == 1 and groups.at["old", "mean_actual"] == pytest.approx(5.0)
    assert groups.at["old", "mean_predicted"] == pytest.approx((expected(2, 2) + expected(3, 2)) / 2, abs=1e-5)
    sim = views.similar_movies(t, data, 7, n=5)
    cos = [float(Q[0] @ Q[j] / np.linalg.norm(Q[0]) / np.linalg.norm(Q[j])) for j in (1, 2)]
    assert sim["item"].tolist() == [9, 8]  # cos(7, 9) = 0.83 > cos(7, 8) = -0.05
    assert sim["similarity"].tolist() == pytest.approx([cos[1], cos[0]], abs=1e-6)
    assert sim.loc[sim["item"] == 9, "title"].item() == "Nine"
    assert views.similar_movies(t, data, 7, n=5, min_ratings=4).empty
    centred = Q - Q.mean(axis=0)
    cc = [float(centred[0] @ centred[j] / np.linalg.norm(centred[0]) / np.linalg.norm(centred[j])) for j in (1, 2)]
    got = views.similar_movies(t, data, 7, n=5, centre=True).set_index("item")["similarity"]
    assert [got[8], got[9]] == pytest.approx(cc, abs=1e-6)  # every item has 3 ratings
    with pytest.raises(UnknownIdError):
        views.similar_movies(t, data, 12345)
