"""The job runner: one per server process, trains queued runs on background threads.

    runner = JobRunner(RunStore())                   # marks runs of dead processes interrupted
    run_id = runner.submit(RunRequest("ml-100k", "random:0.1", 0, ModelConfig(), TrainConfig(), owner=sid))
    runner.snapshot(run_id)                          # cheap; what a page draws
    runner.stop(run_id)                              # queued: at once; running: within one batch
    runner.load_model(run_id)                        # from the latest checkpoint

Worker threads pull run ids from a FIFO queue, load the dataset (memoised: a class of 30
shares one copy), make the split with the run's seed, run the :class:`Trainer` and write
every event into the :class:`RunStore`, which is the source of truth: pages read
snapshots from it, never from the threads. The runner itself only keeps the queue and,
per running job, the trainer (to cancel it). Every exception ends the run as ``failed``
with a one-line message; worker threads never touch a UI.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from mfcore import checkpoint
from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig, config_from_dict
from mfcore.data.dataset import RatingData
from mfcore.data.splits import make_split, parse_split_spec
from mfcore.device import available_devices, resolve_device
from mfcore.errors import ConfigError, MFError, RunnerError
from mfcore.events import EpochEnded, RunFinished
from mfcore.recommender import TrainedModel
from mfcore.runs.store import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    RunRecord,
    RunStore,
    interrupted_message,
    process_identity,
)
from mfcore.training.trainer import Trainer

__all__ = ["RunRequest", "RunSnapshot", "JobRunner", "DatasetCache", "default_max_workers", "MAX_JOBS_ENV",
           "HISTORY_COLUMNS"]

log = logging.getLogger(__name__)

MAX_JOBS_ENV = "MFSTUDIO_MAX_JOBS"
HISTORY_COLUMNS = ("epoch", "train_loss", "test_rmse", "test_mae", "seconds", "examples_per_second", "elapsed_s", "lr")
# Longest message stored for an unexpected error (one line in a status table).
_MESSAGE_CHARS = 300


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
    """Browser session id; the per-owner queue bound counts by it."""
    label: str = ""
    """User-visible name, e.g. the preset name."""


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

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass
class _Job:
    """In-memory state of one claimed run: just enough to cancel it."""

    run_id: str
    trainer: Trainer | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    by_shutdown: bool = False


def default_max_workers() -> int:
    """``$MFSTUDIO_MAX_JOBS``, else 2 when a CUDA GPU exists, else 1.

    One CPU job at a time: two jobs on a small machine each run slower than half speed
    (see mfcore.device.default_cpu_threads); a GPU job leaves the CPU mostly free.
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
        self._loader = loader or _load_dataset
        self.max_items = max_items
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple, RatingData] = OrderedDict()
        self._loading: dict[tuple, threading.Lock] = {}

    def __call__(self, spec: str) -> RatingData:
        key = _cache_key(spec)
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


def _cache_key(spec: str) -> tuple:
    try:
        path = Path(spec).expanduser()
        if path.exists():
            return (spec, str(path.resolve()), path.stat().st_mtime_ns)
    except (OSError, ValueError):
        pass
    return (spec.strip().lower(),)


def _load_dataset(spec: str) -> RatingData:
    from mfcore.data.sources import load_dataset  # imported on use: the runner works without it in tests

    return load_dataset(spec)


