"""One training job, as any executor runs it: load by spec, split, train, emit.

:func:`run_job` is plain, picklable Python with no store and no UI: it runs in a job
runner's thread (:class:`~mfcore.runs.executors.LocalExecutor`) or on a Dask worker,
and reports everything through ``emit``:

* the trainer's events (``RunStarted``, ``EpochProgress``, ``EpochEnded``,
  ``RunFinished``, ``RunFailed``; a failure to load or split becomes a ``RunFailed``);
* :class:`CheckpointReady` after an epoch when ``checkpoint_every_s`` has passed, and
  once before ``RunFinished`` (the final weights), which the server writes into its
  run store.

Identical requests are recognised by :func:`request_key`: the data (by content where
it is a file), the split and its seed, and every model, training and runtime setting.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig, config_from_dict, config_to_dict
from mfcore.errors import MFError
from mfcore.events import EpochEnded, RunFailed, RunFinished

__all__ = ["JobSpec", "CancelToken", "CheckpointReady", "Placed", "run_job", "warm_up", "request_key", "data_identity", "load_by_spec",
           "one_line"]

ENV_DATA_DIR = "MFSTUDIO_DATA_DIR"
# Longest message stored for an unexpected error (one line in a status table).
MESSAGE_CHARS = 300


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to train one job (plain data: picklable, JSON-able)."""

    job_id: str
    dataset: str
    split: str
    seed: int
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    runtime: dict[str, Any] = field(default_factory=dict)
    checkpoint_every_s: float = 10.0
    resume_payload: bytes | None = None
    """A checkpoint file's bytes to start from (resuming an interrupted run), else None."""
    first_epoch: int = 1
    """The epoch to start at when resuming (the checkpoint's epochs + 1)."""

    @property
    def wants_gpu(self) -> bool:
        return str(self.runtime.get("device") or "").lower().startswith("cuda")


class CancelToken:
    """A stop request that calls back whoever registered (thread-safe, set once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def is_set(self) -> bool:
        return self._set

    def on_set(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the token is set (at once if it already is)."""
        with self._lock:
            if not self._set:
                self._callbacks.append(callback)
                return
        callback()


@dataclass(frozen=True)
class CheckpointReady:
    """A model to store as the job's checkpoint: a ``TrainedModel`` (same process) or its bytes."""

    epoch: int
    final: bool
    trained: Any = None
    """mfcore.recommender.TrainedModel, when the job runs in the server process."""
    payload: bytes | None = None
    """The checkpoint file's bytes, when it comes from another machine."""


@dataclass(frozen=True)
class Placed:
    """Where the job runs, e.g. ``local`` or ``worker tcp://127.0.0.1:40123``."""

    where: str


