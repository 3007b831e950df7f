"""Damaged, read-only and full run stores: typed errors instead of ``sqlite3`` tracebacks (issue 11).

- :func:`check_header` and :func:`check_contents` inspect an existing ``runs.sqlite``
  before the store writes to it (SQLite's header, ``PRAGMA quick_check``, the schema
  version); they only read.
- :func:`store_error` turns any ``sqlite3`` error met later into a
  :class:`~mfcore.errors.StoreError` that names the file, what is wrong and what to do;
  :func:`guard` applies it to every public method of the store.
- :func:`move_aside` is the way out the app offers: it *renames* the damaged database
  (with its ``-wal``/``-shm`` files) to ``runs.damaged-<time>.sqlite`` beside it, never
  overwriting anything, so a fresh, empty ``runs.sqlite`` can be created and the
  damaged file stays for a repair (``sqlite3 runs.damaged-….sqlite .recover``).
  Checkpoints (``<run_id>.pt``) are not touched.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from mfcore.errors import StoreError

__all__ = ["check_header", "check_contents", "store_error", "guard", "move_aside", "SQLITE_HEADER"]

SQLITE_HEADER = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm", "-journal")

T = TypeVar("T")


def _damaged(path: Path, what: str) -> StoreError:
    return StoreError(
        f"the runs database {path} is damaged ({what}). Nothing was changed in it. Move it aside "
        f"(the app offers this: it renames the file to runs.damaged-<time>.sqlite and starts an empty "
        f"one), or stop the server and restore a backup",
        path=path, kind="damaged")


def check_header(path: str | Path) -> None:
    """Raise StoreError if the file at ``path`` exists and is not an SQLite database; reads 16 bytes.

    A missing or empty file is fine (the store creates its tables).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"the runs database {path} cannot be read ({exc.strerror or exc}); check its "
                         "permissions or point MFSTUDIO_RUNS_DIR at another folder", path=path,
                         kind="unreadable") from None
    if head != SQLITE_HEADER:
        raise _damaged(path, "it does not start with SQLite's header: not a database, or overwritten")
    if size < 512:
        raise _damaged(path, f"only {size} bytes: truncated")


def check_contents(conn: sqlite3.Connection, path: str | Path, schema_version: int) -> None:
    """Raise StoreError if the open database is damaged (``PRAGMA quick_check``) or has a newer
    schema than ``schema_version`` (kind "newer"); only reads.

    Uses the store's own connection: a second connection opened and closed beside live WAL
    writers of other processes was seen to damage the file (tests/test_store.py's
    concurrent writers), so none is opened here.
    """
    path = Path(path)
    try:
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
        problems = [r[0] for r in rows if r and r[0] != "ok"]
        if problems:
            raise _damaged(path, "SQLite's check found: " + "; ".join(str(p)[:120] for p in problems[:3]))
        has_version = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] if has_version else None
    except sqlite3.DatabaseError as exc:
        raise store_error(exc, path) from None
    if version is not None and version > schema_version:
        raise StoreError(
            f"the runs database {path} has schema version {version}, newer than this MF Studio understands "
            f"({schema_version}): it was written by a newer release. Upgrade MF Studio, or point "
            "MFSTUDIO_RUNS_DIR at another folder; nothing was changed in it",
            path=path, kind="newer")


def store_error(exc: BaseException, path: str | Path) -> StoreError:
    """A StoreError in words for an ``sqlite3`` (or OS) error met on the database at ``path``."""
    path = Path(path)
    text = str(exc)
    low = text.lower()
    if "readonly" in low or "read-only" in low or isinstance(exc, PermissionError):
        return StoreError(f"the runs database {path} cannot be written ({text}): its folder or file is "
                          "read-only. Make the folder writable, or point MFSTUDIO_RUNS_DIR at a writable "
                          "folder and restart the app", path=path, kind="readonly")
    if "full" in low or getattr(exc, "errno", None) == 28:
        return StoreError(f"the disk holding the runs database {path} is full ({text}); free some space "
                          "(old checkpoints in the runs folder are the largest files) and try again",
                          path=path, kind="full")
    if "locked" in low or "busy" in low:
        return StoreError(f"the runs database {path} is busy: another process held its lock too long "
                          f"({text}); try again in a moment", path=path, kind="busy")
    if "malformed" in low or "not a database" in low or "corrupt" in low or "disk image" in low:
        return _damaged(path, text)
    if "unable to open" in low or isinstance(exc, OSError):
        return StoreError(f"the runs database {path} cannot be opened ({text}); check that its folder "
                          "exists and is writable, or point MFSTUDIO_RUNS_DIR at another folder",
                          path=path, kind="unreadable")
    return StoreError(f"the runs database {path} could not be used ({text})", path=path, kind="unreadable")


def guard(cls: type[T]) -> type[T]:
    """Make every public method of ``cls`` (and ``__init__``) raise StoreError instead of
    ``sqlite3.Error``; the instance's ``db_path`` names the file."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(self, *args, **kwargs)
            except (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError):
                raise  # misuse or a broken invariant: a bug to see, not a store to blame
            except sqlite3.Error as exc:
                path = getattr(self, "db_path", None) or "runs.sqlite"
                raise store_error(exc, path) from exc
        return wrapper

    for name, value in list(vars(cls).items()):
        if callable(value) and (not name.startswith("_") or name == "__init__") and not isinstance(
                value, (staticmethod, classmethod, type)):
            setattr(cls, name, wrap(value))
    return cls


def move_aside(db_path: str | Path) -> Path:
    """Rename a damaged database (and its -wal/-shm/-journal files) out of the way; returns its new path.

    The new name is ``<stem>.damaged-<YYYYmmdd-HHMMSS>[-N].sqlite`` in the same folder;
    an existing file is never replaced (os.link + unlink, which fails instead of
    overwriting). Afterwards a store opened on the folder starts empty.
    """
    db_path = Path(db_path)
    if not db_path.exists():
        raise StoreError(f"{db_path} does not exist (already moved?)", path=db_path, kind="unreadable")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = db_path.with_name(f"{db_path.stem}.damaged-{stamp}{'' if n == 0 else f'-{n}'}{db_path.suffix}")
        if not any(Path(f"{target}{s}").exists() for s in ("", *_SIDE_FILES)) and not target.exists():
            break
    else:
        raise StoreError(f"no free name to move {db_path} aside", path=db_path, kind="unreadable")
    try:
        _rename_no_replace(db_path, target)
        for suffix in _SIDE_FILES:
            side = Path(f"{db_path}{suffix}")
            if side.exists():
                _rename_no_replace(side, Path(f"{target}{suffix}"))
    except OSError as exc:
        raise StoreError(f"{db_path} could not be moved aside ({exc.strerror or exc}); move it yourself "
                         "with the server stopped", path=db_path, kind="readonly") from None
    return target


def _rename_no_replace(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # fails with FileExistsError rather than replacing
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise
        if target.exists():
            raise FileExistsError(str(target)) from None
        os.rename(source, target)  # no hard links here (e.g. some network file systems)
        return
    os.unlink(source)
