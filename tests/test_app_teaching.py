"""Teaching features through AppTest: presets set data and split and show their published
figure and lesson; a preset whose data is missing says so and links the Data page; a run
worse than the baselines ends with a warning; the learning curve's teaching marks (best
epoch, gap, floor, log-y, tail); compare with the tuned default; the exports parse; the Data
page names the planted rank and noise; projector mode from the URL."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from mfcore import export
from mfcore.presets import PRESETS
from mfcore.runs.access import SYSTEM
from ui import jobs
from ui.datasets import load_data

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


@pytest.fixture()
def env(monkeypatch, tmp_path):
    folder = tmp_path / "runs"
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(folder))
    monkeypatch.setenv("MFSTUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", "http://127.0.0.1:9")
    monkeypatch.setenv("MFSTUDIO_CPU_THREADS", "1")
    monkeypatch.delenv("MFSTUDIO_DATA_DIR", raising=False)
    yield monkeypatch
    runner = jobs._runner_for(str(folder.resolve()))
    for snap in runner.list():
        if snap.is_active:
            runner.stop(snap.run_id, SYSTEM)
    runner.shutdown(wait=True)


def open_page(page: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def curve(at: AppTest, key_prefix: str = "curve_") -> dict:
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        if spec["layout"].get("uirevision") == "learning-curve":
            return spec
    raise AssertionError("no learning curve on the page")


def poll(at: AppTest, done, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return
        assert time.monotonic() < deadline, [w.value for w in at.warning] + [s.value for s in at.success]
        time.sleep(0.3)


def launch(at: AppTest, values: dict) -> str:
    for k, v in values.items():
        at.session_state[k] = v
    at.run()
    at.button(key="train_launch").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["active_run"]
    assert run_id, [e.value for e in at.error]
    return run_id


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_sets_data_and_split_and_shows_its_published_figure_and_lesson(name, env, shared_data):
    env.setenv("MFSTUDIO_DATA_DIR", str(shared_data))
    at = open_page("pages/train.py", dataset_spec="synthetic", split_spec="random:0.2")
    at.button(key=f"preset_{name}").click().run()
    assert not at.exception, at.exception
    p = PRESETS[name]
    if p.keeps_data:
        assert (at.session_state["dataset_spec"], at.session_state["split_spec"]) == ("synthetic", "random:0.2")
    else:
        assert (at.session_state["dataset_spec"], at.session_state["split_spec"]) == (p.dataset, p.split)
    info = " ".join(i.value for i in at.info)
    assert "What this lesson shows" in info and p.lesson in info
    if p.published_rmse is not None:
        assert f"test RMSE **{p.published_rmse:g}**" in info
    else:
        assert "**Published:** no figure" in info
    if p.measured_rmse is not None:
        assert f"measured here:** about {p.measured_rmse:g}" in info
    assert not at.warning  # the data is here: nothing missing


def test_d2l_publishes_1066_on_ml100k():
    assert PRESETS["d2l"].published_rmse == 1.066 and PRESETS["d2l"].dataset == "ml-100k"


def test_a_preset_whose_data_is_missing_says_so_and_keeps_the_data(env):
    at = open_page("pages/train.py")  # no data folder, an empty cache: ml-100k is not here
    at.button(key="preset_d2l").click().run()
    assert at.session_state["dataset_spec"] == "synthetic"  # never silently something else
    warning = " ".join(w.value for w in at.warning)
    assert "ml\\-100k" in warning and "not on this machine" in warning and "Data page" in warning
    assert any("Download ml-100k" in str(link.proto.label) for link in at.get("page_link"))


def test_a_run_worse_than_the_baselines_ends_with_a_warning_not_finished(env):
    at = open_page("pages/train.py")
    run_id = launch(at, {"tf_model_type": "plain", "tf_global_bias": "none", "tf_epochs": 2, "tf_optimizer": "sgd",
                         "tf_lr": "0.0001", "tf_batch_size": 1, "tf_implicit_feedback": False, "tf_average_from": 0,
                         "tf_n_factors": 4})
    poll(at, lambda a: jobs.snapshot(run_id).status == "finished" and any("Finished" in w.value for w in a.warning))
    text = " ".join(w.value for w in at.warning)
    assert "Finished worse than global mean" in text and "Why, probably" in text
    assert "learning rate" in text or "epochs" in text
    assert not any(s.value.startswith("Finished") for s in at.success)


def test_the_learning_curve_marks_best_epoch_gap_and_floor_and_offers_log_and_tail(env):
    at = open_page("pages/train.py")
    run_id = launch(at, {"tf_epochs": 6, "tf_implicit_feedback": False, "tf_average_from": 0, "tf_n_factors": 8})
    poll(at, lambda a: jobs.snapshot(run_id).status == "finished")
    fig = curve(at)
    names = [t["name"] for t in fig["data"]]
    snap = jobs.snapshot(run_id)
    best_epoch = int(snap.history["test_rmse"].idxmin())
    best = next(t for t in fig["data"] if t["name"].startswith("best test epoch"))
    assert best["x"] == [int(snap.history["epoch"].iloc[best_epoch])]
    assert best["y"][0] == pytest.approx(snap.history["test_rmse"].min())
    gap = next(t for t in fig["data"] if t["name"] == "train–test gap")
    assert gap["fill"] == "tonexty" and names.index("gap base") == names.index("train–test gap") - 1
    floor = next(t for t in fig["data"] if t["name"].startswith("planted noise floor"))
    assert floor["y"] == [0.3, 0.3]  # the synthetic default's planted noise
    assert fig["layout"]["yaxis"].get("type") != "log"
    at.toggle(key="train_log_y").set_value(True).run()
    at.toggle(key="train_tail").set_value(True).run()
    fig = curve(at)
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert fig["layout"]["xaxis"]["range"][0] == pytest.approx(1.5)  # epochs 2.. of 6


def test_compare_with_the_tuned_default_launches_it_on_the_same_data_and_overlays_both(env):
    at = open_page("pages/train.py", split_spec="random:0.2")
    run_id = launch(at, {"tf_epochs": 3, "tf_implicit_feedback": False, "tf_average_from": 0, "tf_n_factors": 4})
    poll(at, lambda a: jobs.snapshot(run_id).status == "finished")
    at.button(key=f"compare_default_{run_id}").click().run()
    other_id = at.session_state["train__compare_pair"][1]
    other = jobs.get_store().get(other_id)
    assert (other.dataset, other.split, other.model_config["n_factors"]) == ("synthetic", "random:0.2",
                                                                          PRESETS["default"].model.n_factors)
    poll(at, lambda a: jobs.snapshot(other_id).status == "finished")
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if json.loads(c.proto.spec)["layout"].get("uirevision") == "overlay-test_rmse")
    lines = [t for t in spec["data"] if t["name"] in ("tuned default",) or t["name"].startswith("biased")]
    assert len(lines) == 2 and all(len(t["y"]) >= 3 for t in lines)


def test_exports_parse_as_projector_tsvs_and_history_csv(env, shared_data):
    env.setenv("MFSTUDIO_DATA_DIR", str(shared_data))
    at = open_page("pages/train.py", dataset_spec="ml-100k")
    run_id = launch(at, {"tf_epochs": 2, "tf_implicit_feedback": False, "tf_average_from": 0, "tf_n_factors": 6})
    poll(at, lambda a: jobs.snapshot(run_id).status == "finished")
    trained = jobs.get_runner().load_model(run_id)
    data = load_data("ml-100k")
    with zipfile.ZipFile(io.BytesIO(export.projector_zip(trained, data))) as z:
        items_v = pd.read_csv(z.open("items_vectors.tsv"), sep="\t", header=None)
        items_m = pd.read_csv(z.open("items_metadata.tsv"), sep="\t")
        users_v = pd.read_csv(z.open("users_vectors.tsv"), sep="\t", header=None)
        users_m = pd.read_csv(z.open("users_metadata.tsv"), sep="\t")
    assert items_v.shape == (1682, 6) and len(items_m) == 1682
    assert list(items_m.columns[:5]) == ["id", "title", "genres", "year", "ratings"]
    star_wars = items_m[items_m["id"] == 50].iloc[0]
    assert star_wars["title"] == "Star Wars (1977)" and star_wars["year"] == 1977 and star_wars["ratings"] == 583
    assert items_m["ratings"].sum() == 100_000
    assert users_v.shape == (943, 6) and len(users_m) == 943 and "age" in users_m.columns
    assert items_v.iloc[49].to_numpy() == pytest.approx(trained.item_factors()[trained.item_ids.indices_of([50])[0]],
                                                         abs=1e-6)
    hist = pd.read_csv(io.StringIO(export.history_csv(jobs.get_store().epochs(run_id))))
    assert list(hist["epoch"]) == [1, 2] and hist["test_rmse"].notna().all()
    # the Runs page offers both downloads beside the existing ones
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    labels = [str(getattr(e.proto, "label", "")) for e in at.get("download_button")]
    assert "Embedding Projector files (.zip)" in labels and "Learning history (.csv)" in labels


def test_the_data_page_names_the_planted_rank_and_noise(env):
    at = open_page("pages/data.py")
    assert any("Planted rank **8** and noise **0.3**" in i.value for i in at.info)


def test_projector_mode_from_the_url_injects_its_style_and_restyles_the_curve(env):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["projector"] = "1"
    at.run()
    assert at.session_state["projector_mode"] is True
    assert any("projector mode" in str(h.proto.body) for h in at.get("html"))
    at.switch_page("pages/train.py").run()
    run_id = launch(at, {"tf_epochs": 2, "tf_implicit_feedback": False, "tf_average_from": 0, "tf_n_factors": 4})
    poll(at, lambda a: jobs.snapshot(run_id).status == "finished")
    fig = curve(at)
    assert fig["layout"]["font"]["size"] == 20
    assert next(t for t in fig["data"] if t["name"] == "test RMSE")["line"]["width"] >= 4
