"""The inspection pages (Embeddings & biases, One user, One movie) through AppTest, on real runs.

Two short runs on the real ml-100k (from the ``shared_data`` fixture) are trained once
for the module by the app's own job runner in a temporary runs folder: a linear biased
model (8 factors, 5 epochs of per-rating SGD) and a sigmoid one (4 factors, Adam), so
``ui.selection.selected_run()`` finds their checkpoints. A separate test with an empty
runs folder checks that every page then asks for a run to be trained first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mfcore.config import ModelConfig, TrainConfig
from mfcore.runs.runner import RunRequest
from mfcore.data.sources import load_dataset
from mfcore.inspect import views
from tests.app_support import app_runner, plotly_array as arr
from ui import jobs


ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
EMBEDDINGS, USER, MOVIE = "pages/embeddings.py", "pages/user.py", "pages/movie.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data):
    """{"linear": run id, "sigmoid": run id}, trained into a module-wide runs folder."""
    folder = tmp_path_factory.mktemp("inspect") / "runs"
    with app_runner(folder, shared_data) as runner:
        ids = {}
        for name, model, train in (
            ("sigmoid", ModelConfig(n_factors=4, global_bias="learned", init="uniform", init_low=0.0, init_high=0.05,
                                    output="sigmoid", output_range=(0.0, 5.5)),
             TrainConfig(optimizer="adam", lr=0.01, epochs=3, batch_size=4096, l2=0.0, l2_bias=0.0)),
            ("linear", ModelConfig(n_factors=8), TrainConfig(optimizer="sgd", epochs=5, batch_size=1)),
        ):
            ids[name] = runner.submit(RunRequest("ml-100k", "random:0.1", 0, model, train, label=f"test-{name}"))
            snap = runner.wait(ids[name], timeout=120)
            assert snap.status == "finished", snap.message
        yield ids


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def spec(at: AppTest, key_part: str) -> dict:
    """The plotly JSON of the chart whose element id contains ``key_part``."""
    for chart in at.get("plotly_chart"):
        if key_part in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no plotly chart with key {key_part!r}; ids {[c.proto.id for c in at.get('plotly_chart')]}")




# AppTest's dataframes carry no key: the tables on screen, in the order they are drawn, per view
# (each page shows one tab at a time).
TABLES = {
    "Biases": ["emb_bias_items_high", "emb_bias_items_low", "emb_bias_users_high", "emb_bias_users_low"],
    "What a factor separates": ["emb_low", "emb_high"],
    "Their ratings": ["user_ratings"],
    "Recommendations": ["user_recs"],
    "Predicted vs actual": ["movie_top", "movie_bottom"],
    "Most similar movies": ["movie_similar"],
}


def frame(at: AppTest, key: str):
    view = next(v for v, keys in TABLES.items() if key in keys)
    frames = at.dataframe
    assert len(frames) == len(TABLES[view]), f"{len(frames)} tables on screen, expected {TABLES[view]}"
    return frames[TABLES[view].index(key)].value


def open_tab(at: AppTest, key: str, label: str) -> AppTest:
    """Switch lazy tabs (``st.tabs(..., key=key, on_change="rerun")``) as a click would."""
    at.session_state[key] = label
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def waterfall_total(at: AppTest) -> tuple[float, float]:
    """(sum of the waterfall's steps, prediction shown in the text) of the One user page."""
    fig = spec(at, "user_waterfall")
    traces = fig["data"]
    total = 0.0
    for n, trace in enumerate(traces):
        for m, y in zip(trace["measure"], arr(trace["y"])):
            if m == "relative" or (m == "absolute" and n == 0):
                total += y
    # A second panel (sigmoid/clip) restarts from the raw sum: its steps add to it.
    if len(traces) == 2:
        total = sum(y for m, y in zip(traces[1]["measure"], arr(traces[1]["y"])) if m != "total")
    text = " ".join(m.value for m in at.markdown)
    shown = float(re.search(r"\*\*Prediction: ([0-9.]+)\*\*", text).group(1))
    return total, shown


# ---------------------------------------------------------------------------- no runs
def test_every_page_asks_for_a_run_when_there_is_none(monkeypatch, tmp_path, runs):
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(tmp_path / "empty"))
    for page in (EMBEDDINGS, USER, MOVIE):
        at = open_page(page)
        assert any("No trained model yet" in i.value for i in at.info), [i.value for i in at.info]
        assert not at.get("plotly_chart") and not at.dataframe


