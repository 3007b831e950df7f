"""Jobs on a Dask cluster: ``MFSTUDIO_DASK_SCHEDULER=tcp://host:port``.

The server keeps the queue, the owner rules and the run store (the job runner); a
:class:`DaskExecutor` only moves the training itself onto a Dask worker and back:

* ``execute`` submits :func:`run_on_worker` (one task per job, ``resources={"GPU": 1}``
  for a CUDA run) and forwards what the task reports, in order, to ``emit`` until the
  task has ended;
* on the worker, the task runs :func:`mfcore.runs.job.run_job` (mfcore's own Trainer),
  loading the dataset by spec from the worker's own ``$MFSTUDIO_DATA_DIR``/cache (never
  downloading; a small per-process memo keeps the last datasets), and puts every event
  into a ``distributed.Queue`` as a plain dict (the queue carries msgpack data only);
  checkpoints travel as the checkpoint file's bytes;
* Stop is cooperative: ``Future.cancel()`` does not interrupt a running task, so the
  server sets a ``distributed.Event`` and a thread on the worker, waiting on it, calls
  ``trainer.cancel()`` (the run stops within one batch and keeps its epochs);
* a worker that dies mid-run (its address leaves the scheduler, the task restarts
  elsewhere, or ``KilledWorker``) fails that job only, with a :class:`WorkerLostError`
  naming the worker; an unreachable scheduler is a :class:`SchedulerUnreachableError`,
  said by :meth:`DaskExecutor.status` and raised by :meth:`DaskExecutor.check` (so
  Launch is refused), and every call to the scheduler has a timeout.

Needs the ``distributed`` package (``pip install -r requirements-cluster.txt``); the
workers need the same requirements and, for MovieLens, ``MFSTUDIO_DATA_DIR``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from mfcore.errors import MFError, RunnerError
from mfcore.events import RunFinished, event_from_dict, event_to_dict
from mfcore.runs.executors import ClusterStatus, WorkerInfo
from mfcore.runs.job import CancelToken, CheckpointReady, JobSpec, Placed, data_identity, load_by_spec, one_line, run_job

__all__ = ["DaskExecutor", "ClusterError", "WorkerLostError", "SchedulerUnreachableError", "run_on_worker"]

log = logging.getLogger(__name__)

# How often the server polls the job's event queue when it was empty.
QUEUE_POLL_S = 0.2
# How long the worker's stop watcher waits on the stop event per call (the scheduler answers at once when set).
STOP_POLL_S = 0.2
# How often a running job checks that its worker is still in the cluster (one shared query per period).
WORKER_CHECK_S = 1.0
# Longest wait for one call to the scheduler from the server (a dead scheduler is never a hang).
CALL_TIMEOUT_S = 10.0
# How long a stop may wait for a task that has not started yet before it is withdrawn.
UNSTARTED_STOP_S = 2.0
# A background reconnection is tried at most this often while the scheduler is unreachable.
RECONNECT_EVERY_S = 5.0
# How long close() waits for running jobs (already told to stop) to end before disconnecting.
CLOSE_WAIT_S = 5.0
# Datasets kept in memory per worker process.
MEMO_SIZE = 2


class ClusterError(RunnerError):
    """The Dask cluster could not run a job (no worker fits, the task failed)."""


class SchedulerUnreachableError(ClusterError):
    """The Dask scheduler cannot be reached (``address`` names it)."""

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


class WorkerLostError(ClusterError):
    """The worker running a job died or left the cluster (``worker`` names it)."""

    def __init__(self, message: str, *, worker: str) -> None:
        super().__init__(message)
        self.worker = worker


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("MFSTUDIO_DASK_SCHEDULER is set but the 'distributed' package is not installed; "
                           "install it with: pip install -r requirements-cluster.txt") from None
    return distributed


def normalize_address(address: str) -> str:
    """``host:port`` -> ``tcp://host:port``; other schemes as they are."""
    address = str(address).strip()
    return address if "://" in address else f"tcp://{address}"


# ---------------------------------------------------------------------------- the server side


