"""The job runner: one per server process; a fair queue of runs and where they execute.

    runner = JobRunner(RunStore())                   # marks runs of dead processes interrupted
    run_id = runner.submit(RunRequest("ml-100k", "random:0.1", 0, ModelConfig(), TrainConfig(), owner=oid))
    runner.snapshot(run_id)                          # cheap; what a page draws
    runner.stop(run_id, Actor(oid))                  # queued: at once; running: within one batch
    runner.load_model(run_id)                        # from the latest checkpoint

Runs wait in a :class:`~mfcore.runs.fair_queue.FairQueue` (round-robin across owners)
and execute through an :class:`~mfcore.runs.executors.Executor`: local threads by
default, or a Dask cluster. Job threads (one per executor slot) take the next job, hand
it to the executor and write every event it reports into the :class:`RunStore`, which
is the source of truth: pages read snapshots from it, never from the threads.

Identical requests (same data, split, seed and settings: :func:`mfcore.runs.job.request_key`)
are computed once: a second student pressing Launch on the same default gets a run of
their own that follows the running job live, or at once a copy of a finished run's
stored result and checkpoint.

Every mutating call takes the acting :class:`~mfcore.runs.access.Actor` and refuses
(PermissionDenied) unless it is the run's owner or a teacher. Every exception ends the
job's runs as ``failed`` with a one-line message; job threads never touch a UI.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from mfcore import checkpoint
from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig, config_from_dict, config_to_dict
from mfcore.data.dataset import RatingData
from mfcore.data.splits import parse_split_spec
from mfcore.device import available_devices
from mfcore.errors import ConfigError, MFError, RunnerError
from mfcore.events import RunFinished
from mfcore.recommender import TrainedModel
from mfcore.runs.access import Actor, check_may_change
from mfcore.runs.executors import ClusterStatus, Executor, LocalExecutor
from mfcore.runs.fair_queue import FairQueue
from mfcore.runs.job import (
    CancelToken,
    CheckpointReady,
    JobSpec,
    Placed,
    data_identity,
    load_by_spec,
    one_line,
    request_key,
)
from mfcore.runs.store import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    RunRecord,
    RunStore,
    interrupted_message,
    process_identity,
)

__all__ = ["RunRequest", "RunSnapshot", "JobRunner", "DatasetCache", "default_max_workers", "MAX_JOBS_ENV",
           "HISTORY_COLUMNS"]

log = logging.getLogger(__name__)

MAX_JOBS_ENV = "MFSTUDIO_MAX_JOBS"
HISTORY_COLUMNS = ("epoch", "train_loss", "test_rmse", "test_mae", "seconds", "examples_per_second", "elapsed_s", "lr")


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to train one run."""

    dataset: str
    """Spec for ``load_dataset``, e.g. "synthetic", "ml-100k", a path."""
    split: str
    """Split spec, e.g. "random:0.1" (see mfcore.data.splits)."""
    seed: int
    """Seed of the split (the model's own seed is ``train_config.seed``)."""
    model_config: ModelConfig
    train_config: TrainConfig
    runtime: RuntimeOptions = RuntimeOptions()
    owner: str = ""
    """Owner id (see mfcore.runs.access); the per-owner queue bound and the fair queue count by it."""
    label: str = ""
    """User-visible name, e.g. the preset name."""
    owner_name: str = ""
    """The owner's display name, shown with the run."""
    sweep_id: str | None = None
    """The sweep this run is a point of (mfcore.sweeps), if any."""


@dataclass(frozen=True)
class RunSnapshot:
    """Everything a page needs to draw one run; cheap to get."""

    run_id: str
    status: str
    """queued, running, finished, stopped, failed or interrupted."""
    queue_position: int | None
    """1 = next to start; None when not waiting in this runner's queue."""
    label: str
    owner: str
    dataset: str
    split: str
    device: str
    message: str
    epochs_planned: int
    epochs_done: int
    history: pd.DataFrame
    """Columns ``HISTORY_COLUMNS``, one row per completed epoch (empty in ``list``)."""
    progress: dict | None
    """Latest within-epoch progress (epoch, done, total, train_loss, examples_per_second,
    elapsed_s, updated_at); None between epochs."""
    baselines: dict
    metrics: dict
    elapsed_s: float
    """Wall seconds since the run started (to its end once it has ended)."""
    eta_s: float | None
    """Estimated training seconds left (evaluation excluded); None unless running."""
    model_config: dict
    train_config: dict
    checkpoint_path: str | None
    created_at: float = 0.0
    """Unix time of submission."""
    owner_name: str = ""
    """Who launched it, for display."""
    shared_from: str | None = None
    """The run whose computation this one shares ("same as run X"), if any."""
    placement: str = ""
    """Where it runs or ran: local, or a Dask worker and its device."""
    estimated_wait_s: float | None = None
    """While queued: seconds until it should start (from recent runs' durations)."""
    sweep_id: str | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass
