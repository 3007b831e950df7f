"""Where jobs execute: local threads (the default) or a Dask cluster.

The job runner keeps the queue, the owner rules, the store and the events; an executor
only runs one :class:`~mfcore.runs.job.JobSpec` at a time per call of :meth:`execute`,
which blocks the runner's job thread until the job has ended and reports through
``emit`` (trainer events, :class:`~mfcore.runs.job.CheckpointReady`,
:class:`~mfcore.runs.job.Placed`). Stop travels as ``cancel`` (a :class:`~mfcore.runs.job.CancelToken`): the
executor registers with ``cancel.on_set`` whatever makes the trainer stop within a batch.

``MFSTUDIO_DASK_SCHEDULER=tcp://host:port`` selects :class:`DaskExecutor`
(``mfcore.runs.dask_executor``, needs the ``distributed`` package).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from mfcore.runs.job import CancelToken, JobSpec, Placed, load_by_spec, run_job

__all__ = ["Executor", "ClusterStatus", "WorkerInfo", "LocalExecutor", "make_executor", "DASK_SCHEDULER_ENV"]

DASK_SCHEDULER_ENV = "MFSTUDIO_DASK_SCHEDULER"


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    address: str
    threads: int
    gpus: int
    busy: int
    """Jobs running on it now."""


@dataclass(frozen=True)
class ClusterStatus:
    kind: str
    """"local" or "dask"."""
    address: str
    """The scheduler's address ("" for local)."""
    workers: list[WorkerInfo] = field(default_factory=list)
    error: str = ""
    """Why the cluster cannot be reached right now ("" when it can)."""

    @property
    def threads(self) -> int:
        return sum(w.threads for w in self.workers)

    @property
    def gpus(self) -> int:
        return sum(w.gpus for w in self.workers)


class Executor(Protocol):
    kind: str

    def capacity(self) -> int:
        """How many jobs may run at once (the runner starts this many job threads)."""

    def check(self, spec: JobSpec) -> None:
        """Raise a RunnerError now when ``spec`` could never be placed (e.g. CUDA, no GPU worker)."""

    def execute(self, spec: JobSpec, emit: Callable[[Any], None], cancel: CancelToken) -> None:
        """Run ``spec`` to its end (blocking); raise WorkerLostError when the machine running it is lost."""

    def status(self) -> ClusterStatus: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Jobs run in the calling thread (the runner's job threads), datasets shared in a memo."""

    kind = "local"

    def __init__(self, max_workers: int, load_data: Callable[[str], Any] | None = None) -> None:
        self._max_workers = max_workers
        self._load_data = load_data or load_by_spec
        self._busy = 0
        self._lock = threading.Lock()
        self._prefetched: set[str] = set()

    def capacity(self) -> int:
        return self._max_workers

    def check(self, spec: JobSpec) -> None:
        from mfcore.device import resolve_device

        resolve_device(spec.runtime.get("device"))  # DeviceError now rather than in the queue

    def execute(self, spec: JobSpec, emit: Callable[[Any], None], cancel: CancelToken) -> None:
        with self._lock:
            self._busy += 1
        try:
            emit(Placed("local"))

            # Stop reaches the trainer at once (within one batch), also when set before it exists.
            run_job(spec, emit, load_data=self._load_data, on_trainer=lambda trainer: cancel.on_set(trainer.cancel))
        finally:
            with self._lock:
                self._busy -= 1

    def prefetch(self, dataset: str) -> None:
        """Start loading ``dataset`` into the jobs' memo in the background (once), so a first
        Launch on it does not wait for the file to be read."""
        with self._lock:
            if dataset in self._prefetched:
                return
            self._prefetched.add(dataset)

        def load() -> None:
            try:
                self._load_data(dataset)
            except Exception:  # noqa: BLE001 - the run that needs it will report the error
                with self._lock:
                    self._prefetched.discard(dataset)

        threading.Thread(target=load, name="mfstudio-prefetch", daemon=True).start()

    def status(self) -> ClusterStatus:
        import socket

        with self._lock:
            busy = self._busy
        return ClusterStatus("local", "", [WorkerInfo(socket.gethostname(), "local", self._max_workers, 0, busy)])

    def close(self) -> None:
        pass


def make_executor(max_workers: int, load_data: Callable[[str], Any] | None = None) -> Executor:
    """The executor the environment asks for: Dask when ``$MFSTUDIO_DASK_SCHEDULER`` is set, else local."""
    address = os.environ.get(DASK_SCHEDULER_ENV, "").strip()
    if address:
        from mfcore.runs.dask_executor import DaskExecutor

        return DaskExecutor(address)
    return LocalExecutor(max_workers, load_data)
