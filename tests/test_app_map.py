"""The 2D map and Rate movies yourself pages through AppTest, on real runs, plus unit tests
of what they added to ``mfcore.inspect`` (fitted PCA, recovery per epoch, folded-in
decomposition, recommendation exclusions).

Two short ALS runs are trained once for the module by the app's own job runner in a
temporary runs folder: one on the real ml-100k (from the ``shared_data`` fixture) and one
on the synthetic data with its planted factors (for the planted-versus-learned view).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from mfcore.config import ModelConfig, TrainConfig
from mfcore.data.dataset import IdIndex
from mfcore.data.sources import load_dataset
from mfcore.data.synthetic import factor_recovery, make_synthetic
from mfcore.errors import ConfigError
from mfcore.inspect import foldin, views
from mfcore.inspect.projection import fit_pca, project, recovery_over_epochs
from mfcore.model import MFModel
from mfcore.recommender import TrainedModel
from mfcore.runs.runner import RunRequest
from tests.app_support import app_runner, plotly_array as arr
from ui import map_charts

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MAP, NEW_USER, MOVIE = "pages/map.py", "pages/new_user.py", "pages/movie.py"
EPOCHS = 4


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_data):
    """{"ml": (run id, model), "synthetic": (run id, model)} in a module-wide runs folder."""
    folder = tmp_path_factory.mktemp("map") / "runs"
    with app_runner(folder, shared_data) as runner:
        out = {}
        for name, spec, k in (("synthetic", "synthetic", 8), ("ml", "ml-100k", 8)):
            rid = runner.submit(RunRequest(spec, "random:0.1", 0, ModelConfig(n_factors=k),
                                           TrainConfig(optimizer="als", epochs=EPOCHS, l2=0.1), label=f"map-{name}"))
            snap = runner.wait(rid, timeout=180)
            assert snap.status == "finished", snap.message
            out[name] = (rid, runner.load_model(rid))
        yield out


def open_page(page: str, run_id: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["selected_run"] = run_id
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at




def at_data(run_id: str):
    """The dataset of a run, as the pages load it."""
    import os

    from ui import jobs

    return load_dataset(jobs.get_store().get(run_id).dataset, data_dir=os.environ["MFSTUDIO_DATA_DIR"], download=False)


def spec(at: AppTest, key_part: str) -> dict:
    for chart in at.get("plotly_chart"):
        if chart.proto.id.endswith(key_part):
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no chart {key_part!r}; ids {[c.proto.id for c in at.get('plotly_chart')]}")


def frame(at: AppTest, column: str):
    """The one table on the page with this column (AppTest's read-only tables carry no key)."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(found) == 1, f"{len(found)} tables with a {column!r} column"
    return found[0]


def points(fig: dict, kind: str = "scattergl") -> tuple[np.ndarray, list[str]]:
    """All (x, y) and hover texts of the traces of one type."""
    xy, text = [], []
    for trace in fig["data"]:
        if trace["type"] == kind:
            xy.append(np.column_stack([arr(trace["x"]).astype(float), arr(trace["y"]).astype(float)]))
            text += list(trace.get("text", []))
    return (np.vstack(xy) if xy else np.zeros((0, 2))), text


def trace(fig: dict, name: str) -> dict:
    return next(t for t in fig["data"] if t.get("name") == name)


# ---------------------------------------------------------------------------- the 2D map
def test_map_draws_one_point_per_item_with_titles_and_colours(runs):
    rid, model = runs["ml"]
    at = open_page(MAP, rid)
    assert at.title[0].value == "2D map"
    # UMAP is the default, of every movie.
    assert at.radio(key="map_method").value == "umap"
    fig = spec(at, "map_chart")
    assert fig["layout"]["title"]["text"].startswith("UMAP")
    xy, text = points(fig)
    assert len(xy) == 1682 and len(np.unique(xy, axis=0)) > 1600
    assert any("all 1,682 points" in c.value for c in at.caption)
    at.radio(key="map_method").set_value("pca").run()
    fig = spec(at, "map_chart")
    xy, text = points(fig)
    assert len(xy) == len(model.item_ids) == 1682
    assert any("Toy Story (1995)" in t for t in text)
    # The PCA map is exactly the model's item factors projected (rows in model order per genre trace).
    expected = project(model.item_factors(), "pca").coords
    assert np.allclose(np.sort(xy[:, 0]), np.sort(expected[:, 0]), atol=1e-5)
    assert any("all 1,682 points" in c.value for c in at.caption)
    assert any(t["type"] == "scattergl" and t["name"] == "Drama" for t in fig["data"])
    for colour in ("mean_rating", "ratings", "bias"):
        at.selectbox(key="map_colour").set_value(colour).run()
        assert not at.exception
        fig = spec(at, "map_chart")
        assert len(points(fig)[0]) == 1682
        assert fig["data"][0]["marker"]["showscale"] is True
    assert at.download_button(key="map_download").label.startswith("Download coordinates")


def test_searching_a_title_highlights_it_and_its_neighbours(runs):
    rid, model = runs["ml"]
    at = open_page(MAP, rid, map_method="pca")
    at.text_input(key="map_search").input("star wars").run()
    assert not at.exception
    fig = spec(at, "map_chart")
    star = trace(fig, "searched")
    assert star["text"] == ["Star Wars (1977)"]
    i = model.item_ids.index_of(50)  # Star Wars' MovieLens id
    coords = project(model.item_factors(), "pca").coords[i]
    assert np.allclose([arr(star["x"])[0], arr(star["y"])[0]], coords, atol=1e-5)
    ring = trace(fig, "nearest neighbours (rank)")
    assert len(arr(ring["x"])) == 10
    table = frame(at, "similarity")
    assert table["title"].iloc[0] == "Empire Strikes Back, The (1980)" or len(table) == 10
    # The same list as One movie's "Most similar movies": movies with >= 20 ratings (stated).
    data = at_data(rid)
    expected = views.similar_movies(model, data, 50, n=10, min_ratings=views.SIMILAR_MIN_RATINGS)
    assert table["title"].tolist() == expected["title"].tolist()
    assert np.allclose(table["similarity"].to_numpy(), expected["similarity"].to_numpy())
    assert table["ratings"].min() >= 20
    assert any("at least 20 ratings" in m.value for m in at.markdown)
    movie = open_page(MOVIE, rid, movie_page_item=50, movie_view="Most similar movies")
    similar = frame(movie, "similarity")
    assert similar["title"].tolist() == table["title"].tolist()
    assert np.allclose(similar["similarity"].to_numpy(), table["similarity"].to_numpy())
    # Lowering the floor to 0 on the map lets rarely rated movies in, as on One movie.
    at.number_input(key="map_neighbour_floor").set_value(0).run()
    loose = frame(at, "similarity")
    assert np.allclose(loose["similarity"].to_numpy(),
                       views.similar_movies(model, data, 50, n=10, min_ratings=0)["similarity"].to_numpy())
    # Other points fade so the highlight stands out.
    assert fig["data"][0]["marker"]["opacity"] < 0.5
    at.text_input(key="map_search").input("no such film xyz").run()
    assert any("No movie title contains" in w.value for w in at.warning)


def test_pca_tsne_switch_samples_and_comes_back(runs, shared_data):
    rid, model = runs["ml"]
    at = open_page(MAP, rid, map_cap=150)
    at.radio(key="map_method").set_value("tsne").run()
    assert not at.exception, at.exception
    xy, text = points(spec(at, "map_chart"))
    assert len(xy) == 150
    assert any("the 150 most-rated of 1,682" in c.value for c in at.caption)
    assert "t-SNE" in spec(at, "map_chart")["layout"]["title"]["text"]
    # The sample is the 150 most-rated movies: Star Wars (583 ratings) is among them.
    assert any("Star Wars (1977)" in t for t in text)
    items = views.item_table(model, at_data(rid))
    top = items.nlargest(150, "ratings", keep="first")["title"]
    assert sum(any(f"<b>{t}</b>" in h for h in text) for t in top.head(20)) == 20
    at.radio(key="map_method").set_value("pca").run()
    assert len(points(spec(at, "map_chart"))[0]) == 1682


def test_animation_has_one_frame_per_epoch_ending_on_the_static_map(runs):
    rid, model = runs["ml"]
    at = open_page(MAP, rid, map_method="pca")
    fig = spec(at, "map_animation")
    assert len(fig["frames"]) == EPOCHS == len(model.snapshots)
    assert [s["label"] for s in fig["layout"]["sliders"][0]["steps"]] == [str(e) for e in range(1, EPOCHS + 1)]
    xr, yr = fig["layout"]["xaxis"]["range"], fig["layout"]["yaxis"]["range"]
    for frame in fig["frames"]:
        assert sum(len(arr(d["x"])) for d in frame["data"]) == 1682
        # The fixed axes hold every point of every frame.
        for d in frame["data"]:
            x, y = arr(d["x"]).astype(float), arr(d["y"]).astype(float)
            assert xr[0] <= x.min() and x.max() <= xr[1] and yr[0] <= y.min() and y.max() <= yr[1]
    # The last frame is the PCA of the final (float16) snapshot: the static map, to rounding.
    last = np.vstack([np.column_stack([arr(d["x"]).astype(float), arr(d["y"]).astype(float)])
                      for d in fig["frames"][-1]["data"]])
    static = points(spec(at, "map_chart"))[0]
    assert np.allclose(np.sort(last[:, 0]), np.sort(static[:, 0]), atol=0.02)


def test_user_map_and_user_search(runs):
    rid, model = runs["ml"]
    at = open_page(MAP, rid)
    at.radio(key="map_what").set_value("users").run()
    assert not at.exception
    assert len(points(spec(at, "map_chart"))[0]) == 943
    at.selectbox(key="map_colour").set_value("gender").run()
    names = {t["name"] for t in spec(at, "map_chart")["data"]}
    assert {"M", "F"} <= names
    at.text_input(key="map_user_search").input("42").run()
    star = trace(spec(at, "map_chart"), "searched")
    assert star["text"] == ["user 42"]
    assert len(spec(at, "map_animation")["frames"]) == EPOCHS


def test_planted_versus_learned_on_synthetic_data(runs):
    rid, model = runs["synthetic"]
    at = open_page(MAP, rid)
    assert any(s.value == "Planted versus learned" for s in at.subheader)
    planted, learned = spec(at, "map_planted"), spec(at, "map_learned")
    assert len(points(planted)[0]) == len(points(learned)[0]) == 1500
    curve = spec(at, "map_recovery")
    items = arr(trace(curve, "movie factors")["y"]).astype(float)
    assert len(items) == EPOCHS and np.all((0 <= items) & (items <= 1))
    truth = make_synthetic().truth
    expected = [factor_recovery(s["item_factors"].astype(np.float64), truth["item_factors"]) for s in model.snapshots]
    assert np.allclose(items, expected, atol=1e-6)
    final = factor_recovery(model.item_factors(), truth["item_factors"])
    assert next(m.value for m in at.metric if m.label == "Movie-factor recovery") == f"{final:.3f}"
    assert final > 0.5  # ALS finds much of the planted subspace in a few epochs
    assert any("mean cosine of the angles" in m.value for m in at.markdown)


def test_pages_ask_for_a_run_when_there_is_none(monkeypatch, tmp_path, runs):
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(tmp_path / "empty"))
    for page in (MAP, NEW_USER):
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page(page).run()
        assert not at.exception
        assert any("No trained model yet" in i.value for i in at.info)
        assert not at.get("plotly_chart")


