"""Checkpoint downloads served from disk, never held in the server's memory.

``st.download_button`` cannot stream: whatever it serves sits in Streamlit's media store, in
memory (a 700 MB checkpoint: 700 MB per distinct file, for as long as a session refers to it).
So the Runs page's "Checkpoint (.pt)" button does not send the file itself: on click the
checkpoint is published under the app's static folder and a plain link with the HTML
``download`` attribute is shown. Streamlit serves ``static/`` (``[server] enableStaticServing``
in ``.streamlit/config.toml``) with Starlette's ``FileResponse``, which reads the file from
disk in 64 KiB chunks, so any number of downloads add only their socket buffers.

* A published file is a hard link (a copy where the runs folder is on another file system)
  at ``static/downloads/<128-bit random token>/mfstudio-<run id>.pt``: the URL cannot be
  guessed, Streamlit lists no folders, and a checkpoint rewritten by a still-running run does
  not change a download under way (the link keeps the old inode).
* Links live :data:`LINK_TTL_S` (an hour): older link folders are removed when this module is
  first imported (the first Runs page of a server process), on every new link, and by
  :func:`clean_links` (the app may call it at start). One published copy of an unchanged file
  is shared by everyone who asks within half that time, so repeated clicks make no new copies.
* Streamlit 1.67 refuses static files over 200 MB (``MAX_APP_STATIC_FILE_SIZE``, answered
  404 "File is too large"); the cap is raised to the size of each published file
  (:func:`_allow_static_size`), since checkpoints may reach
  :data:`mfcore.limits.MAX_CHECKPOINT_BYTES` (512 MiB) and older runs wrote larger ones.
* With static serving switched off (a different config), the page falls back to the deferred
  in-memory button (read on click, one checkpoint in memory at a time): slower, but working.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import streamlit as st

APP_DIR = Path(__file__).resolve().parent.parent
"""The folder of ``app.py``: Streamlit serves ``<APP_DIR>/static`` at ``/app/static/``."""
DOWNLOADS_DIR = APP_DIR / "static" / "downloads"
"""Published links live here (git-ignored)."""
STATIC_ROUTE = "app/static/downloads"
LINK_TTL_S = 3600.0
"""A link works this long after it was made; its folder is then removed."""
LINKS_KEY = "_checkpoint_links"  # session state: widget key -> Link shown under the button

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")
_LOCK = threading.Lock()
_PUBLISHED: dict[tuple, "Link"] = {}  # (real path, inode, mtime_ns, size) -> the link sharing it


@dataclass(frozen=True)
class Link:
    """A published checkpoint: its URL (server-relative), the file behind it and when it expires."""

    url: str
    file: Path
    size: int
    created: float

    @property
    def expires(self) -> float:
        return self.created + LINK_TTL_S

    def alive(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.expires and self.file.is_file()


# ----------------------------------------------------------------------------- publishing


def clean_links(now: float | None = None, ttl: float = LINK_TTL_S, folder: Path | None = None) -> list[Path]:
    """Remove link folders older than ``ttl`` seconds (by their folder's mtime, set when the
    link was made). Returns the folders removed."""
    folder = Path(folder or DOWNLOADS_DIR)
    now = time.time() if now is None else now
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            old = now - entry.stat().st_mtime > ttl
        except OSError:
            continue
        if old:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    with _LOCK:
        for key, link in list(_PUBLISHED.items()):
            if not link.file.is_file():
                del _PUBLISHED[key]
    return removed


def _allow_static_size(size: int) -> None:
    """Raise Streamlit's static-file size cap (200 MB in 1.67) to at least ``size`` bytes.

    The cap is a module constant read on every request by the static route; nothing else uses
    it. Where a later Streamlit moves it, this does nothing (and files past its cap 404)."""
    try:
        from streamlit.web.server.starlette import starlette_routes
    except ImportError:  # pragma: no cover - another Streamlit server
        return
    current = getattr(starlette_routes, "MAX_APP_STATIC_FILE_SIZE", None)
    if isinstance(current, int) and current < size:
        starlette_routes.MAX_APP_STATIC_FILE_SIZE = int(size)


def _url(token: str, name: str) -> str:
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return "/" + "/".join(p for p in (base, STATIC_ROUTE, token, name) if p)


def _place(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target``; copy it (streamed, bounded memory) across file systems."""
    try:
        os.link(source, target)
    except OSError:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def publish(path: str | Path, file_name: str, *, folder: Path | None = None, now: float | None = None) -> Link:
    """Publish the file at ``path`` under the static folder as ``file_name``; a :class:`Link`.

    An unchanged file published less than half a TTL ago is shared (same link, no new copy)."""
    folder = Path(folder or DOWNLOADS_DIR)
    now = time.time() if now is None else now
    source = Path(path).resolve()
    name = file_name if _SAFE_NAME.fullmatch(file_name) else "checkpoint.pt"
    clean_links(now=now, folder=folder)
    stat = source.stat()
    key = (str(source), stat.st_ino, stat.st_mtime_ns, stat.st_size, name, str(folder))
    with _LOCK:
        shared = _PUBLISHED.get(key)
        if shared is not None and shared.file.is_file() and now - shared.created < LINK_TTL_S / 2:
            _allow_static_size(shared.size)
            return shared
        token = secrets.token_urlsafe(16)  # 128 bits: the link cannot be guessed
        target = folder / token / name
        target.parent.mkdir(parents=True, exist_ok=False)
        try:
            _place(source, target)
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        os.utime(target.parent, (now, now))  # the link's age, for clean_links
        link = Link(url=_url(token, name), file=target, size=target.stat().st_size, created=now)
        _PUBLISHED[key] = link
    _allow_static_size(link.size)
    return link


