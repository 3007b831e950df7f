"""Train and Runs pages through AppTest: launch, live redraws, stop, presets, validation, compare.

AppTest runs fragments on every ``run()`` but never fires ``run_every`` timers, so the
tests poll by calling ``at.run()`` again. Each test gets its own runs folder (and so its
own job runner: ``ui.jobs.get_runner`` is keyed by the folder) and trains on the
synthetic default dataset with small configurations.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import pytest
from streamlit.testing.v1 import AppTest

from mfcore.runs.access import SYSTEM
from mfcore.presets import PRESETS
from mfcore.runs.store import RunStore
from ui import jobs, train_form
from ui.run_charts import learning_curve, overlay, point_count, throughput, within_epoch_points

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TRAIN = "pages/train.py"
RUNS = "pages/runs.py"

# About 0.1 s per epoch on the synthetic default (the per-rating SGD kernel).
QUICK = {"tf_epochs": 4, "tf_batch_size": 1, "tf_optimizer": "sgd", "tf_average_from": 0, "tf_n_factors": 8,
         "tf_implicit_feedback": False}
# About a second per epoch: long enough to watch and to stop.
SLOW = {"tf_implicit_feedback": False, "tf_optimizer": "adam", "tf_lr": "0.005", "tf_batch_size": 128,
        "tf_average_from": 0, "tf_n_factors": 16}


@pytest.fixture(autouse=True)
def runs_dir(monkeypatch, tmp_path) -> Path:
    folder = tmp_path / "runs"
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(folder))
    monkeypatch.setenv("MFSTUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", "http://127.0.0.1:9")
    monkeypatch.delenv("MFSTUDIO_DATA_DIR", raising=False)
    monkeypatch.setenv("MFSTUDIO_CPU_THREADS", "1")
    yield folder
    # Stop whatever this test left running, so the next test's runner has the CPU.
    runner = jobs._runner_for(str(folder.resolve()))
    for snap in runner.list():
        if snap.is_active:
            runner.stop(snap.run_id, SYSTEM)
    runner.shutdown(wait=True)


# ---------------------------------------------------------------------------- helpers
def open_train() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(TRAIN).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Train"
    return at


def fill(at: AppTest, values: dict) -> None:
    """Set widgets in order, re-running after each (some enable others, as in a browser)."""
    for key, value in values.items():
        if key.startswith("tf_") and at.session_state[key] == value:
            continue
        if key in ("tf_lr", "tf_weight_decay", "tf_label"):
            at.text_input(key=key).set_value(value)
        elif key in ("tf_optimizer", "tf_init", "tf_output", "tf_global_bias", "tf_device"):
            at.selectbox(key=key).set_value(value)
        elif key in ("tf_custom_range", "tf_implicit_feedback", "tf_eval_ranking"):
            at.checkbox(key=key).set_value(value)
        else:
            at.number_input(key=key).set_value(value)
        at.run()


def launch(at: AppTest, values: dict, label: str = "") -> str:
    fill(at, {**values, "tf_label": label})
    at.button(key="train_launch").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["active_run"]
    assert run_id, [e.value for e in at.error]
    return run_id


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def curve_points(at: AppTest, trace: str = "test RMSE") -> int:
    """Points of the named trace in the page's first plotly chart (the learning curve)."""
    charts = at.get("plotly_chart")
    if not charts:
        return 0
    spec = json.loads(charts[0].proto.spec)
    for data in spec["data"]:
        if data.get("name") == trace:
            return sum(1 for y in data.get("y", []) if y is not None)
    return 0


