"""Who is acting, and what they may do to a run.

Everyone may view and inspect every run; only a run's owner may stop, rename or delete
it, and a teacher (who typed the server's ``$MFSTUDIO_TEACHER_KEY``) may stop or delete
any run. The job runner and the run store call :func:`check_may_change` on every
mutating call, so the rule holds whatever a page draws.

Owners are opaque ids, never secrets:

* without sign-in, a browser keeps an unguessable *token* in its URL; the owner id is a
  hash of it (:func:`owner_from_token`), so the ids shown to everyone cannot be used to
  act as someone else;
* with Streamlit's authentication configured, the owner is the signed-in user
  (:func:`owner_from_user`), keyed by the identity provider's subject or email.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

from mfcore.errors import RunnerError

__all__ = [
    "TEACHER_KEY_ENV", "SYSTEM", "Actor", "Identity", "PermissionDenied", "check_may_change",
    "new_token", "is_valid_token", "owner_from_token", "owner_from_user", "derive_identity",
    "guest_name", "clean_name", "teacher_key_configured", "teacher_key_matches",
]

TEACHER_KEY_ENV = "MFSTUDIO_TEACHER_KEY"
_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
_NAME_CHARS = 40


class PermissionDenied(RunnerError):
    """The acting user may not change this run (not its owner, and not a teacher)."""


@dataclass(frozen=True)
class Actor:
    """Whoever asks for a change: an owner id, and whether a teacher key unlocked them."""

    owner: str
    is_teacher: bool = False

    def may_change(self, run_owner: str) -> bool:
        return self.is_teacher or (bool(self.owner) and self.owner == run_owner)


SYSTEM = Actor(owner="", is_teacher=True)
"""The server itself (shutdown, clean-up, tests that stand in for the teacher)."""


def check_may_change(actor: Actor, run_owner: str, run_id: str, action: str) -> None:
    """Raise :class:`PermissionDenied` unless ``actor`` may ``action`` run ``run_id``."""
    if not isinstance(actor, Actor):
        raise PermissionDenied(f"cannot {action} run {run_id}: no acting user was given")
    if not actor.may_change(run_owner):
        raise PermissionDenied(
            f"run {run_id} belongs to someone else: only its owner (or the teacher) can {action} it"
        )


# ---------------------------------------------------------------------------- identities


@dataclass(frozen=True)
class Identity:
    """The person behind a browser session."""

    owner: str
    """Stable owner id stored with runs and profiles."""
    source: str
    """"token" (a URL token) or "auth" (Streamlit sign-in)."""
    default_name: str
    """A name to show until the person chooses one (the signed-in name, or guest-xxxx)."""


def new_token() -> str:
    """An unguessable 128-bit token (32 hex digits) for a browser's URL."""
    return secrets.token_hex(16)


def is_valid_token(value: Any) -> bool:
    return isinstance(value, str) and bool(_TOKEN_RE.match(value))


def owner_from_token(token: str) -> str:
    """The owner id of a URL token: a hash, so shown ids never reveal the token."""
    if not is_valid_token(token):
        raise RunnerError("the user token in this link is not valid; it must be 32 hexadecimal digits")
    return "t-" + hashlib.sha256(token.encode("ascii")).hexdigest()[:20]


def owner_from_user(user: Mapping[str, Any]) -> str | None:
    """The owner id of a signed-in Streamlit user (``st.user``), None when not signed in."""
    if not user or not user.get("is_logged_in"):
        return None
    subject = user.get("sub") or user.get("email")
    if not subject:
        return None
    issuer = str(user.get("iss") or "")
    digest = hashlib.sha256(f"{issuer}\x00{subject}".encode("utf-8")).hexdigest()[:20]
    return "a-" + digest


def guest_name(owner: str) -> str:
    """``guest-xxxx``: a short, stable name derived from the owner id."""
    return "guest-" + hashlib.sha256(owner.encode("utf-8")).hexdigest()[:4]


def derive_identity(user: Mapping[str, Any] | None, token: str | None) -> Identity:
    """Owner of a session: the signed-in user when auth is on and they signed in, else the token's.

    Raises RunnerError for a malformed token (when no sign-in applies).
    """
    owner = owner_from_user(user or {})
    if owner is not None:
        name = clean_name(str((user or {}).get("name") or (user or {}).get("email") or "")) or guest_name(owner)
        return Identity(owner=owner, source="auth", default_name=name)
    owner = owner_from_token(token or "")
    return Identity(owner=owner, source="token", default_name=guest_name(owner))


def clean_name(name: str) -> str:
    """A display name: printable characters only, whitespace collapsed, at most 40 characters."""
    text = "".join(ch for ch in str(name) if ch.isprintable())
    text = " ".join(text.split())
    return text[:_NAME_CHARS]


# ---------------------------------------------------------------------------- the teacher key


def teacher_key_configured() -> bool:
    return bool(os.environ.get(TEACHER_KEY_ENV, "").strip())


def teacher_key_matches(given: str) -> bool:
    """Whether ``given`` is the server's teacher key (constant-time; False when none is set)."""
    configured = os.environ.get(TEACHER_KEY_ENV, "").strip()
    if not configured or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), configured.encode("utf-8"))
