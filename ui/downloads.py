"""Checkpoint downloads with bounded server memory.

Streamlit 1.67's ``st.download_button`` cannot stream: whatever it serves is held in memory
(its media store keeps one copy per distinct content until no session refers to it). So a
checkpoint is read only when the button is clicked (deferred), by one reader at a time,
and the bytes of the last file read are shared: many downloads of one checkpoint hold one
copy, and downloads of different checkpoints never read two at once. The engine bounds the
file itself (at most 40 snapshots, :data:`mfcore.limits.MAX_CHECKPOINT_BYTES`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import streamlit as st

_LOCK = threading.Lock()
_LAST: dict[str, Any] = {}  # {"key": (path, mtime_ns, size), "data": bytes}: one file at most


def shared_reader(path: str | Path) -> Callable[[], bytes]:
    """A callable for a deferred download: the file's bytes, shared with the last reader of the
    same unchanged file; the previous file's bytes are released before another file is read."""
    path = Path(path)

    def read() -> bytes:
        with _LOCK:
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
            if _LAST.get("key") != key:
                _LAST.clear()  # release the previous checkpoint before reading the next
                with open(path, "rb") as fh:
                    _LAST.update(key=key, data=fh.read())
            return _LAST["data"]

    return read


def checkpoint_button(path: str | Path | None, *, file_name: str, key: str, label: str = "Checkpoint (.pt)") -> None:
    """The checkpoint's download button: disabled (with why) when no checkpoint exists yet."""
    have = path is not None and Path(path).is_file()
    st.download_button(
        label, data=shared_reader(path) if have else b"", file_name=file_name,
        mime="application/octet-stream", disabled=not have, on_click="ignore", key=key,
        icon=":material/download:", help=None if have else "No checkpoint was written for this run yet.",
    )