class DaskExecutor:
    """Runs each job as one task on a Dask cluster, events streaming back live."""

    kind = "dask"

    def __init__(self, address: str, *, connect_timeout_s: float = 5.0) -> None:
        _distributed()
        self.address = normalize_address(address)
        self.connect_timeout_s = float(connect_timeout_s)
        self._client: Any = None
        self._error = ""
        self._connect_lock = threading.Lock()
        self._last_attempt = 0.0
        self._reconnecting = False
        self._closed = False
        # Shared view of the workers (one scheduler query per WORKER_CHECK_S for all jobs).
        self._workers_at = 0.0
        self._workers: dict[str, dict] = {}
        self._workers_lock = threading.Lock()
        self._active = 0
        self._idle = threading.Condition()
        self._connect()

    # -- connection -------------------------------------------------------------------------
    def _unreachable(self, reason: str) -> str:
        return f"the Dask scheduler at {self.address} cannot be reached: {reason}"

    def _connect(self) -> None:
        """Try once to connect (bounded by ``connect_timeout_s``); remember why not."""
        from distributed import Client

        with self._connect_lock:
            if self._client_ok() or self._closed:
                return
            self._last_attempt = time.monotonic()
            reason = _probe(self.address, self.connect_timeout_s)
            if reason:
                self._error = self._unreachable(reason)
                log.warning("%s", self._error)
                return
            old, self._client = self._client, None
            if old is not None:
                _close_quietly(old)
            try:
                client = Client(self.address, timeout=self.connect_timeout_s, set_as_default=False)
            except Exception as exc:  # noqa: BLE001 - any failure to connect is the same message
                self._error = self._unreachable(one_line(exc))
                log.warning("%s", self._error)
                return
            self._client = client
            self._error = ""
            with self._workers_lock:
                self._workers_at = 0.0

    def _client_ok(self) -> bool:
        client = self._client
        return client is not None and client.status == "running"

    def _ensure_client(self, *, wait: bool) -> Any:
        """The connected client, or SchedulerUnreachableError (after one bounded try when ``wait``)."""
        if self._closed:
            raise ClusterError("the Dask executor is closed")
        if not self._client_ok():
            if wait:
                self._connect()
            elif not self._reconnecting and time.monotonic() - self._last_attempt >= RECONNECT_EVERY_S:
                self._reconnecting = True
                threading.Thread(target=self._reconnect_in_background, name="dask-reconnect", daemon=True).start()
        if not self._client_ok():
            client = self._client
            reason = self._error or self._unreachable(
                "the connection was lost" if client is None or client.status != "connecting" else "reconnecting")
            raise SchedulerUnreachableError(reason, address=self.address)
        return self._client

    def _reconnect_in_background(self) -> None:
        try:
            self._connect()
        finally:
            self._reconnecting = False

    def _call(self, client: Any, method: str, **kwargs: Any) -> Any:
        """One scheduler RPC with a timeout (a dead scheduler raises, never hangs)."""
        return client.sync(getattr(client.scheduler, method), callback_timeout=CALL_TIMEOUT_S, **kwargs)

    def _worker_table(self, client: Any, *, max_age: float = 0.0) -> dict[str, dict]:
        """address -> the scheduler's identity of that worker (cached up to ``max_age`` seconds)."""
        with self._workers_lock:
            if max_age and time.monotonic() - self._workers_at < max_age:
                return self._workers
            info = self._call(client, "identity", n_workers=-1)
            self._workers = dict(info.get("workers", {}))
            self._workers_at = time.monotonic()
            return self._workers

    # -- the Executor protocol --------------------------------------------------------------
    def capacity(self) -> int:
        """Worker threads in the cluster now (at least 1)."""
        try:
            workers = self._worker_table(self._ensure_client(wait=False))
        except Exception:  # noqa: BLE001 - unreachable now: one job at a time until it is back
            return 1
        return max(1, sum(int(w.get("nthreads", 0)) for w in workers.values()))

    def check(self, spec: JobSpec) -> None:
        client = self._ensure_client(wait=True)
        try:
            workers = self._worker_table(client)
        except Exception as exc:  # noqa: BLE001
            raise SchedulerUnreachableError(self._unreachable(one_line(exc)), address=self.address) from None
        if not workers:
            raise ClusterError(f"the Dask scheduler at {self.address} has no workers; start one there "
                               "(the README's Cluster section shows the command)")
        if spec.wants_gpu and not any(_gpus(w) >= 1 for w in workers.values()):
            raise ClusterError(
                f"this run asks for device {spec.runtime.get('device')!r} but no worker of the Dask cluster at "
                f"{self.address} has a GPU; add a worker on a GPU machine with the resource GPU=1 (the README's "
                "Cluster section shows the command), or choose device auto or cpu")

    def execute(self, spec: JobSpec, emit: Callable[[Any], None], cancel: CancelToken) -> None:
        from distributed import Event, Queue

        if cancel.is_set():
            emit(_cancelled_before_start())
            return
        self.check(spec)
        client = self._ensure_client(wait=True)
        base = f"mfstudio-{spec.job_id}-{uuid.uuid4().hex[:8]}"
        try:
            queue = Queue(f"{base}-events", client=client)
        except Exception as exc:  # noqa: BLE001
            raise SchedulerUnreachableError(self._unreachable(one_line(exc)), address=self.address) from None
        stop = Event(f"{base}-stop", client=client)
        future = client.submit(
            run_on_worker, spec, queue.name, stop.name,
            key=base, pure=False, resources={"GPU": 1} if spec.wants_gpu else None,
        )
        with self._idle:
            self._active += 1
        try:
            self._follow(client, spec, future, queue, stop, emit, cancel)
        finally:
            self._cleanup(client, future, queue, stop)
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _follow(self, client: Any, spec: JobSpec, future: Any, queue: Any, stop: Any,
                emit: Callable[[Any], None], cancel: CancelToken) -> None:
        placed: dict | None = None
        stop_sent_at: float | None = None
        last_check = time.monotonic()

        def lost(reason: str) -> WorkerLostError:
            label = _worker_label(placed["name"], placed["worker"]) if placed else "(unknown)"
            self._send_stop(client, stop)
            _quietly(lambda: client.sync(client._cancel, [future], callback_timeout=CALL_TIMEOUT_S))
            return WorkerLostError(f"Dask worker {label} was lost while running this job ({reason})",
                                   worker=placed["worker"] if placed else "")

        while True:
            if future.status == "cancelled" or not self._client_ok():
                # The client cancels every future the moment its connection to the scheduler drops.
                raise SchedulerUnreachableError(
                    f"lost the connection to the Dask scheduler at {self.address} while the job ran",
                    address=self.address)
            if cancel.is_set() and stop_sent_at is None:
                self._send_stop(client, stop)
                stop_sent_at = time.monotonic()
            if (stop_sent_at is not None and placed is None and not future.done()
                    and time.monotonic() - stop_sent_at >= UNSTARTED_STOP_S):
                # Still waiting for a free worker: withdraw it (a task that starts now sees the stop at once).
                _quietly(lambda: client.sync(client._cancel, [future], callback_timeout=CALL_TIMEOUT_S))
                emit(_cancelled_before_start())
                return
            done = future.done()
            asked = time.monotonic()
            try:
                # batch=True answers at once (a scheduler-side wait with a timeout logs an error there
                # each time it times out), so the queue is polled.
                items = queue.get(batch=True, callback_timeout=CALL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - the queue lives on the scheduler
                if future.status == "cancelled" or not self._client_ok():
                    raise SchedulerUnreachableError(
                        f"lost the connection to the Dask scheduler at {self.address} while the job ran: "
                        f"{one_line(exc)}", address=self.address) from None
                if isinstance(exc, TimeoutError) and time.monotonic() - asked >= CALL_TIMEOUT_S:
                    raise SchedulerUnreachableError(
                        f"the Dask scheduler at {self.address} stopped answering while the job ran",
                        address=self.address) from None
                raise ClusterError(f"the job's event queue on the Dask scheduler failed: {one_line(exc)}") from None
            if not items and not done:
                time.sleep(QUEUE_POLL_S)
            for item in items:
                kind = item.get("kind")
                if kind == "placed":
                    if placed is not None:
                        raise lost("the job was restarted on another worker after its worker died")
                    placed = item
                    emit(Placed(item["where"]))
                elif kind == "checkpoint":
                    emit(CheckpointReady(epoch=int(item["epoch"]), final=bool(item["final"]),
                                         payload=bytes(item["payload"])))
                else:
                    emit(event_from_dict(item))
            if done:
                break
            if placed is not None and time.monotonic() - last_check >= WORKER_CHECK_S:
                last_check = time.monotonic()
                if not self._worker_present(client, placed["worker"]) and not future.done():
                    raise lost("it left the cluster")

        status = future.status
        if status == "finished":
            if future.result(timeout=CALL_TIMEOUT_S) == "stopped before start":
                emit(_cancelled_before_start())
            return
        if status == "cancelled":
            if cancel.is_set():
                emit(_cancelled_before_start())
                return
            raise SchedulerUnreachableError(
                f"lost the connection to the Dask scheduler at {self.address} while the job ran",
                address=self.address)
        exc = future.exception(timeout=CALL_TIMEOUT_S)
        if type(exc).__name__ == "KilledWorker":
            if placed is None:
                last = getattr(getattr(exc, "last_worker", None), "address", "") or ""
                placed = {"name": last, "worker": last}
            raise lost("its process died")
        where = _worker_label(placed["name"], placed["worker"]) if placed else "a Dask worker"
        hint = ("; start workers in an MF Studio checkout with PYTHONPATH=. and its requirements installed "
                "(README, Cluster)") if isinstance(exc, ImportError) else ""
        raise ClusterError(f"the job failed on {where}: {one_line(exc)}{hint}")

    def _worker_present(self, client: Any, address: str) -> bool:
        """Whether ``address`` is in the cluster (a shared, second-old view; a miss is asked again)."""
        try:
            if address in self._worker_table(client, max_age=WORKER_CHECK_S):
                return True
            return address in self._worker_table(client)  # the view may predate the worker's arrival
        except Exception:  # noqa: BLE001 - the scheduler is away: the queue or the future says so next
            return True

    def _send_stop(self, client: Any, stop: Any) -> None:
        try:
            self._call(client, "event_set", name=stop.name)
        except Exception as exc:  # noqa: BLE001 - the scheduler is gone: the job ends with it
            log.warning("could not send stop to %s: %s", stop.name, one_line(exc))

    def _cleanup(self, client: Any, future: Any, queue: Any, stop: Any) -> None:
        """Release the job's task, queue and stop event on the scheduler."""
        if not self._client_ok():
            return
        _quietly(future.release)
        _quietly(queue.close)
        _quietly(lambda: self._call(client, "event_clear", name=stop.name))

    def status(self) -> ClusterStatus:
        try:
            client = self._ensure_client(wait=False)
            workers = self._worker_table(client)
            processing = self._call(client, "processing")
        except MFError as exc:
            return ClusterStatus("dask", self.address, [], error=str(exc))
        except Exception as exc:  # noqa: BLE001
            return ClusterStatus("dask", self.address, [], error=self._unreachable(one_line(exc)))
        rows = []
        for address, w in sorted(workers.items(), key=lambda kv: str(kv[1].get("name", kv[0]))):
            threads = int(w.get("nthreads", 0))
            busy = min(len(processing.get(address, ()) or ()), threads)
            rows.append(WorkerInfo(name=str(w.get("name", address)), address=address, threads=threads,
                                   gpus=_gpus(w), busy=busy))
        return ClusterStatus("dask", self.address, rows)

    def close(self) -> None:
        """Disconnect, after up to CLOSE_WAIT_S for running jobs to end (the runner stops them first)."""
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=CLOSE_WAIT_S)
        with self._connect_lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            _close_quietly(client)


