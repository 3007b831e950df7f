"""Sweep engine: value grammar, expansion, the size limit, plans, topping up within the owner's
queue share, results and the best point (mfcore.sweeps); no Streamlit."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mfcore import sweeps
from mfcore.config import ModelConfig, TrainConfig
from mfcore.errors import ConfigError, RunnerError
from mfcore.presets import PRESETS

BASE = PRESETS["default"]


@pytest.mark.parametrize("text, values, log", [
    ("2..256 doubling", (2, 4, 8, 16, 32, 64, 128, 256), True),
    ("1..100 x3", (1, 3, 9, 27, 81), True),
    ("10..50 step 10", (10, 20, 30, 40, 50), False),
    ("10 to 50 lin 5", (10, 20, 30, 40, 50), False),
    ("8, 16, 32", (8, 16, 32), False),
    ("0.001 0.01 0.1 1", (0.001, 0.01, 0.1, 1), True),
])
def test_values_from_lists_and_ranges(text, values, log):
    got, got_log = sweeps.parse_values(text)
    assert np.allclose(got, values) and got_log is log


def test_a_log_range_is_evenly_spaced_in_log_with_both_ends():
    values, log = sweeps.parse_values("0.001..1 log 7")
    assert log and len(values) == 7 and values[0] == pytest.approx(0.001) and values[-1] == pytest.approx(1)
    assert np.allclose(np.diff(np.log10(values)), 0.5)


@pytest.mark.parametrize("text, words", [
    ("", "give values"), ("a, b", "not a number"), ("1..10 log 1", "from 2 to"), ("0..1 log 5", "above 0"),
    ("1..10 sideways", "unknown range kind"), ("1..10", "say how to fill"), ("1..10 x1", "above 1"),
])
def test_unreadable_values_name_the_problem(text, words):
    with pytest.raises(ConfigError, match=words):
        sweeps.parse_values(text)


def test_integer_parameters_are_rounded_and_deduplicated():
    axis = sweeps.parse_axis("n_factors", "2..20 log 5")
    assert axis.values == (2, 4, 6, 11, 20) and all(float(v).is_integer() for v in axis.values)
    with pytest.raises(ConfigError, match="cannot sweep"):
        sweeps.parse_axis("dropout", "1, 2")


def test_two_axes_expand_to_every_combination_first_axis_slowest():
    axes = [sweeps.parse_axis("n_factors", "4, 8"), sweeps.parse_axis("l2", "0.01..1 log 3")]
    points = sweeps.expand(BASE.model, BASE.train, axes)
    assert len(points) == 6
    assert [(p[1].n_factors, p[2].l2) for p in points] == [
        (4, 0.01), (4, 0.1), (4, 1.0), (8, 0.01), (8, 0.1), (8, 1.0)]
    assert all(p[2].lr == BASE.train.lr for p in points)  # the rest of the base is kept


def test_a_sweep_over_the_limit_is_refused_with_a_typed_error(monkeypatch):
    axes = [sweeps.parse_axis("n_factors", "2..256 doubling"), sweeps.parse_axis("l2", "0.001..1 log 7")]
    with pytest.raises(sweeps.SweepTooLargeError, match="56 points, more than the limit of 24") as info:
        sweeps.expand(BASE.model, BASE.train, axes)
    assert info.value.size == 56 and info.value.limit == 24 and isinstance(info.value, ConfigError)
    monkeypatch.setenv(sweeps.MAX_SWEEP_ENV, "60")
    assert len(sweeps.expand(BASE.model, BASE.train, axes)) == 56
    monkeypatch.setenv(sweeps.MAX_SWEEP_ENV, "lots")
    with pytest.raises(ConfigError, match="MFSTUDIO_MAX_SWEEP_RUNS"):
        sweeps.max_sweep_runs()


def test_a_value_the_config_refuses_is_named():
    with pytest.raises(ConfigError, match="learning rate = -1 is refused"):
        sweeps.expand(BASE.model, BASE.train, [sweeps.SweepAxis("lr", (0.01, -1.0))])
    with pytest.raises(ConfigError, match="must differ"):
        sweeps.expand(BASE.model, BASE.train, [sweeps.parse_axis("l2", "1, 2"), sweeps.parse_axis("l2", "3, 4")])


def test_sweeping_epochs_keeps_averaging_inside_the_run():
    points = sweeps.expand(BASE.model, BASE.train, [sweeps.parse_axis("epochs", "10, 80")])
    short, long_ = points[0][2], points[1][2]
    assert short.epochs == 10 and 1 <= short.average_from <= 10
    assert long_.epochs == 80 and long_.average_from == BASE.train.average_from


class FakeRunner:
    """submit() records requests; the store counts one owner's active runs; a bound of 3."""

    def __init__(self, limit=3):
        self.max_queued_per_owner = limit
        self.requests, self.active = [], 0
        self.store = SimpleNamespace(count_active=lambda owner: self.active)

    def submit(self, request):
        if self.active >= self.max_queued_per_owner:
            raise RunnerError(f"you already have {self.active} runs waiting; wait or stop one")
        self.requests.append(request)
        self.active += 1
        return f"run{len(self.requests)}"


