"""Shared fixtures. Real MovieLens files come from ``../shared/data`` (never committed).

Tests that need them *fail* when the folder is missing instead of skipping, so CI
cannot go green without having run them. Point ``MFSTUDIO_SHARED_DATA`` elsewhere to
use another copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MFSTUDIO_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding ml-100k/, ml-latest-small/, ml-1m/ (read-only)."""
    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.fail(
            f"real MovieLens data not found at {SHARED_DATA}; "
            "set MFSTUDIO_SHARED_DATA to the folder holding ml-100k/"
        )
    return SHARED_DATA