# ---------------------------------------------------------------------------- rate movies yourself
def waterfall_total(at: AppTest) -> tuple[float, float]:
    """(sum of the waterfall's non-total steps, the prediction printed under it)."""
    traces = spec(at, "new_user_waterfall")["data"]
    total = 0.0
    for n, tr in enumerate(traces):
        for m, y in zip(tr["measure"], arr(tr["y"])):
            if m == "relative" or (m == "absolute" and n == 0):
                total += float(y)
    text = " ".join(m.value for m in at.markdown)
    shown = float(re.search(r"\*\*Prediction: ([0-9.]+)\*\*", text).group(1))
    return total, shown


def editor_key(run_id: str, version: int = 0) -> str:
    """pages/new_user.editor_key (the page module cannot be imported: importing it draws it)."""
    return f"new_user_popular_{run_id}_{version}"


def stored_ratings(at: AppTest, run_id: str) -> dict:
    """This session's person's ratings as the run store keeps them (what a reload gets back)."""
    from ui import jobs

    store = jobs.get_store()
    return store.user_ratings(at.session_state["identity__person"].owner, store.get(run_id).dataset)


def test_new_user_rates_movies_and_gets_recommendations(runs, shared_data):
    rid, model = runs["ml"]
    items = views.item_table(model, load_dataset("ml-100k", data_dir=shared_data, download=False))
    at = open_page(NEW_USER, rid)
    assert at.title[0].value == "Rate movies yourself"
    assert any("Your recommendations appear here" in i.value for i in at.info)
    assert not at.get("plotly_chart") and not any(s.value == "Recommended for you" for s in at.subheader)
    popular = at.data_editor[0].value
    assert len(popular) == 50 and popular["ratings"].is_monotonic_decreasing
    assert popular["your rating"].isna().all()

    # Rate three of the most-rated movies in the table (AppTest seeds an editor's edits by key).
    at.session_state[editor_key(rid)] = {
        "edited_rows": {0: {"your rating": 5}, 1: {"your rating": 1}, 3: {"your rating": 4}},
        "added_rows": [], "deleted_rows": [],
    }
    at.run()
    assert not at.exception, at.exception
    rated = dict(zip(popular["item"].iloc[[0, 1, 3]].tolist(), [5.0, 1.0, 4.0]))
    assert stored_ratings(at, rid) == rated
    # ... and one more found by the search.
    at.text_input(key="new_user_search").input("godfather").run()
    assert at.selectbox(key="new_user_pick").value == 127  # The Godfather (1972), the most-rated match
    at.select_slider(key="new_user_rating").set_value(5.0).run()
    at.button(key="new_user_add").click().run()
    assert not at.exception, at.exception
    rated[127] = 5.0
    assert stored_ratings(at, rid) == rated
    # The table was rebuilt from the ratings after the outside change: it keeps the edits and
    # shows the searched rating too (The Godfather is among the 50 most-rated).
    table = at.data_editor[0].value.set_index("item")["your rating"]
    assert table.dropna().to_dict() == rated

    folded = foldin.fold_in(model, rated)
    recs = frame(at, "predicted")
    titles = items.set_index("item")["title"]
    assert len(recs) == 10 and not set(recs["title"]) & set(titles[list(rated)])
    rare = items["item"].to_numpy()[items["ratings"].to_numpy() < 20]
    expected = foldin.recommend_for(model, folded, n=10, exclude=rare)
    assert recs["title"].tolist() == titles[expected["item"]].tolist()
    assert np.allclose(recs["predicted"].to_numpy(), expected["predicted"].to_numpy())
    assert recs["ratings"].min() >= 20
    mine = frame(at, "yours")
    assert np.allclose(mine["model's fit"], folded.predict(model, np.array(list(rated))))

    # The waterfall of the first recommendation adds up to its prediction.
    total, shown = waterfall_total(at)
    assert total == pytest.approx(shown, abs=1e-3)
    assert shown == pytest.approx(expected["predicted"].iloc[0], abs=1e-3)
    # Another recommendation, all factors one by one.
    at.selectbox(key="new_user_why").set_value(expected["item"].iloc[3]).run()
    total, shown = waterfall_total(at)
    assert total == pytest.approx(shown, abs=1e-3) and shown == pytest.approx(expected["predicted"].iloc[3], abs=1e-3)

    # The folded-in vector sits on the users' PCA map, placed with the users' own PCA.
    fig = spec(at, "new_user_map")
    you = trace(fig, "you")
    place = fit_pca(model.user_factors()).transform(folded.vector)[0]
    assert np.allclose([arr(you["x"])[0], arr(you["y"])[0]], place, atol=1e-4)
    assert len(arr(trace(fig, "trained users")["x"])) == 943

    # Every movie may compete: the list changes to the unfloored ranking.
    at.number_input(key="new_user_floor").set_value(0).run()
    recs = frame(at, "predicted")
    assert np.allclose(recs["predicted"], foldin.recommend_for(model, folded, n=10)["predicted"])

    # Take one back, then start over.
    at.selectbox(key="new_user_remove_pick").set_value(127).run()
    at.button(key="new_user_remove").click().run()
    assert 127 not in stored_ratings(at, rid)
    at.button(key="new_user_clear").click().run()
    assert not at.exception
    assert stored_ratings(at, rid) == {}
    assert any("Your recommendations appear here" in i.value for i in at.info)
    assert at.data_editor[0].value["your rating"].isna().all()


