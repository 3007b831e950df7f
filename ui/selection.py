"""The run every inspection page shows: picked once in the sidebar, remembered across pages.

``selected_run()`` draws the picker and returns the run's model (from its checkpoint:
final weights, or the latest epoch of a running run) and its dataset, both cached per
server process, or ``None`` after telling the user what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import streamlit as st

from mfcore.data.dataset import RatingData
from mfcore.errors import MFError
from mfcore.recommender import TrainedModel
from ui import identity, jobs, state
from ui.datasets import describe_spec, load_data
from ui.text import md


@dataclass(frozen=True)
class SelectedRun:
    run_id: str
    snapshot: Any  # mfcore.runs.runner.RunSnapshot
    model: TrainedModel
    data: RatingData
    stamp: float
    """The checkpoint's mtime the model was loaded at: part of every page cache key, so a
    running run's newer checkpoint recomputes (and the numbers match the model shown)."""

    @property
    def title(self) -> str:
        """Run label, dataset and split as Markdown that shows them literally (labels and file
        names are user text: issue 11)."""
        label = self.snapshot.label or self.run_id
        return md(f"{label} · {describe_spec(self.snapshot.dataset)} · {self.snapshot.split}")


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _load_model(run_id: str, path: str, mtime: float) -> TrainedModel:
    """Keyed by the checkpoint's mtime: a running run's newer checkpoint reloads."""
    return jobs.get_runner().load_model(run_id)


def _inspectable(snapshot: Any) -> bool:
    path = snapshot.checkpoint_path
    return bool(path) and os.path.isfile(path)


def _option_label(snapshot: Any) -> str:
    rmse = jobs.latest_test_rmse(snapshot)
    score = f"RMSE {rmse:.4f}" if rmse is not None else "no epochs yet"
    return (f"{snapshot.label or 'run'} · {snapshot.owner_name} · {snapshot.dataset.split(':')[0]} · "
            f"{snapshot.status} · {score} · {snapshot.run_id}")


def selected_run() -> SelectedRun | None:
    """Sidebar picker + the chosen run's model and data; None (with a message) if none."""
    state.init_state()
    try:
        runs = [s for s in jobs.get_runner().list(owner=identity.owner()) if _inspectable(s)]
    except MFError as exc:
        st.error(f"The run store could not be read: {md(exc)}")
        return None
    if not runs:
        st.info("No trained model yet. Train one on the **Train** page (a few seconds on the synthetic data), "
                "then come back here.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        return None
    ids = [s.run_id for s in runs]
    chosen = state.get(state.SELECTED_RUN)
    if chosen not in ids:
        chosen = ids[0]
    labels = {s.run_id: _option_label(s) for s in runs}
    chosen = st.sidebar.selectbox("Run to inspect", ids, index=ids.index(chosen), format_func=labels.get,
                                  help="Finished runs show their final weights; a running one its latest epoch.")
    state.put(state.SELECTED_RUN, chosen)
    snap = next(s for s in runs if s.run_id == chosen)
    try:
        stamp = os.path.getmtime(snap.checkpoint_path)
        model = _load_model(chosen, snap.checkpoint_path, stamp)
        data = load_data(snap.dataset)
    except (MFError, OSError) as exc:
        st.error(f"Run {chosen} cannot be inspected: {md(exc)}")
        return None
    if snap.status in ("running", "queued"):
        st.sidebar.caption(f"Run is {snap.status}: showing its latest checkpoint (epoch {snap.epochs_done}).")
    return SelectedRun(chosen, snap, model, data, stamp)
