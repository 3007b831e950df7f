"""Helpers the AppTest modules share: a module-wide runs folder with its job runner, and
plotly's JSON arrays read back as numpy."""

from __future__ import annotations

import base64
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from mfcore.runs.runner import JobRunner
from ui import jobs


@contextmanager
def app_runner(folder: Path, shared_data: Path) -> Iterator[JobRunner]:
    """The job runner the app uses with its runs in ``folder`` and MovieLens read from
    ``shared_data`` (no downloads), for a module's worth of tests; shut down at the end."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFSTUDIO_RUNS_DIR", str(folder))
        mp.setenv("MFSTUDIO_DATA_DIR", str(shared_data))
        mp.setenv("MFSTUDIO_CACHE", str(folder.parent / "cache"))
        mp.setenv("MFSTUDIO_DOWNLOAD_BASE", "http://127.0.0.1:9")
        runner = jobs._runner_for(str(folder.resolve()))
        try:
            yield runner
        finally:
            runner.shutdown(wait=True)


def plotly_array(value) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array encoding {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return out.reshape([int(v) for v in str(shape).split(",")]) if shape else out
    return np.asarray(value, dtype=object)


def reader_text(elements) -> str:
    """Elements' text as a reader sees it: Markdown escapes removed (``bad\\.csv`` reads ``bad.csv``)."""
    import re

    return "\n".join(re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements)