# ---------------------------------------------------------------------------- embeddings
def test_embeddings_page_draws_factors_biases_and_factor_meaning(runs):
    at = open_page(EMBEDDINGS)
    assert at.title[0].value == "Embeddings & biases"
    assert "8 factors" in at.caption[0].value  # the newest run (linear) is selected
    assert [t.label for t in at.tabs] == ["Factor matrices", "Factor values", "Length & popularity", "Biases",
                                         "What a factor separates"]
    # Factor matrices (the first tab; the others are not drawn until opened).
    assert len(at.get("plotly_chart")) == 2
    users = spec(at, "emb_heat_users")["data"][0]
    items = spec(at, "emb_heat_items")["data"][0]
    assert arr(users["z"]).shape == (500, 8)  # 943 users, sampled to 500
    assert arr(items["z"]).shape == (500, 8)
    assert any("random sample of 500 of the 1,682 movies" in c.value for c in at.caption)
    at.select_slider(key="emb_rows").set_value(2000).run()
    assert not at.exception, at.exception
    assert list(spec(at, "emb_heat_items")["data"][0]["y"][:2]) == ["Star Wars (1977)", "Contact (1997)"]
    at.segmented_control(key="emb_order").set_value("cluster").run()
    assert not at.exception, at.exception
    heat = spec(at, "emb_heat_items")
    assert arr(heat["data"][0]["z"]).shape == (1682, 8)
    assert heat["layout"]["shapes"], "cluster borders are drawn"
    assert any("k-means clusters" in c.value and "all 1,682 movies" in c.value.lower() for c in at.caption)
    at.segmented_control(key="emb_order").set_value("pc1").run()
    assert not at.exception, at.exception

    # Factor values: the share of every factor, histograms of the chosen ones.
    open_tab(at, "emb_view", "Factor values")
    assert len(arr(spec(at, "emb_share")["data"][0]["y"])) == 8
    at.multiselect(key="emb_hist_factors").set_value([0, 3]).run()
    assert not at.exception, at.exception
    titles = [a["text"] for a in spec(at, "emb_hists")["layout"]["annotations"]]
    assert titles == ["factor 0", "factor 3"]

    # Length & popularity: a log x axis.
    open_tab(at, "emb_view", "Length & popularity")
    assert spec(at, "emb_norm_items")["layout"]["xaxis"]["type"] == "log"

    # Biases: highest/lowest with titles and counts, a floor on ratings.
    open_tab(at, "emb_view", "Biases")
    high = frame(at, "emb_bias_items_high")
    assert len(high) == 10 and high["ratings"].min() >= 20 and high["bias"].is_monotonic_decreasing
    assert high["title"].str.len().min() > 0
    low = frame(at, "emb_bias_users_low")
    assert {"age", "gender", "occupation"} <= set(low.columns) and low["bias"].is_monotonic_increasing
    at.number_input(key="emb_bias_floor").set_value(0).run()
    assert not at.exception, at.exception

    # What a factor separates: both ends with genres; another factor changes them.
    open_tab(at, "emb_view", "What a factor separates")
    ends_low, ends_high = frame(at, "emb_low"), frame(at, "emb_high")
    assert len(ends_low) == len(ends_high) == 10 and "genres" in ends_low.columns
    assert ends_low["value"].max() <= ends_high["value"].min()
    first = int(at.selectbox(key="emb_factor").value)
    other = next(f for f in range(8) if f != first)
    at.selectbox(key="emb_factor").set_value(other).run()
    assert not at.exception, at.exception
    assert frame(at, "emb_low")["value"].tolist() != ends_low["value"].tolist()
    assert len(spec(at, "emb_genres")["data"][0]["y"]) >= 15  # ml-100k's genres


