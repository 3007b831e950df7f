"""Start-up checks the router runs before any page: settings and the run store (issue 11).

:func:`banner` draws one box saying what is wrong, with which setting or file, and what
to do, and returns False when the pages cannot work (a blocking setting, a run store that
cannot be opened); the router then shows only that. A damaged ``runs.sqlite`` is never
changed: the box offers to *move it aside* (renamed to ``runs.damaged-<time>.sqlite``
beside it, with its -wal/-shm files) so a fresh, empty store starts; the damaged file
stays for a repair or a backup restore.
"""

from __future__ import annotations

import logging

import streamlit as st

from mfcore.errors import MFError, StoreError
from mfcore.settings import check_settings
from ui import jobs
from ui.text import md

log = logging.getLogger(__name__)

MOVED_NOTE = "health__moved"


@st.cache_resource(show_spinner=False)
def _clean_downloads_once(cache: str) -> int:
    """Unfinished downloads of a killed process, removed once per server process and cache."""
    from mfcore.data.leftovers import clean_partial_downloads

    return len(clean_partial_downloads(cache or None))


@st.cache_resource(show_spinner=False)
def _settings_problems(env: tuple[tuple[str, str], ...]):
    """The settings' problems, checked once per server process and set of values."""
    return check_settings()


def _sentence(exc: object) -> str:
    """An engine message (a clause without a full stop) as one literal-text sentence."""
    text = str(exc).strip()
    return md(text) + ("" if text.endswith((".", "!", "?")) else ".")


def _move_aside(db_path: str) -> None:
    from mfcore.runs.store_health import move_aside

    try:
        jobs.get_runner()  # another session may have moved it already: never move a healthy store
        st.session_state[MOVED_NOTE] = ("info", "The run store opens now; nothing was moved.")
        return
    except MFError:
        pass
    try:
        target = move_aside(db_path)
    except MFError as exc:
        st.session_state[MOVED_NOTE] = ("error", _sentence(exc))
        return
    log.warning("moved the damaged runs database %s aside to %s", db_path, target)
    st.session_state[MOVED_NOTE] = ("success", f"The damaged database was moved, unchanged, to {md(target)}; "
                                               "a fresh, empty run store has started. Checkpoints stay in the "
                                               "runs folder.")


def banner() -> bool:
    """Draw what is wrong with the settings or the run store; True when the pages can run."""
    from ui.datasets import cache_dir

    note = st.session_state.pop(MOVED_NOTE, None)
    if note:
        getattr(st, note[0])(note[1])
    try:
        _clean_downloads_once(str(cache_dir()))
    except Exception:  # noqa: BLE001 - a cache that cannot be cleaned must not stop the app
        log.warning("unfinished downloads not cleaned", exc_info=True)
    import os

    problems = _settings_problems(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("MFSTUDIO_"))))
    blocking = [p for p in problems if p.blocking]
    if problems:
        lines = "\n".join(f"- **{p.name}** = {md(repr(p.value))}: {md(p.message)}" for p in problems)
        (st.error if blocking else st.warning)(
            ("MF Studio cannot start its run store with these settings:" if blocking
             else "Some settings are not usable; the rest of the app works:")
            + f"\n\n{lines}\n\nFix them in the environment of the server and restart it.",
            icon=":material/settings_alert:")
    if blocking:
        return False
    try:
        jobs.get_runner()
    except StoreError as exc:
        st.error(f"**The run store cannot be used.** {_sentence(exc)}", icon=":material/database:")
        if exc.kind == "damaged":
            st.button("Move the damaged file aside and start an empty run store", key="health_move_aside",
                      on_click=_move_aside, args=(exc.path,), icon=":material/drive_file_move:",
                      help="Renames it to runs.damaged-<time>.sqlite in the same folder (nothing is overwritten "
                           "or deleted); past runs are then not listed until it is repaired and put back.")
        return False
    except MFError as exc:
        st.error(f"**The job runner cannot start.** {_sentence(exc)}", icon=":material/error:")
        return False
    return True