# ---------------------------------------------------------------------------- mfcore additions
def _tiny(n_items: int = 30, k: int = 3, output: str = "linear") -> TrainedModel:
    rng = np.random.default_rng(0)
    config = ModelConfig(n_factors=k, output=output, output_range=(0.5, 5.5) if output == "sigmoid" else None)
    m = MFModel(6, n_items, config, global_mean=3.5, rating_scale=(1.0, 5.0))
    with torch.no_grad():
        m.item_factors.copy_(torch.from_numpy(rng.normal(0, 1, (n_items, k)).astype(np.float32)))
        m.item_bias.copy_(torch.from_numpy(rng.normal(0, 0.3, (n_items, 1)).astype(np.float32)))
    return TrainedModel(m, IdIndex(np.arange(6), "user"), IdIndex(np.arange(200, 200 + n_items), "item"),
                        config, TrainConfig(l2=0.05, l2_bias=0.01))


def test_fit_pca_places_new_vectors_like_the_fitted_rows():
    X = np.random.default_rng(2).normal(size=(300, 6)) * [3, 2, 1, 0.5, 0.2, 0.1]
    fit = fit_pca(X)
    assert np.array_equal(fit.transform(X), project(X, "pca").coords)
    assert fit.explained_variance == project(X, "pca").explained_variance
    # A vector equal to a fitted row lands exactly on that row's point; one [k] vector works too.
    assert np.allclose(fit.transform(X[17]), project(X, "pca").coords[17])
    # The mean goes to the origin, and the map is linear (placing a new point needs no refit).
    assert np.allclose(fit.transform(X.mean(0)), 0, atol=1e-5)
    a, b = X[3], X[9]
    assert np.allclose(fit.transform(0.5 * (a + b)), 0.5 * (fit.transform(a) + fit.transform(b)), atol=1e-5)
    with pytest.raises(ConfigError, match="have 4 columns but the PCA was fitted on 6"):
        fit.transform(np.zeros(4))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_is_deterministic_with_a_seed(method):
    X = np.random.default_rng(5).normal(size=(60, 5))
    a, b = project(X, method, seed=7), project(X, method, seed=7)
    assert np.array_equal(a.coords, b.coords) and np.array_equal(a.rows, b.rows)
    # A capped projection samples the same rows for the same seed, other rows for another.
    s1, s2 = project(X, method, seed=7, max_points=30), project(X, method, seed=7, max_points=30)
    assert np.array_equal(s1.rows, s2.rows) and np.array_equal(s1.coords, s2.coords)
    assert not np.array_equal(project(X, method, seed=8, max_points=30).rows, s1.rows)


