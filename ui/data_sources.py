"""Choosing a dataset on the Data page: the four sources, the state behind the choice, and
what the page says when a source cannot deliver.

A source (synthetic, MovieLens, an uploaded zip, an uploaded ratings file) is picked with
the radio under :data:`SOURCE_KEY`; the dataset it yields is committed to
``ui.state.DATASET_SPEC`` only once it loads (:func:`commit_dataset`). No drawing here: the
page draws, these functions read and write session state and phrase messages.

The engine's errors name no interface (no command-line flag, no button); the messages below
put the ways forward that the browser offers after them: the other sources on the page,
never a flag of ``python -m mfcore``.
"""

from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from mfcore.data.sources import DATASETS
from mfcore.errors import DatasetNotFoundError, DownloadError, MFError
from ui import datasets, state
from ui.text import md
from ui.text import md

# source key -> the radio's label; the messages below name the sources by these labels
SOURCES: dict[str, str] = {
    "synthetic": "Synthetic (planted factors)",
    "movielens": "MovieLens",
    "zip": "Upload a MovieLens zip",
    "file": "Upload your own ratings file",
}
SOURCE_KEY = "data_source"  # the source radio's widget key
UPLOADS_KEY = "data_uploads"  # upload file id -> what handling it gave (see upload_memo)


# ----------------------------------------------------------------------------- state


def seed_widget(key: str, value: Any) -> None:
    """Give a widget its starting value once, through session state rather than ``value=``,
    so that later reruns keep whatever the user chose."""
    if key not in st.session_state:
        st.session_state[key] = value


def source_of(spec: str) -> str:
    """The key in :data:`SOURCES` that a dataset spec comes from."""
    if datasets.is_synthetic(spec):
        return "synthetic"
    if spec.strip().lower() in DATASETS:
        return "movielens"
    return "zip" if spec.lower().endswith(".zip") else "file"


def committed_source() -> str:
    """The source of the committed dataset (where the radio starts)."""
    return source_of(state.get(state.DATASET_SPEC))


def commit_dataset(spec: str) -> None:
    """Make ``spec`` the dataset every page uses; call it only once ``spec`` has loaded."""
    if state.get(state.DATASET_SPEC) != spec:
        state.put(state.DATASET_SPEC, spec)


def use_source(source: str) -> None:
    """Switch the source radio; an ``on_click`` callback, so it runs before the radio is drawn."""
    st.session_state[SOURCE_KEY] = source


def upload_memo() -> dict[str, Any]:
    """What handling each upload gave (by the uploader's file id), kept for this session:
    hashing a 260 MB upload again on every rerun would be slow."""
    return st.session_state.setdefault(UPLOADS_KEY, {})


def pending_choice(source: str, committed_spec: str) -> str | None:
    """When the source chosen on the page has not delivered a dataset yet (a failed download, a
    MovieLens set not here, nothing uploaded), the words saying which data is still in use, else None."""
    chosen = None
    if source == "movielens":
        chosen = st.session_state.get("data_ml_name")
        if chosen == committed_spec:
            return None
    elif source == source_of(committed_spec):
        return None
    what = f"**{md(chosen)}**" if chosen else f"*{SOURCES[source]}*"
    return (f"{what} is not in use: it has not loaded. Every page still uses "
            f"**{md(datasets.describe_spec(committed_spec))}**, shown below.")


# ----------------------------------------------------------------------------- synthetic


def committed_synthetic_knobs() -> dict[str, Any]:
    """The knobs of the last generated synthetic set (the defaults before any)."""
    return datasets.SYNTHETIC_DEFAULTS | (state.get(state.SYNTHETIC_PARAMS) or {})


def synthetic_key(knob: str) -> str:
    """The widget key of a synthetic knob's input, e.g. ``data_syn_n_users``."""
    return f"data_syn_{knob}"


def seed_synthetic_widgets(knobs: Mapping[str, Any]) -> None:
    """Start the synthetic form's inputs at ``knobs`` (once per session)."""
    for name, value in knobs.items():
        seed_widget(synthetic_key(name), datasets.SYNTHETIC_KNOBS[name](value))


def synthetic_form_knobs() -> dict[str, Any]:
    """The knobs as the synthetic form's inputs hold them now."""
    return {name: st.session_state[synthetic_key(name)] for name in datasets.SYNTHETIC_KNOBS}