# ---------------------------------------------------------------------------- one user
def test_user_page_ratings_errors_recommendations_and_an_exact_waterfall(runs):
    at = open_page(USER)
    assert at.text_input(key="user_page_id").value == "1"
    assert [t.label for t in at.tabs] == ["Their ratings", "Recommendations", "Why this prediction?"]
    ratings = frame(at, "user_ratings")
    assert "Toy Story (1995)" in ratings["title"].tolist() and len(ratings) == 272
    assert set(ratings["set"]) == {"train", "test"}
    who = next(m.value for m in at.markdown if m.value.startswith("User 1 ·"))
    assert "age: **24**" in who and "occupation: **technician**" in who and "age band: **18\\-24**" in who
    for label in ("RMSE on train", "MAE on train", "RMSE on test", "MAE on test"):
        assert 0 < float(metric(at, label)) < 2.5
    scatter = spec(at, "user_scatter")["data"]
    names = [t["name"] for t in scatter]
    assert any(n.startswith("train") for n in names) and any(n.startswith("test") for n in names)

    open_tab(at, "user_view", "Recommendations")
    recs = frame(at, "user_recs")
    assert len(recs) == 10 and not set(recs["title"]) & set(ratings["title"])
    assert recs["predicted"].is_monotonic_decreasing
    at.toggle(key="user_rec_test").set_value(True).run()  # test movies may compete
    assert not at.exception, at.exception
    assert "their test rating" in frame(at, "user_recs").columns

    open_tab(at, "user_view", "Why this prediction?")
    total, shown = waterfall_total(at)
    assert total == pytest.approx(shown, abs=1e-3)
    # Any movie, fewer factors drawn one by one: still adds up.
    at.radio(key="user_page_source").set_value("Any movie").run()
    at.selectbox(key="user_pick_any").set_value(1).run()  # Toy Story
    at.slider(key="user_wf_factors").set_value(3).run()
    assert not at.exception, at.exception
    labels = spec(at, "user_waterfall")["data"][0]["x"]
    assert "other 5 factors" in labels
    total, shown = waterfall_total(at)
    assert total == pytest.approx(shown, abs=1e-3)

    # Another user; then ids that do not exist: a message, no traceback.
    open_tab(at, "user_view", "Their ratings")
    at.text_input(key="user_page_id").set_value("42").run()
    assert not at.exception, at.exception
    assert len(frame(at, "user_ratings")) == 183
    for bad in ("99999", "abc"):
        at.text_input(key="user_page_id").set_value(bad).run()
        assert not at.exception, at.exception
        assert any(f"There is no user **{bad}**" in w.value for w in at.warning), [w.value for w in at.warning]
        assert not at.dataframe and not at.get("plotly_chart")


def test_user_page_shows_the_sigmoid_as_its_own_step(runs):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(USER).run()
    at.sidebar.selectbox[0].set_value(runs["sigmoid"]).run()
    open_tab(at, "user_view", "Why this prediction?")
    traces = spec(at, "user_waterfall")["data"]
    assert len(traces) == 2 and traces[1]["x"][:2] == ["raw sum", "sigmoid"]
    total, shown = waterfall_total(at)
    assert total == pytest.approx(shown, abs=1e-3)
    assert any("The output is a **sigmoid**" in m.value for m in at.markdown)


