"""The run buttons both the Train and Runs pages offer (Stop, Resume, Launch again), as callbacks.

Each acts as this session's person (the engine refuses anyone but the owner or the teacher),
makes a new or resumed run the followed one, and leaves a ``(kind, text)`` note under the
page's own session key for the page to show.
"""

from __future__ import annotations

import streamlit as st

from mfcore.errors import MFError
from ui import identity, jobs, state
from ui.text import md


def follow(run_id: str) -> None:
    """Make ``run_id`` the run the Train page follows and the inspection pages show."""
    state.put(state.ACTIVE_RUN, run_id)
    state.put(state.SELECTED_RUN, run_id)


def stop(run_id: str, note_key: str) -> None:
    try:
        jobs.get_runner().stop(run_id, identity.actor())
    except MFError as exc:
        st.session_state[note_key] = ("error", md(exc))


def resume(run_id: str, note_key: str) -> None:
    try:
        jobs.get_runner().resume(run_id, identity.actor())
    except MFError as exc:
        st.session_state[note_key] = ("error", md(exc))
        return
    follow(run_id)
    st.session_state[note_key] = ("success", f"Run `{run_id}` is queued to go on from its last checkpoint.")


def relaunch(run_id: str, note_key: str) -> None:
    try:
        new_id = jobs.get_runner().relaunch(run_id, identity.actor(), owner_name=identity.current().name)
    except MFError as exc:
        st.session_state[note_key] = ("error", md(exc))
        return
    follow(new_id)
    st.session_state[note_key] = ("success", f"Queued run `{new_id}` with the same settings.")
