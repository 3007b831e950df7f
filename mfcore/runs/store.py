"""The run store: every training run, its per-epoch metrics and its live progress, in SQLite.

The store is the source of truth the app's pages read from; the job runner only writes
into it. One file, ``<runs_dir>/runs.sqlite``, with checkpoints beside it as
``<runs_dir>/<run_id>.pt``. ``runs_dir`` defaults to ``$MFSTUDIO_RUNS_DIR`` or ``./runs``.

Concurrency: several worker threads, page reads and a second process may use one file
at once. Each thread gets its own connection (``threading.local``); the database runs
in WAL mode (readers never block the writer) with a busy timeout, and every write is
one ``BEGIN IMMEDIATE`` transaction, so a writer waits for the lock instead of failing
with "database is locked" and a failed write rolls back without touching what was
already stored.

Statuses::

    queued -> running -> finished | stopped | failed
    queued -> stopped                      (stopped before it started)
    queued | running -> interrupted        (the process running it died)

An unknown run id raises :class:`~mfcore.errors.RunnerError` everywhere.
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from mfcore.config import config_to_dict
from mfcore.errors import RunnerError, StoreError
from mfcore.runs import store_health
from mfcore.runs.access import Actor, check_may_change
from mfcore.events import EpochEnded, EpochProgress, Event, RunFailed, RunFinished, RunStarted

__all__ = [
    "RUNS_DIR_ENV",
    "DB_NAME",
    "SCHEMA_VERSION",
    "STATUSES",
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "EPOCH_COLUMNS",
    "PROGRESS_KEYS",
    "RunRecord",
    "RunStore",
    "default_runs_dir",
    "process_identity",
    "interrupted_message",
]

RUNS_DIR_ENV = "MFSTUDIO_RUNS_DIR"
DB_NAME = "runs.sqlite"
SCHEMA_VERSION = 2

STATUSES = ("queued", "running", "finished", "stopped", "failed", "interrupted")
ACTIVE_STATUSES = ("queued", "running")
TERMINAL_STATUSES = ("finished", "stopped", "failed", "interrupted")

EPOCH_COLUMNS = ("epoch", "train_loss", "test_rmse", "test_mae", "seconds", "examples_per_second", "elapsed_s", "lr")
PROGRESS_KEYS = ("epoch", "done", "total", "train_loss", "examples_per_second", "elapsed_s", "updated_at")

# Longest run label kept (a table cell).
_LABEL_CHARS = 80

# How long a writer waits for another writer's lock before giving up (seconds).
BUSY_TIMEOUT_S = 30.0

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    owner TEXT NOT NULL DEFAULT '',
    label TEXT NOT NULL DEFAULT '',
    dataset TEXT NOT NULL,
    split TEXT NOT NULL,
    seed INTEGER NOT NULL,
    model_config TEXT NOT NULL,
    train_config TEXT NOT NULL,
    runtime TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    message TEXT NOT NULL DEFAULT '',
    device TEXT NOT NULL DEFAULT '',
    baselines TEXT NOT NULL DEFAULT '{{}}',
    metrics TEXT NOT NULL DEFAULT '{{}}',
    checkpoint_path TEXT,
    train_seconds REAL,
    n_train INTEGER,
    n_test INTEGER,
    epochs_planned INTEGER NOT NULL,
    best_epoch INTEGER,
    process TEXT,          -- host:pid:start of the process that queued/runs it (liveness check)
    owner_name TEXT NOT NULL DEFAULT '',
    request_key TEXT,      -- hash of data, split, seed and every setting (identical requests share)
    shared_from TEXT,      -- the run whose computation this one shares ("same as run X")
    placement TEXT NOT NULL DEFAULT '',  -- where it ran: local, or a Dask worker and device
    sweep_id TEXT          -- the sweep this run is a point of, if any
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_by_owner ON runs (owner, created_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE TABLE IF NOT EXISTS profiles (
    owner TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    prefs TEXT NOT NULL DEFAULT '{{}}',
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS user_ratings (
    owner TEXT NOT NULL,
    dataset TEXT NOT NULL,
    item TEXT NOT NULL,     -- the raw item id as JSON (ids keep their type)
    rating REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (owner, dataset, item)
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    train_loss REAL,
    test_rmse REAL,
    test_mae REAL,
    seconds REAL,
    examples_per_second REAL,
    elapsed_s REAL,
    lr REAL,
    ended_at REAL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS progress (
    run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    done INTEGER NOT NULL,
    total INTEGER NOT NULL,
    train_loss REAL,
    examples_per_second REAL,
    elapsed_s REAL,
    updated_at REAL NOT NULL
);
"""

