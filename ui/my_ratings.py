"""A person's own ratings ("Rate movies yourself"), kept with their owner id in the run store.

Ratings belong to the dataset (raw item ids), so they follow the person across runs on
the same data, reloads and server restarts. Pages edit a plain dict (this session's
copy) and call :func:`sync`, which writes only what changed since the last sync.
"""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from mfcore.errors import MFError
from ui import identity, jobs

log = logging.getLogger(__name__)

_COPIES = "my_ratings__copies"  # {(owner, dataset): dict edited by the page}
_SYNCED = "my_ratings__synced"  # {(owner, dataset): dict as last written}


def _key(run_id: str) -> tuple[str, str]:
    snap = jobs.snapshot(run_id)
    return identity.owner(), (snap.dataset if snap is not None else f"run:{run_id}")


def ratings(run_id: str) -> dict[Any, float]:
    """This person's ratings of ``run_id``'s dataset (loaded from the store once per session)."""
    key = _key(run_id)
    copies = st.session_state.setdefault(_COPIES, {})
    if key not in copies:
        try:
            stored = jobs.get_store().user_ratings(*key)
        except MFError as exc:
            log.warning("ratings of %s not readable: %s", key, exc)
            stored = {}
        copies[key] = dict(stored)
        st.session_state.setdefault(_SYNCED, {})[key] = dict(stored)
    return copies[key]


def sync(run_id: str) -> str | None:
    """Write the changes to this person's ratings; returns an error message, or None."""
    key = _key(run_id)
    now = st.session_state.get(_COPIES, {}).get(key)
    if now is None:
        return None
    synced = st.session_state.setdefault(_SYNCED, {}).setdefault(key, {})
    store = jobs.get_store()
    try:
        for item in [i for i in synced if i not in now]:
            store.set_user_rating(*key, item, None)
            synced.pop(item, None)
        for item, value in now.items():
            if synced.get(item) != value:
                store.set_user_rating(*key, item, value)
                synced[item] = value
    except MFError as exc:
        return f"Your ratings could not be saved: {exc}"
    return None