def poll(at: AppTest, done: Callable[[AppTest], bool], timeout: float = 90.0, what: str = "") -> AppTest:
    """Re-run the page (what the live fragment's timer does in a browser) until ``done``."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return at
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or done}; metrics {[(m.label, m.value) for m in at.metric]}")
        time.sleep(0.2)


def status(run_id: str, runs_dir: Path) -> str:
    return RunStore(runs_dir).get(run_id).status


def walk(block):
    """Depth-first list of (parent block, index, node) for every node of the page."""
    out = []
    for index, node in sorted(block.children.items()):
        out.append((block, index, node))
        if hasattr(node, "children"):
            out.extend(walk(node))
    return out


def error_right_after(at: AppTest, widget_key: str) -> str | None:
    """Text of the st.error drawn directly after the widget ``widget_key`` in its container."""
    for block, index, node in walk(at._tree):
        if getattr(node, "key", None) == widget_key:
            later = [n for i, n in sorted(block.children.items()) if i > index]
            if later and getattr(later[0], "type", "") == "error":
                return later[0].value
            return None
    raise AssertionError(f"no widget {widget_key}")


# ---------------------------------------------------------------------------- the form
def test_train_page_shows_data_choice_presets_and_every_hyperparameter():
    at = open_train()
    md = "\n".join(m.value for m in at.markdown)
    assert "split** `random:0.1`" in md and "Synthetic" in md
    assert any(p.proto.page.endswith("data.py") or "data" in p.proto.label.lower() for p in at.get("page_link"))
    labels = [b.label for b in at.button]
    for preset in PRESETS.values():
        assert preset.title.split(" (")[0] in labels
    keys = {w.key for w in (*at.number_input, *at.text_input, *at.selectbox, *at.radio, *at.checkbox)}
    for name in ("model_type", "n_factors", "global_bias", "output", "custom_range", "range_low", "range_high",
                 "init", "init_std", "init_low", "init_high", "optimizer", "lr", "epochs", "batch_size", "l2",
                 "l2_bias", "weight_decay", "momentum", "lr_decay", "average_from", "early_stopping_patience",
                 "seed", "device", "cpu_threads"):
        assert f"tf_{name}" in keys, name
    # every field of the engine's three configs has a widget (a dedicated one or a plain one)
    from dataclasses import fields

    from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig

    widget_for = {"use_bias": "model_type", "output_range": "range_high"}
    for cls in (ModelConfig, TrainConfig, RuntimeOptions):
        for f in fields(cls):
            home = widget_for.get(f.name, f.name)
            assert f"tf_{home}" in keys or f"tf_x_{cls.__name__}_{f.name}" in keys, f"{cls.__name__}.{f.name}"
    assert at.selectbox(key="tf_device").options[:2] == ["auto", "cpu"] or "cpu" in at.selectbox(key="tf_device").options
    assert "sgd" in at.selectbox(key="tf_optimizer").options and "sparse_adam" in at.selectbox(key="tf_optimizer").options
    # help text comes from the config docstrings
    assert "per rating" in at.number_input(key="tf_l2").help
    assert "No run yet" in "\n".join(c.value for c in at.caption)


def test_a_preset_button_fills_the_form_and_shows_its_reference():
    at = open_train()
    d2l = PRESETS["d2l"]
    at.button(key="preset_d2l").click().run()
    assert not at.exception
    assert at.selectbox(key="tf_optimizer").value == "adam"
    assert at.number_input(key="tf_n_factors").value == d2l.model.n_factors
    assert float(at.text_input(key="tf_lr").value) == d2l.train.lr
    assert float(at.text_input(key="tf_weight_decay").value) == d2l.train.weight_decay
    assert at.selectbox(key="tf_global_bias").value == "none"
    info = "\n".join(i.value for i in at.info)
    assert d2l.description in info and d2l.reference in info
    assert info.count(f"{d2l.published_rmse:g}") == 1 and info.count(f"{d2l.measured_rmse:g}") == 1  # each figure once
    at.button(key="preset_lowrank").click().run()
    assert at.number_input(key="tf_batch_size").value == 0
    assert at.radio(key="tf_model_type").value == "plain"
    assert at.number_input(key="tf_momentum").value == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"tf_lr": "nan"}, "tf_lr", "finite"),
        ({"tf_lr": "-0.1"}, "tf_lr", "above 0"),
        ({"tf_lr": "fast"}, "tf_lr", "number"),
        ({"tf_lr": "0"}, "tf_lr", "above 0"),
        ({"tf_optimizer": "sparse_adam", "tf_weight_decay": "0.01"}, "tf_weight_decay", "SparseAdam"),
        ({"tf_optimizer": "als", "tf_l2": 0.0}, "tf_l2", "ALS needs a positive l2"),
        ({"tf_output": "sigmoid", "tf_custom_range": True, "tf_range_low": 5.0, "tf_range_high": 1.0},
         "tf_range_high", "low must be below high"),
    ],
)
def test_an_invalid_value_shows_its_message_next_to_the_field_and_queues_nothing(values, field, words, runs_dir):
    at = open_train()
    fill(at, values)
    at.button(key="train_launch").click().run()
    assert not at.exception, at.exception
    message = error_right_after(at, field)
    assert message is not None and words in message, (message, [e.value for e in at.error])
    assert any("Nothing was queued" in e.value for e in at.error)
    assert at.session_state["active_run"] is None
    assert RunStore(runs_dir).list_runs() == []
    # a preset puts valid values back and clears the message; then the launch queues
    at.button(key="preset_default").click().run()
    assert error_right_after(at, field) is None
    fill(at, QUICK)
    at.button(key="train_launch").click().run()
    assert error_right_after(at, field) is None
    assert len(RunStore(runs_dir).list_runs()) == 1


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_fills_the_form_and_validates_back_to_its_exact_configs(name):
    values = {**train_form.preset_values(PRESETS[name]), **train_form.runtime_values()}
    result = train_form.validate(values)
    assert result.ok, result.errors
    assert result.model == PRESETS[name].model and result.train == PRESETS[name].train


def test_every_bad_field_is_reported_at_once_and_cross_field_checks_use_the_real_values():
    values = {**train_form.preset_values(PRESETS["default"]), **train_form.runtime_values(),
              "optimizer": "adam", "batch_size": 128, "lr": "nan", "n_factors": 0}
    errors = train_form.validate(values).errors
    assert set(errors) == {"n_factors", "lr", "implicit_feedback"}
    assert "per-rating SGD" in errors["implicit_feedback"]


def test_zero_factors_cannot_be_entered_and_would_be_refused():
    at = open_train()
    at.number_input(key="tf_n_factors").set_value(0).run()
    assert at.number_input(key="tf_n_factors").value == 1  # the widget holds the engine's bounds
    values = {**train_form.preset_values(PRESETS["default"]), **train_form.runtime_values(), "n_factors": 0}
    result = train_form.validate(values)
    assert not result.ok and "between 1 and 1024" in result.errors["n_factors"]


def test_uniform_init_needs_low_below_high():
    at = open_train()
    fill(at, {"tf_init": "uniform", "tf_init_low": 0.1, "tf_init_high": 0.05})
    at.button(key="train_launch").click().run()
    assert "init_low" in (error_right_after(at, "tf_init_high") or "") or any("init_high" in e.value for e in at.error)


# ---------------------------------------------------------------------------- running
def test_launch_queues_a_run_whose_chart_gains_points_until_it_finishes(runs_dir):
    at = open_train()
    run_id = launch(at, {**SLOW, "tf_epochs": 4}, label="watch me")
    assert status(run_id, runs_dir) in ("queued", "running")
    seen: list[int] = []

    def finished(at: AppTest) -> bool:
        seen.append(curve_points(at))
        return any("Finished" in s.value for s in at.success)

    poll(at, finished, what="the run to finish")
    assert seen == sorted(seen), seen  # points only ever get added
    assert seen[-1] == 4 and metric(at, "Epoch") == "4/4"
    assert any(0 < n < 4 for n in seen), f"never saw a partial curve: {seen}"
    assert any("device **cpu" in c.value for c in at.caption)
    assert math.isfinite(float(metric(at, "Test RMSE")))
    assert "watch me" in at.subheader[-1].value
    assert status(run_id, runs_dir) == "finished"
    # Once finished the Stop button is disabled (and the live timer is off).
    assert at.button(key=f"stop_{run_id}").disabled


def test_stop_ends_a_running_run_and_keeps_its_epochs(runs_dir):
    at = open_train()
    run_id = launch(at, {**SLOW, "tf_epochs": 200})
    poll(at, lambda a: metric(a, "Epoch") not in ("0/200",), what="a first epoch")
    at.button(key=f"stop_{run_id}").click().run()
    assert not at.exception
    poll(at, lambda a: status(run_id, runs_dir) == "stopped", timeout=30, what="the stop")
    at.run()
    assert any("Stopped after" in i.value for i in at.info)
    done = RunStore(runs_dir).get(run_id).epochs_done
    assert 1 <= done < 200
    assert curve_points(at) == done


def test_a_diverging_run_says_why_and_what_to_change(runs_dir):
    at = open_train()
    run_id = launch(at, {**QUICK, "tf_lr": "100", "tf_l2": 0.0})
    poll(at, lambda a: bool(a.error), what="the failure")
    text = "\n".join(e.value for e in at.error)
    assert "diverged" in text and "What to change" in text and "learning rate" in text
    assert status(run_id, runs_dir) == "failed"


def test_a_run_keeps_going_while_the_user_is_on_another_page(runs_dir):
    at = open_train()
    run_id = launch(at, {**SLOW, "tf_epochs": 3})
    at.switch_page("pages/data.py").run()
    assert not at.exception
    jobs._runner_for(str(runs_dir.resolve())).wait(run_id, timeout=120)
    at.switch_page(TRAIN).run()
    assert not at.exception
    assert metric(at, "Epoch") == "3/3"
    assert any("Finished" in s.value for s in at.success)


def test_the_live_chart_draws_within_epoch_points():
    import pandas as pd

    history = pd.DataFrame({"epoch": [1], "train_loss": [0.81], "test_rmse": [0.95], "test_mae": [0.7],
                            "seconds": [1.0], "examples_per_second": [1e5], "elapsed_s": [1.0]})
    progress = [{"epoch": 2, "done": d, "total": 100, "train_loss": 0.7} for d in (20, 40, 60)]
    fig = learning_curve(history, {"global_mean_rmse": 1.1, "baseline_rmse": 0.97}, progress=progress)
    assert point_count(fig, "test RMSE") == 1
    assert point_count(fig, "train, within epoch") == 3
    names = [t["name"] for t in fig["data"]]
    assert any(n.startswith("global mean") for n in names) and any(n.startswith("biases only") for n in names)
    # the specs are valid plotly figures (st.plotly_chart validates them the same way)
    import plotly.graph_objects as go

    go.Figure(fig)
    go.Figure(throughput(history))
    go.Figure(overlay([{"label": "a", "history": history, "baselines": {"baseline_rmse": 0.9}},
                       {"label": "b", "history": history, "baselines": {"baseline_rmse": 0.8}}]))
    # within-epoch points of two epochs are two segments, split by a gap
    xs, _ = within_epoch_points(progress + [{"epoch": 3, "done": 10, "total": 100, "train_loss": 0.6}])
    assert xs.count(None) == 1


@pytest.mark.parametrize(("best", "side"), [(1, "bottom right"), (20, "bottom center"), (40, "bottom left")])
def test_the_best_epoch_label_stays_inside_the_chart(best, side):
    """A best epoch at the chart's left or right edge gets its label on the inner side (a centred
    label at epoch 1 was cut by the plot's edge)."""
    import pandas as pd

    rmse = [1.0 + abs(e - best) * 0.01 for e in range(1, 41)]
    history = pd.DataFrame({"epoch": range(1, 41), "train_loss": [0.8] * 40, "test_rmse": rmse, "test_mae": rmse,
                            "seconds": [1.0] * 40, "examples_per_second": [1e5] * 40, "elapsed_s": range(1, 41)})
    fig = learning_curve(history, {}, epochs_planned=40)
    star = next(t for t in fig["data"] if t["name"].startswith("best test epoch"))
    assert star["x"] == [best] and star["textposition"] == side and star["cliponaxis"] is False