def _cancelled_before_start() -> RunFinished:
    return RunFinished(reason="cancelled", epochs_run=0, best_epoch=0, metrics={}, train_seconds=0.0,
                       examples_per_second=0.0, device="")


def _gpus(worker: dict) -> int:
    try:
        return int(float((worker.get("resources") or {}).get("GPU", 0)))
    except (TypeError, ValueError):
        return 0


def _worker_label(name: Any, address: str) -> str:
    name = str(name)
    return address if not name or name == address else f"{name} ({address})"


def _probe(address: str, timeout: float) -> str:
    """Why a ``tcp://host:port`` cannot be reached now ("" when a TCP connection opens)."""
    parts = urlsplit(address)
    if parts.scheme != "tcp":
        return ""  # tls://, inproc:// ...: distributed's own connect says it
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return f"{address!r} is not an address of the form tcp://host:port"
    if not host or not port:
        return f"{address!r} is not an address of the form tcp://host:port"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as exc:
        return exc.strerror or one_line(exc)


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - clean-up of a job that already ended
        log.debug("dask clean-up: %s", one_line(exc))


def _close_quietly(client: Any) -> None:
    try:
        client.close(timeout=CALL_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        log.debug("closing the Dask client: %s", one_line(exc))


# ---------------------------------------------------------------------------- the worker side

_memo: OrderedDict[str, Any] = OrderedDict()
_memo_lock = threading.Lock()


def load_memoized(dataset: str) -> Any:
    """:func:`load_by_spec` with a small per-process memo keyed by the data's identity."""
    key = json.dumps(data_identity(dataset), default=str)
    with _memo_lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    data = load_by_spec(dataset)
    with _memo_lock:
        _memo[key] = data
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    return data


def _device_text(spec: JobSpec) -> str:
    from mfcore.device import describe_device, resolve_device

    requested = str(spec.runtime.get("device") or "auto")
    try:
        device = resolve_device(requested)
    except MFError:
        return f"{requested} (not available on this worker)"
    return "cpu" if device.type == "cpu" else describe_device(device)


def _plain(value: Any) -> Any:
    """msgpack-safe: numpy scalars as Python numbers, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (bytes, str)):
        return value.item()
    return value


def _checkpoint_bytes(item: CheckpointReady) -> bytes:
    from mfcore import checkpoint

    if item.payload is not None:
        return item.payload
    with tempfile.TemporaryDirectory(prefix="mfstudio-ckpt-") as folder:
        path = Path(folder) / "model.pt"
        checkpoint.save(item.trained, path)
        return path.read_bytes()


def _still_wanted(worker: Any, key: Any) -> bool:
    """Whether the worker still runs ``key`` for someone (not cancelled or released by the scheduler)."""
    try:
        task = worker.state.tasks.get(key)
    except Exception:  # noqa: BLE001 - the worker's internals moved: rely on the stop event alone
        return True
    return task is not None and task.state not in ("cancelled", "released", "forgotten")


def run_on_worker(spec: JobSpec, queue_name: str, stop_name: str) -> str:
    """The Dask task: train ``spec`` here, reporting into the queue, stopping on the event."""
    from distributed import Event, Queue, get_client, get_worker

    worker = get_worker()
    key = worker.get_current_task()
    client = get_client()
    queue = Queue(queue_name, client=client)
    stop = Event(stop_name, client=client)
    try:
        if stop.is_set():
            return "stopped before start"
        where = f"worker {_worker_label(worker.name, worker.address)} · {_device_text(spec)}"
        queue.put({"kind": "placed", "worker": worker.address, "name": str(worker.name), "where": where})

        finished = threading.Event()
        trainers: list[Any] = []
        stop_seen = threading.Event()
        guard = threading.Lock()

        def on_trainer(trainer: Any) -> None:
            with guard:
                trainers.append(trainer)
                if stop_seen.is_set():
                    trainer.cancel()

        def watch() -> None:
            while not finished.is_set():
                try:
                    asked = stop.wait(timeout=STOP_POLL_S)
                except Exception:  # noqa: BLE001 - scheduler briefly away: keep watching
                    asked = False
                    finished.wait(STOP_POLL_S)
                # Nobody wants the result any more (Future.cancel(), or the server's client went
                # away and the scheduler released the task): stop too rather than train on alone.
                if asked or not _still_wanted(worker, key):
                    with guard:
                        stop_seen.set()
                        for trainer in trainers:
                            trainer.cancel()
                    return

        watcher = threading.Thread(target=watch, name=f"mfstudio-stop-{spec.job_id}", daemon=True)
        watcher.start()
        last_sent = time.monotonic()

        def emit(item: Any) -> None:
            nonlocal last_sent
            if isinstance(item, CheckpointReady):
                if not item.final and time.monotonic() - last_sent < spec.checkpoint_every_s:
                    return
                queue.put({"kind": "checkpoint", "epoch": int(item.epoch), "final": bool(item.final),
                           "payload": _checkpoint_bytes(item)})
                last_sent = time.monotonic()
            elif isinstance(item, Placed):
                return  # said above, with the worker's address
            else:
                queue.put(_plain(event_to_dict(item)))

        try:
            run_job(spec, emit, load_data=load_memoized, on_trainer=on_trainer)
        finally:
            finished.set()
            watcher.join(timeout=2 * STOP_POLL_S + 1.0)
        return "done"
    finally:
        try:
            queue.close()
        except Exception:  # noqa: BLE001
            pass




def warm_up() -> float:
    """Pay a worker's one-off costs (imports, the default preset's compiled kernels) before its
    first job: :func:`mfcore.runs.job.warm_up`. ``client.run(warm_up)`` runs it on every worker."""
    from mfcore.runs.job import warm_up as warm_job

    return warm_job()


def dask_setup(worker: Any) -> None:
    """Dask's preload hook (a worker started with this module as its preload, bound to 127.0.0.1 in
    ``scripts/cluster.sh``): warm the worker up in the background at start."""
    threading.Thread(target=_warm_up_quietly, name="mfstudio-warm-up", daemon=True).start()


def _warm_up_quietly() -> None:
    try:
        log.info("MF Studio worker warmed up in %.1f s", warm_up())
    except Exception as exc:  # noqa: BLE001 - only a head start: the first job pays instead
        log.warning("MF Studio warm-up failed: %s", one_line(exc))


def _debug_pid() -> int:
    """For tests: the worker process's id (``client.run(_debug_pid)``)."""
    return os.getpid()


def _debug_running_tasks(dask_worker: Any) -> int:
    """For tests: task functions still running in this worker (``client.run(_debug_running_tasks)``)."""
    return len(dask_worker.active_threads)