class JobRunner:
    """Queue and train runs on daemon threads, recording everything in ``store``.

    Args:
        store: where runs live; on construction, runs left queued/running by a dead
            process are marked interrupted (``store.mark_interrupted()``).
        max_workers: parallel jobs; None = ``default_max_workers()``.
        max_queued_per_owner: queued + running runs one owner may have (None = no bound).
        load_data: dataset spec -> RatingData; default a :class:`DatasetCache` around
            ``mfcore.data.sources.load_dataset``.
        checkpoint_every_s: write a checkpoint at the end of an epoch when this long has
            passed since the last one (0 = after every epoch), for the inspection pages.
    """

    def __init__(
        self,
        store: RunStore,
        *,
        max_workers: int | None = None,
        max_queued_per_owner: int | None = 3,
        load_data: Callable[[str], RatingData] | None = None,
        checkpoint_every_s: float = 10.0,
    ) -> None:
        if max_workers is None:
            max_workers = default_max_workers()
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError("max_workers", f"must be a whole number of at least 1, got {max_workers!r}")
        if max_queued_per_owner is not None and (
            isinstance(max_queued_per_owner, bool) or not isinstance(max_queued_per_owner, int)
            or max_queued_per_owner < 1
        ):
            raise ConfigError("max_queued_per_owner", f"must be None or at least 1, got {max_queued_per_owner!r}")
        if not isinstance(checkpoint_every_s, (int, float)) or not checkpoint_every_s >= 0:
            raise ConfigError("checkpoint_every_s", f"must be a number of seconds >= 0, got {checkpoint_every_s!r}")
        self.store = store
        self.max_workers = max_workers
        self.max_queued_per_owner = max_queued_per_owner
        self.checkpoint_every_s = float(checkpoint_every_s)
        self._load_data = load_data or DatasetCache()
        self._process = process_identity()
        self._cond = threading.Condition()
        self._waiting: deque[str] = deque()
        self._active: dict[str, _Job] = {}
        self._closed = False
        self.interrupted_on_start = store.mark_interrupted()
        self._threads = [
            threading.Thread(target=self._work, name=f"mfstudio-job-{k}", daemon=True) for k in range(max_workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- submitting and stopping -----------------------------------------------------------
    def submit(self, request: RunRequest) -> str:
        """Validate and queue a run; returns its id.

        Raises RunnerError when the owner already has ``max_queued_per_owner`` runs queued
        or running (or the runner has shut down); ConfigError/DeviceError for a bad request.
        """
        _check_request(request)
        with self._cond:
            if self._closed:
                raise RunnerError("the job runner has shut down; restart the app to train again")
            limit = self.max_queued_per_owner
            if limit is not None:
                active = self.store.count_active(request.owner)
                if active >= limit:
                    raise RunnerError(f"you already have {active} runs waiting; wait or stop one")
            record = self.store.create_run(
                dataset=request.dataset, split=request.split, seed=request.seed,
                model_config=request.model_config, train_config=request.train_config, runtime=request.runtime,
                owner=request.owner, label=request.label, process=self._process,
            )
            self._waiting.append(record.id)
            self._cond.notify()
        return record.id

    def stop(self, run_id: str) -> None:
        """Stop a run: a queued one at once, a running one within one batch (epochs kept).

        Stopping a run that has already ended does nothing.
        """
        with self._cond:
            if run_id in self._waiting:
                self._waiting.remove(run_id)
                self.store.update_status(run_id, "stopped", "stopped before it started", only_from=("queued",))
                self._cond.notify_all()
                return
            job = self._active.get(run_id)
            if job is not None:
                job.cancel.set()
                if job.trainer is not None:
                    job.trainer.cancel()
                return
        record = self.store.get(run_id)  # unknown id -> RunnerError
        if record.status == "queued":  # queued by another process (or left over): it will not start
            self.store.update_status(run_id, "stopped", "stopped before it started", only_from=("queued",))
        elif record.status == "running":
            raise RunnerError(f"run {run_id} is trained by another server process; stop it from that server")

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
            try:
                return self._waiting.index(run_id) + 1
            except ValueError:
                return None

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
    def shutdown(self, wait: bool = False) -> None:
        """Stop accepting runs; waiting runs and running jobs end as ``interrupted``.

        Running jobs are cancelled (within one batch; their epochs and a checkpoint are
        kept). With ``wait`` this returns once the worker threads have exited (a job that
        is still loading its dataset finishes loading first).
        """
        with self._cond:
            if not self._closed:
                self._closed = True
                for run_id in self._waiting:
                    self.store.update_status(
                        run_id, "interrupted", "the server stopped before this run started; submit it again",
                        only_from=("queued",),
                    )
                self._waiting.clear()
                for job in self._active.values():
                    job.by_shutdown = True
                    job.cancel.set()
                    if job.trainer is not None:
                        job.trainer.cancel()
            self._cond.notify_all()
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    # -- the worker side -------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                run_id = self._waiting.popleft()
                job = self._active[run_id] = _Job(run_id)
            try:
                self._execute(job)
            except BaseException as exc:  # noqa: BLE001 - a worker must survive anything a job does
                log.exception("run %s failed unexpectedly", run_id)
                self._fail(run_id, f"unexpected error: {_one_line(exc)}")
            finally:
                with self._cond:
                    self._active.pop(run_id, None)
                    self._cond.notify_all()

    def _execute(self, job: _Job) -> None:
        store, run_id = self.store, job.run_id
        if not store.update_status(run_id, "running", "loading the dataset", only_from=("queued",),
                                   process=self._process):
            return  # stopped (or deleted) while it waited
        record = store.get(run_id)
        try:
            data = self._load_data(record.dataset)
        except Exception as exc:  # noqa: BLE001 - any loader failure ends this run only
            self._fail(run_id, f"could not load dataset {record.dataset!r}: {_one_line(exc)}")
            return
        if job.cancel.is_set():
            self._end_cancelled_before_start(job)
            return
        try:
            split = make_split(data, record.split, record.seed)
        except Exception as exc:  # noqa: BLE001
            self._fail(run_id, f"could not make split {record.split!r} of {record.dataset!r}: {_one_line(exc)}")
            return
        try:
            trainer = Trainer(
                data, split,
                config_from_dict(ModelConfig, record.model_config),
                config_from_dict(TrainConfig, record.train_config),
                config_from_dict(RuntimeOptions, record.runtime),
            )
        except Exception as exc:  # noqa: BLE001 - e.g. DeviceError: CUDA asked for but absent
            self._fail(run_id, _one_line(exc))
            return
        with self._cond:
            job.trainer = trainer
            if job.cancel.is_set():
                trainer.cancel()

        checkpoint_path = store.checkpoint_path_for(run_id)
        last_checkpoint = time.monotonic()
        for event in trainer.run():
            if isinstance(event, RunFinished):
                note = ""
                if event.epochs_run >= 1:
                    note = self._save_checkpoint(trainer, record, checkpoint_path)
                store.record_event(run_id, event)
                if job.by_shutdown and event.reason == "cancelled":
                    store.update_status(run_id, "interrupted", interrupted_message(event.epochs_run))
                elif note:
                    store.set_message(run_id, f"{store.get(run_id).message}; {note}")
            else:
                store.record_event(run_id, event)
                # Only at an epoch's end: the trainer's epoch clock is paused there, so the
                # time spent writing does not slow the measured examples per second.
                if isinstance(event, EpochEnded) and time.monotonic() - last_checkpoint >= self.checkpoint_every_s:
                    if not self._save_checkpoint(trainer, record, checkpoint_path):
                        last_checkpoint = time.monotonic()

    def _save_checkpoint(self, trainer: Trainer, record: RunRecord, path: Path) -> str:
        """Write the trainer's model atomically; returns "" or a note saying why it failed."""
        try:
            trained = checkpoint.from_trainer(trainer, dataset=record.dataset, split=record.split)
            checkpoint.save(trained, path)
        except Exception as exc:  # noqa: BLE001 - a failed save must not kill the run
            log.warning("run %s: checkpoint not written: %s", record.id, exc)
            return f"the checkpoint could not be written ({_one_line(exc)})"
        self.store.set_checkpoint(record.id, path)
        return ""

    def _end_cancelled_before_start(self, job: _Job) -> None:
        if job.by_shutdown:
            self.store.update_status(job.run_id, "interrupted", interrupted_message(0))
        else:
            self.store.update_status(job.run_id, "stopped", "stopped before training started")

    def _fail(self, run_id: str, message: str) -> None:
        try:
            self.store.update_status(run_id, "failed", message, only_from=ACTIVE_STATUSES)
        except Exception:  # noqa: BLE001 - the store itself is failing: nothing left but the log
            log.exception("run %s: could not record the failure %r", run_id, message)

    # -- snapshots -------------------------------------------------------------------------
    def _snapshot(self, record: RunRecord, history: pd.DataFrame) -> RunSnapshot:
        message = record.message
        if record.status == "running":
            with self._cond:
                job = self._active.get(record.id)
                if job is not None and job.cancel.is_set():
                    message = "stopping…"
        return RunSnapshot(
            run_id=record.id,
            status=record.status,
            queue_position=self.queue_position(record.id) if record.status == "queued" else None,
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
    resolve_device(request.runtime.device)  # DeviceError now rather than in the queue
    if not isinstance(request.owner, str) or not isinstance(request.label, str):
        raise RunnerError("owner and label must be strings")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # MFError messages say what to change; anything else also needs its type to be understood.
    if not isinstance(exc, MFError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    first = text.splitlines()[0] if text else text
    return first if len(first) <= _MESSAGE_CHARS else first[: _MESSAGE_CHARS - 1] + "…"


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

