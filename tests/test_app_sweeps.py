"""The Sweeps page through AppTest on real ml-100k: a 2×3 sweep launches 6 runs within the
owner's queue share, the heatmap fills in as they end and marks the best point; a 1-D sweep
draws test vs train RMSE on a log axis with the baselines; the best point opens or fills the
Train form; a sweep over the limit is refused and queues nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mfcore.runs.access import SYSTEM
from mfcore.runs.store import RunStore
from tests.app_support import plotly_array
from ui import jobs

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
QUICK = {"tf_epochs": 3, "tf_implicit_feedback": False, "tf_average_from": 0}


@pytest.fixture(autouse=True)
def runs_dir(monkeypatch, tmp_path, shared_data) -> Path:
    folder = tmp_path / "runs"
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(folder))
    monkeypatch.setenv("MFSTUDIO_DATA_DIR", str(shared_data))
    monkeypatch.setenv("MFSTUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", "http://127.0.0.1:9")
    monkeypatch.setenv("MFSTUDIO_CPU_THREADS", "1")
    monkeypatch.delenv("MFSTUDIO_MAX_SWEEP_RUNS", raising=False)
    yield folder
    runner = jobs._runner_for(str(folder.resolve()))
    for snap in runner.list():
        if snap.is_active:
            runner.stop(snap.run_id, SYSTEM)
    runner.shutdown(wait=True)


def open_sweeps(dataset: str = "ml-100k") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["dataset_spec"] = dataset
    at.session_state["split_spec"] = "random:0.1"
    at.run()
    at.switch_page("pages/sweeps.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Sweeps"
    for key, value in QUICK.items():
        at.session_state[key] = value
    return at


def choose(at: AppTest, p1: str, v1: str, p2: str | None = None, v2: str | None = None) -> None:
    at.selectbox(key="sw_p1").set_value(p1).run()
    at.text_input(key="sw_v1").set_value(v1).run()
    if p2:
        at.selectbox(key="sw_p2").set_value(p2).run()
        at.text_input(key="sw_v2").set_value(v2).run()


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def chart(at: AppTest) -> dict:
    charts = at.get("plotly_chart")
    assert charts, "no sweep chart"
    return json.loads(charts[-1].proto.spec)


def poll_until_ended(at: AppTest, n: int, timeout: float = 180.0) -> list[int]:
    """Re-run (the fragment's timer in a browser) until n points ended; returns the active counts seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        runs = RunStore(jobs.runs_dir()).list_runs(statuses=("queued", "running"))
        seen.append(len(runs))
        if metric(at, "Points ended") == f"{n}/{n}":
            return seen
        assert time.monotonic() < deadline, f"sweep did not end: {metric(at, 'Points ended')}"
        time.sleep(0.3)


def test_a_2x3_sweep_on_ml100k_launches_6_runs_fills_the_heatmap_and_marks_the_best(runs_dir):
    at = open_sweeps()
    choose(at, "n_factors", "4, 16", "l2", "0.01..1 log 3")
    assert "6 runs (limit 24)" in " ".join(c.value for c in at.caption)
    at.button(key="sw_launch").click().run()
    assert not at.exception, at.exception
    note = " ".join(s.value for s in at.success)
    assert "6 points, 3 queued now" in note and "3 wait for a free slot" in note  # the owner's share is 3
    sweep_id = at.session_state["sweeps__current"]
    first = chart(at)["data"][0]
    assert first["type"] == "heatmap" and first["x"] == ["0.01", "0.1", "1"] and first["y"] == ["4", "16"]

    active_counts = poll_until_ended(at, 6)
    assert max(active_counts) <= 3  # never more than the per-owner bound queued or running

    runs = RunStore(runs_dir).list_runs(sweep_id=sweep_id)
    assert len(runs) == 6 and {r.status for r in runs} == {"finished"}
    assert sorted((r.model_config["n_factors"], r.train_config["l2"]) for r in runs) == [
        (4, 0.01), (4, 0.1), (4, 1.0), (16, 0.01), (16, 0.1), (16, 1.0)]
    fig = chart(at)
    heat = fig["data"][0]
    z = np.array([[np.nan if v is None else v for v in row] for row in heat["z"]], dtype=float)
    assert z.shape == (2, 3) and np.isfinite(z).all()
    by_cell = {(r.model_config["n_factors"], r.train_config["l2"]): r.metrics["test_rmse"] for r in runs}
    assert z[1, 2] == pytest.approx(by_cell[(16, 1.0)]) and z[0, 0] == pytest.approx(by_cell[(4, 0.01)])
    best = next(t for t in fig["data"] if str(t.get("name", "")).startswith("best"))
    i, j = np.unravel_index(np.argmin(z), z.shape)
    assert (best["y"][0], best["x"][0]) == (heat["y"][i], heat["x"][j])
    assert metric(at, "Best test RMSE") == f"{z.min():.4f}"


def test_a_1d_sweep_draws_test_and_train_rmse_on_a_log_axis_and_the_best_point_opens(runs_dir):
    at = open_sweeps()
    choose(at, "l2", "0.001..1 log 3")
    at.button(key="sw_launch").click().run()
    poll_until_ended(at, 3)
    fig = chart(at)
    assert fig["layout"]["xaxis"]["type"] == "log"
    names = [t["name"] for t in fig["data"]]
    assert {"test RMSE (final)", "test RMSE (best epoch)", "train RMSE"} <= set(names)
    assert any(n.startswith("biases only") for n in names) and any(n.startswith("global mean") for n in names)
    test = next(t for t in fig["data"] if t["name"] == "test RMSE (final)")
    train = next(t for t in fig["data"] if t["name"] == "train RMSE")
    ys, xs = plotly_array(test["y"]).astype(float), plotly_array(test["x"]).astype(float)
    assert np.allclose(xs, [0.001, 0.031623, 1.0], rtol=1e-3) and np.isfinite(ys).all()
    assert np.isfinite(plotly_array(train["y"]).astype(float)).all()
    best = next(t for t in fig["data"] if t["name"].startswith("best:"))
    assert best["y"][0] == pytest.approx(ys.min()) and best["x"][0] == pytest.approx(xs[np.argmin(ys)])
    best_run = best["customdata"][0]

    at.button(key="sw_open_best").click().run()
    assert at.session_state["selected_run"] == best_run and at.session_state["active_run"] == best_run
    at.button(key="sw_copy_best").click().run()
    stored = RunStore(runs_dir).get(best_run)
    assert at.session_state["tf_l2"] == pytest.approx(stored.train_config["l2"])
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    assert at.number_input(key="tf_l2").value == pytest.approx(stored.train_config["l2"])


def test_a_sweep_over_the_limit_is_refused_and_queues_nothing(runs_dir, monkeypatch):
    monkeypatch.setenv("MFSTUDIO_MAX_SWEEP_RUNS", "4")
    at = open_sweeps()
    choose(at, "n_factors", "2..64 doubling")
    assert any("6 points, more than the limit of 4" in e.value for e in at.error)
    at.button(key="sw_launch").click().run()
    assert any("more than the limit of 4" in e.value for e in at.error)
    assert RunStore(runs_dir).list_runs() == []
