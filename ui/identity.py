"""Who is using this browser tab: an identity that survives a reload and a server restart.

Without sign-in, the person is an unguessable token in the page URL (``?u=<token>``):
F5 or a bookmarked link brings back the same person, their runs, their chosen data and
split, and their new-user ratings (kept in the run store's profile, not in session
state). With Streamlit's authentication configured (``[auth]`` in
``.streamlit/secrets.toml``), the owner is the signed-in user. The engine derives the
owner id (:func:`mfcore.runs.access.derive_identity`) and enforces who may change a run;
this module only reads the browser's side and draws the sidebar.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import streamlit as st

from mfcore.errors import MFError
from mfcore.runs.access import (
    Actor,
    clean_name,
    derive_identity,
    is_valid_token,
    new_token,
    teacher_key_configured,
    teacher_key_matches,
)
from ui import jobs, state
from ui.text import md

log = logging.getLogger(__name__)

TOKEN_PARAM = "u"
RUN_PARAM = "run"
PERSON = "identity__person"
NOTICE = "identity__notice"  # a message for the sidebar (bad link, wrong key)
SAVED_PREFS = "identity__saved_prefs"
RUN_LINK_DONE = "identity__run_link"  # the ?run= value already applied in this session
_RUN_ID_CHARS = set("0123456789abcdef")


@dataclass(frozen=True)
class Person:
    owner: str
    name: str
    token: str | None
    """The URL token (None when signed in through Streamlit's authentication)."""
    source: str
    is_teacher: bool = False

    @property
    def actor(self) -> Actor:
        return Actor(self.owner, self.is_teacher)


# ---------------------------------------------------------------------------- reading the browser


def auth_configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` configures Streamlit's own sign-in."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file (or an unreadable one): no auth
        return False


def _signed_in_user() -> dict[str, Any] | None:
    if not auth_configured():
        return None
    try:
        return dict(st.user.to_dict())
    except Exception:  # noqa: BLE001 - an auth set-up Streamlit rejects: fall back to the URL token
        log.warning("st.user could not be read; using URL tokens", exc_info=True)
        return None


def establish() -> Person:
    """The person of this session (derived once per session, then kept), with the URL token in place.

    Call at the top of every run (the router does). A page switch drops query
    parameters, so the token is written back into the URL on every run.
    """
    person: Person | None = st.session_state.get(PERSON)
    user = _signed_in_user()
    if person is None or (user is not None and user.get("is_logged_in") and person.source != "auth"):
        person = _new_person(user)
        st.session_state[PERSON] = person
        _restore_prefs(person)
    if person.source == "token" and st.query_params.get(TOKEN_PARAM) != person.token:
        st.query_params[TOKEN_PARAM] = person.token
    return person


def _new_person(user: dict[str, Any] | None) -> Person:
    token = st.query_params.get(TOKEN_PARAM)
    if user is not None and user.get("is_logged_in"):
        token = None
    elif not is_valid_token(token):
        if token:
            st.session_state[NOTICE] = ("warning", "The user token in this link is not valid, so you start as a "
                                                   "new guest. Use the link in your browser's address bar from "
                                                   "now on.")
        token = new_token()
    identity = derive_identity(user, token)
    name = identity.default_name
    try:
        stored = jobs.get_store().profile(identity.owner)["name"]
        name = stored or name
    except MFError as exc:
        log.warning("profile of %s not readable: %s", identity.owner, exc)
    return Person(identity.owner, name, token if identity.source == "token" else None, identity.source)


def current() -> Person:
    """The person of this session (after :func:`establish`)."""
    person = st.session_state.get(PERSON)
    return person if person is not None else establish()


def actor() -> Actor:
    return current().actor


def owner() -> str:
    return current().owner


# ---------------------------------------------------------------------------- remembered choices

_PREF_KEYS = {"dataset": state.DATASET_SPEC, "split": state.SPLIT_SPEC, "seed": state.SEED}


def _restore_prefs(person: Person) -> None:
    try:
        prefs = jobs.get_store().profile(person.owner)["prefs"]
    except MFError:
        return
    for pref, key in _PREF_KEYS.items():
        if pref in prefs:
            state.put(key, prefs[pref])
    st.session_state[SAVED_PREFS] = {p: prefs.get(p) for p in _PREF_KEYS}


def save_prefs() -> None:
    """Store the data, split and seed chosen in this session with the person (when changed)."""
    person = st.session_state.get(PERSON)
    if person is None:
        return
    now = {pref: st.session_state.get(key) for pref, key in _PREF_KEYS.items()}
    if now == st.session_state.get(SAVED_PREFS):
        return
    try:
        jobs.get_store().save_profile(person.owner, prefs=now)
        st.session_state[SAVED_PREFS] = now
    except MFError as exc:
        log.warning("could not save the choices of %s: %s", person.owner, exc)


# ---------------------------------------------------------------------------- ?run= links


def apply_run_link() -> str | None:
    """Select the run named by ``?run=<id>`` (once per link); returns it, or None.

    Anyone may open any run read-only; a malformed or unknown id gets a notice.
    """
    value = st.query_params.get(RUN_PARAM)
    if not value or st.session_state.get(RUN_LINK_DONE) == value:
        return None
    st.session_state[RUN_LINK_DONE] = value
    if len(value) != 12 or not set(value) <= _RUN_ID_CHARS:
        st.session_state[NOTICE] = ("warning", "The run link is not valid (a run id has 12 characters 0-9, a-f).")
        return None
    if jobs.snapshot(value) is None:
        st.session_state[NOTICE] = ("warning", f"There is no run {value} on this server; it may have been deleted.")
        return None
    state.put(state.SELECTED_RUN, value)
    return value


def run_link(run_id: str, as_me: bool = False) -> str:
    """A link that opens ``run_id`` on the Runs page: for anyone (no user token in it), or
    ``as_me`` for this person (their token kept, e.g. the teacher's leaderboard links)."""
    base = ""
    try:
        url = st.context.url or ""
        base = url.split("?")[0].rsplit("/", 1)[0] if url else ""
    except Exception:  # noqa: BLE001 - older Streamlit: a relative link
        base = ""
    token = current().token if as_me else None
    query = f"{RUN_PARAM}={run_id}" + (f"&{TOKEN_PARAM}={token}" if token else "")
    return f"{base}/runs?{query}"


# ---------------------------------------------------------------------------- the sidebar


def _rename() -> None:
    person = current()
    name = clean_name(st.session_state.get("identity_name", ""))
    if not name:
        st.session_state["identity_name"] = person.name
        return
    try:
        jobs.get_store().save_profile(person.owner, name=name)
    except MFError as exc:
        st.session_state[NOTICE] = ("error", f"Your name could not be saved: {md(exc)}")
        return
    st.session_state[PERSON] = replace(person, name=name)


def _unlock() -> None:
    given = st.session_state.get("identity_teacher_key", "")
    st.session_state["identity_teacher_key"] = ""
    if teacher_key_matches(given):
        st.session_state[PERSON] = replace(current(), is_teacher=True)
        st.session_state[NOTICE] = ("success", "Teacher mode: you can stop and delete any run; the class "
                                               "leaderboard is on the Runs page.")
    else:
        st.session_state[NOTICE] = ("error", "That is not the teacher key.")


def _lock() -> None:
    st.session_state[PERSON] = replace(current(), is_teacher=False)


def sidebar() -> None:
    """Name (typed once), sign-in/out when configured, the teacher key, and notices."""
    person = current()
    with st.sidebar:
        notice = st.session_state.pop(NOTICE, None)
        if notice:
            getattr(st, notice[0])(notice[1])
        if person.source == "auth":
            st.caption(f"Signed in as **{md(person.name)}**")
            st.button("Sign out", key="identity_logout", on_click=st.logout)
        else:
            if st.session_state.get("identity_name") is None:
                st.session_state["identity_name"] = person.name
            st.text_input("Your name", key="identity_name", on_change=_rename, max_chars=40,
                          help="Shown with your runs. Keep this page's address (it carries your key) to come "
                               "back as yourself after a reload or from a bookmark.")
            if auth_configured():
                st.button("Sign in", key="identity_login", on_click=st.login)
        if person.is_teacher:
            st.button("Leave teacher mode", key="identity_lock", on_click=_lock, icon=":material/lock:")
        elif teacher_key_configured():
            with st.expander("Teacher"):
                st.text_input("Teacher key", type="password", key="identity_teacher_key", on_change=_unlock)