# ---------------------------------------------------------------------------- runs page
def test_runs_page_lists_runs_and_compares_them(runs_dir):
    at = open_train()
    first = launch(at, {**QUICK, "tf_n_factors": 4}, label="k4")
    runner = jobs._runner_for(str(runs_dir.resolve()))
    runner.wait(first, timeout=60)
    second = launch(at, {**QUICK, "tf_n_factors": 12}, label="k12")
    runner.wait(second, timeout=60)

    at.switch_page(RUNS).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["run id"]) == [second, first]  # newest first
    assert all(o.endswith("(you)") for o in table["owner"]) and set(table["status"]) == {"finished"}
    assert table["test RMSE"].notna().all() and table["biases only"].notna().all()
    # what fits on a 1280 px screen by default; every column on request
    main_columns = ["status", "owner", "label", "dataset", "split", "test RMSE", "epochs"]
    assert list(at.dataframe[0].proto.column_order) == main_columns
    at.toggle(key="runs_all_columns").set_value(True).run()
    assert list(at.dataframe[0].proto.column_order) == [] and "run id" in at.dataframe[0].value.columns
    at.toggle(key="runs_all_columns").set_value(False).run()

    at.multiselect(key="runs_compare").set_value([first, second]).run()
    assert not at.exception, at.exception
    assert at.session_state["compare_runs"] == [first, second]
    overlay = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {d["name"] for d in overlay["data"]} >= {"k4 (" + first[:6] + ")", "k12 (" + second[:6] + ")"}
    configs = at.dataframe[1].value
    assert "Factors k" in configs.index and "Learning rate" not in configs.index  # only the differences, by the form's labels
    assert list(configs.loc["Factors k"]) == ["4", "12"]
    at.toggle(key="runs_only_diff").set_value(False).run()
    assert "Learning rate" in at.dataframe[1].value.index

    labels = [b.label for b in at.get("download_button")] + [b.label for b in at.button]  # (the .pt one publishes a link)
    assert "Checkpoint (.pt)" in labels and "Learning history (.csv)" in labels
    assert "Metrics (.csv)" not in labels  # the per-epoch table is offered once
    csv = RunStore(runs_dir).export_metrics_csv(first)
    assert csv.splitlines()[0].startswith("run_id,epoch")