def test_recovery_over_epochs_scores_snapshots_against_the_truth():
    truth = make_synthetic(n_users=120, n_items=90, density=0.3, rank=3, seed=1).truth
    rng = np.random.default_rng(0)
    R = rng.normal(size=(3, 3))  # any invertible mix of the planted columns spans the same space
    snaps = [
        {"item_factors": rng.normal(size=(90, 3)).astype(np.float16),
         "user_factors": rng.normal(size=(120, 3)).astype(np.float16)},
        {"item_factors": (truth["item_factors"] @ R).astype(np.float16),
         "user_factors": (truth["user_factors"] @ R).astype(np.float16)},
    ]
    curve = recovery_over_epochs(snaps, truth)
    assert curve["epoch"].tolist() == [1, 2]
    assert curve["items"].iloc[0] < 0.5 and curve["items"].iloc[1] == pytest.approx(1.0, abs=1e-3)
    assert curve["users"].iloc[1] == pytest.approx(1.0, abs=1e-3)
    # Rows given in another order are lined up through item_rows/user_rows.
    perm = rng.permutation(90)
    moved = [{"item_factors": s["item_factors"][perm], "user_factors": s["user_factors"]} for s in snaps]
    assert recovery_over_epochs(moved, truth, item_rows=perm)["items"].iloc[1] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("output", ["linear", "sigmoid"])
