"""Training runs for a multi-user server: a SQLite run store and a background job runner.

``RunStore`` (``mfcore.runs.store``) is light (sqlite3 + pandas); ``JobRunner`` and its
request/snapshot types (``mfcore.runs.runner``) pull in torch and are imported on first use.
"""

from __future__ import annotations

from typing import Any

from mfcore.runs.store import RunRecord, RunStore

__all__ = ["RunStore", "RunRecord", "JobRunner", "RunRequest", "RunSnapshot"]

_RUNNER_NAMES = ("JobRunner", "RunRequest", "RunSnapshot")


def __getattr__(name: str) -> Any:
    if name in _RUNNER_NAMES:
        from mfcore.runs import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'mfcore.runs' has no attribute {name!r}")