# Columns of a run row plus the two derived ones every listing needs.
_SELECT_RUNS = """
SELECT runs.*,
       (SELECT COUNT(*) FROM epochs e WHERE e.run_id = runs.id) AS epochs_done,
       p.epoch AS p_epoch, p.done AS p_done, p.total AS p_total, p.train_loss AS p_train_loss,
       p.examples_per_second AS p_examples_per_second, p.elapsed_s AS p_elapsed_s,
       p.updated_at AS p_updated_at
FROM runs LEFT JOIN progress p ON p.run_id = runs.id
"""


# Columns added after schema version 1 (a version-1 database gains them on open).
_ADDED_COLUMNS = {
    "owner_name": "TEXT NOT NULL DEFAULT ''",
    "request_key": "TEXT",
    "shared_from": "TEXT",
    "placement": "TEXT NOT NULL DEFAULT ''",
    "sweep_id": "TEXT",
}


def default_runs_dir() -> Path:
    """``$MFSTUDIO_RUNS_DIR`` if set, else ``./runs``."""
    return Path(os.environ.get(RUNS_DIR_ENV, "").strip() or "runs")


def interrupted_message(epochs_done: int, checkpoint_epoch: int | None = -1) -> str:
    """The message of a run whose process died (or shut down) while it trained.

    ``checkpoint_epoch``: the epoch of the model its checkpoint holds (None: no checkpoint
    was written; -1: not known, as when the run's own final checkpoint was written).
    """
    done = "1 epoch was" if epochs_done == 1 else f"{epochs_done:,} epochs were"
    message = f"the server stopped during training; {done} completed"
    if checkpoint_epoch is None:
        return message + "; no checkpoint was written, so there is no model to inspect"
    if 0 <= checkpoint_epoch < epochs_done:
        return message + f"; kept: the checkpoint from epoch {checkpoint_epoch:,} (the model the inspect pages show)"
    return message


@dataclass(frozen=True)
class RunRecord:
    """One stored run, with its JSON columns parsed (configs as plain dicts)."""

    id: str
    created_at: float
    """Unix time of submission."""
    started_at: float | None
    finished_at: float | None
    owner: str
    """Browser session id of whoever submitted it ("" = anonymous, e.g. the CLI)."""
    label: str
    dataset: str
    """Dataset spec given to ``load_dataset``."""
    split: str
    """Split spec, e.g. ``random:0.1``."""
    seed: int
    """Seed of the split."""
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    runtime: dict[str, Any]
    status: str
    message: str
    """Why it failed / was interrupted and what to change; a short note otherwise."""
    device: str
    baselines: dict[str, float]
    metrics: dict[str, float]
    checkpoint_path: str | None
    """Absolute path of the latest checkpoint, or None if none was written yet."""
    train_seconds: float | None
    n_train: int | None
    n_test: int | None
    epochs_planned: int
    best_epoch: int | None
    epochs_done: int
    """Completed epochs (rows in the epochs table)."""
    progress: dict[str, Any] | None
    """Latest within-epoch progress (keys ``PROGRESS_KEYS``), None between epochs."""
    process: str | None = None
    owner_name: str = ""
    """The owner's display name when the run was launched (or last renamed by them)."""
    request_key: str | None = None
    shared_from: str | None = None
    """The run whose computation (and stored result) this one shares, if any."""
    placement: str = ""
    """Where it ran: "local", or "worker <address> · <device>" on a Dask cluster."""
    sweep_id: str | None = None
    """The sweep this run is a point of (runs of one sweep share it)."""
    damaged: tuple[str, ...] = ()
    """Columns of this run's row whose JSON is damaged (read as empty; the row is left as it is)."""

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def who(self) -> str:
        """The owner's name for display ("cli" for runs without an owner, "unnamed" before names existed)."""
        return self.owner_name or ("cli" if not self.owner else "unnamed")


# ---------------------------------------------------------------------------- process identity


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks after boot (Linux), "?" where unknown.

    Together with the pid it tells a live process from a later one that reused the pid
    (a restarted container often gets the same small pid again).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return stat.rsplit(")", 1)[1].split()[19]  # field 22; fields after ")" start at 3
    except (OSError, IndexError):
        return "?"


_PROCESS: tuple[int, str] | None = None


