"""RunStore: round trips, event recording, crash recovery, concurrent writers, delete, CSV."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

from mfcore.runs.access import SYSTEM
from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
from mfcore.errors import RunnerError
from mfcore.events import EpochEnded, EpochProgress, RunFailed, RunFinished, RunStarted
from mfcore.runs.store import (
    EPOCH_COLUMNS,
    RUNS_DIR_ENV,
    RunStore,
    default_runs_dir,
    process_identity,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


def _new_run(store: RunStore, **kw) -> str:
    args = dict(
        dataset="synthetic", split="random:0.1", seed=3,
        model_config=ModelConfig(n_factors=4), train_config=TrainConfig(epochs=5, lr=0.02),
        runtime=RuntimeOptions(device="cpu"), owner="alice", label="default",
    )
    args.update(kw)
    return store.create_run(**args).id


def _started(epochs: int = 5) -> RunStarted:
    return RunStarted(device="cpu (1 thread)", epochs=epochs, n_train=90, n_test=10, batches_per_epoch=2,
                      baselines={"global_mean_rmse": 1.1, "baseline_rmse": 0.95})


def _epoch(e: int, epochs: int = 5, rmse: float = 0.9) -> EpochEnded:
    return EpochEnded(epoch=e, epochs=epochs, train_loss=1.0 / e, test_rmse=rmse, test_mae=0.7,
                      examples_per_second=1000.0 + e, seconds=0.5, elapsed_s=0.5 * e, lr=0.02,
                      device="cpu (1 thread)", is_best=True)


def _progress(e: int, done: int) -> EpochProgress:
    return EpochProgress(epoch=e, epochs=5, done=done, total=90, train_loss=0.8, examples_per_second=500.0,
                         elapsed_s=1.5, device="cpu (1 thread)")


def test_default_runs_dir_follows_the_env(monkeypatch, tmp_path):
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert default_runs_dir() == tmp_path / "elsewhere"
    assert RunStore().db_path == (tmp_path / "elsewhere" / "runs.sqlite").resolve()
    monkeypatch.delenv(RUNS_DIR_ENV)
    assert default_runs_dir() == Path("runs")


def test_create_and_get_round_trip(store):
    run_id = _new_run(store)
    rec = store.get(run_id)
    assert rec.id == run_id and len(run_id) == 12
    assert rec.status == "queued" and rec.is_active
    assert (rec.owner, rec.label, rec.dataset, rec.split, rec.seed) == ("alice", "default", "synthetic", "random:0.1", 3)
    assert rec.model_config["n_factors"] == 4 and rec.model_config["output_range"] is None
    assert rec.train_config["epochs"] == 5 and rec.train_config["lr"] == 0.02
    assert rec.runtime["device"] == "cpu"
    assert rec.epochs_planned == 5 and rec.epochs_done == 0 and rec.progress is None
    assert rec.checkpoint_path is None and rec.metrics == {} and rec.baselines == {}
    # the same file read through a second store object (another process would do this)
    assert RunStore(store.runs_dir).get(run_id) == rec


def test_configs_may_be_dicts_and_a_newer_schema_is_refused(store):
    run_id = _new_run(store, model_config={"n_factors": 8}, train_config={"epochs": 2}, runtime=None)
    rec = store.get(run_id)
    assert rec.model_config == {"n_factors": 8} and rec.epochs_planned == 2 and rec.runtime == {}
    conn = store._conn()
    conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(RunnerError, match="schema version 99, newer than"):
        RunStore(store.runs_dir)


def test_unknown_run_id_raises_runner_error(store):
    for call in (store.get, store.epochs, lambda run_id: store.delete(run_id, SYSTEM), store.export_metrics_csv):
        with pytest.raises(RunnerError, match="unknown run id 'nope'"):
            call("nope")
    with pytest.raises(RunnerError, match="unknown run id"):
        store.record_event("nope", _epoch(1))
    with pytest.raises(RunnerError, match="unknown run id"):
        store.update_status("nope", "running")
    with pytest.raises(RunnerError, match="unknown run status 'done'"):
        store.update_status(_new_run(store), "done")


def test_record_every_event_type(store):
    run_id = _new_run(store)
    store.record_event(run_id, _started())
    rec = store.get(run_id)
    assert rec.status == "running" and rec.device == "cpu (1 thread)" and rec.started_at is not None
    assert rec.baselines == {"global_mean_rmse": 1.1, "baseline_rmse": 0.95}
    assert (rec.n_train, rec.n_test) == (90, 10)

    store.record_event(run_id, _progress(1, 30))
    store.record_event(run_id, _progress(1, 60))
    p = store.get(run_id).progress
    assert p is not None and (p["epoch"], p["done"], p["total"]) == (1, 60, 90)
    assert p["train_loss"] == 0.8 and p["examples_per_second"] == 500.0 and p["elapsed_s"] == 1.5
    assert p["updated_at"] > 0

    store.record_event(run_id, _epoch(1))
    store.record_event(run_id, _epoch(2, rmse=math.nan))  # no test set: NaN must come back as NaN
    rec = store.get(run_id)
    assert rec.epochs_done == 2 and rec.progress is None  # an ended epoch clears the progress row
    frame = store.epochs(run_id)
    assert list(frame.columns) == list(EPOCH_COLUMNS)
    assert frame["epoch"].tolist() == [1, 2]
    assert frame["train_loss"].tolist() == [1.0, 0.5]
    assert frame["test_rmse"].iloc[0] == 0.9 and math.isnan(frame["test_rmse"].iloc[1])
    assert frame["examples_per_second"].tolist() == [1001.0, 1002.0]
    assert frame["lr"].tolist() == [0.02, 0.02]

    metrics = {"test_rmse": 0.91, "test_mae": 0.7, "baseline_rmse": 0.95}
    store.record_event(run_id, RunFinished(reason="completed", epochs_run=2, best_epoch=1, metrics=metrics,
                                           train_seconds=1.0, examples_per_second=180.0, device="cpu (1 thread)"))
    rec = store.get(run_id)
    assert rec.status == "finished" and rec.metrics == metrics and rec.train_seconds == 1.0
    assert rec.best_epoch == 1 and rec.finished_at is not None and "completed 2 epochs" in rec.message
    # a late event never overwrites a final state
    store.record_event(run_id, RunFailed(reason="error", message="late", epoch=2, device="cpu"))
    assert store.get(run_id).status == "finished"


def test_cancelled_means_stopped_and_failed_keeps_its_message(store):
    stopped = _new_run(store)
    store.record_event(stopped, _started())
    store.record_event(stopped, _epoch(1))
    store.record_event(stopped, _progress(2, 30))
    store.record_event(stopped, RunFinished(reason="cancelled", epochs_run=1, best_epoch=1, metrics={},
                                            train_seconds=0.7, examples_per_second=1.0, device="cpu"))
    rec = store.get(stopped)
    assert rec.status == "stopped" and rec.message == "stopped after 1 of 5 epochs"
    assert rec.epochs_done == 1 and rec.progress is None

    failed = _new_run(store)
    store.record_event(failed, _started())
    message = "training diverged in epoch 1: the training loss became NaN or infinite at learning rate 100"
    store.record_event(failed, RunFailed(reason="diverged", message=message, epoch=1, device="cpu (1 thread)"))
    rec = store.get(failed)
    assert rec.status == "failed" and rec.message == message and rec.finished_at is not None


def test_update_status_compare_and_set(store):
    run_id = _new_run(store)
    assert store.update_status(run_id, "running", only_from=("queued",)) is True
    assert store.get(run_id).started_at is not None
    assert store.update_status(run_id, "running", only_from=("queued",)) is False
    assert store.update_status(run_id, "stopped", "stopped by hand") is True
    rec = store.get(run_id)
    assert rec.status == "stopped" and rec.message == "stopped by hand" and rec.finished_at is not None


def test_list_runs_filters_and_orders_newest_first(store):
    a1 = _new_run(store, owner="alice")
    b1 = _new_run(store, owner="bob")
    a2 = _new_run(store, owner="alice")
    store.update_status(a2, "running")
    assert [r.id for r in store.list_runs()] == [a2, b1, a1]
    assert [r.id for r in store.list_runs(owner="alice")] == [a2, a1]
    assert [r.id for r in store.list_runs(statuses=["queued"])] == [b1, a1]
    assert [r.id for r in store.list_runs(owner="alice", statuses=["queued"])] == [a1]
    assert [r.id for r in store.list_runs(limit=2)] == [a2, b1]
    assert store.list_runs(statuses=[]) == []
    assert store.count_active("alice") == 2 and store.count_active("carol") == 0


def test_mark_interrupted_keeps_completed_epochs(store):
    running = _new_run(store)
    store.record_event(running, _started())
    for e in (1, 2, 3):
        store.record_event(running, _epoch(e))
    store.record_event(running, _progress(4, 40))
    one = _new_run(store)
    store.record_event(one, _started())
    store.record_event(one, _epoch(1))
    queued = _new_run(store)
    done = _new_run(store)
    store.record_event(done, _started())
    store.record_event(done, RunFinished(reason="completed", epochs_run=0, best_epoch=0, metrics={},
                                         train_seconds=0.0, examples_per_second=0.0, device="cpu"))
    # a run owned by this (live) process is left alone
    alive = _new_run(store, process=process_identity())
    store.update_status(alive, "running")

    assert store.mark_interrupted() == 3
    rec = store.get(running)
    assert rec.status == "interrupted" and rec.epochs_done == 3 and rec.progress is None
    assert rec.message == ("the server stopped during training; 3 epochs were completed; no checkpoint was "
                           "written, so there is no model to inspect")
    assert store.epochs(running)["epoch"].tolist() == [1, 2, 3]
    assert store.get(one).message.startswith("the server stopped during training; 1 epoch was completed;")
    assert store.get(queued).status == "interrupted"
    assert "before this run started" in store.get(queued).message
    assert store.get(done).status == "finished"
    assert store.get(alive).status == "running"
    assert store.mark_interrupted() == 0


def test_dead_or_reused_pid_counts_as_dead(store):
    import socket

    host = socket.gethostname()
    dead = _new_run(store, process=f"{host}:999999999:1")  # no such pid
    reused = _new_run(store, process=f"{host}:1:not-its-start-time")  # pid 1 lives, but started at another time
    other_host = _new_run(store, process="some-other-host:1:1")
    for run_id in (dead, reused, other_host):
        store.update_status(run_id, "running")
    assert store.mark_interrupted() == 3


def test_delete_removes_rows_and_checkpoint(store):
    run_id = _new_run(store)
    store.record_event(run_id, _started())
    store.record_event(run_id, _epoch(1))
    with pytest.raises(RunnerError, match="still running; stop it before deleting it"):
        store.delete(run_id, SYSTEM)
    store.record_event(run_id, RunFinished(reason="completed", epochs_run=1, best_epoch=1, metrics={},
                                           train_seconds=0.5, examples_per_second=1.0, device="cpu"))
    ckpt = store.checkpoint_path_for(run_id)
    ckpt.write_bytes(b"weights")
    store.set_checkpoint(run_id, ckpt)
    assert store.get(run_id).checkpoint_path == str(ckpt)
    keep = _new_run(store)
    store.delete(run_id, SYSTEM)
    assert not ckpt.exists()
    assert not store.exists(run_id) and store.exists(keep)
    with pytest.raises(RunnerError, match="unknown run id"):
        store.get(run_id)
    rows = store._conn().execute("SELECT COUNT(*) FROM epochs WHERE run_id = ?", (run_id,)).fetchone()[0]
    assert rows == 0


def test_checkpoint_path_is_kept_relative_to_the_runs_folder(tmp_path):
    store = RunStore(tmp_path / "a")
    run_id = _new_run(store)
    store.set_checkpoint(run_id, store.checkpoint_path_for(run_id))
    (tmp_path / "a").rename(tmp_path / "b")  # the folder moved: the path follows it
    assert RunStore(tmp_path / "b").get(run_id).checkpoint_path == str((tmp_path / "b" / f"{run_id}.pt").resolve())


def test_export_metrics_csv(store):
    run_id = _new_run(store)
    store.record_event(run_id, _started())
    store.record_event(run_id, _epoch(1))
    store.record_event(run_id, _epoch(2))
    text = store.export_metrics_csv(run_id)
    assert text.splitlines()[0] == "run_id," + ",".join(EPOCH_COLUMNS)
    frame = pd.read_csv(io.StringIO(text))
    assert frame["run_id"].tolist() == [run_id, run_id]
    assert frame["epoch"].tolist() == [1, 2] and frame["test_rmse"].tolist() == [0.9, 0.9]


def test_a_failed_write_loses_nothing(store):
    run_id = _new_run(store)
    store.record_event(run_id, _started())
    store.record_event(run_id, _epoch(1))
    with pytest.raises(Exception):
        with store._write() as conn:
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            conn.execute("INSERT INTO runs (id) VALUES (NULL)")  # violates NOT NULL -> rollback
    assert store.get(run_id).epochs_done == 1


_WRITER = textwrap.dedent(
    """
    import sys
    from mfcore.events import EpochEnded
    from mfcore.runs.store import RunStore
    store = RunStore(sys.argv[1])
    run_id = store.create_run(dataset="d", split="random:0.1", seed=0, model_config={}, train_config={"epochs": 1},
                              owner="process").id
    print(run_id, flush=True)
    for e in range(1, int(sys.argv[2]) + 1):
        store.record_event(run_id, EpochEnded(epoch=e, epochs=1, train_loss=1.0, test_rmse=1.0, test_mae=1.0,
                                              examples_per_second=1.0, seconds=0.0, elapsed_s=0.0, lr=0.1,
                                              device="cpu", is_best=False))
    """
)


def test_concurrent_writers_lose_nothing(store):
    """Threads (own connections), a second store object and a second process write at once."""
    n_threads, n_events = 6, 80
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(store.runs_dir), str(n_events)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    second = RunStore(store.runs_dir)
    errors: list[BaseException] = []
    ids: list[str] = []
    barrier = threading.Barrier(n_threads + 1)

    def write(target: RunStore, owner: str) -> None:
        try:
            run_id = _new_run(target, owner=owner)
            ids.append(run_id)
            barrier.wait(timeout=20)
            target.record_event(run_id, _started(epochs=n_events))
            for e in range(1, n_events + 1):
                target.record_event(run_id, _progress(e, 10))
                target.record_event(run_id, _epoch(e, epochs=n_events))
                if e % 10 == 0:
                    target.list_runs()  # readers interleaved with the writers
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(store if k % 2 else second, f"t{k}")) for k in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait(timeout=20)
    for t in threads:
        t.join(timeout=60)
    out, err = proc.communicate(timeout=60)
    assert not errors, errors
    assert proc.returncode == 0, err
    for run_id in ids:
        assert store.epochs(run_id)["epoch"].tolist() == list(range(1, n_events + 1))
        assert store.get(run_id).status == "running"
    assert store.epochs(out.split()[0])["epoch"].tolist() == list(range(1, n_events + 1))
    assert len(store.list_runs()) == n_threads + 1