def test_runs_page_deletes_only_after_confirmation(runs_dir):
    at = open_train()
    run_id = launch(at, QUICK, label="doomed")
    jobs._runner_for(str(runs_dir.resolve())).wait(run_id, timeout=60)
    at.switch_page(RUNS).run()
    at.button(key=f"runs_delete_{run_id}").click().run()
    assert any("cannot be undone" in w.value for w in at.warning)
    assert RunStore(runs_dir).exists(run_id)
    at.button(key="runs_delete_no").click().run()
    assert RunStore(runs_dir).exists(run_id) and not at.warning
    at.button(key=f"runs_delete_{run_id}").click().run()
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception, at.exception
    assert not RunStore(runs_dir).exists(run_id)
    assert any("No runs yet" in i.value for i in at.info)


def test_runs_page_shows_other_sessions_runs_and_interrupted_ones(runs_dir):
    # A run left "running" by a server process that died, with two completed epochs.
    store = RunStore(runs_dir)
    from mfcore.config import ModelConfig, TrainConfig
    from mfcore.events import EpochEnded, RunStarted

    record = store.create_run(dataset="synthetic", split="random:0.1", seed=0, model_config=ModelConfig(),
                              train_config=TrainConfig(epochs=10), owner="someone-else", label="crashed",
                              process="nohost:999999:1")
    store.update_status(record.id, "running", "", only_from=("queued",))
    store.record_event(record.id, RunStarted(device="cpu", epochs=10, n_train=90, n_test=10, batches_per_epoch=1,
                                             baselines={"global_mean_rmse": 1.0, "baseline_rmse": 0.9}))
    for epoch in (1, 2):
        store.record_event(record.id, EpochEnded(
            epoch=epoch, epochs=10, train_loss=0.8, test_rmse=0.95, test_mae=0.7, examples_per_second=1e5,
            seconds=1.0, elapsed_s=float(epoch), lr=0.01, device="cpu", is_best=True))

    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(RUNS).run()  # the app's runner starts here and marks the dead process's run
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    row = table[table["run id"] == record.id].iloc[0]
    assert row["status"] == "interrupted" and row["owner"] == "unnamed" and row["epochs"] == "2/10"
    detail_box(at).set_value(record.id).run()
    assert any("Interrupted" in w.value and "2 completed" in w.value for w in at.warning)