def process_identity() -> str:
    """``host:pid:start`` of this process (recomputed after a fork)."""
    global _PROCESS
    pid = os.getpid()
    if _PROCESS is None or _PROCESS[0] != pid:
        _PROCESS = (pid, f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}")
    return _PROCESS[1]


def _process_alive(identity: str | None) -> bool:
    """Whether the process named by ``identity`` still runs.

    Runs of another host count as dead: one runs folder belongs to one machine (SQLite
    over a network file system is not supported anyway).
    """
    if not identity:
        return False
    if identity == process_identity():
        return True
    host, _, rest = identity.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or os.name == "nt":
        return False  # (os.kill(pid, 0) would terminate the process on Windows)
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    return start in ("", "?") or _start_ticks(pid) in ("?", start)


# ---------------------------------------------------------------------------- the store


class RunStore:
    """Runs, epochs and progress in one SQLite file; safe for threads and processes.

    Args:
        runs_dir: folder of the database and the checkpoints (created if missing);
            None = ``$MFSTUDIO_RUNS_DIR`` or ``./runs``.
        busy_timeout_s: how long a write waits for another writer before failing.
    """

    def __init__(self, runs_dir: str | Path | None = None, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.runs_dir = Path(runs_dir if runs_dir is not None else default_runs_dir()).resolve()
        self.db_path = self.runs_dir / DB_NAME
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a read-only parent (issue 11)
            what = "is a file, not a folder" if self.runs_dir.exists() else (exc.strerror or str(exc))
            raise StoreError(f"the runs folder {self.runs_dir} cannot be used ({what}); point "
                             f"{RUNS_DIR_ENV} at a writable folder", path=self.runs_dir, kind="unreadable") from None
        self.busy_timeout_s = float(busy_timeout_s)
        self._local = threading.local()
        store_health.check_header(self.db_path)  # only reads; damage -> StoreError naming the file
        self._checked = False  # the first connection checks the contents before anything writes
        self._init_schema()

    def __repr__(self) -> str:
        return f"RunStore({str(self.runs_dir)!r})"

    # -- connections and transactions ------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: no implicit transactions; _write() opens them explicitly.
            conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout_s, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            if not self._checked:  # quick_check and schema version, before the WAL switch writes the header
                store_health.check_contents(conn, self.db_path, SCHEMA_VERSION)
                self._checked = True
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across process crashes
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock up front (waiting up to
        the busy timeout), so a transaction never fails half-way on a lock upgrade."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (other threads' close when those threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _init_schema(self) -> None:
        with self._write() as conn:
            # (executescript would COMMIT the open transaction: run the statements one by one)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
            version = row["v"]
            if version is not None and version > SCHEMA_VERSION:
                raise RunnerError(
                    f"{self.db_path}: the runs database has schema version {version}, newer than this "
                    f"MF Studio understands ({SCHEMA_VERSION}); upgrade MF Studio or use another runs folder"
                )
            have = {r["name"] for r in conn.execute("PRAGMA table_info(runs)").fetchall()}
            for column, decl in _ADDED_COLUMNS.items():
                if column not in have:  # a version-1 database: add, never drop
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {decl}")
            conn.execute("CREATE INDEX IF NOT EXISTS runs_by_request ON runs (request_key, status)")
            if version is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version < SCHEMA_VERSION:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # -- paths -----------------------------------------------------------------------------
    def checkpoint_path_for(self, run_id: str) -> Path:
        """Where a run's checkpoint goes: ``<runs_dir>/<run_id>.pt``."""
        return self.runs_dir / f"{run_id}.pt"

    def _abs_checkpoint(self, stored: str | None) -> str | None:
        if not stored:
            return None
        path = Path(stored)
        return str(path if path.is_absolute() else self.runs_dir / path)

    # -- writing ---------------------------------------------------------------------------
    def create_run(
        self,
        *,
        dataset: str,
        split: str,
        seed: int,
        model_config: Any,
        train_config: Any,
        runtime: Any = None,
        owner: str = "",
        label: str = "",
        epochs_planned: int | None = None,
        status: str = "queued",
        process: str | None = None,
        run_id: str | None = None,
        owner_name: str = "",
        request_key: str | None = None,
        shared_from: str | None = None,
        sweep_id: str | None = None,
    ) -> RunRecord:
        """Insert a new run and return it.

        Configs may be the dataclasses or dicts. ``epochs_planned`` defaults to the train
        config's ``epochs``. ``process`` (see :func:`process_identity`) marks the run as
        owned by a live process, so :meth:`mark_interrupted` elsewhere leaves it alone.
        """
        _check_status(status)
        mc, tc, rt = _as_dict(model_config), _as_dict(train_config), _as_dict(runtime)
        if epochs_planned is None:
            epochs_planned = int(tc.get("epochs", 0))
        run_id = run_id or uuid.uuid4().hex[:12]
        now = time.time()
        with self._write() as conn:
            conn.execute(
                """INSERT INTO runs (id, created_at, owner, label, dataset, split, seed, model_config,
                   train_config, runtime, status, epochs_planned, process, owner_name, request_key, shared_from,
                   sweep_id)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (run_id, now, owner, label, dataset, split, int(seed), _dumps(mc), _dumps(tc), _dumps(rt),
                 status, int(epochs_planned), process, owner_name, request_key, shared_from, sweep_id),
            )
        return self.get(run_id)

    def update_status(
        self,
        run_id: str,
        status: str,
        message: str | None = None,
        *,
        only_from: Iterable[str] | None = None,
        process: str | None = None,
    ) -> bool:
        """Set a run's status (and message, when given).

        With ``only_from`` the change happens only if the current status is one of them
        (an atomic compare-and-set: e.g. claim a queued run). Returns whether it changed.
        Entering ``running`` sets ``started_at``; a terminal status sets ``finished_at``
        and clears the in-epoch progress.
        """
        _check_status(status)
        now = time.time()
        with self._write() as conn:
            current = _status_of(conn, run_id)
            if only_from is not None and current not in tuple(only_from):
                return False
            sets = ["status = ?"]
            args: list[Any] = [status]
            if message is not None:
                sets.append("message = ?")
                args.append(message)
            if process is not None:
                sets.append("process = ?")
                args.append(process)
            if status == "running":
                sets.append("started_at = COALESCE(started_at, ?)")
                args.append(now)
            if status in TERMINAL_STATUSES:
                sets.append("finished_at = ?")
                args.append(now)
                conn.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
            conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))
        return True

    def set_message(self, run_id: str, message: str) -> None:
        """Replace a run's message (e.g. "loading the dataset")."""
        with self._write() as conn:
            _status_of(conn, run_id)
            conn.execute("UPDATE runs SET message = ? WHERE id = ?", (message, run_id))

    def set_checkpoint(self, run_id: str, path: str | Path | None) -> None:
        """Record where the run's latest checkpoint is (stored relative to ``runs_dir`` when inside it)."""
        stored = None
        if path is not None:
            p = Path(path).resolve()
            stored = str(p.relative_to(self.runs_dir)) if p.is_relative_to(self.runs_dir) else str(p)
        with self._write() as conn:
            _status_of(conn, run_id)
            conn.execute("UPDATE runs SET checkpoint_path = ? WHERE id = ?", (stored, run_id))

    def record_event(self, run_id: str, event: Event) -> None:
        """Store one trainer event.

        RunStarted -> running, device, baselines, sizes; EpochProgress -> the progress row;
        EpochEnded -> an epochs row; RunFinished -> finished (``stopped`` when the reason
        is "cancelled") with the metrics; RunFailed -> failed with its message. Status
        changes only apply to a run that is still queued or running, so a late event
        never overwrites a final state.
        """
        now = time.time()
        active = tuple(ACTIVE_STATUSES)
        with self._write() as conn:
            status = _status_of(conn, run_id)
            is_active = status in active
            if isinstance(event, EpochProgress):
                if is_active:
                    conn.execute(
                        """INSERT OR REPLACE INTO progress (run_id, epoch, done, total, train_loss,
                           examples_per_second, elapsed_s, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                        (run_id, event.epoch, event.done, event.total, event.train_loss,
                         event.examples_per_second, event.elapsed_s, now),
                    )
            elif isinstance(event, EpochEnded):
                conn.execute(
                    """INSERT OR REPLACE INTO epochs (run_id, epoch, train_loss, test_rmse, test_mae, seconds,
                       examples_per_second, elapsed_s, lr, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (run_id, event.epoch, event.train_loss, event.test_rmse, event.test_mae, event.seconds,
                     event.examples_per_second, event.elapsed_s, event.lr, now),
                )
                conn.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
            elif isinstance(event, RunStarted):
                if is_active:
                    conn.execute(
                        """UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), device = ?,
                           baselines = ?, n_train = ?, n_test = ?, epochs_planned = ?, message = ''
                           WHERE id = ?""",
                        (now, event.device, _dumps(event.baselines), event.n_train, event.n_test, event.epochs,
                         run_id),
                    )
            elif isinstance(event, RunFinished):
                if is_active:
                    stopped = event.reason == "cancelled"
                    conn.execute(
                        """UPDATE runs SET status = ?, finished_at = ?, metrics = ?, train_seconds = ?,
                           best_epoch = ?, device = ?, message = ? WHERE id = ?""",
                        ("stopped" if stopped else "finished", now, _dumps(event.metrics), event.train_seconds,
                         event.best_epoch or None, event.device, _finished_message(event, conn, run_id), run_id),
                    )
                    conn.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
            elif isinstance(event, RunFailed):
                if is_active:
                    conn.execute(
                        """UPDATE runs SET status = 'failed', finished_at = ?, message = ?,
                           device = CASE WHEN ? IN ('', '?') THEN device ELSE ? END WHERE id = ?""",
                        (now, event.message, event.device, event.device, run_id),
                    )
                    conn.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
            else:
                raise RunnerError(f"cannot store an event of type {type(event).__name__}")

    def mark_interrupted(self) -> int:
        """Mark runs left queued/running by a dead process as ``interrupted``; returns how many.

        Call on start-up. Completed epochs (and any checkpoint) are kept; the message says
        how many epochs were completed. Runs owned by a process that is still alive (this
        one, or another server on this machine using the same folder) are left alone.
        """
        now = time.time()
        count = 0
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, status, process, checkpoint_path FROM runs WHERE status IN ('queued', 'running')"
            ).fetchall()
            for row in rows:
                if _process_alive(row["process"]):
                    continue
                if row["status"] == "queued":
                    message = "the server stopped before this run started; submit it again"
                else:
                    done = conn.execute("SELECT COUNT(*) FROM epochs WHERE run_id = ?", (row["id"],)).fetchone()[0]
                    message = interrupted_message(int(done), _checkpoint_epoch(self._abs_checkpoint(row["checkpoint_path"])))
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', message = ?, finished_at = ? WHERE id = ?",
                    (message, now, row["id"]),
                )
                conn.execute("DELETE FROM progress WHERE run_id = ?", (row["id"],))
                count += 1
        return count

    def delete(self, run_id: str, actor: Actor) -> None:
        """Delete a run, its epochs, its progress and its checkpoint file.

        Only the run's owner or a teacher may (:class:`~mfcore.runs.access.PermissionDenied`
        otherwise). A queued or running run cannot be deleted (stop it first): its worker
        would go on writing into a run that no longer exists.
        """
        with self._write() as conn:
            status = _status_of(conn, run_id)
            owner = conn.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            check_may_change(actor, owner, run_id, "delete")
            if status in ACTIVE_STATUSES:
                raise RunnerError(f"run {run_id} is still {status}; stop it before deleting it")
            stored = conn.execute("SELECT checkpoint_path FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        # The file goes only after the rows are gone for good (a failed delete keeps both).
        for path in {self._abs_checkpoint(stored), str(self.checkpoint_path_for(run_id))}:
            if path:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def rename(self, run_id: str, label: str, actor: Actor) -> None:
        """Change a run's label (its owner or a teacher only)."""
        label = " ".join(str(label).split())[:_LABEL_CHARS]
        with self._write() as conn:
            _status_of(conn, run_id)
            owner = conn.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            check_may_change(actor, owner, run_id, "rename")
            conn.execute("UPDATE runs SET label = ? WHERE id = ?", (label, run_id))

    def prepare_resume(self, run_id: str, kept_epochs: int, message: str, *, process: str | None = None) -> None:
        """Queue an ended run again, keeping its first ``kept_epochs`` epochs (a system write;
        the runner checks who may resume)."""
        with self._write() as conn:
            _status_of(conn, run_id)
            conn.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, int(kept_epochs)))
            conn.execute("DELETE FROM progress WHERE run_id = ?", (run_id,))
            conn.execute(
                """UPDATE runs SET status = 'queued', message = ?, finished_at = NULL, metrics = '{}',
                   best_epoch = NULL, process = COALESCE(?, process) WHERE id = ?""",
                (message, process, run_id),
            )

    def set_placement(self, run_id: str, placement: str) -> None:
        """Record where a run executes (a system write)."""
        with self._write() as conn:
            _status_of(conn, run_id)
            conn.execute("UPDATE runs SET placement = ? WHERE id = ?", (placement, run_id))

    def set_owner_name(self, owner: str, name: str) -> int:
        """Show ``name`` on every run of ``owner`` (after they chose a name); returns how many."""
        with self._write() as conn:
            return conn.execute("UPDATE runs SET owner_name = ? WHERE owner = ?", (name, owner)).rowcount

    def clone_run(
        self,
        source_id: str,
        *,
        owner: str,
        owner_name: str = "",
        label: str = "",
        message: str = "",
        process: str | None = None,
        with_result: bool,
        sweep_id: str | None = None,
    ) -> RunRecord:
        """A new run of ``owner`` sharing ``source_id``'s computation.

        ``with_result``: copy its status, metrics, epochs and checkpoint (a hard link, so
        deleting either run keeps the other's file); else a queued run with the same
        request and the epochs completed so far (a follower of a running job).
        """
        new_id = uuid.uuid4().hex[:12]
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (source_id,)).fetchone()
            if row is None:
                raise _unknown(source_id)
            status = row["status"] if with_result else "queued"
            conn.execute(
                """INSERT INTO runs (id, created_at, started_at, finished_at, owner, label, dataset, split, seed,
                   model_config, train_config, runtime, status, message, device, baselines, metrics, train_seconds,
                   n_train, n_test, epochs_planned, best_epoch, process, owner_name, request_key, shared_from,
                   placement)
                   SELECT ?, ?, started_at, CASE WHEN ? THEN ? ELSE NULL END, ?, ?, dataset, split, seed,
                   model_config, train_config, runtime, ?, ?, device, baselines,
                   CASE WHEN ? THEN metrics ELSE '{}' END, CASE WHEN ? THEN train_seconds ELSE NULL END,
                   n_train, n_test, epochs_planned, CASE WHEN ? THEN best_epoch ELSE NULL END, ?, ?, request_key, ?,
                   placement
                   FROM runs WHERE id = ?""",
                (new_id, now, with_result, now, owner, label or row["label"], status, message, with_result,
                 with_result, with_result, process, owner_name, source_id, source_id),
            )
            if not with_result and row["status"] != "running":
                conn.execute("UPDATE runs SET started_at = NULL WHERE id = ?", (new_id,))
            conn.execute("UPDATE runs SET sweep_id = ? WHERE id = ?", (sweep_id, new_id))
            conn.execute(
                f"""INSERT INTO epochs (run_id, {', '.join(EPOCH_COLUMNS)}, ended_at)
                    SELECT ?, {', '.join(EPOCH_COLUMNS)}, ended_at FROM epochs WHERE run_id = ?""",
                (new_id, source_id),
            )
            stored = row["checkpoint_path"]
        if with_result and stored:
            self.link_checkpoint(new_id, self._abs_checkpoint(stored))
        return self.get(new_id)

    def link_checkpoint(self, run_id: str, source: str | Path | None) -> None:
        """Give ``run_id`` its own copy of the checkpoint file ``source`` (a hard link where possible)."""
        if not source or not os.path.isfile(source):
            return
        target = self.checkpoint_path_for(run_id)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            os.link(source, tmp)
        except OSError:
            import shutil

            shutil.copyfile(source, tmp)
        os.replace(tmp, target)  # atomic: readers see the old or the new file
        self.set_checkpoint(run_id, target)

    def find_reusable(self, request_key: str) -> RunRecord | None:
        """The newest finished run of this request whose checkpoint is on disk, if any."""
        rows = self._conn().execute(
            _SELECT_RUNS + " WHERE runs.request_key = ? AND runs.status = 'finished' ORDER BY runs.created_at DESC",
            (request_key,),
        ).fetchall()
        for row in rows:
            record = self._record(row)
            if record.checkpoint_path and os.path.isfile(record.checkpoint_path):
                return record
        return None

    # -- profiles: a person's name, choices and new-user ratings ---------------------------
    def profile(self, owner: str) -> dict[str, Any]:
        """``{"name": str, "prefs": dict}`` of ``owner`` (empty for someone new)."""
        row = self._conn().execute("SELECT name, prefs FROM profiles WHERE owner = ?", (owner,)).fetchone()
        if row is None:
            return {"name": "", "prefs": {}}
        return {"name": row["name"], "prefs": _loads(row["prefs"])}

    def save_profile(self, owner: str, *, name: str | None = None, prefs: dict[str, Any] | None = None) -> None:
        """Set ``owner``'s name and/or merge ``prefs`` into their stored choices."""
        if not owner:
            raise RunnerError("a profile needs an owner")
        with self._write() as conn:
            row = conn.execute("SELECT name, prefs FROM profiles WHERE owner = ?", (owner,)).fetchone()
            old_name, old_prefs = (row["name"], _loads(row["prefs"])) if row else ("", {})
            merged = {**old_prefs, **(prefs or {})}
            conn.execute(
                "INSERT OR REPLACE INTO profiles (owner, name, prefs, updated_at) VALUES (?, ?, ?, ?)",
                (owner, old_name if name is None else name, _dumps(merged), time.time()),
            )
            if name is not None and name != old_name:
                conn.execute("UPDATE runs SET owner_name = ? WHERE owner = ?", (name, owner))

    def user_ratings(self, owner: str, dataset: str) -> dict[Any, float]:
        """``owner``'s own ratings of ``dataset``'s items (raw item id -> rating), oldest first."""
        rows = self._conn().execute(
            "SELECT item, rating FROM user_ratings WHERE owner = ? AND dataset = ? ORDER BY updated_at, rowid",
            (owner, dataset),
        ).fetchall()
        ratings = {}
        for r in rows:
            try:
                ratings[json.loads(r["item"])] = float(r["rating"])
            except (ValueError, TypeError):  # a damaged row is skipped, the others still count
                continue
        return ratings

    def set_user_rating(self, owner: str, dataset: str, item: Any, rating: float | None) -> None:
        """Store (or with None, remove) one of ``owner``'s ratings."""
        if not owner:
            raise RunnerError("a rating needs an owner")
        key = json.dumps(item.item() if hasattr(item, "item") else item)
        with self._write() as conn:
            if rating is None:
                conn.execute("DELETE FROM user_ratings WHERE owner = ? AND dataset = ? AND item = ?",
                             (owner, dataset, key))
            else:
                value = float(rating)
                if not math.isfinite(value):
                    raise RunnerError(f"a rating must be a finite number, got {rating!r}")
                conn.execute(
                    """INSERT INTO user_ratings (owner, dataset, item, rating, updated_at) VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT (owner, dataset, item) DO UPDATE SET rating = excluded.rating""",
                    (owner, dataset, key, value, time.time()),
                )

    def clear_user_ratings(self, owner: str, dataset: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM user_ratings WHERE owner = ? AND dataset = ?", (owner, dataset))

    # -- reading ---------------------------------------------------------------------------
    def get(self, run_id: str) -> RunRecord:
        """One run; unknown id -> RunnerError."""
        row = self._conn().execute(_SELECT_RUNS + " WHERE runs.id = ?", (run_id,)).fetchone()
        if row is None:
            raise _unknown(run_id)
        return self._record(row)

    def exists(self, run_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def list_runs(
        self,
        owner: str | None = None,
        statuses: Iterable[str] | None = None,
        limit: int | None = None,
        sweep_id: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first; optionally only one owner's, one sweep's and/or only some statuses."""
        where, args = [], []
        if sweep_id is not None:
            where.append("runs.sweep_id = ?")
            args.append(sweep_id)
        if owner is not None:
            where.append("runs.owner = ?")
            args.append(owner)
        if statuses is not None:
            statuses = tuple(statuses)
            for s in statuses:
                _check_status(s)
            if not statuses:
                return []
            where.append(f"runs.status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        sql = _SELECT_RUNS
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY runs.created_at DESC, runs.rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [self._record(row) for row in self._conn().execute(sql, args).fetchall()]

    def count_active(self, owner: str) -> int:
        """How many of ``owner``'s runs are queued or running."""
        row = self._conn().execute(
            "SELECT COUNT(*) FROM runs WHERE owner = ? AND status IN ('queued', 'running')", (owner,)
        ).fetchone()
        return int(row[0])

    def epochs(self, run_id: str) -> pd.DataFrame:
        """Per-epoch metrics (columns ``EPOCH_COLUMNS``), in epoch order."""
        with self._read() as conn:
            _status_of(conn, run_id)
            rows = conn.execute(
                f"SELECT {', '.join(EPOCH_COLUMNS)} FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
            ).fetchall()
        return _epochs_frame(rows)

    def get_with_epochs(self, run_id: str) -> tuple[RunRecord, pd.DataFrame]:
        """A run and its epochs read in one transaction (a consistent pair)."""
        with self._read() as conn:
            row = conn.execute(_SELECT_RUNS + " WHERE runs.id = ?", (run_id,)).fetchone()
            if row is None:
                raise _unknown(run_id)
            rows = conn.execute(
                f"SELECT {', '.join(EPOCH_COLUMNS)} FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
            ).fetchall()
        return self._record(row), _epochs_frame(rows)

    def export_metrics_csv(self, run_id: str) -> str:
        """The run's per-epoch metrics as CSV text (a ``run_id`` column first, then ``EPOCH_COLUMNS``)."""
        frame = self.epochs(run_id)
        frame.insert(0, "run_id", run_id)
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, lineterminator="\n")
        return buffer.getvalue()

    def _record(self, row: sqlite3.Row) -> RunRecord:
        progress = None
        if row["p_epoch"] is not None:
            progress = {key: row[f"p_{key}"] for key in PROGRESS_KEYS}
        damaged = [c for c in _JSON_COLUMNS if not _json_ok(row[c])]  # one bad row must not hide the others
        return RunRecord(
            id=row["id"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            owner=row["owner"],
            label=row["label"],
            dataset=row["dataset"],
            split=row["split"],
            seed=row["seed"],
            model_config=_loads(row["model_config"]),
            train_config=_loads(row["train_config"]),
            runtime=_loads(row["runtime"]),
            status=row["status"],
            message=row["message"] if not damaged else (
                f"this run's stored {', '.join(damaged)} is damaged (not valid JSON) and was left as it is; "
                "its settings cannot be shown or relaunched"),
            device=row["device"],
            baselines=_loads(row["baselines"]),
            metrics=_loads(row["metrics"]),
            checkpoint_path=self._abs_checkpoint(row["checkpoint_path"]),
            train_seconds=row["train_seconds"],
            n_train=row["n_train"],
            n_test=row["n_test"],
            epochs_planned=row["epochs_planned"],
            best_epoch=row["best_epoch"],
            epochs_done=int(row["epochs_done"]),
            progress=progress,
            process=row["process"],
            owner_name=row["owner_name"],
            request_key=row["request_key"],
            shared_from=row["shared_from"],
            placement=row["placement"],
            sweep_id=row["sweep_id"],
            damaged=tuple(damaged),
        )


# ---------------------------------------------------------------------------- helpers


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise RunnerError(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")


def _unknown(run_id: str) -> RunnerError:
    return RunnerError(f"unknown run id {run_id!r}; it may have been deleted")


def _status_of(conn: sqlite3.Connection, run_id: str) -> str:
    row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise _unknown(run_id)
    return row[0]


def _as_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if is_dataclass(config) and not isinstance(config, type):
        return config_to_dict(config)
    if isinstance(config, dict):
        return dict(config)
    raise RunnerError(f"expected a config dataclass or a dict, got {type(config).__name__}")


def _dumps(value: Any) -> str:
    # NaN/inf are kept (Python's json writes and reads them) so no metric is lost.
    return json.dumps(value, sort_keys=True)


_JSON_COLUMNS = ("model_config", "train_config", "runtime", "baselines", "metrics")


def _json_ok(text: str | None) -> bool:
    try:
        return isinstance(json.loads(text), dict) if text else True
    except (ValueError, TypeError):
        return False


def _loads(text: str | None) -> Any:
    """A JSON column as a dict; damaged JSON (a hand-edited or half-restored row) reads as {}."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _checkpoint_epoch(path: str | None) -> int | None:
    """The epoch of the model in the checkpoint at ``path``; None when there is no file, -1 when unknown."""
    if not path or not os.path.isfile(path):
        return None
    from mfcore.checkpoint import read_epoch

    epoch = read_epoch(path)
    return -1 if epoch is None else epoch


def _epochs_frame(rows: list[sqlite3.Row]) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(r) for r in rows], columns=list(EPOCH_COLUMNS))
    # SQLite stores NaN as NULL; give it back as NaN in float columns.
    for column in EPOCH_COLUMNS[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["epoch"] = frame["epoch"].astype("int64")
    return frame


def _finished_message(event: RunFinished, conn: sqlite3.Connection, run_id: str) -> str:
    planned = conn.execute("SELECT epochs_planned FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    if event.reason == "cancelled":
        return f"stopped after {event.epochs_run} of {planned} epochs"
    if event.reason == "early_stopped":
        return f"early stopping after {event.epochs_run} of {planned} epochs; kept the weights of epoch {event.best_epoch}"
    rmse = event.metrics.get("test_rmse", math.nan)
    return f"completed {event.epochs_run} epochs" + (f"; test RMSE {rmse:.4f}" if math.isfinite(rmse) else "")


# Every public method raises StoreError (file, what is wrong, what to do) instead of sqlite3 errors.
store_health.guard(RunStore)
