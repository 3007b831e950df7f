"""The app's client of the job runner: one runner per server process, and page helpers.

Training never happens in a page script. Pages submit a
:class:`~mfcore.runs.runner.RunRequest` to the process-wide
:class:`~mfcore.runs.runner.JobRunner` (created once with ``st.cache_resource``) and
read :class:`~mfcore.runs.runner.RunSnapshot`\\ s back; a run keeps going when its
browser tab switches pages or closes, because it lives in the runner's job threads (or
on a Dask cluster when ``$MFSTUDIO_DASK_SCHEDULER`` is set).

Local jobs load data with the engine's loader (:func:`load_for_runner`: never
downloading) inside the runner's own thread-safe :class:`~mfcore.runs.runner.DatasetCache`.
The app's pages keep their own copies (``st.cache_resource`` in ``ui.datasets``), so a
dataset that is both trained on and shown is held twice. At server start a background
thread warms the compiled kernels and plotly (:func:`_warm_up`).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import streamlit as st

from mfcore.data.dataset import RatingData
from mfcore.errors import MFError, RunnerError
from mfcore.runs.store import ACTIVE_STATUSES, TERMINAL_STATUSES, RunStore, default_runs_dir

log = logging.getLogger(__name__)

# The live view redraws this often while a run is queued or running (seconds).
LIVE_INTERVAL_S = 1.0
# How long a stopping server waits for its job threads (each stops within one batch).
SHUTDOWN_WAIT_S = 2.0
# Datasets the runner keeps loaded (ml-25m takes ~1 GB; the app's own cache holds its copies).
RUNNER_DATA_CACHE = 3


# ---------------------------------------------------------------------------- redraw cost
REDRAW_LOG_ENV = "MFSTUDIO_REDRAW_LOG"  # a file: each live redraw appends "name<TAB>cpu s<TAB>wall s"
_redraw_lock = threading.Lock()


@contextmanager
def redraw_cost(name: str) -> Iterator[None]:
    """Measure one redraw of a live view: the script thread's CPU time (the benchmark's
    "server CPU per watching session per refresh"). Free unless ``$MFSTUDIO_REDRAW_LOG`` is set."""
    path = os.environ.get(REDRAW_LOG_ENV, "").strip()
    if not path:
        yield
        return
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    try:
        yield
    finally:
        line = f"{name}\t{time.thread_time() - cpu0:.6f}\t{time.perf_counter() - wall0:.6f}\n"
        with _redraw_lock, open(path, "a") as fh:
            fh.write(line)


# ---------------------------------------------------------------------------- data for workers
def load_for_runner(spec: str) -> RatingData:
    """Load a dataset spec for a training job: the engine's :func:`mfcore.runs.job.load_by_spec`
    (synthetic specs with knobs, MovieLens names in ``$MFSTUDIO_DATA_DIR`` or the download
    cache, paths; never downloads; the engine's size limits), as a Dask worker loads it too.
    Not cached here: the runner wraps it in its :class:`~mfcore.runs.runner.DatasetCache`.
    """
    from mfcore.runs.job import load_by_spec

    return load_by_spec(spec)


# ---------------------------------------------------------------------------- the runner
@st.cache_resource(show_spinner=False)
def _runner_for(runs_dir: str):
    from mfcore.runs.executors import make_executor
    from mfcore.runs.runner import DatasetCache, JobRunner, default_max_workers

    store = RunStore(runs_dir)
    executor = make_executor(default_max_workers(), DatasetCache(load_for_runner, max_items=RUNNER_DATA_CACHE))
    runner = JobRunner(store, executor=executor)
    # When the server stops: running jobs are cancelled within a batch and marked
    # interrupted (checkpoint kept), and their threads joined before the interpreter goes.
    atexit.register(runner.shutdown, True, SHUTDOWN_WAIT_S)
    from mfcore.sweeps import top_up_all

    runner.on_job_end(lambda: top_up_all(runner))  # a sweep goes on when its owner's page is closed
    if executor.kind == "local":
        threading.Thread(target=_warm_up, name="mfstudio-warm-up", daemon=True).start()
    return runner


def _warm_up() -> None:
    """At server start, off every page's path: plotly's first figure (~1 s) and the engine's
    warm-up (the default preset's compiled kernels, one tiny epoch), so a student's first
    Launch does not wait for them."""
    from mfcore.runs.job import warm_up

    try:
        from ui.run_charts import learning_curve

        learning_curve(None, {}, progress=[], epochs_planned=1, title="")
    except Exception:  # noqa: BLE001 - only a warm-up
        log.debug("chart warm-up failed", exc_info=True)
    try:
        log.info("kernels warm in %.2f s", warm_up())
    except Exception:  # noqa: BLE001 - a failed warm-up only costs the first run its compile time
        log.warning("kernel warm-up failed", exc_info=True)


def runs_dir() -> Path:
    """``$MFSTUDIO_RUNS_DIR`` or ``./runs``, absolute."""
    return default_runs_dir().resolve()


def get_runner():
    """The server process's :class:`JobRunner` (created on first use, then shared by all sessions).

    Keyed by the runs folder, so changing ``MFSTUDIO_RUNS_DIR`` (tests do) gets its own
    runner and store.
    """
    return _runner_for(str(runs_dir()))


def get_store() -> RunStore:
    """The runner's run store."""
    return get_runner().store


# ---------------------------------------------------------------------------- reading runs
def snapshot(run_id: str | None):
    """The run's snapshot, or None for no id / a deleted or unknown run."""
    if not run_id:
        return None
    try:
        return get_runner().snapshot(run_id)
    except RunnerError:
        return None


def wait_for_first_epoch(run_id: str, timeout_s: float):
    """The run's snapshot once it has an epoch, has ended, or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        snap = snapshot(run_id)
        if snap is None or snap.epochs_done >= 1 or not is_active(snap.status) or time.monotonic() >= deadline:
            return snap
        if snap.status == "queued" and (snap.queue_position or 0) > 1:
            return snap  # others are ahead: no point waiting here
        time.sleep(0.02)


def is_final(status: str | None) -> bool:
    return status in TERMINAL_STATUSES


def is_active(status: str | None) -> bool:
    return status in ACTIVE_STATUSES


# Material icons (bundled with Streamlit; emoji need a font many Linux browsers lack).
STATUS_ICONS = {
    "queued": ":material/hourglass_top:",
    "running": ":material/directions_run:",
    "finished": ":material/check_circle:",
    "stopped": ":material/stop_circle:",
    "failed": ":material/error:",
    "interrupted": ":material/warning:",
}


def status_text(status: str) -> str:
    """Status with its icon, for markdown (headers, captions, buttons, select labels)."""
    return f"{STATUS_ICONS.get(status, '')} {status}".strip()


def duration(seconds: float | None) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``, None/NaN -> ``"–"``."""
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def rate(value: float | None) -> str:
    """Ratings per second, short: 1234567 -> '1.23 M/s'."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return "–"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}/s"
    return f"{value:.0f} /s"


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "–"


def latest_test_rmse(snap) -> float | None:
    """Final metric if there is one, else the last epoch's test RMSE."""
    value = (getattr(snap, "metrics", None) or {}).get("test_rmse")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    h = getattr(snap, "history", None)
    if h is not None and len(h) and "test_rmse" in h:
        last = h["test_rmse"].iloc[-1]
        if isinstance(last, (int, float)) and math.isfinite(last):
            return float(last)
    return None


def failure_advice(message: str) -> str:
    """What to change, for a failed run's message (the engine's messages already name a fix)."""
    text = (message or "").lower()
    if "diverged" in text or "nan" in text or "infinite" in text:
        return ("Lower the learning rate (by 10x), add L2 regularisation, or use an adaptive optimizer "
                "(adam/adagrad); with momentum, lower it too.")
    if "memory" in text:
        return "Use fewer factors, a smaller batch size or a smaller dataset."
    if "cuda" in text or "device" in text or "mps" in text:
        return "Choose device 'auto' or 'cpu'."
    if "not found" in text or "no such" in text or "dataset" in text:
        return "Open the Data page and choose a dataset that is available on this machine."
    return "Check the hyperparameters named in the message and launch again."


# ---------------------------------------------------------------------------- within-epoch points
PROGRESS_POINTS = "jobs__progress_points"  # session key: run_id -> list of progress dicts
_MAX_POINTS = 2_000


def remember_progress(run_id: str, progress: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Collect a run's within-epoch progress across live redraws (per browser session).

    The runner keeps only the latest progress; the live chart wants the points of long
    epochs, so each redraw appends the new one. Returns all points of the run.
    """
    store = st.session_state.setdefault(PROGRESS_POINTS, {})
    points = store.setdefault(run_id, [])
    if progress and progress.get("total"):
        key = (progress.get("epoch"), progress.get("done"))
        if not points or (points[-1].get("epoch"), points[-1].get("done")) != key:
            points.append({k: progress.get(k) for k in ("epoch", "done", "total", "train_loss")})
            del points[:-_MAX_POINTS]
    # Keep only a few runs' points per session.
    for old in list(store)[:-5]:
        if old != run_id:
            store.pop(old, None)
    return points


__all__ = [
    "LIVE_INTERVAL_S", "PROGRESS_POINTS", "STATUS_ICONS", "duration", "failure_advice", "fmt", "get_runner",
    "get_store", "is_active", "is_final", "latest_test_rmse", "load_for_runner", "rate", "remember_progress",
    "runs_dir", "snapshot", "status_text",
]
