"""Leftovers of downloads that never finished, removed at the next start (issue 11).

A download streams into a hidden ``.part`` file beside its destination
(:func:`mfcore.data.download.download_file`); kill -9, a power cut or a closed laptop
leaves it behind, and a fetched zip (``.ml-100k.zip``) can be left too when the process
died while extracting it. :func:`clean_partial_downloads` removes them: a ``.part``
whose name carries its writer's pid when that process is gone, any other leftover when
nothing has written to it for ``idle_s`` seconds (so a download running in a second
server on the same cache is never touched). The app calls it once per process at start,
the CLI before each command.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["clean_partial_downloads", "IDLE_S"]

IDLE_S = 600.0
"""A leftover without a pid counts as abandoned after this long without a write (a live
download writes every chunk, and gives up after 60 s without data)."""

_PART_WITH_PID = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.part$")
_HIDDEN_ZIP = re.compile(r"^\.ml-[A-Za-z0-9-]+\.zip$")


def clean_partial_downloads(cache_dir: str | Path | None = None, *, idle_s: float = IDLE_S) -> list[Path]:
    """Remove abandoned ``.part`` downloads (and fetched zips left unextracted) from the cache.

    Looks in the cache folder and its ``zips``/``uploads`` folders; never raises (a cache
    that cannot be listed is left as it is). Returns the files removed.
    """
    from mfcore.data.download import resolve_cache_dir

    try:
        cache = resolve_cache_dir(cache_dir)
    except (OSError, RuntimeError):  # e.g. no home folder
        return []
    removed: list[Path] = []
    now = time.time()
    for folder in (cache, cache / "zips", cache / "uploads"):
        try:
            entries = list(folder.iterdir()) if folder.is_dir() else []
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if not name.startswith(".") or not (name.endswith(".part") or _HIDDEN_ZIP.match(name)):
                continue
            try:
                if not entry.is_file():
                    continue
                match = _PART_WITH_PID.match(name)
                if match is not None and int(match.group("pid")) != os.getpid():
                    abandoned = not _alive(int(match.group("pid")))
                else:
                    abandoned = now - entry.stat().st_mtime > idle_s
                if abandoned:
                    entry.unlink()
                    removed.append(entry)
            except OSError as exc:
                log.warning("could not remove the unfinished download %s: %s", entry, exc)
    if removed:
        log.info("removed %d unfinished download(s) from %s", len(removed), cache)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists (another user's), or cannot tell: keep the file
    return True