def expected_ratings(knobs: Mapping[str, Any]) -> int:
    """How many ratings a synthetic set with these knobs has (density x users x items)."""
    return round(knobs["density"] * knobs["n_users"] * knobs["n_items"])


def synthetic_to_generate(submitted: bool, form: dict[str, Any], committed: dict[str, Any]) -> dict[str, Any] | None:
    """The knobs to generate on this run, or None to keep the data as it is.

    The form's on *Generate*; the last generated ones when the user has just come back to the
    synthetic source from another dataset; else nothing.
    """
    if submitted:
        return form
    if not datasets.is_synthetic(state.get(state.DATASET_SPEC)):
        return committed
    return None


def commit_synthetic_knobs(knobs: Mapping[str, Any]) -> None:
    """Remember the knobs of the synthetic set just generated."""
    state.put(state.SYNTHETIC_PARAMS, dict(knobs))


# ----------------------------------------------------------------------------- messages


def not_found_message(exc: DatasetNotFoundError) -> str:
    """Why a dataset is not here (from the error's facts) and the page's ways forward."""
    if exc.known or exc.dataset not in DATASETS:  # not a MovieLens name at all
        return (
            f"{exc.reason}. Choose a dataset with *{SOURCES['movielens']}*, upload a MovieLens zip "
            f"or your own ratings file, or use the synthetic dataset."
        )
    places = " nor in ".join(f"`{p}`" for p in exc.searched)
    partial = f" (`{exc.partial}` holds only part of its ratings)" if exc.partial else ""
    return (
        f"{exc.dataset} is not on this machine: it is not in {places}{partial}. "
        f"Ways forward: download it once with *{SOURCES['movielens']}*; upload the official zip "
        f"(**{DATASETS[exc.dataset].url}**) with *{SOURCES['zip']}*; or use the synthetic "
        "dataset, which needs no download."
    )


def load_failed_message(exc: MFError) -> str:
    """The words for any engine error met while loading a dataset on the page."""
    if isinstance(exc, DatasetNotFoundError):
        return not_found_message(exc)
    return md(datasets.friendly_text(str(exc)))


def download_failed_message(name: str, exc: MFError) -> str:
    """Why downloading MovieLens ``name`` failed, and the ways forward without a download."""
    url = DATASETS[name].url  # the GroupLens address, even when downloads go to a mirror
    offline = isinstance(exc, DownloadError)
    return (
        f"Could not download {name}: {datasets.friendly_text(str(exc))}\n\n"
        + ("This machine may be offline. " if offline else "")
        + f"Ways forward: download **{url}** on a computer with internet access and upload it here "
        f"with *{SOURCES['zip']}*; or put the extracted folder into the folder named by "
        f"`{datasets.ENV_DATA_DIR}`; or use the synthetic dataset, which needs no download."
    )


def zip_refused_message(filename: str, exc: Exception) -> str:
    """Why an uploaded zip was refused, what was kept, and what to upload instead.

    ``filename`` is Markdown already (escaped by the caller); the error, which may quote the
    file's content, is shown as literal text (the same in the two messages below)."""
    kept = getattr(exc, "upload_kept", True)  # set by datasets.load_uploaded_zip, which checks
    stored = ("Nothing was stored." if not kept else
              "An identical file uploaded earlier stays in the server's cache; nothing else was stored.")
    return (
        f"{filename} was refused: {md(datasets.friendly_text(str(exc)))}\n\nUpload an unchanged official "
        f"MovieLens zip (from files.grouplens.org), a ratings file with *{SOURCES['file']}*, or use the "
        f"synthetic dataset. {stored}"
    )


def mapping_failed_message(filename: str, exc: Exception) -> str:
    """Why an uploaded ratings file did not load with the chosen column mapping."""
    return f"{filename} could not be loaded with this mapping: {md(datasets.friendly_text(str(exc)))}"


def ratings_unreadable_message(filename: str, exc: Exception) -> str:
    """Why an uploaded ratings file cannot be read at all, and how to fix it."""
    return (
        f"{filename} cannot be read as a ratings file: {md(datasets.friendly_text(str(exc)))}\n\n"
        "Check that every line holds user, item and rating separated by a comma, tab, "
        "semicolon, '|' or '::', then upload it again."
    )