def detail_box(at):
    """The Runs page's run chooser (its key carries the selected run)."""
    return next(s for s in at.selectbox if (s.key or "").startswith("runs_detail"))


def test_form_help_is_written_for_students():  # issue 10: not "None = off" (more in test_app_words.py)
    assert "SGD only" in train_form.help_for("momentum")
    assert "0 turns averaging off" in train_form.help_for("average_from")
    assert train_form.help_for("init_std")


def test_job_helpers_format_and_load_without_a_streamlit_run():
    assert jobs.duration(75.2) == "1:15" and jobs.duration(3725) == "1:02:05" and jobs.duration(None) == "–"
    assert jobs.rate(1_234_567) == "1.23 M/s" and jobs.rate(float("nan")) == "–"
    assert "learning rate" in jobs.failure_advice("training diverged in epoch 1: ... NaN")
    data = jobs.load_for_runner("synthetic")  # what the runner's worker threads call: no st.* inside
    assert data.n_ratings > 0


def test_the_form_keeps_its_values_when_the_user_visits_another_page():
    at = open_train()
    at.button(key="preset_d2l").click().run()
    at.number_input(key="tf_epochs").set_value(7).run()
    at.text_input(key="tf_label").input("my d2l run").run()
    assert at.number_input(key="tf_n_factors").value == PRESETS["d2l"].model.n_factors
    for page in ("pages/runs.py", "pages/data.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
    at.switch_page(TRAIN).run()
    assert not at.exception, at.exception
    assert at.number_input(key="tf_n_factors").value == PRESETS["d2l"].model.n_factors
    assert at.number_input(key="tf_epochs").value == 7
    assert at.text_input(key="tf_label").value == "my d2l run"
    assert at.selectbox(key="tf_optimizer").value == "adam"


@pytest.mark.parametrize("spec, preset, warned", [
    ("ml-25m", "d2l", True),  # Adam, batch 512
    ("ml-25m", "default", False),  # per-rating SGD
    ("ml-25m", "mf-advanced", True),
    ("synthetic", "d2l", False),  # small tables: Adam is fine
])
def test_the_train_page_warns_before_a_dense_optimizer_on_large_tables(spec, preset, warned):
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["dataset_spec"] = spec
    at.run()
    at.switch_page(TRAIN).run()
    at.button(key=f"preset_{preset}").click().run()
    assert not at.exception, at.exception
    shown = any("updates every row" in w.value for w in at.warning)
    assert shown is warned