# ---------------------------------------------------------------------------- one movie
def test_movie_page_distributions_groups_and_similar_movies(runs, shared_data):
    at = open_page(MOVIE)
    picker = at.selectbox(key="movie_page_item")
    assert "Star Wars (1977)" in picker.format_func(picker.value)
    # One picker (no second search box); typing filters it in its most-rated-first order.
    assert not at.text_input and picker.proto.filter_mode == 1  # SelectWidgetFilterMode.FILTER_MODE_CONTAINS
    assert metric(at, "Users who rated it") == "583"
    assert [t.label for t in at.tabs] == ["Predicted vs actual", "Every user", "By demographic group",
                                          "Most similar movies"]
    hist = spec(at, "movie_hist")["data"]
    assert [t["name"] for t in hist] == ["predicted, all users (943)", "actual ratings (583)"]
    top, bottom = frame(at, "movie_top"), frame(at, "movie_bottom")
    assert len(top) == len(bottom) == 10 and top["predicted"].min() >= bottom["predicted"].max()
    # Ranked by the unclipped prediction, both shown: the clipped one never exceeds the scale.
    assert top["unclipped"].is_monotonic_decreasing and top["rank"].tolist() == list(range(1, 11))
    assert top["predicted"].max() <= 5.0 and np.allclose(top["predicted"], top["unclipped"].clip(1, 5))
    model = jobs.get_runner().load_model(runs["linear"])
    data = load_dataset("ml-100k", data_dir=shared_data, download=False)
    info = views.movie_across_users(model, data, 50)
    raw = info["users"].set_index("user")["score"]
    assert top["user"].tolist() == raw.sort_values(ascending=False, kind="stable").index[:10].tolist()

    # Every user: the whole table, a lookup of one id, the CSV of all of them.
    open_tab(at, "movie_view", "Every user")
    assert len(at.dataframe) == 1
    every = at.dataframe[0].value  # the whole table (the lookup's row is drawn above it once asked)
    assert len(every) == 943 and every["user"].nunique() == 943
    assert every["actual"].notna().sum() == 583 and {"age", "gender", "occupation"} <= set(every.columns)
    assert every["unclipped"].is_monotonic_decreasing
    actual = views.movie_ratings(data, 50)
    assert every.set_index("user")["actual"].dropna().to_dict() == actual.to_dict()
    at.text_input(key="movie_user_lookup").input("42").run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 2 and len(at.dataframe[1].value) == 943
    hit = at.dataframe[0].value
    assert hit["user"].tolist() == [42]
    assert any("User 42" in s.value and "rank" in s.value for s in at.success)
    at.text_input(key="movie_user_lookup").input("99999").run()
    assert any("There is no user" in w.value for w in at.warning)
    csv = at.download_button(key="movie_users_csv")
    assert csv.label == "Download all 943 users (CSV)"

    open_tab(at, "movie_view", "By demographic group")
    for key in ("age_group", "gender", "occupation"):
        at.segmented_control(key="movie_group_by").set_value(key).run()
        assert not at.exception, at.exception
        fig = spec(at, f"movie_group_{key}")
        boxes = fig["data"]
        assert [b["type"] for b in boxes] == ["box", "box"]
        assert [b["name"].split(" (")[0] for b in boxes] == ["predicted", "actual"]
        # An honest axis: the whole 1-5 scale, not zoomed on the means.
        axis = fig["layout"]["xaxis" if key == "occupation" else "yaxis"]["range"]
        assert axis[0] <= 1.0 and axis[1] >= 5.0
    occupation = spec(at, "movie_group_occupation")["data"][0]
    assert occupation["orientation"] == "h" and len(set(occupation["y"])) == 21
    at.segmented_control(key="movie_group_by").set_value("gender").run()
    gender = spec(at, "movie_group_gender")["data"]
    assert len(arr(gender[0]["y"])) == 943 and len(arr(gender[1]["y"])) == 583  # every user; every rating
    assert sum(int(x.split("<br>")[1].split(" / ")[0]) for x in set(gender[0]["x"])) == 943

    open_tab(at, "movie_view", "Most similar movies")
    sim = frame(at, "movie_similar")
    assert len(sim) == 10 and "Star Wars (1977)" not in sim["title"].tolist()
    assert sim["similarity"].is_monotonic_decreasing and sim["ratings"].min() >= views.SIMILAR_MIN_RATINGS
    assert {"title", "genres", "similarity"} <= set(sim.columns)
    assert any("at least 20 ratings" in c.value for c in at.caption)
    at.selectbox(key="movie_page_item").set_value(1).run()  # Toy Story
    assert not at.exception, at.exception
    assert metric(at, "Users who rated it") == "452"
    at.toggle(key="movie_sim_centre").set_value(True).run()
    at.number_input(key="movie_sim_floor").set_value(0).run()
    assert not at.exception, at.exception
    sim = frame(at, "movie_similar")
    assert len(sim) == 10 and np.all(sim["similarity"].to_numpy() <= 1.0 + 1e-9)
    assert "Toy Story (1995)" not in sim["title"].tolist()


def test_movie_users_ranks_by_the_unclipped_score_when_predictions_clip():
    import pandas as pd

    users = pd.DataFrame({"user": [1, 2, 3, 4], "predicted": [5.0, 5.0, 3.0, 5.0], "unclipped": [5.4, 6.1, 3.0, 5.0],
                          "score": [5.4, 6.1, 3.0, 5.0], "ratings": [10, 20, 30, 40], "bias": [0.0] * 4,
                          "gender": ["M", "F", "M", "F"]})
    out = views.movie_users(users, pd.Series([4.0], index=pd.Index([3], name="user")))
    assert out["user"].tolist() == [2, 1, 4, 3] and out["rank"].tolist() == [1, 2, 3, 4]
    assert out["actual"].isna().tolist() == [True, True, True, False]
    groups = views.group_values(users.assign(actual=[np.nan, 5.0, 4.0, np.nan]), "gender")
    assert [(g["group"], g["users"], g["raters"]) for g in groups] == [("F", 2, 1), ("M", 2, 1)]


