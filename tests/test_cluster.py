"""Jobs on a Dask cluster (mfcore.runs.dask_executor), on a LocalCluster bound to 127.0.0.1.

Two single-thread worker processes; every address (scheduler, workers, nannies, and every
listening socket of those processes) is checked to be loopback before any test runs.
The tasks are mfcore's own module-level functions, importable by the spawned workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from distributed import Client, LocalCluster

from mfcore import checkpoint
from mfcore.events import EpochEnded, RunFailed, RunFinished, RunStarted
from mfcore.runs.dask_executor import (ClusterError, DaskExecutor, SchedulerUnreachableError, WorkerLostError,
                                       _debug_pid, _debug_running_tasks, warm_up)
from mfcore.runs.executors import DASK_SCHEDULER_ENV, make_executor
from mfcore.runs.job import CancelToken, CheckpointReady, JobSpec, Placed

pytestmark = pytest.mark.timeout(120)

LOOPBACK = "tcp://127.0.0.1:"
TINY = "synthetic:n_users=200,n_items=300,density=0.05,rank=4,noise=0.1,seed=0"
# ~0.1 s an epoch on one thread: long enough to see events arrive one by one.
SMALL = "synthetic:n_users=1000,n_items=1500,density=0.02,rank=4,noise=0.1,seed=0"


def spec(job_id: str, dataset: str = SMALL, epochs: int = 8, device: str = "cpu", every: float = 0.5) -> JobSpec:
    return JobSpec(job_id=job_id, dataset=dataset, split="random:0.1", seed=0, model_config={"n_factors": 8},
                   train_config={"epochs": epochs}, runtime={"device": device}, checkpoint_every_s=every)


class Recorder:
    """Runs ``execute`` in a thread and keeps (seconds since start, item) pairs."""

    def __init__(self, executor: DaskExecutor, job: JobSpec) -> None:
        self.items: list[tuple[float, object]] = []
        self.error: BaseException | None = None
        self.cancel = CancelToken()
        self.t0 = time.monotonic()
        self.ended_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(executor, job), daemon=True)
        self._thread.start()

    def _run(self, executor: DaskExecutor, job: JobSpec) -> None:
        try:
            executor.execute(job, lambda item: self.items.append((time.monotonic() - self.t0, item)), self.cancel)
        except BaseException as exc:  # noqa: BLE001 - kept for the test to assert
            self.error = exc
        finally:
            self.ended_at = time.monotonic() - self.t0

    def of(self, cls: type) -> list:
        return [item for _, item in self.items if isinstance(item, cls)]

    def wait_for(self, predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self._thread.is_alive() or predicate(), f"the job ended early: {self.items[-3:]} {self.error!r}"
            assert time.monotonic() < deadline, f"timed out; items so far: {self.items[-3:]}"
            time.sleep(0.05)

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"execute did not return within {timeout} s"


def _listening(pid: int) -> set[tuple[str, int]]:
    return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


# What this test process listened on before the cluster (other test modules may have left servers).
LISTENING_BEFORE: set[tuple[str, int]] = set()


@pytest.fixture(scope="module")
def cluster():
    LISTENING_BEFORE.update(_listening(os.getpid()))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local:
        local.wait_for_workers(2, timeout=60)
        with Client(local.scheduler_address, set_as_default=False) as c:
            c.run(warm_up)  # imports and kernel compilation on both workers at once, not in the first tests
        yield local


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.scheduler_address, set_as_default=False) as c:  # the loopback cluster (tcp://127.0.0.1)
        yield c


@pytest.fixture(scope="module")
def executor(cluster):
    ex = DaskExecutor(cluster.scheduler_address)
    yield ex
    ex.close()


def test_every_address_is_loopback(cluster, client):
    assert cluster.scheduler_address.startswith(LOOPBACK)
    workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    for address, info in workers.items():
        assert address.startswith(LOOPBACK), address
        assert info["host"] == "127.0.0.1"
        assert info["nanny"].startswith(LOOPBACK), info["nanny"]
    for nanny in cluster.workers.values():
        assert nanny.worker_address.startswith(LOOPBACK)
    # What the processes actually listen on: the workers', and ours (the scheduler and the nannies).
    for pid in client.run(_debug_pid).values():
        ips = {ip for ip, _ in _listening(pid)}
        assert ips and ips <= {"127.0.0.1"}, (pid, ips)
    ours = _listening(os.getpid()) - LISTENING_BEFORE
    assert len(ours) >= 3 and {ip for ip, _ in ours} == {"127.0.0.1"}, ours


def test_status_and_capacity(cluster, executor):
    status = executor.status()
    assert status.kind == "dask" and status.address == cluster.scheduler_address and status.error == ""
    assert sorted(w.name for w in status.workers) == ["0", "1"]
    assert all(w.threads == 1 and w.gpus == 0 and w.address.startswith(LOOPBACK) for w in status.workers)
    assert executor.capacity() == 2


def test_events_stream_back_live_and_the_checkpoint_loads(executor, tmp_path):
    job = spec("stream", epochs=8, every=0.3)
    rec = Recorder(executor, job)
    rec.join(60)
    assert rec.error is None, rec.error
    kinds = [type(item).__name__ for _, item in rec.items]
    assert kinds[0] == "Placed" and kinds[1] == "RunStarted" and kinds[-1] == "RunFinished", kinds
    assert rec.of(RunStarted)[0].device.startswith("cpu")
    placed = rec.of(Placed)[0]
    assert placed.where.startswith("worker ") and LOOPBACK in placed.where and placed.where.endswith("· cpu")
    epochs = rec.of(EpochEnded)
    assert [e.epoch for e in epochs] == list(range(1, 9))
    finished = rec.of(RunFinished)[0]
    assert finished.reason == "completed" and finished.epochs_run == 8
    # Live: the first epoch arrived well before the end (not all at once when the task returned).
    times = {id(item): t for t, item in rec.items}
    assert times[id(finished)] - times[id(epochs[0])] > 0.3, rec.items
    # Periodic checkpoints (at most every 0.3 s) and the final one, just before RunFinished.
    checkpoints = rec.of(CheckpointReady)
    assert checkpoints[-1].final and checkpoints[-1].epoch == 8 and kinds[-2] == "CheckpointReady"
    assert all(c.payload and c.trained is None for c in checkpoints)
    assert len(checkpoints) >= 2 and not any(c.final for c in checkpoints[:-1])
    path = tmp_path / "model.pt"
    path.write_bytes(checkpoints[-1].payload)
    trained = checkpoint.load(path)
    assert trained.dataset == SMALL and len(trained.history["test_rmse"]) == 8
    assert trained.metrics["test_rmse"] == pytest.approx(finished.metrics["test_rmse"])
    assert trained.item_factors().shape[1] == 8


def test_stop_reaches_a_running_job_within_seconds(executor):
    rec = Recorder(executor, spec("stop", epochs=2000))
    rec.wait_for(lambda: len(rec.of(EpochEnded)) >= 2)
    asked = time.monotonic() - rec.t0
    rec.cancel.set()
    rec.join(15)
    assert rec.error is None, rec.error
    finished = rec.of(RunFinished)
    assert finished and finished[0].reason == "cancelled", rec.items[-3:]
    assert rec.ended_at - asked < 3.0, f"stop took {rec.ended_at - asked:.2f} s"
    kept = rec.of(EpochEnded)
    assert finished[0].epochs_run == len(kept) >= 2
    assert [e.epoch for e in kept] == list(range(1, len(kept) + 1))


def test_a_stop_before_the_job_starts_ends_it_cancelled(executor):
    items: list = []
    cancel = CancelToken()
    cancel.set()
    executor.execute(spec("early"), items.append, cancel)
    assert len(items) == 1 and isinstance(items[0], RunFinished) and items[0].reason == "cancelled"


def test_a_cuda_run_is_refused_without_a_gpu_worker_and_placed_only_on_one(cluster, client, executor):
    cuda = spec("gpu", dataset=TINY, device="cuda")
    with pytest.raises(ClusterError, match=r"asks for device 'cuda' but no worker .* has a GPU.*resource GPU=1"):
        executor.check(cuda)
    # A third worker that says it has a GPU (this machine has none), started like scripts/cluster.sh does.
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address, "--nthreads", "1",
         "--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--resources", "GPU=1",
         "--name", "gpu-worker", "--preload", "mfcore.runs.dask_executor"],
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client.wait_for_workers(3, timeout=60)
        gpu_address = next(a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "gpu-worker")
        assert gpu_address.startswith(LOOPBACK)
        for pid in (worker.pid, client.run(_debug_pid, workers=[gpu_address])[gpu_address]):  # nanny, worker
            ips = {ip for ip, _ in _listening(pid)}
            assert ips and ips <= {"127.0.0.1"}, (pid, ips)
        assert [w.gpus for w in executor.status().workers if w.name == "gpu-worker"] == [1]
        executor.check(cuda)  # now accepted
        for n in range(3):  # never on the two CPU-only workers
            items: list = []
            executor.execute(spec(f"gpu{n}", dataset=TINY, device="cuda"), items.append, CancelToken())
            placed = [i for i in items if isinstance(i, Placed)]
            assert len(placed) == 1 and placed[0].where.startswith(f"worker gpu-worker ({gpu_address})"), placed
            # It has no real GPU: the run itself fails with the engine's clear message.
            failed = items[-1]
            assert isinstance(failed, RunFailed) and "CUDA was requested but no CUDA GPU is available" in failed.message
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
    deadline = time.monotonic() + 20
    while len(client.scheduler_info()["workers"]) > 2:
        assert time.monotonic() < deadline, "the GPU worker did not leave"
        time.sleep(0.1)
    with pytest.raises(ClusterError, match="no worker"):
        executor.check(cuda)


def test_an_unreachable_scheduler_is_a_clear_error_quickly(monkeypatch):
    with socket.socket() as sock:  # a free loopback port, closed again: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    monkeypatch.setenv(DASK_SCHEDULER_ENV, address)
    ex = make_executor(1)
    try:
        assert isinstance(ex, DaskExecutor)
        status = ex.status()
        assert status.workers == [] and status.error.startswith(f"the Dask scheduler at {address} cannot be reached: ")
        with pytest.raises(SchedulerUnreachableError, match=f"^the Dask scheduler at {address} cannot be reached: "
                                                            "Connection refused"):
            ex.check(spec("nowhere"))
        with pytest.raises(SchedulerUnreachableError):
            ex.execute(spec("nowhere"), lambda item: None, CancelToken())
        assert ex.capacity() == 1
    finally:
        ex.close()
    assert time.monotonic() - started < 5.0


# ---------------------------------------------------------------------------- through the job runner


def _run_request(owner: str, epochs: int, dataset: str = SMALL, device: str = "cpu"):
    from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
    from mfcore.runs.runner import RunRequest

    return RunRequest(dataset, "random:0.1", 0, ModelConfig(n_factors=8), TrainConfig(epochs=epochs),
                      RuntimeOptions(device=device), owner=owner, label="cluster", owner_name=owner)


@pytest.fixture
def runner(cluster, tmp_path):
    from mfcore.runs.runner import JobRunner
    from mfcore.runs.store import RunStore

    job_runner = JobRunner(RunStore(tmp_path / "runs"), executor=DaskExecutor(cluster.scheduler_address),
                           checkpoint_every_s=0.3, max_queued_per_owner=None)
    yield job_runner
    job_runner.shutdown(wait=True)


def test_runner_on_the_cluster_stores_events_placement_and_checkpoint(runner):
    assert runner.max_workers == 2 and runner.cluster_status().kind == "dask"
    run_id = runner.submit(_run_request("alice", epochs=6))
    snap = runner.wait(run_id, timeout=60)
    assert snap.status == "finished", (snap.status, snap.message)
    assert snap.epochs_done == 6 and list(snap.history["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert snap.placement.startswith("worker ") and LOOPBACK in snap.placement and snap.placement.endswith("· cpu")
    assert snap.checkpoint_path and Path(snap.checkpoint_path).is_file()
    model = runner.load_model(run_id)
    assert len(model.history["test_rmse"]) == 6
    assert model.metrics["test_rmse"] == pytest.approx(snap.metrics["test_rmse"])
    # A CUDA run is refused at submit: no worker has a GPU.
    with pytest.raises(ClusterError, match="no worker .* has a GPU"):
        runner.submit(_run_request("alice", epochs=2, device="cuda"))


def test_stop_through_the_runner_reaches_the_worker(runner):
    from mfcore.runs.access import Actor

    run_id = runner.submit(_run_request("bob", epochs=2000))
    deadline = time.monotonic() + 60
    while runner.snapshot(run_id).epochs_done < 2:
        assert time.monotonic() < deadline, runner.snapshot(run_id)
        time.sleep(0.05)
    asked = time.monotonic()
    runner.stop(run_id, Actor("bob"))
    snap = runner.wait(run_id, timeout=15)
    assert time.monotonic() - asked < 3.0
    assert snap.status == "stopped", (snap.status, snap.message)
    assert snap.epochs_done >= 2 and list(snap.history["epoch"]) == list(range(1, snap.epochs_done + 1))
    assert snap.placement.startswith("worker ")


def test_a_job_whose_server_goes_away_stops_on_its_worker(cluster, client):
    """Future.cancel() cannot interrupt a running task: the worker notices its task was released."""
    server = DaskExecutor(cluster.scheduler_address)
    rec = Recorder(server, spec("orphan", dataset=TINY, epochs=100_000))
    rec.wait_for(lambda: len(rec.of(EpochEnded)) >= 3)
    server._client.close()  # the server's connection ends (as when its process dies)
    rec.join(15)
    assert isinstance(rec.error, SchedulerUnreachableError), rec.error
    assert "lost the connection to the Dask scheduler" in str(rec.error)
    # The scheduler forgets the task at once; the worker's thread must end too.
    deadline = time.monotonic() + 5
    while any(client.run(_debug_running_tasks).values()):
        assert time.monotonic() < deadline, f"a worker still trains for nobody: {client.run(_debug_running_tasks)}"
        time.sleep(0.1)
    server.close()


# ---------------------------------------------------------------------------- last: it restarts a worker


def test_a_killed_worker_fails_only_its_job_and_the_cluster_serves_the_next(cluster, client, executor):
    rec = Recorder(executor, spec("doomed", dataset=TINY, epochs=100_000))
    rec.wait_for(lambda: len(rec.of(EpochEnded)) >= 3)
    address = next(p for p in rec.of(Placed)).where.split("(")[1].split(")")[0]
    assert address.startswith(LOOPBACK)
    pid = client.run(_debug_pid, workers=[address])[address]
    killed_at = time.monotonic() - rec.t0
    os.kill(pid, signal.SIGKILL)
    rec.join(30)
    assert isinstance(rec.error, WorkerLostError), rec.error
    assert rec.error.worker == address and address in str(rec.error)
    assert str(rec.error).startswith(f"Dask worker ") and "was lost while running this job" in str(rec.error)
    assert rec.ended_at - killed_at < 5.0
    assert not rec.of(RunFinished) and not rec.of(RunFailed)
    # The next job runs to its end (on the other worker, while the nanny restarts the killed one).
    items: list = []
    executor.execute(spec("after", dataset=TINY, epochs=3), items.append, CancelToken())
    assert isinstance(items[-1], RunFinished) and items[-1].reason == "completed"