def test_decompose_folded_parts_add_up_to_the_prediction(output):
    t = _tiny(output=output)
    folded = foldin.fold_in(t, {200: 5.0, 201: 1.0, 205: 4.0, 210: 2.0})
    for item in (202, 220, 229):
        d = foldin.decompose_folded(t, folded, item)
        assert sum(d["parts"].values()) == pytest.approx(d["raw"])
        assert d["prediction"] == pytest.approx(float(folded.predict(t, np.array([item]))[0]))
        assert d["parts"]["user bias"] == pytest.approx(folded.bias)
        steps = views.waterfall_steps(d)
        assert steps.loc[steps["measure"] != "total", "value"].sum() == pytest.approx(d["prediction"])
        q = t.item_vector(item).astype(np.float64)
        assert [d["parts"][f"factor {f}"] for f in range(3)] == pytest.approx(list(folded.vector * q))


def test_recommend_for_leaves_out_rated_and_excluded_items():
    t = _tiny()
    folded = foldin.fold_in(t, {200: 5.0, 201: 4.0})
    full = foldin.recommend_for(t, folded, n=30)
    assert len(full) == 28 and not {200, 201} & set(full["item"])
    top3 = full["item"].iloc[:3].tolist()
    fewer = foldin.recommend_for(t, folded, n=5, exclude=top3)
    assert not set(top3) & set(fewer["item"]) and not {200, 201} & set(fewer["item"])
    # (Several predictions clip at 5, so compare the values: tied items may swap places.)
    assert np.allclose(fewer["predicted"], full["predicted"].iloc[3:8])


