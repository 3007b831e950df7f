"""The server's settings (``MFSTUDIO_*`` environment variables), checked once at start-up.

Each setting is read where it is used (``mfcore.runs.store.default_runs_dir``,
``mfcore.runs.runner.default_max_workers``, ``mfcore.device``...); this module checks them
all up front, so a bad value is reported once, naming the variable, its value and the
fix, instead of surfacing as a traceback on whichever page first reads it (issue 11)::

    problems = check_settings()          # [] when every setting is usable
    validate_settings()                  # SettingsError listing the blocking problems

A *blocking* problem leaves the app without its run store or job runner (the runs folder,
the number of jobs); the others (data folder, cache, device, threads) only limit what
works, and the app says so and goes on.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mfcore.errors import ConfigError, MFError

__all__ = ["SettingProblem", "SettingsError", "check_settings", "validate_settings", "check_runs_dir"]

RUNS_DIR_ENV = "MFSTUDIO_RUNS_DIR"
DATA_DIR_ENV = "MFSTUDIO_DATA_DIR"
CACHE_ENV = "MFSTUDIO_CACHE"


@dataclass(frozen=True)
class SettingProblem:
    """One unusable setting."""

    name: str
    """The environment variable, e.g. ``MFSTUDIO_MAX_JOBS``."""
    value: str
    message: str
    """What is wrong and what to do, in words."""
    blocking: bool
    """Whether the run store / job runner cannot work with it."""

    def __str__(self) -> str:
        return f"{self.name}={self.value!r}: {self.message}"


class SettingsError(ConfigError):
    """Settings the server cannot start its run store or job runner with; ``problems`` lists them."""

    def __init__(self, problems: list[SettingProblem]) -> None:
        self.problems = list(problems)
        MFError.__init__(self, "; ".join(str(p) for p in self.problems) or "invalid settings")
        self.field = self.problems[0].name if self.problems else "settings"


def check_runs_dir(path: str | Path) -> str | None:
    """Why ``path`` cannot hold the runs database and checkpoints, or None when it can.

    It must be a folder (or creatable: its nearest existing ancestor is a folder) that
    accepts new files (a probe file is created and removed; nothing else is written).
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder; point it at a folder (it is created if missing)"
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so the folder {path} cannot be created; choose another folder"
    if existing != path:
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"the folder {path} cannot be created: {existing} is not writable"
        return None
    try:
        fd, probe = tempfile.mkstemp(prefix=".mfstudio-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return (f"the folder {path} is read-only ({exc.strerror or exc}): runs cannot be stored; make it "
                "writable or point the setting at a writable folder")
    return None


def _check_folder(path: str, what: str) -> str | None:
    p = Path(path).expanduser()
    if not p.exists():
        return f"{p} does not exist; {what}"
    if not p.is_dir():
        return f"{p} is a file, not a folder; {what}"
    return None


def check_settings() -> list[SettingProblem]:
    """Every unusable ``MFSTUDIO_*`` setting (empty when all are fine). Reads nothing but the
    environment and the folders named; writes only a probe file into the runs folder."""
    env = os.environ
    problems: list[SettingProblem] = []

    def add(name: str, message: str | None, blocking: bool, default: str = "") -> None:
        if message:
            problems.append(SettingProblem(name, env.get(name, default), message, blocking))

    runs = env.get(RUNS_DIR_ENV, "").strip() or "runs"
    add(RUNS_DIR_ENV, check_runs_dir(runs), True, "runs")
    data = env.get(DATA_DIR_ENV, "").strip()
    if data:
        add(DATA_DIR_ENV, _check_folder(data, "point it at the folder holding MovieLens folders or zips, "
                                              "or unset it"), False)
    cache = env.get(CACHE_ENV, "").strip()
    if cache and Path(cache).expanduser().exists() and not Path(cache).expanduser().is_dir():
        add(CACHE_ENV, f"{cache} is a file, not a folder; downloads need a folder", False)
    for name, check, blocking in _value_checks():
        if env.get(name, "").strip():
            add(name, _message_of(check), blocking)
    return problems


def _value_checks() -> list[tuple[str, Callable[[], object], bool]]:
    from mfcore.device import DEVICE_ENV, THREADS_ENV, default_cpu_threads, resolve_device
    from mfcore.limits import ENV_CACHE_MAX_GB, cache_max_bytes
    from mfcore.runs.runner import MAX_JOBS_ENV, default_max_workers

    return [
        (MAX_JOBS_ENV, default_max_workers, True),
        (DEVICE_ENV, lambda: resolve_device(None), False),
        (THREADS_ENV, default_cpu_threads, False),
        (ENV_CACHE_MAX_GB, cache_max_bytes, False),
    ]


def _message_of(check: Callable[[], object]) -> str | None:
    """Run a setting's own reader (its error message without the variable's name, or None)."""
    try:
        check()
    except MFError as exc:
        text = str(exc)
        return text.partition(": ")[2] if isinstance(exc, ConfigError) else text
    return None


def validate_settings() -> list[SettingProblem]:
    """Raise SettingsError listing the blocking problems; return the others (for a warning)."""
    problems = check_settings()
    blocking = [p for p in problems if p.blocking]
    if blocking:
        raise SettingsError(blocking)
    return problems
