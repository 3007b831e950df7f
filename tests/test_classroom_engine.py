"""The class rules in the engine: owners, the teacher, the fair queue, shared identical runs, profiles."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable

import pytest

from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
from mfcore.data.dataset import RatingData
from mfcore.errors import DataError, RunnerError
from mfcore.runs.access import (
    SYSTEM,
    Actor,
    PermissionDenied,
    derive_identity,
    is_valid_token,
    new_token,
    owner_from_token,
    teacher_key_matches,
)
from mfcore.runs.fair_queue import FairQueue
from mfcore.runs.runner import JobRunner, RunRequest
from mfcore.runs.store import RunStore
from tests.factories import planted_data

DATA = planted_data(n_users=60, n_items=40, density=0.5)
CPU = RuntimeOptions(device="cpu", cpu_threads=1, progress_interval_s=0.05)


def _loader(spec: str) -> RatingData:
    if spec == "planted":
        return DATA
    raise DataError(f"no dataset called {spec!r}")


def _request(owner: str, epochs: int = 3, name: str = "", **train) -> RunRequest:
    train = {"optimizer": "adam", "lr": 0.01, "batch_size": 64, **train}
    return RunRequest("planted", "random:0.1", 1, ModelConfig(n_factors=4), TrainConfig(epochs=epochs, **train),
                      CPU, owner=owner, label="t", owner_name=name or owner)


def _until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def make_runner(tmp_path: Path):
    runners: list[JobRunner] = []
    store = RunStore(tmp_path / "runs")

    def make(**kw) -> JobRunner:
        kw.setdefault("load_data", _loader)
        kw.setdefault("max_workers", 1)
        kw.setdefault("max_queued_per_owner", None)
        runner = JobRunner(store, **kw)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.shutdown(wait=True)


# ---------------------------------------------------------------------------- ownership


def test_another_owner_cannot_stop_rename_or_delete_a_run(make_runner):
    runner = make_runner()
    alice, bob = Actor("alice"), Actor("bob")
    run_id = runner.submit(_request("alice", epochs=100_000))
    _until(lambda: runner.snapshot(run_id).status == "running", what="the run to start")
    with pytest.raises(PermissionDenied, match="belongs to someone else"):
        runner.stop(run_id, bob)
    with pytest.raises(PermissionDenied):
        runner.rename(run_id, "bob's now", bob)
    time.sleep(0.2)
    assert runner.snapshot(run_id).status == "running" and runner.snapshot(run_id).label == "t"
    runner.stop(run_id, alice)
    assert runner.wait(run_id, timeout=20).status == "stopped"
    for call in (lambda: runner.delete(run_id, bob), lambda: runner.store.delete(run_id, bob),
                 lambda: runner.store.delete(run_id, Actor("")), lambda: runner.store.delete(run_id, None)):
        with pytest.raises(PermissionDenied):
            call()
    assert runner.store.exists(run_id)
    runner.rename(run_id, "  my   best ", alice)
    assert runner.snapshot(run_id).label == "my best"
    runner.delete(run_id, alice)
    assert not runner.store.exists(run_id)


def test_the_teacher_may_stop_and_delete_any_run(make_runner):
    runner = make_runner()
    run_id = runner.submit(_request("alice", epochs=100_000))
    _until(lambda: runner.snapshot(run_id).status == "running", what="the run to start")
    teacher = Actor("someone", is_teacher=True)
    runner.stop(run_id, teacher)
    assert runner.wait(run_id, timeout=20).status == "stopped"
    runner.delete(run_id, teacher)
    assert not runner.store.exists(run_id)


def test_the_teacher_key_and_tokens(monkeypatch):
    monkeypatch.delenv("MFSTUDIO_TEACHER_KEY", raising=False)
    assert not teacher_key_matches("anything") and not teacher_key_matches("")
    monkeypatch.setenv("MFSTUDIO_TEACHER_KEY", "s3cret-key")
    assert teacher_key_matches("s3cret-key") and teacher_key_matches(" s3cret-key ")
    assert not teacher_key_matches("s3cret") and not teacher_key_matches("S3CRET-KEY")
    token = new_token()
    assert is_valid_token(token) and token != new_token()
    assert owner_from_token(token) == owner_from_token(token) and token not in owner_from_token(token)
    for bad in ("", "abc", "x" * 32, token.upper(), token + "0", "../" + token[3:]):
        assert not is_valid_token(bad)
        with pytest.raises(RunnerError, match="not valid"):
            owner_from_token(bad)


def test_the_owner_is_the_signed_in_user_when_auth_is_on_else_the_url_token():
    token = new_token()
    guest = derive_identity(None, token)
    assert guest.source == "token" and guest.owner == owner_from_token(token)
    assert guest.default_name.startswith("guest-") and len(guest.default_name) == 10
    assert derive_identity({"is_logged_in": False}, token) == guest  # auth configured, not signed in
    ann = {"is_logged_in": True, "name": "Ann Lee", "email": "ann@school.edu", "sub": "1234", "iss": "idp"}
    signed = derive_identity(ann, token)
    assert signed.source == "auth" and signed.default_name == "Ann Lee"
    assert signed.owner != guest.owner
    assert derive_identity(ann, new_token()).owner == signed.owner  # any browser, same person
    assert derive_identity({**ann, "sub": "999"}, token).owner != signed.owner
    with pytest.raises(RunnerError):
        derive_identity({"is_logged_in": False}, "not-a-token")


# ---------------------------------------------------------------------------- the fair queue


def test_fair_queue_takes_owners_in_turn():
    q = FairQueue()
    for item in ("a1", "a2", "a3"):
        q.push("a", item)
    q.push("b", "b1")
    q.push("c", "c1")
    q.push("b", "b2")
    assert q.order() == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert q.position("c1") == 3 and q.position("zz") is None
    assert q.remove("b1") and not q.remove("b1")
    assert [q.pop() for _ in range(len(q))] == ["a1", "b2", "c1", "a2", "a3"]  # b keeps its turn
    with pytest.raises(IndexError):
        q.pop()


def test_a_student_with_three_queued_runs_does_not_hold_up_the_next_students_first(make_runner):
    runner = make_runner(share_identical=False)
    blocker = runner.submit(_request("teacher", epochs=100_000))
    _until(lambda: runner.snapshot(blocker).status == "running", what="the blocker to start")
    greedy = [runner.submit(_request("greedy", epochs=1, lr=0.01 + k / 1000)) for k in range(3)]
    other = runner.submit(_request("other", epochs=1))
    assert runner.queue_position(other) == 2
    assert [runner.queue_position(r) for r in greedy] == [1, 3, 4]
    assert runner.snapshot(other).queue_position == 2
    runner.stop(blocker, SYSTEM)
    for run_id in [*greedy, other]:
        assert runner.wait(run_id, timeout=30).status == "finished"
    started = {r: runner.store.get(r).started_at for r in [*greedy, other]}
    assert started[greedy[0]] < started[other] < started[greedy[1]] < started[greedy[2]]


# ---------------------------------------------------------------------------- identical requests


def test_an_identical_finished_request_gets_its_own_run_at_once_equal_to_a_fresh_one(make_runner):
    runner = make_runner(checkpoint_every_s=0.0)
    first = runner.submit(_request("alice", epochs=4))
    a = runner.wait(first, timeout=30)
    assert a.status == "finished"
    shared = runner.submit(_request("bob", epochs=4, name="Bob"))
    s = runner.snapshot(shared)  # no wait: it is finished at once
    assert s.status == "finished" and s.run_id != first and s.owner == "bob" and s.owner_name == "Bob"
    assert s.shared_from == first and f"same as run {first}" in s.message
    assert s.history["test_rmse"].tolist() == a.history["test_rmse"].tolist()
    assert s.metrics == a.metrics
    assert s.checkpoint_path != a.checkpoint_path and Path(s.checkpoint_path).is_file()
    fresh_runner = make_runner(share_identical=False)
    fresh = fresh_runner.wait(fresh_runner.submit(_request("carol", epochs=4)), timeout=30)
    assert fresh.shared_from is None
    assert fresh.history["test_rmse"].tolist() == s.history["test_rmse"].tolist()
    assert fresh.metrics["test_rmse"] == s.metrics["test_rmse"]
    # Deleting the original keeps the copy's own checkpoint and epochs.
    runner.delete(first, Actor("alice"))
    assert runner.load_model(shared).item_factors().shape == (DATA.n_items, 4)
    assert len(runner.snapshot(shared).history) == 4
    # A different setting is a different computation.
    other = runner.submit(_request("bob", epochs=4, lr=0.02))
    assert runner.snapshot(other).shared_from is None


def test_an_identical_running_request_follows_it_live_and_ends_with_it(make_runner):
    runner = make_runner(checkpoint_every_s=0.0)
    leader = runner.submit(_request("alice", epochs=400))
    _until(lambda: runner.snapshot(leader).epochs_done >= 2, what="two epochs")
    follower = runner.submit(_request("bob", epochs=400))
    f = runner.snapshot(follower)
    assert f.status == "running" and f.shared_from == leader and f.epochs_done >= 2
    late = runner.submit(_request("carol", epochs=400))
    runner.stop(leader, Actor("alice"))  # the others keep the computation
    assert runner.wait(leader, timeout=20).status == "stopped"
    time.sleep(0.1)
    assert runner.snapshot(follower).status == "running"
    runner.stop(late, Actor("carol"))
    done = runner.wait(follower, timeout=60)
    assert done.status == "finished" and done.epochs_done == 400
    assert done.history["epoch"].tolist() == list(range(1, 401))  # no epoch missed on joining
    assert runner.snapshot(late).status == "stopped"
    assert Path(done.checkpoint_path).is_file()
    assert runner.store.get(leader).epochs_done < 400


def test_a_lone_queued_job_stopped_by_its_owner_is_gone(make_runner):
    runner = make_runner(share_identical=False)
    blocker = runner.submit(_request("a", epochs=100_000))
    _until(lambda: runner.snapshot(blocker).status == "running", what="the blocker")
    queued = runner.submit(_request("b", epochs=2))
    runner.stop(queued, Actor("b"))
    assert runner.snapshot(queued).status == "stopped"
    assert runner.queue_position(queued) is None
    runner.stop(blocker, SYSTEM)


def test_relaunch_queues_the_same_settings_for_the_actor(make_runner):
    runner = make_runner(share_identical=False)
    first = runner.wait(runner.submit(_request("alice", epochs=2)), timeout=30)
    again = runner.relaunch(first.run_id, Actor("bob"), owner_name="Bob")
    snap = runner.wait(again, timeout=30)
    assert snap.owner == "bob" and snap.train_config == first.train_config and snap.status == "finished"


# ---------------------------------------------------------------------------- profiles and migration


def test_profiles_and_new_user_ratings_survive_a_restart(tmp_path: Path):
    store = RunStore(tmp_path)
    run = store.create_run(dataset="planted", split="random:0.1", seed=0, model_config={}, train_config={"epochs": 1},
                           owner="t-abc", owner_name="guest-1234")
    store.save_profile("t-abc", name="Ann", prefs={"dataset": "ml-100k", "split": "u1", "seed": 2})
    store.save_profile("t-abc", prefs={"seed": 3})
    store.set_user_rating("t-abc", "ml-100k", 50, 5.0)
    store.set_user_rating("t-abc", "ml-100k", 181, 4.5)
    store.set_user_rating("t-abc", "ml-100k", 181, 4.0)
    store.set_user_rating("t-xyz", "ml-100k", 50, 1.0)
    with pytest.raises(RunnerError):
        store.set_user_rating("t-abc", "ml-100k", 7, float("nan"))
    store.close()
    again = RunStore(tmp_path)
    assert again.profile("t-abc") == {"name": "Ann", "prefs": {"dataset": "ml-100k", "split": "u1", "seed": 3}}
    assert again.get(run.id).owner_name == "Ann"  # a new name shows on the runs already there
    assert again.user_ratings("t-abc", "ml-100k") == {50: 5.0, 181: 4.0}
    again.set_user_rating("t-abc", "ml-100k", 50, None)
    assert again.user_ratings("t-abc", "ml-100k") == {181: 4.0}
    assert again.profile("nobody") == {"name": "", "prefs": {}}


def test_a_version_1_database_is_upgraded_without_losing_runs(tmp_path: Path):
    store = RunStore(tmp_path)
    run = store.create_run(dataset="planted", split="random:0.1", seed=0, model_config={}, train_config={"epochs": 1},
                           owner="old")
    store.close()
    conn = sqlite3.connect(tmp_path / "runs.sqlite")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("CREATE TABLE runs_v1 AS SELECT id, created_at, started_at, finished_at, owner, label, dataset, "
                 "split, seed, model_config, train_config, runtime, status, message, device, baselines, metrics, "
                 "checkpoint_path, train_seconds, n_train, n_test, epochs_planned, best_epoch, process FROM runs")
    conn.execute("DROP TABLE runs")
    conn.execute("ALTER TABLE runs_v1 RENAME TO runs")
    conn.execute("UPDATE schema_version SET version = 1")
    conn.commit()
    conn.close()
    upgraded = RunStore(tmp_path)
    record = upgraded.get(run.id)
    assert record.owner == "old" and record.owner_name == "" and record.placement == ""
    assert upgraded._conn().execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 2


def test_an_interrupted_run_resumes_from_its_checkpoint_in_place(make_runner):
    runner = make_runner(checkpoint_every_s=0.0, share_identical=False)
    run_id = runner.submit(_request("alice", epochs=300))
    _until(lambda: runner.snapshot(run_id).epochs_done >= 5, what="five epochs")
    runner.stop(run_id, Actor("alice"))
    stopped = runner.wait(run_id, timeout=20)
    assert stopped.status == "stopped" and 5 <= stopped.epochs_done < 300
    kept = len(runner.load_model(run_id).history["epoch"])
    with pytest.raises(PermissionDenied):
        runner.resume(run_id, Actor("bob"))
    runner.resume(run_id, Actor("alice"))
    done = runner.wait(run_id, timeout=60)
    assert done.status == "finished", done.message
    assert done.history["epoch"].tolist() == list(range(1, 301))  # the kept epochs, then the rest
    assert done.history["test_rmse"].iloc[: kept].tolist() == stopped.history["test_rmse"].iloc[: kept].tolist()
    # It went on from the checkpoint's weights, not from scratch: its first resumed epoch is
    # about as good as the last kept one (a fresh model's first epoch is far worse).
    assert done.history["test_rmse"].iloc[kept] < done.history["test_rmse"].iloc[0]
    with pytest.raises(RunnerError, match="only an interrupted or stopped run"):
        runner.resume(run_id, Actor("alice"))


def test_a_sweep_goes_on_when_its_page_is_closed(tmp_path: Path):
    """The job-end listener submits a sweep's waiting points as the owner's share frees up."""
    from mfcore import sweeps

    store = RunStore(tmp_path / "runs")
    runner = JobRunner(store, load_data=_loader, max_workers=1, max_queued_per_owner=2)
    book = sweeps.SweepBook(store.runs_dir)
    runner.on_job_end(lambda: sweeps.top_up_all(runner))  # as the app's runner does
    try:
        base = _request("alice", epochs=2)
        plan = sweeps.make_plan(base.model_config, base.train_config, [sweeps.parse_axis("n_factors", "2, 3, 4, 5, 6")],
                                dataset="planted", split="random:0.1", seed=1, owner="alice", owner_name="Alice")
        plan.runtime = {"device": "cpu", "cpu_threads": 1}
        book.save(plan)
        assert sweeps.top_up(plan, runner, book) == 2  # the owner's share; the page then closes
        _until(lambda: len(store.list_runs(sweep_id=plan.sweep_id, statuses=("finished",))) == 5, timeout=60,
               what="all five points to finish without the page")
        assert not book.load(plan.sweep_id).pending
    finally:
        runner.shutdown(wait=True)