def test_find_titles_ranks_prefix_matches_then_popularity():
    import pandas as pd

    table = pd.DataFrame({"item": [1, 2, 3, 4], "title": ["Star Wars (1977)", "Lone Star (1996)",
                                                          "Star Trek (1979)", "Alien (1979)"],
                          "ratings": [500, 80, 300, 290]})
    assert map_charts.find_titles(table, "star")["item"].tolist() == [1, 3, 2]
    assert map_charts.find_titles(table, "  ALIEN ")["item"].tolist() == [4]
    assert map_charts.find_titles(table, "4")["item"].tolist() == [4]
    assert map_charts.find_titles(table, "(19")["item"].tolist() == [1, 3, 4, 2]
    assert map_charts.find_titles(table, "").empty


def test_animation_labels_frames_with_the_kept_epochs_and_fits_every_frame():
    import pandas as pd

    from mfcore.training.snapshots import keep_snapshot, snapshot_epochs

    rng = np.random.default_rng(3)
    snaps: list = []
    for epoch in range(1, 41):  # 40 epochs thinned to 8 snapshots, as a long run keeps them
        keep_snapshot(snaps, epoch, {"item_factors": rng.normal(size=(30, 3)).astype(np.float16) * epoch}, 8)
    epochs = snapshot_epochs(snaps)
    assert len(epochs) == 8 and epochs[0] == 1 and epochs[-1] == 40 and epochs != list(range(1, 9))
    from mfcore.inspect.projection import aligned_frames

    frames = aligned_frames([s["item_factors"] for s in snaps])
    points = pd.DataFrame({"genre": ["Drama"] * 30, "size": np.full(30, 5.0), "hover": ["x"] * 30})
    fig = map_charts.animation_figure(frames, points, "genre", epochs=epochs).to_plotly_json()
    assert [s["label"] for s in fig["layout"]["sliders"][0]["steps"]] == [str(e) for e in epochs]
    assert [f["name"] for f in fig["frames"]] == [str(e) for e in epochs]
    # The last frames spread 40 times wider than the first: the fixed axes still hold them all.
    xr, yr = fig["layout"]["xaxis"]["range"], fig["layout"]["yaxis"]["range"]
    allxy = np.vstack(frames)
    assert xr[0] <= allxy[:, 0].min() and allxy[:, 0].max() <= xr[1]
    assert yr[0] <= allxy[:, 1].min() and allxy[:, 1].max() <= yr[1]


def test_tsne_and_umap_project_every_point_up_to_the_cap_then_the_most_rated():
    from mfcore.inspect.projection import TSNE_MAX_POINTS

    assert TSNE_MAX_POINTS >= 9_742  # every movie of ml-latest-small
    X = np.random.default_rng(1).normal(size=(400, 6)).astype(np.float32)
    counts = np.arange(400)[::-1]  # row 0 the most rated
    for method in ("tsne", "umap"):
        p = project(X, method, seed=0)
        assert len(p.rows) == 400 and p.coords.shape == (400, 2) and np.isfinite(p.coords).all()
        assert p.note == "all 400 points"
        s = project(X, method, seed=0, max_points=50, priority=counts)
        assert s.rows.tolist() == list(range(50)) and "the 50 most-rated of 400" in s.note