def test_large_catalogues_get_a_title_search(runs, monkeypatch):
    """Above MFSTUDIO_PICK_ALL movies (20,000 by default: ml-25m has 62k) the pickers search titles."""
    monkeypatch.setenv("MFSTUDIO_PICK_ALL", "100")
    at = open_page(MOVIE)
    assert len(at.selectbox(key="movie_page_item").options) == 200  # the 200 most-rated
    at.text_input(key="movie_search").set_value("toy story").run()
    assert not at.exception, at.exception
    picker = at.selectbox(key="movie_page_item")
    assert [picker.format_func(o).split(" · ")[0] for o in picker.options] == ["Toy Story (1995)"]
    assert metric(at, "Users who rated it") == "452"
    at.text_input(key="movie_search").set_value("no such title").run()
    assert not at.exception, at.exception
    assert any("No title contains" in w.value for w in at.warning)

    at.switch_page(USER).run()
    open_tab(at, "user_view", "Why this prediction?")
    at.radio(key="user_page_source").set_value("Any movie").run()
    at.text_input(key="user_search").set_value("fargo").run()
    assert not at.exception, at.exception
    labels = spec(at, "user_waterfall")["layout"]["title"]["text"]
    assert "Fargo (1996)" in labels


# ---------------------------------------------------------------------------- chart builders
def test_chart_builders_sample_large_scatters_and_split_the_output_step():
    import pandas as pd

    from ui import inspect_charts as charts

    table = pd.DataFrame({"ratings": np.arange(30_000) % 50, "norm": 1.0, "bias": 0.0, "title": "t"})
    fig = charts.norm_vs_popularity(table, "movies", max_points=1_000)
    assert len(fig.data[0].x) == 1_000 and "a random 1,000 of 29,400" in fig.layout.title.text
    assert "600 without ratings left out" in fig.layout.title.text
    linear = pd.DataFrame({"label": ["global (g)", "factor 0", "prediction"], "value": [3.5, 0.2, 3.7],
                           "measure": ["absolute", "relative", "total"], "kind": ["global", "factor", "prediction"]})
    assert len(charts.prediction_waterfall(linear, "t").data) == 1
    clipped = pd.DataFrame({"label": ["global (g)", "factor 0", "raw sum", "clip to [1, 5]", "prediction"],
                            "value": [3.5, 2.0, 5.5, -0.5, 5.0],
                            "measure": ["absolute", "relative", "total", "relative", "total"],
                            "kind": ["global", "factor", "raw", "output", "prediction"]})
    fig = charts.prediction_waterfall(clipped, "t")
    assert len(fig.data) == 2 and list(fig.data[1].x) == ["raw sum", "clip to [1, 5]", "prediction"]
    assert list(fig.data[1].measure) == ["absolute", "relative", "total"]


def test_the_decomposition_in_words_adds_up_and_says_what_the_output_did():
    from ui import inspect_charts as charts

    parts = {"global": 3.5, "user bias": 0.1, "item bias": -0.2, "factor 0": 1.0, "factor 1": 1.5}
    linear = {"parts": parts, "raw": 5.9, "prediction": 5.0, "rating_scale": (1.0, 5.0), "output": "linear"}
    lines = charts.decomposition_lines(linear, "u")
    assert lines[0] == "**Raw sum** g + b_u + b_i + Σ_f p_uf·q_if = 3.500 + 0.100 − 0.200 + 2.500 = **5.9000**."
    assert "clipped** to [1, 5]" in lines[1]
    sigmoid = {**linear, "raw": 0.0, "output": "sigmoid", "output_range": (0.0, 5.5)}
    lines = charts.decomposition_lines(sigmoid, "you")
    assert lines[0].startswith("**Raw sum** g + b_you + b_i + Σ_f p_you,f·q_if")
    assert lines[1] == "The output is a **sigmoid**: 0 + (5.5 − 0)·σ(0.000) = 2.7500."
    plain = {**linear, "parts": {"global": 3.0, "factor 0": 1.0}, "raw": 4.0}
    assert charts.decomposition_lines(plain) == ["**Raw sum** g + Σ_f p_uf·q_if = 3.000 + 1.000 = **4.0000**."]