def _plan(tmp_path):
    axes = [sweeps.parse_axis("n_factors", "4, 8"), sweeps.parse_axis("l2", "0.01, 0.1, 1")]
    plan = sweeps.make_plan(BASE.model, BASE.train, axes, dataset="ml-100k", split="random:0.1", seed=0,
                            owner="alice", owner_name="Alice")
    book = sweeps.SweepBook(tmp_path)
    book.save(plan)
    return plan, book


def test_a_sweep_submits_only_the_owners_free_slots_then_the_rest_as_points_end(tmp_path):
    plan, book = _plan(tmp_path)
    runner = FakeRunner(limit=3)
    assert sweeps.top_up(plan, runner, book) == 3
    assert len(book.load(plan.sweep_id).pending) == 3  # the waiting points are in the stored plan
    assert sweeps.top_up(plan, runner, book) == 0  # no free slot: nothing more
    runner.active = 1  # two points ended
    assert sweeps.top_up(book.load(plan.sweep_id), runner, book) == 2
    assert sweeps.top_up(book.load(plan.sweep_id), runner, book) == 0  # full again
    runner.active = 0
    assert sweeps.top_up(book.load(plan.sweep_id), runner, book) == 1
    stored = book.load(plan.sweep_id)
    assert not stored.pending and len(set(stored.run_ids)) == 6
    r = runner.requests[0]
    assert r.sweep_id == plan.sweep_id and r.owner == "alice" and r.model_config.n_factors == 4 and r.train_config.l2 == 0.01
    assert r.label == f"sweep {plan.sweep_id[:6]}: k=4 l2=0.01"


def test_plans_round_trip_and_list_by_owner_newest_first(tmp_path):
    plan, book = _plan(tmp_path)
    again = book.load(plan.sweep_id)
    assert again.axes == plan.axes and again.points == plan.points and again.train_config == plan.train_config
    assert [p.sweep_id for p in book.list("alice")] == [plan.sweep_id] and book.list("bob") == []
    with pytest.raises(RunnerError, match="not a sweep id"):
        book.load("../etc")
    assert sweeps.cancel_pending(again, book) == 6 and book.load(plan.sweep_id).points == []


def _history(test, train_loss):
    return pd.DataFrame({"epoch": range(1, len(test) + 1), "test_rmse": test, "train_loss": train_loss})


def test_results_give_final_and_best_epoch_test_rmse_and_train_rmse_and_the_best_point(tmp_path):
    plan, _ = _plan(tmp_path)
    for n, p in enumerate(plan.points[:4]):
        p.run_id = f"r{n}"
    runs = {
        "r0": (SimpleNamespace(status="finished", metrics={"test_rmse": 0.95}, baselines={"baseline_rmse": 0.94}),
               _history([1.0, 0.93, 0.95], [1.0, 0.81, 0.64])),
        "r1": (SimpleNamespace(status="finished", metrics={"test_rmse": 0.91}, baselines={}), _history([0.92, 0.91], [0.9, 0.8])),
        "r2": (SimpleNamespace(status="running", metrics={}, baselines={}), _history([0.99], [1.21])),
        "r3": (SimpleNamespace(status="failed", metrics={}, baselines={}), _history([], [])),
    }
    frame = sweeps.results_frame(plan, runs)
    assert list(frame["status"]) == ["finished", "finished", "running", "failed", "waiting", "waiting"]
    row = frame.iloc[0]
    assert row["test_rmse"] == 0.95 and row["best_test_rmse"] == 0.93 and row["best_epoch"] == 2
    assert row["train_rmse"] == pytest.approx(0.8) and row["n_factors"] == 4 and row["l2"] == 0.01
    assert frame.iloc[2]["test_rmse"] == 0.99 and math.isnan(frame.iloc[4]["test_rmse"])
    assert sweeps.best_point(frame) == 1  # the running point's lower number does not count yet
    assert sweeps.baselines_of(r for r, _ in runs.values()) == {"baseline_rmse": 0.94}
