"""JobRunner: queueing, training to a checkpoint, stopping, failures and crash recovery."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from mfcore.runs.access import SYSTEM
from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
from mfcore.data.dataset import RatingData
from mfcore.errors import ConfigError, DataError, RunnerError
from mfcore.events import EpochEnded
from mfcore.recommender import TrainedModel
from mfcore.runs.runner import DatasetCache, JobRunner, RunRequest, default_max_workers
from mfcore.runs.store import RunStore
from tests.factories import planted_data

DATA = planted_data(n_users=60, n_items=40, density=0.5)  # ~1,200 ratings: an epoch takes milliseconds
CPU = RuntimeOptions(device="cpu", cpu_threads=1, progress_interval_s=0.05)


def _loader(spec: str) -> RatingData:
    if spec == "planted":
        return DATA
    raise DataError(f"no dataset called {spec!r}; use planted")


def _request(epochs: int = 3, owner: str = "alice", dataset: str = "planted", **train) -> RunRequest:
    train = {"optimizer": "adam", "lr": 0.01, "batch_size": 64, **train}
    return RunRequest(
        dataset=dataset, split="random:0.1", seed=1,
        model_config=ModelConfig(n_factors=4), train_config=TrainConfig(epochs=epochs, **train),
        runtime=CPU, owner=owner, label="test",
    )


def _until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture
def make_runner(store):
    runners: list[JobRunner] = []

    def make(**kw) -> JobRunner:
        kw.setdefault("load_data", _loader)
        kw.setdefault("max_workers", 1)
        kw.setdefault("share_identical", False)  # these tests are about computing each run
        runner = JobRunner(store, **kw)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.shutdown(wait=True)


def test_submit_trains_to_a_loadable_checkpoint(make_runner):
    runner = make_runner(checkpoint_every_s=0.0)
    run_id = runner.submit(_request(epochs=3))
    snap = runner.wait(run_id, timeout=30)
    assert snap.status == "finished", snap.message
    assert snap.epochs_done == snap.epochs_planned == 3
    assert snap.history["epoch"].tolist() == [1, 2, 3]
    assert list(snap.history.columns[:7]) == ["epoch", "train_loss", "test_rmse", "test_mae", "seconds",
                                              "examples_per_second", "elapsed_s"]
    assert snap.history["test_rmse"].notna().all()
    assert snap.metrics["test_rmse"] == pytest.approx(snap.history["test_rmse"].iloc[-1])
    assert "global_mean_rmse" in snap.baselines
    assert snap.device.startswith("cpu") and snap.progress is None and snap.eta_s is None
    assert snap.elapsed_s > 0 and snap.queue_position is None
    assert snap.model_config["n_factors"] == 4 and snap.train_config["epochs"] == 3
    assert snap.checkpoint_path and Path(snap.checkpoint_path).is_file()
    model = runner.load_model(run_id)
    assert isinstance(model, TrainedModel)
    assert model.item_factors().shape == (DATA.n_items, 4)
    assert model.dataset == "planted" and model.split == "random:0.1"
    assert model.history["epoch"] == [1, 2, 3]


def test_same_seed_same_result(make_runner):
    runner = make_runner()
    first, second = (runner.submit(_request(epochs=2)) for _ in range(2))
    a, b = runner.wait(first, timeout=30), runner.wait(second, timeout=30)
    assert a.metrics["test_rmse"] == b.metrics["test_rmse"]


def test_stop_a_running_job_keeps_its_epochs(make_runner):
    runner = make_runner(checkpoint_every_s=0.0)
    run_id = runner.submit(_request(epochs=100_000))
    _until(lambda: runner.snapshot(run_id).epochs_done >= 2, what="two epochs")
    snap = runner.snapshot(run_id)
    assert snap.status == "running" and snap.eta_s is not None and snap.eta_s > 0
    t0 = time.monotonic()
    runner.stop(run_id, SYSTEM)
    snap = runner.wait(run_id, timeout=10)
    assert time.monotonic() - t0 < 5
    assert snap.status == "stopped"
    assert snap.epochs_done >= 2 and len(snap.history) == snap.epochs_done
    assert snap.message.startswith("stopped after")
    assert runner.load_model(run_id).history["epoch"][-1] == snap.epochs_done
    runner.stop(run_id, SYSTEM)  # stopping an ended run does nothing
    assert runner.snapshot(run_id).status == "stopped"


def test_stop_a_queued_job_and_queue_order(make_runner):
    runner = make_runner(max_queued_per_owner=None)
    blocker = runner.submit(_request(epochs=100_000, owner="a"))
    _until(lambda: runner.snapshot(blocker).status == "running", what="the first run to start")
    second = runner.submit(_request(epochs=1, owner="b"))
    third = runner.submit(_request(epochs=1, owner="c"))
    fourth = runner.submit(_request(epochs=1, owner="d"))
    assert [runner.queue_position(r) for r in (blocker, second, third, fourth)] == [None, 1, 2, 3]
    assert runner.snapshot(third).queue_position == 2 and runner.snapshot(third).status == "queued"

    runner.stop(third, SYSTEM)
    snap = runner.snapshot(third)
    assert snap.status == "stopped" and snap.queue_position is None and snap.epochs_done == 0
    assert snap.message == "stopped before it started"
    assert runner.queue_position(fourth) == 2

    runner.stop(blocker, SYSTEM)
    last = runner.wait(fourth, timeout=30)
    first = runner.wait(second, timeout=30)
    assert first.status == last.status == "finished"
    started = {r: runner.store.get(r).started_at for r in (blocker, second, fourth)}
    assert started[blocker] < started[second] < started[fourth]  # FIFO
    assert runner.store.get(third).started_at is None
    with pytest.raises(RunnerError, match="no saved model"):
        runner.load_model(third)


def test_list_puts_the_owners_runs_first(make_runner):
    runner = make_runner(max_queued_per_owner=None)
    ids = [runner.submit(_request(epochs=1, owner=o)) for o in ("me", "you", "me", "you")]
    for run_id in ids:
        runner.wait(run_id, timeout=30)
    listed = runner.list(owner="me")
    assert [s.run_id for s in listed] == [ids[2], ids[0], ids[3], ids[1]]
    assert all(s.history.empty and s.epochs_done == 1 for s in listed)
    assert [s.run_id for s in runner.list()] == ids[::-1]


def test_per_owner_queue_bound(make_runner):
    runner = make_runner(max_queued_per_owner=3)
    mine = [runner.submit(_request(epochs=100_000, owner="bob")) for _ in range(3)]
    with pytest.raises(RunnerError, match="^you already have 3 runs waiting; wait or stop one$"):
        runner.submit(_request(owner="bob"))
    other = runner.submit(_request(epochs=1, owner="eve"))  # other owners are not affected
    runner.stop(mine[-1], SYSTEM)
    again = runner.submit(_request(epochs=1, owner="bob"))  # room again after stopping one
    for run_id in mine:
        runner.stop(run_id, SYSTEM)
    assert runner.wait(other, timeout=30).status == "finished"
    assert runner.wait(again, timeout=30).status == "finished"


def test_bad_requests_are_refused_at_submit(make_runner):
    runner = make_runner()
    with pytest.raises(ConfigError, match="split"):
        runner.submit(RunRequest("planted", "random:2", 0, ModelConfig(), TrainConfig()))
    with pytest.raises(ConfigError, match="seed"):
        runner.submit(RunRequest("planted", "random:0.1", -1, ModelConfig(), TrainConfig()))
    with pytest.raises(ConfigError, match="dataset"):
        runner.submit(RunRequest(" ", "random:0.1", 0, ModelConfig(), TrainConfig()))
    with pytest.raises(RunnerError, match="train_config must be a TrainConfig"):
        runner.submit(RunRequest("planted", "random:0.1", 0, ModelConfig(), {"epochs": 1}))
    assert runner.list() == []


def test_a_dataset_that_fails_to_load_fails_the_run(make_runner):
    runner = make_runner()
    run_id = runner.submit(_request(dataset="no-such-data"))
    snap = runner.wait(run_id, timeout=30)
    assert snap.status == "failed"
    assert snap.message == "could not load dataset 'no-such-data': no dataset called 'no-such-data'; use planted"

    def broken(spec: str) -> RatingData:
        raise OSError("disk on fire")

    runner2 = make_runner(load_data=broken)
    snap = runner2.wait(runner2.submit(_request()), timeout=30)
    assert snap.status == "failed" and snap.message == "could not load dataset 'planted': OSError: disk on fire"
    # the workers survive failures and keep serving
    assert runner.wait(runner.submit(_request(epochs=1)), timeout=30).status == "finished"


def test_a_split_the_data_cannot_make_fails_the_run(make_runner):
    runner = make_runner()
    request = RunRequest("planted", "u1", 0, ModelConfig(n_factors=4), TrainConfig(epochs=1), CPU, owner="x")
    snap = runner.wait(runner.submit(request), timeout=30)
    assert snap.status == "failed" and snap.message.startswith("could not make split 'u1' of 'planted':")


def test_a_diverging_run_fails_and_names_the_learning_rate(make_runner):
    runner = make_runner()
    run_id = runner.submit(_request(epochs=5, optimizer="sgd", lr=100.0, batch_size=64, l2=0.0, l2_bias=0.0))
    snap = runner.wait(run_id, timeout=30)
    assert snap.status == "failed"
    assert "diverged" in snap.message and "learning rate" in snap.message
    assert snap.checkpoint_path is None


def test_a_new_runner_marks_an_abandoned_run_interrupted(store, make_runner):
    live_runner = make_runner()
    live = live_runner.submit(_request(epochs=100_000, owner="amy"))
    _until(lambda: live_runner.snapshot(live).status == "running", what="a live run")
    # a run left 'running' by a process that died, after two completed epochs
    abandoned = store.create_run(dataset="planted", split="random:0.1", seed=0, model_config=ModelConfig(),
                                 train_config=TrainConfig(epochs=9), owner="zoe")
    store.update_status(abandoned.id, "running")
    for e in (1, 2):
        store.record_event(abandoned.id, EpochEnded(epoch=e, epochs=9, train_loss=1.0, test_rmse=1.0, test_mae=0.8,
                                                    examples_per_second=10.0, seconds=1.0, elapsed_s=float(e),
                                                    lr=0.01, device="cpu", is_best=True))
    second = make_runner()  # e.g. the app restarted in another process sharing the folder
    assert second.interrupted_on_start == 1
    snap = second.snapshot(abandoned.id)
    assert snap.status == "interrupted" and snap.epochs_done == 2
    assert snap.message == ("the server stopped during training; 2 epochs were completed; no checkpoint was "
                            "written, so there is no model to inspect")
    assert snap.elapsed_s == 2.0
    assert second.snapshot(live).status == "running"  # a live process's run is left alone
    live_runner.stop(live, SYSTEM)
    assert live_runner.wait(live, timeout=10).status == "stopped"


def test_shutdown_interrupts_running_and_waiting_runs(make_runner):
    runner = make_runner(checkpoint_every_s=0.0, max_queued_per_owner=None)
    running = runner.submit(_request(epochs=100_000))
    waiting = runner.submit(_request(epochs=1))
    _until(lambda: runner.snapshot(running).epochs_done >= 1, what="one epoch")
    runner.shutdown(wait=True)
    snap = runner.snapshot(running)
    assert snap.status == "interrupted" and snap.message.startswith("the server stopped during training;")
    assert runner.load_model(running).history["epoch"][-1] == snap.epochs_done
    assert runner.snapshot(waiting).status == "interrupted"
    with pytest.raises(RunnerError, match="shut down"):
        runner.submit(_request())


def test_unknown_run_ids(make_runner):
    runner = make_runner()
    for call in (runner.snapshot, lambda run_id: runner.stop(run_id, SYSTEM), runner.load_model, runner.wait):
        with pytest.raises(RunnerError, match="unknown run id 'nope'"):
            call("nope")
    assert runner.queue_position("nope") is None


def test_wait_times_out(make_runner):
    runner = make_runner()
    run_id = runner.submit(_request(epochs=100_000))
    with pytest.raises(TimeoutError, match=f"run {run_id} is still"):
        runner.wait(run_id, timeout=0.2)
    runner.stop(run_id, SYSTEM)


def test_load_model_of_a_running_job_uses_the_latest_checkpoint(make_runner):
    slow = make_runner(checkpoint_every_s=1e9)  # never a periodic checkpoint
    run_id = slow.submit(_request(epochs=100_000))
    _until(lambda: slow.snapshot(run_id).epochs_done >= 1, what="one epoch")
    with pytest.raises(RunnerError, match="no checkpoint yet; one is written after its first epoch"):
        slow.load_model(run_id)
    slow.stop(run_id, SYSTEM)
    assert slow.wait(run_id, timeout=10).checkpoint_path is not None  # the final one

    eager = make_runner(checkpoint_every_s=0.0)
    run_id = eager.submit(_request(epochs=100_000))
    _until(lambda: eager.snapshot(run_id).checkpoint_path is not None, what="a periodic checkpoint")
    model = eager.load_model(run_id)
    assert model.item_factors().shape == (DATA.n_items, 4) and len(model.history["epoch"]) >= 1
    eager.stop(run_id, SYSTEM)


def test_dataset_cache_loads_each_spec_once():
    calls: list[str] = []
    gate = threading.Event()

    def slow(spec: str) -> RatingData:
        calls.append(spec)
        gate.wait(5)
        return DATA

    cache = DatasetCache(slow, max_items=1)
    threads = [threading.Thread(target=cache, args=("ml-100k",)) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join(5)
    assert calls == ["ml-100k"]
    assert cache("ML-100K ") is DATA and calls == ["ml-100k"]
    cache("other")
    cache("ml-100k")  # evicted by "other" (max_items=1): loaded again
    assert calls == ["ml-100k", "other", "ml-100k"]


def test_max_workers_default_and_env(monkeypatch, store):
    monkeypatch.setenv("MFSTUDIO_MAX_JOBS", "3")
    assert default_max_workers() == 3
    monkeypatch.setenv("MFSTUDIO_MAX_JOBS", "many")
    with pytest.raises(ConfigError, match="MFSTUDIO_MAX_JOBS"):
        default_max_workers()
    monkeypatch.delenv("MFSTUDIO_MAX_JOBS")
    assert default_max_workers() in (1, 2)
    with pytest.raises(ConfigError, match="max_workers"):
        JobRunner(store, max_workers=0)


def test_default_loader_reads_named_datasets(make_runner):
    runner = make_runner(load_data=None)  # the memo around mfcore.data.sources.load_dataset
    ok = runner.submit(_request(epochs=1, dataset="synthetic", batch_size=4096))
    bad = runner.submit(_request(epochs=1, dataset="no-such-dataset"))
    assert runner.wait(ok, timeout=60).status == "finished"
    snap = runner.wait(bad, timeout=30)
    assert snap.status == "failed" and snap.message.startswith("could not load dataset 'no-such-dataset': unknown dataset")


def test_the_runner_never_imports_streamlit():
    code = "import sys, mfcore.runs, mfcore.runs.runner; assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
