"""The engine's error hierarchy: every message names the value at fault and the fix.

Callers (the CLI, the app) catch :class:`MFError` and show its message; nothing in
``mfcore`` raises a bare ``ValueError``/``AssertionError`` for user input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


class MFError(Exception):
    """Base class of every error the engine raises on purpose."""


class DataError(MFError, ValueError):
    """A ratings/items file or archive that cannot be used as it is.

    ``path``, ``line`` (1-based, as an editor shows it) and ``column`` are kept as
    attributes so a UI can point at the problem; the message already contains them.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column


class DatasetNotFoundError(DataError):
    """A named dataset is neither on disk, in the cache, nor downloadable.

    The message is ``reason`` then ``fix``, and the fix is written for the Python API: it
    names no command-line flag and no button. Each interface phrases its own way forward
    from the attributes instead: ``dataset`` (the name asked for), ``searched`` (the folders
    looked in, in order), ``partial`` (a folder holding only part of the dataset's ratings,
    or None), ``known`` (the valid names, when ``dataset`` is not one of them; else empty)
    and ``suggestion`` (the closest valid name, or None).
    """

    def __init__(
        self,
        reason: str,
        fix: str,
        *,
        dataset: str,
        searched: Sequence[str | Path] = (),
        partial: str | Path | None = None,
        known: Sequence[str] = (),
        suggestion: str | None = None,
    ) -> None:
        super().__init__(f"{reason}; {fix}")
        self.reason = reason
        self.fix = fix
        self.dataset = dataset
        self.searched = tuple(str(p) for p in searched)
        self.partial = None if partial is None else str(partial)
        self.known = tuple(known)
        self.suggestion = suggestion


class UnsafeArchiveError(DataError):
    """A zip whose members would be written outside the extraction folder."""


class DownloadError(MFError):
    """A download failed (network, HTTP status, truncated body).

    ``url`` is the address that failed (None if unknown); ``reason`` is the message
    without the generic fix (``fix``, which names no command-line flag and no button), so
    an interface can put its own way forward after it.
    """

    def __init__(self, reason: str, fix: str = "", *, url: str | None = None) -> None:
        super().__init__(f"{reason}; {fix}" if fix else reason)
        self.reason = reason
        self.fix = fix
        self.url = url


class ChecksumError(DownloadError):
    """A downloaded file does not match its pinned SHA-256."""


class ConfigError(MFError, ValueError):
    """An invalid hyperparameter or option; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownIdError(MFError, KeyError):
    """A raw user or item id that the dataset/model does not know."""

    def __init__(self, kind: str, raw_id: object, hint: str = "") -> None:
        msg = f"unknown {kind} id {raw_id!r}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)
        self.kind = kind
        self.raw_id = raw_id

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class NotFittedError(MFError):
    """The model has not been trained yet."""


class DivergedError(MFError):
    """Training produced NaN/inf loss or weights."""


class DeviceError(MFError):
    """A requested device (cuda, mps) is not available."""


class CheckpointError(MFError):
    """A checkpoint file that cannot be read or has an unknown format."""


class RunnerError(MFError):
    """A job could not be queued (queue full, unknown job, bad request)."""


class StoreError(RunnerError):
    """The runs database cannot be used: damaged, read-only, on a full disk, locked, or
    written by a newer MF Studio. ``path`` is the file, ``kind`` one of "damaged",
    "newer", "readonly", "full", "busy", "unreadable"; the message says what to do."""

    def __init__(self, message: str, *, path: str | Path, kind: str) -> None:
        super().__init__(message)
        self.path = str(path)
        self.kind = kind