# ----------------------------------------------------------------------------- the button


def static_serving() -> bool:
    """Whether Streamlit serves the app's ``static/`` folder (``server.enableStaticServing``)."""
    try:
        return bool(st.get_option("server.enableStaticServing"))
    except Exception:  # noqa: BLE001 - an unknown option in another Streamlit
        return False


def _size(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 10e6 else f"{n / 1e6:.1f} MB"


def link_markdown(link: Link) -> str:
    """The HTML of a link that saves the file under its name (the URL holds only URL-safe
    characters and a checked file name; both are escaped anyway)."""
    name = link.file.name
    return (f'<a href="{html.escape(link.url, quote=True)}" download="{html.escape(name, quote=True)}">'
            f"Save {html.escape(name)} ({_size(link.size)})</a>")


def checkpoint_button(path: str | Path | None, *, file_name: str, key: str, label: str = "Checkpoint (.pt)") -> None:
    """The checkpoint's button: on click, a link that downloads the file from disk (valid for
    an hour); disabled (with why) when no checkpoint exists yet."""
    have = path is not None and Path(path).is_file()
    if not static_serving():
        _memory_button(path if have else None, file_name=file_name, key=key, label=label)
        return
    links: dict[str, Link] = st.session_state.setdefault(LINKS_KEY, {})
    if st.button(label, key=key, disabled=not have, icon=":material/download:",
                 help="Makes a download link for this run's checkpoint (it works for an hour)." if have
                 else "No checkpoint was written for this run yet."):
        try:
            links[key] = publish(path, file_name)
        except OSError as exc:
            links.pop(key, None)
            st.error(f"The checkpoint could not be prepared for download ({exc.strerror or exc}).")
    link = links.get(key)
    if have and link is not None:
        if link.alive():
            left = max(1, round((link.expires - time.time()) / 60))
            st.markdown(link_markdown(link), unsafe_allow_html=True)
            st.caption(f"The link works for about {left} more minute{'s' if left != 1 else ''}.")
        else:
            links.pop(key, None)


# ----------------------------------------------------------------------------- fallback


_MEM_LOCK = threading.Lock()
_LAST: dict[str, Any] = {}  # {"key": (path, mtime_ns, size), "data": bytes}: one file at most


def shared_reader(path: str | Path) -> Callable[[], bytes]:
    """A callable for a deferred in-memory download (used only without static serving): the
    file's bytes, shared with the last reader of the same unchanged file."""
    path = Path(path)

    def read() -> bytes:
        with _MEM_LOCK:
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
            if _LAST.get("key") != key:
                _LAST.clear()
                with open(path, "rb") as fh:
                    _LAST.update(key=key, data=fh.read())
            return _LAST["data"]

    return read


def _memory_button(path: str | Path | None, *, file_name: str, key: str, label: str) -> None:
    st.download_button(
        label, data=shared_reader(path) if path is not None else b"", file_name=file_name,
        mime="application/octet-stream", disabled=path is None, on_click="ignore", key=key,
        icon=":material/download:", help=None if path is not None else "No checkpoint was written for this run yet.",
    )


clean_links()  # a new server process: links of an earlier one older than the TTL go