def one_line(exc: BaseException) -> str:
    """An exception as one short line (engine messages as they are; others with their type)."""
    text = str(exc).strip()
    if not isinstance(exc, MFError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    first = text.splitlines()[0] if text else text
    return first if len(first) <= MESSAGE_CHARS else first[: MESSAGE_CHARS - 1] + "…"


# ---------------------------------------------------------------------------- loading by spec


def load_by_spec(spec: str):
    """Load a dataset spec the way every job does: never downloading.

    Names are looked up in ``$MFSTUDIO_DATA_DIR`` and the download cache
    (``$MFSTUDIO_CACHE`` or ``~/.cache/mfstudio``); synthetic specs and paths as
    :func:`mfcore.data.sources.load_dataset` reads them.
    """
    from mfcore.data import download as dl
    from mfcore.data.sources import load_dataset

    folder = os.environ.get(ENV_DATA_DIR, "").strip() or None
    return load_dataset(_normalize(spec), data_dir=folder, cache_dir=dl.resolve_cache_dir(), download=False)


def _normalize(spec: str) -> str:
    spec = str(spec).strip()
    return spec.lower() if spec.lower().startswith(("ml-", "synthetic")) and ":" not in spec else spec


def data_identity(spec: str) -> list:
    """What names the data's content: a file's path, size and modification time, else the spec."""
    try:
        path = Path(spec).expanduser()
        if path.exists():
            st = path.stat()
            return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    except (OSError, ValueError):
        pass
    return [_normalize(spec)]


def request_key(dataset: str, split: str, seed: int, model_config: Any, train_config: Any, runtime: Any) -> str:
    """A hash naming one training computation: equal keys give equal results."""
    parts = {
        "data": data_identity(dataset),
        "split": str(split).strip().lower(),
        "seed": int(seed),
        "model": _as_dict(model_config),
        "train": _as_dict(train_config),
        "runtime": _as_dict(runtime),
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _as_dict(config: Any) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    return config_to_dict(config)


# ---------------------------------------------------------------------------- the job


def run_job(
    spec: JobSpec,
    emit: Callable[[Any], None],
    *,
    load_data: Callable[[str], Any] = load_by_spec,
    on_trainer: Callable[[Any], None] | None = None,
) -> None:
    """Train ``spec`` to its end, reporting through ``emit``; never raises for a failing run.

    ``on_trainer`` receives the :class:`~mfcore.training.trainer.Trainer` before training
    starts (to cancel it from elsewhere: ``trainer.cancel()`` stops within one batch).
    """
    from mfcore import checkpoint
    from mfcore.data.splits import make_split
    from mfcore.training.trainer import Trainer

    try:
        data = load_data(spec.dataset)
    except Exception as exc:  # noqa: BLE001 - any loader failure ends this job only
        emit(RunFailed(reason="error", message=f"could not load dataset {spec.dataset!r}: {one_line(exc)}",
                       epoch=0, device=""))
        return
    try:
        split = make_split(data, spec.split, spec.seed)
    except Exception as exc:  # noqa: BLE001
        emit(RunFailed(reason="error", message=f"could not make split {spec.split!r} of {spec.dataset!r}: "
                                               f"{one_line(exc)}", epoch=0, device=""))
        return
    try:
        from mfcore.limits import check_run

        check_run(data.n_users, data.n_items, int(split.n_train), config_from_dict(ModelConfig, spec.model_config),
                  config_from_dict(TrainConfig, spec.train_config))
    except MFError as exc:  # too large for this server: refused before any memory is taken
        emit(RunFailed(reason="error", message=one_line(exc), epoch=0, device=""))
        return
    try:
        resume_from = _read_checkpoint(spec.resume_payload) if spec.resume_payload else None
        trainer = Trainer(
            data, split,
            config_from_dict(ModelConfig, spec.model_config),
            config_from_dict(TrainConfig, spec.train_config),
            config_from_dict(RuntimeOptions, spec.runtime),
            resume_from=resume_from, first_epoch=spec.first_epoch,
        )
    except Exception as exc:  # noqa: BLE001 - e.g. DeviceError: CUDA asked for but absent
        emit(RunFailed(reason="error", message=one_line(exc), epoch=0, device=""))
        return
    if on_trainer is not None:
        on_trainer(trainer)

    def model_now(final: bool, epoch: int) -> CheckpointReady:
        trained = checkpoint.from_trainer(trainer, dataset=spec.dataset, split=spec.split)
        return CheckpointReady(epoch=epoch, final=final, trained=trained)

    last_checkpoint = time.monotonic()
    for event in trainer.run():
        if isinstance(event, RunFinished) and event.epochs_run >= 1:
            emit(model_now(True, event.epochs_run))
        emit(event)
        # Only at an epoch's end: the trainer's epoch clock is paused there, so the time
        # spent writing does not slow the measured examples per second.
        if isinstance(event, EpochEnded) and time.monotonic() - last_checkpoint >= spec.checkpoint_every_s:
            emit(model_now(False, event.epoch))
            last_checkpoint = time.monotonic()


def _read_checkpoint(payload: bytes):
    """A TrainedModel from a checkpoint file's bytes (through a temporary file: torch.load's checks apply)."""
    import tempfile

    from mfcore import checkpoint

    with tempfile.NamedTemporaryFile(suffix=".pt") as fh:
        fh.write(payload)
        fh.flush()
        return checkpoint.load(fh.name)


WARM_UP_SPEC = "synthetic:n_users=60,n_items=50,density=0.3,rank=4,noise=0.3,popularity_skew=1.0,seed=0"


def warm_up() -> float:
    """Pay a process's one-off costs before its first job: imports, the compiled kernels of
    the default preset (``mfcore.training.kernels.warm_up``) and one epoch of it on a tiny
    synthetic set through :func:`run_job`. Returns the seconds it took."""
    from mfcore.presets import PRESETS
    from mfcore.training.kernels import warm_up as warm_kernels

    started = time.monotonic()
    warm_kernels()
    default = PRESETS["default"]
    train = {**config_to_dict(default.train), "epochs": 1}
    if train.get("average_from") is not None:
        train["average_from"] = 1
    spec = JobSpec("warm-up", WARM_UP_SPEC, "random:0.1", 0, config_to_dict(default.model), train,
                   {"device": "cpu"}, checkpoint_every_s=1e9)
    run_job(spec, lambda item: None)
    return time.monotonic() - started