class _Job:
    """One computation in this runner, shared by every run that subscribed to it.

    The first run submitted for a request creates the job; identical requests submitted
    while it is queued or running subscribe (their own run ids, one set of events). A
    subscriber that is stopped leaves; the last one leaving cancels the computation.
    """

    job_id: str
    spec: JobSpec
    owner: str
    request_key: str
    subscribers: list[str]
    cancel: CancelToken = field(default_factory=CancelToken)
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Orders event writes against subscriptions, so a new subscriber misses no epoch."""
    started: bool = False
    by_shutdown: bool = False
    checkpoint_note: str = ""
    """Why the last checkpoint could not be written ("" when it was)."""


def default_max_workers() -> int:
    """``$MFSTUDIO_MAX_JOBS``, else 2 when a CUDA GPU exists, else 1.

    One CPU job at a time: two jobs on a small machine each run slower than half speed
    (see mfcore.device.default_cpu_threads and benchmarks/NOTES.md); a GPU job leaves the
    CPU mostly free.
    """
    env = os.environ.get(MAX_JOBS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ConfigError(MAX_JOBS_ENV, f"must be a whole number of at least 1, got {env!r}")
        return int(env)
    return 2 if any(d.startswith("cuda") for d in available_devices()) else 1


class DatasetCache:
    """A small LRU memo around a dataset loader (datasets are read-only, so sharing is safe).

    Concurrent requests for the same spec load it once; a spec naming an existing file or
    folder is keyed with its modification time, so an edited file is read again.
    """

    def __init__(self, loader: Callable[[str], RatingData] | None = None, max_items: int = 2) -> None:
        self._loader = loader or load_by_spec
        self.max_items = max_items
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple, RatingData] = OrderedDict()
        self._loading: dict[tuple, threading.Lock] = {}

    def __call__(self, spec: str) -> RatingData:
        key = tuple(data_identity(spec))
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # a second caller for the same spec waits for the first load
            with self._lock:
                if key in self._data:
                    return self._data[key]
            data = self._loader(spec)  # a failure is not cached
            with self._lock:
                self._data[key] = data
                while len(self._data) > self.max_items:
                    self._data.popitem(last=False)
                self._loading.pop(key, None)
        return data

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class JobRunner:
    """Queue runs fairly across owners and execute them, recording everything in ``store``.

    Args:
        store: where runs live; on construction, runs left queued/running by a dead
            process are marked interrupted (``store.mark_interrupted()``).
        max_workers: parallel local jobs; None = ``default_max_workers()``. Ignored when
            ``executor`` is given (its ``capacity()`` counts).
        max_queued_per_owner: queued + running runs one owner may have (None = no bound).
        load_data: dataset spec -> RatingData for local jobs; default a
            :class:`DatasetCache` around :func:`mfcore.runs.job.load_by_spec`.
        checkpoint_every_s: write a checkpoint at the end of an epoch when this long has
            passed since the last one (0 = after every epoch), for the inspection pages.
        executor: where jobs run (:mod:`mfcore.runs.executors`); default local threads.
        share_identical: an identical request joins a queued/running job or reuses a
            finished run's stored result instead of computing again.
    """

    def __init__(
        self,
        store: RunStore,
        *,
        max_workers: int | None = None,
        max_queued_per_owner: int | None = 3,
        load_data: Callable[[str], RatingData] | None = None,
        checkpoint_every_s: float = 10.0,
        executor: Executor | None = None,
        share_identical: bool = True,
    ) -> None:
        if executor is None:
            if max_workers is None:
                max_workers = default_max_workers()
            if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
                raise ConfigError("max_workers", f"must be a whole number of at least 1, got {max_workers!r}")
            executor = LocalExecutor(max_workers, load_data or DatasetCache())
        if max_queued_per_owner is not None and (
            isinstance(max_queued_per_owner, bool) or not isinstance(max_queued_per_owner, int)
            or max_queued_per_owner < 1
        ):
            raise ConfigError("max_queued_per_owner", f"must be None or at least 1, got {max_queued_per_owner!r}")
        if not isinstance(checkpoint_every_s, (int, float)) or not checkpoint_every_s >= 0:
            raise ConfigError("checkpoint_every_s", f"must be a number of seconds >= 0, got {checkpoint_every_s!r}")
        self.store = store
        self.executor = executor
        self.max_workers = max(1, int(executor.capacity()))
        self.max_queued_per_owner = max_queued_per_owner
        self.checkpoint_every_s = float(checkpoint_every_s)
        self.share_identical = share_identical
        self._process = process_identity()
        self._cond = threading.Condition()
        self._queue = FairQueue()  # job ids
        self._jobs: dict[str, _Job] = {}  # queued and running jobs
        self._job_of_run: dict[str, str] = {}
        self._closed = False
        self._typical: tuple[float, float | None] = (0.0, None)  # (when computed, seconds)
        self._job_end_listeners: list[Callable[[], None]] = []
        self.interrupted_on_start = store.mark_interrupted()
        checkpoint.clean_temporary_files(store.runs_dir)  # writes killed mid-way by an earlier process
        self._threads = [
            threading.Thread(target=self._work, name=f"mfstudio-job-{k}", daemon=True)
            for k in range(self.max_workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- submitting and stopping -----------------------------------------------------------
    def submit(self, request: RunRequest) -> str:
        """Validate and queue a run; returns its id.

        An identical request (same data, split, seed and settings) gets a run of its own
        at once: a copy of a finished run's stored result, or a live follower of a queued
        or running one. Raises RunnerError when the owner already has
        ``max_queued_per_owner`` runs queued or running (or the runner has shut down);
        ConfigError/DeviceError for a bad request, RunnerError when it cannot be placed.
        """
        _check_request(request)
        key = request_key(request.dataset, request.split, request.seed, request.model_config,
                          request.train_config, request.runtime)
        spec = JobSpec(
            job_id="", dataset=request.dataset, split=request.split, seed=request.seed,
            model_config=config_to_dict(request.model_config), train_config=config_to_dict(request.train_config),
            runtime=config_to_dict(request.runtime), checkpoint_every_s=self.checkpoint_every_s,
        )
        self.executor.check(spec)
        self._grow_threads()
        with self._cond:
            if self._closed:
                raise RunnerError("the job runner has shut down; restart the app to train again")
            limit = self.max_queued_per_owner
            if limit is not None:
                active = self.store.count_active(request.owner)
                if active >= limit:
                    raise RunnerError(f"you already have {active} runs waiting; wait or stop one")
            if self.share_identical:
                shared = self._join_identical(request, key)
                if shared is not None:
                    return shared
            record = self.store.create_run(
                dataset=request.dataset, split=request.split, seed=request.seed,
                model_config=request.model_config, train_config=request.train_config, runtime=request.runtime,
                owner=request.owner, label=request.label, process=self._process,
                owner_name=request.owner_name, request_key=key, sweep_id=request.sweep_id,
            )
            job = _Job(record.id, replace(spec, job_id=record.id), request.owner, key, [record.id])
            self._jobs[record.id] = job
            self._job_of_run[record.id] = record.id
            self._queue.push(request.owner, record.id)
            self._cond.notify()
        return record.id

    def _join_identical(self, request: RunRequest, key: str) -> str | None:
        """A run sharing an identical queued/running job or finished result (caller holds the lock)."""
        for job in self._jobs.values():
            if job.request_key != key or job.cancel.is_set() or not job.subscribers:
                continue
            with job.lock:
                source = job.subscribers[0]
                record = self.store.clone_run(
                    source, owner=request.owner, owner_name=request.owner_name, label=request.label,
                    process=self._process, with_result=False, sweep_id=request.sweep_id,
                )
                if job.started:
                    self.store.update_status(record.id, "running", "", only_from=("queued",))
                    self.store.link_checkpoint(record.id, self.store.get(source).checkpoint_path)
                job.subscribers.append(record.id)
            self._job_of_run[record.id] = job.job_id
            return record.id
        finished = self.store.find_reusable(key)
        if finished is None:
            return None
        record = self.store.clone_run(
            finished.id, owner=request.owner, owner_name=request.owner_name, label=request.label,
            process=self._process, with_result=True, sweep_id=request.sweep_id,
            message=f"same as run {finished.id}: its stored result and checkpoint are reused",
        )
        return record.id

    def stop(self, run_id: str, actor: Actor) -> None:
        """Stop a run: a queued one at once, a running one within one batch (epochs kept).

        Only its owner or a teacher may (PermissionDenied). A run sharing a computation
        with others leaves it; the computation goes on for them. Stopping a run that has
        already ended does nothing.
        """
        record = self.store.get(run_id)  # unknown id -> RunnerError
        check_may_change(actor, record.owner, run_id, "stop")
        with self._cond:
            job_id = self._job_of_run.get(run_id)
            job = self._jobs.get(job_id) if job_id else None
            if job is not None:
                with job.lock:
                    if len(job.subscribers) > 1 and run_id in job.subscribers:
                        job.subscribers.remove(run_id)
                        self._job_of_run.pop(run_id, None)
                        done = self.store.get(run_id).epochs_done
                        message = (f"stopped after {done} of {record.epochs_planned} epochs" if job.started
                                   else "stopped before it started")
                        self.store.update_status(run_id, "stopped", message, only_from=ACTIVE_STATUSES)
                        return
                if job.job_id in self._queue:
                    self._queue.remove(job.job_id)
                    self._jobs.pop(job.job_id, None)
                    self._job_of_run.pop(run_id, None)
                    self.store.update_status(run_id, "stopped", "stopped before it started", only_from=("queued",))
                    self._cond.notify_all()
                    return
                job.cancel.set()
                return
        record = self.store.get(run_id)
        if record.status == "queued":  # queued by another process (or left over): it will not start
            self.store.update_status(run_id, "stopped", "stopped before it started", only_from=("queued",))
        elif record.status == "running":
            raise RunnerError(f"run {run_id} is trained by another server process; stop it from that server")

    def delete(self, run_id: str, actor: Actor) -> None:
        """Delete an ended run with its epochs and checkpoint (its owner or a teacher only)."""
        self.store.delete(run_id, actor)

    def rename(self, run_id: str, label: str, actor: Actor) -> None:
        """Change a run's label (its owner or a teacher only)."""
        self.store.rename(run_id, label, actor)

    def resume(self, run_id: str, actor: Actor) -> None:
        """Continue an interrupted (or stopped) run from its checkpoint, in place (its owner or a teacher).

        The epochs after the checkpoint's are dropped (their weights were not kept); training
        goes on from the next epoch to the planned number. RunnerError when there is no
        checkpoint or nothing is left to train.
        """
        record = self.store.get(run_id)
        check_may_change(actor, record.owner, run_id, "resume")
        if record.status not in ("interrupted", "stopped"):
            raise RunnerError(f"run {run_id} is {record.status}; only an interrupted or stopped run can be resumed")
        path = record.checkpoint_path
        if not path or not os.path.isfile(path):
            raise RunnerError(f"run {run_id} has no checkpoint to resume from; launch it again instead")
        done = len(checkpoint.load(path).history.get("epoch", []))
        if done < 1 or done >= record.epochs_planned:
            raise RunnerError(f"run {run_id}'s checkpoint holds {done} of {record.epochs_planned} epochs: "
                              "nothing to resume; launch it again instead")
        payload = Path(path).read_bytes()
        spec = JobSpec(
            job_id=run_id, dataset=record.dataset, split=record.split, seed=record.seed,
            model_config=record.model_config, train_config=record.train_config, runtime=record.runtime,
            checkpoint_every_s=self.checkpoint_every_s, resume_payload=payload, first_epoch=done + 1,
        )
        self.executor.check(spec)
        self._grow_threads()
        with self._cond:
            if self._closed:
                raise RunnerError("the job runner has shut down; restart the app to train again")
            if run_id in self._job_of_run:
                raise RunnerError(f"run {run_id} is already queued")
            self.store.prepare_resume(run_id, done, f"resuming from the checkpoint of epoch {done}",
                                      process=self._process)
            # Never joined by identical requests: its result comes by another path.
            job = _Job(run_id, spec, record.owner, f"resume:{run_id}", [run_id])
            self._jobs[run_id] = job
            self._job_of_run[run_id] = run_id
            self._queue.push(record.owner, run_id)
            self._cond.notify()

    def relaunch(self, run_id: str, actor: Actor, owner_name: str = "", label: str | None = None) -> str:
        """Queue a new run of ``actor`` with ``run_id``'s data, split, seed and settings."""
        record = self.store.get(run_id)
        if record.damaged:  # its settings read as empty: a relaunch would train the defaults instead
            raise RunnerError(f"run {run_id}'s stored settings are damaged; it cannot be relaunched")
        request = RunRequest(
            dataset=record.dataset, split=record.split, seed=record.seed,
            model_config=config_from_dict(ModelConfig, record.model_config),
            train_config=config_from_dict(TrainConfig, record.train_config),
            runtime=config_from_dict(RuntimeOptions, record.runtime),
            owner=actor.owner, owner_name=owner_name,
            label=record.label if label is None else label,
        )
        return self.submit(request)

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self, run_id: str) -> RunSnapshot:
        """One run with its per-epoch history (unknown id -> RunnerError)."""
        record, history = self.store.get_with_epochs(run_id)
        return self._snapshot(record, history)

    def list(self, owner: str | None = None) -> list[RunSnapshot]:
        """All runs: ``owner``'s first, then everyone else's, each newest first (history left empty)."""
        records = self.store.list_runs()
        if owner is not None:
            records.sort(key=lambda r: r.owner != owner)  # stable: newest first within each group
        return [self._snapshot(r, _empty_history()) for r in records]

    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run to start, 2 behind it...; None when not waiting here."""
        with self._cond:
            job_id = self._job_of_run.get(run_id)
            return self._queue.position(job_id) if job_id else None

    def estimated_wait(self, position: int | None) -> float | None:
        """Seconds until a run at queue ``position`` starts, from recent runs' durations."""
        if position is None:
            return None
        typical = self._typical_seconds()
        if typical is None:
            return None
        with self._cond:
            running = sum(1 for j in self._jobs.values() if j.started)
        free = max(0, self.max_workers - running)
        if position <= free:
            return 0.0
        return math.ceil((position - free) / self.max_workers) * typical

    def _typical_seconds(self) -> float | None:
        now = time.monotonic()
        when, value = self._typical
        if now - when < 5.0:
            return value
        recent = [r for r in self.store.list_runs(statuses=("finished",), limit=20)
                  if r.started_at and r.finished_at and not r.shared_from]
        value = statistics.median(r.finished_at - r.started_at for r in recent) if recent else None
        self._typical = (now, value)
        return value

    def on_job_end(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` in the job thread after every job ends (e.g. to submit a
        sweep's waiting points as its owner's queue share frees up); its errors are logged."""
        self._job_end_listeners.append(listener)

    def prefetch(self, dataset: str) -> None:
        """Have the executor load ``dataset`` ahead of a first Launch (where it can; else nothing)."""
        prefetch = getattr(self.executor, "prefetch", None)
        if prefetch is not None and isinstance(dataset, str) and dataset.strip():
            prefetch(dataset)

    def cluster_status(self) -> ClusterStatus:
        """Workers, threads, GPUs and busy jobs of wherever jobs run."""
        return self.executor.status()

    def wait(self, run_id: str, timeout: float | None = None) -> RunSnapshot:
        """Block until the run has ended; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            snap = self.snapshot(run_id)
            if snap.status in TERMINAL_STATUSES:
                return snap
            left = 0.1 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {run_id} is still {snap.status} after {timeout:g} s")
            with self._cond:  # woken when a job ends; re-polls for runs of other processes
                self._cond.wait(min(0.1, left))

    def load_model(self, run_id: str) -> TrainedModel:
        """The run's model from its latest checkpoint (on the CPU).

        Finished and stopped runs have their final weights; a running one the weights of
        its latest periodic checkpoint (written after an epoch).
        """
        record = self.store.get(run_id)
        path = record.checkpoint_path
        if not path or not os.path.isfile(path):
            if record.status in ACTIVE_STATUSES:
                raise RunnerError(f"run {run_id} has no checkpoint yet; one is written after its first epoch")
            raise RunnerError(f"run {run_id} ({record.status}) has no saved model; it completed no epoch")
        return checkpoint.load(path)

    # -- shutting down ---------------------------------------------------------------------
    def shutdown(self, wait: bool = False, timeout_s: float | None = None) -> None:
        """Stop accepting runs; waiting runs and running jobs end as ``interrupted``.

        Running jobs are cancelled (within one batch; their epochs and a checkpoint are
        kept). With ``wait`` this returns once the job threads have exited (a job that
        is still loading its dataset finishes loading first), or after ``timeout_s``.
        """
        with self._cond:
            if not self._closed:
                self._closed = True
                for job_id in self._queue.clear():
                    job = self._jobs.pop(job_id)
                    for run_id in job.subscribers:
                        self._job_of_run.pop(run_id, None)
                        self.store.update_status(
                            run_id, "interrupted", "the server stopped before this run started; submit it again",
                            only_from=("queued",),
                        )
                for job in self._jobs.values():
                    job.by_shutdown = True
                    job.cancel.set()
            self._cond.notify_all()
        if wait:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.executor.close()

    # -- the job side ----------------------------------------------------------------------
    def _grow_threads(self) -> None:
        """One job thread per executor slot: a cluster that gained workers gets more threads."""
        try:
            want = max(1, int(self.executor.capacity()))
        except Exception:  # noqa: BLE001 - a cluster that cannot be asked keeps its threads
            return
        with self._cond:
            while len(self._threads) < want and not self._closed:
                thread = threading.Thread(target=self._work, name=f"mfstudio-job-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self.max_workers = max(self.max_workers, want)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._jobs[self._queue.pop()]
                job.started = True
            try:
                self._execute(job)
            except BaseException as exc:  # noqa: BLE001 - a job thread must survive anything a job does
                if not isinstance(exc, MFError):
                    log.exception("job %s failed unexpectedly", job.job_id)
                self._fail_job(job, one_line(exc) if isinstance(exc, MFError) else f"unexpected error: {one_line(exc)}")
            finally:
                with self._cond:
                    self._jobs.pop(job.job_id, None)
                    with job.lock:
                        for run_id in job.subscribers:
                            self._job_of_run.pop(run_id, None)
                    self._cond.notify_all()
                for listener in list(self._job_end_listeners):
                    try:
                        listener()
                    except Exception:  # noqa: BLE001 - a listener must not take the job thread down
                        log.exception("a job-end listener failed")

    def _execute(self, job: _Job) -> None:
        with job.lock:
            claimed = [run_id for run_id in job.subscribers
                       if self.store.update_status(run_id, "running", "loading the dataset", only_from=("queued",),
                                                   process=self._process)]
            job.subscribers[:] = claimed
        if not claimed:
            return  # stopped (or deleted) while it waited
        self.executor.execute(job.spec, lambda item: self._deliver(job, item), job.cancel)
        # An executor that ended without a final event (it should not): say so, once.
        self._fail_job(job, "the job ended without reporting a result")

    def _deliver(self, job: _Job, item: object) -> None:
        """Write one thing the job reported into every subscribed run."""
        with job.lock:
            targets = list(job.subscribers)
            if not targets:
                return
            if isinstance(item, Placed):
                for run_id in targets:
                    self.store.set_placement(run_id, item.where)
            elif isinstance(item, CheckpointReady):
                self._store_checkpoint(job, targets, item)
            elif isinstance(item, RunFinished):
                for run_id in targets:
                    self.store.record_event(run_id, item)
                    if job.by_shutdown and item.reason == "cancelled":
                        self.store.update_status(run_id, "interrupted", interrupted_message(item.epochs_run))
                    elif job.checkpoint_note:
                        self.store.set_message(run_id, f"{self.store.get(run_id).message}; {job.checkpoint_note}")
            else:
                for run_id in targets:
                    self.store.record_event(run_id, item)

    def _store_checkpoint(self, job: _Job, targets: list[str], item: CheckpointReady) -> None:
        """Write the checkpoint for the first subscriber, link it for the others; a failure is said once."""
        path = self.store.checkpoint_path_for(targets[0])
        try:
            if item.payload is not None:
                _write_atomically(path, item.payload)
            else:
                checkpoint.save(item.trained, path)
        except Exception as exc:  # noqa: BLE001 - a failed save must not kill the run
            note = f"the checkpoint could not be written ({one_line(exc)})"
            if note != job.checkpoint_note:
                log.warning("job %s: %s", job.job_id, note)
            job.checkpoint_note = note
            return
        job.checkpoint_note = ""
        self.store.set_checkpoint(targets[0], path)
        for run_id in targets[1:]:
            try:
                self.store.link_checkpoint(run_id, path)
            except OSError as exc:
                log.warning("run %s: checkpoint not linked: %s", run_id, exc)

    def _fail_job(self, job: _Job, message: str) -> None:
        with job.lock:
            targets = list(job.subscribers)
        for run_id in targets:
            try:
                self.store.update_status(run_id, "failed", message, only_from=ACTIVE_STATUSES)
            except Exception:  # noqa: BLE001 - the store itself is failing: nothing left but the log
                log.exception("run %s: could not record the failure %r", run_id, message)

    # -- snapshots -------------------------------------------------------------------------
    def _snapshot(self, record: RunRecord, history: pd.DataFrame) -> RunSnapshot:
        message = record.message
        position = None
        if record.status in ACTIVE_STATUSES:
            with self._cond:
                job = self._jobs.get(self._job_of_run.get(record.id, ""))
                if job is not None and job.cancel.is_set() and record.status == "running":
                    message = "stopping…"
                if job is not None and record.status == "queued":
                    position = self._queue.position(job.job_id)
        return RunSnapshot(
            run_id=record.id,
            status=record.status,
            queue_position=position,
            label=record.label,
            owner=record.owner,
            dataset=record.dataset,
            split=record.split,
            device=record.device,
            message=message,
            epochs_planned=record.epochs_planned,
            epochs_done=record.epochs_done,
            history=history,
            progress=record.progress,
            baselines=record.baselines,
            metrics=record.metrics,
            elapsed_s=_elapsed(record, history),
            eta_s=_eta(record, history),
            model_config=record.model_config,
            train_config=record.train_config,
            checkpoint_path=record.checkpoint_path,
            created_at=record.created_at,
            owner_name=record.who,
            shared_from=record.shared_from,
            placement=record.placement,
            estimated_wait_s=self.estimated_wait(position) if position is not None else None,
            sweep_id=record.sweep_id,
        )


# ---------------------------------------------------------------------------- helpers


def _check_request(request: RunRequest) -> None:
    if not isinstance(request, RunRequest):
        raise RunnerError(f"expected a RunRequest, got {type(request).__name__}")
    for name, cls in (("model_config", ModelConfig), ("train_config", TrainConfig), ("runtime", RuntimeOptions)):
        if not isinstance(getattr(request, name), cls):
            raise RunnerError(f"{name} must be a {cls.__name__}, got {type(getattr(request, name)).__name__}")
    if not isinstance(request.dataset, str) or not request.dataset.strip():
        raise ConfigError("dataset", f"expected a dataset name or path, got {request.dataset!r}; e.g. ml-100k")
    parse_split_spec(request.split)  # ConfigError naming the spec
    if isinstance(request.seed, bool) or not isinstance(request.seed, int) or request.seed < 0:
        raise ConfigError("seed", f"must be a non-negative whole number, got {request.seed!r}")
    if not all(isinstance(v, str) for v in (request.owner, request.label, request.owner_name)):
        raise RunnerError("owner, owner_name and label must be strings")


def _empty_history() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "epoch" else "float64") for c in HISTORY_COLUMNS})


def _elapsed(record: RunRecord, history: pd.DataFrame) -> float:
    if record.started_at is None:
        return 0.0
    if record.status == "interrupted":
        # finished_at is when a later server noticed; the last known training time is truer.
        if len(history):
            return float(history["elapsed_s"].iloc[-1])
        return float(record.train_seconds or 0.0)
    end = record.finished_at if record.finished_at is not None else time.time()
    return max(0.0, end - record.started_at)


def _eta(record: RunRecord, history: pd.DataFrame) -> float | None:
    if record.status != "running":
        return None
    remaining = max(0, record.epochs_planned - record.epochs_done)
    progress = record.progress
    if len(history):
        per_epoch = float(history["seconds"].mean())
        into_epoch = 0.0
        if progress is not None and progress["epoch"] == record.epochs_done + 1:
            into_epoch = float(progress["elapsed_s"]) - float(history["elapsed_s"].iloc[-1])
        eta = per_epoch * remaining - into_epoch
    elif progress is not None and (progress["examples_per_second"] or 0) > 0:
        left = remaining * progress["total"] - progress["done"]
        eta = left / progress["examples_per_second"]
    else:
        return None
    return max(0.0, eta) if math.isfinite(eta) else None


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write bytes via a temp file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
