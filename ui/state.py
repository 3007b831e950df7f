"""Session-state keys and their defaults, in one place.

Pages read and write ``st.session_state`` only through these names, so a renamed key
cannot silently split one setting into two.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

# The data page chooses; the train page and the runner use.
DATASET_SPEC = "dataset_spec"  # str for mfcore.data.sources.load_dataset: "synthetic", "ml-100k", a path
SYNTHETIC_PARAMS = "synthetic_params"  # dict of make_synthetic keyword arguments
SPLIT_SPEC = "split_spec"  # str for mfcore.data.splits.make_split, e.g. "random:0.1"
SEED = "seed"  # int, seeds the split and the model
ACTIVE_RUN = "active_run"  # str | None: the run the train page follows live
SELECTED_RUN = "selected_run"  # str | None: the run the inspection pages show
COMPARE_RUNS = "compare_runs"  # list[str]: runs overlaid on the runs page

DEFAULTS: dict[str, Any] = {
    DATASET_SPEC: "synthetic",
    SYNTHETIC_PARAMS: {},
    SPLIT_SPEC: "random:0.1",
    SEED: 0,
    ACTIVE_RUN: None,
    SELECTED_RUN: None,
    COMPARE_RUNS: [],
}


def init_state() -> None:
    """Fill in defaults (once per browser session); who the session is lives in ``ui.identity``."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value.copy() if isinstance(value, (dict, list)) else value


def get(key: str) -> Any:
    init_state()
    return st.session_state[key]


def put(key: str, value: Any) -> None:
    st.session_state[key] = value
