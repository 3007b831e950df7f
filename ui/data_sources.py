"""The Data page's four sources of data, and what the page says when one cannot be had.

The engine's errors name no interface (no command-line flag, no button); this module puts
the ways forward that the browser offers after them: the other sources on the page, never
a flag of ``python -m mfcore``.
"""

from __future__ import annotations

from mfcore.data.sources import DATASETS
from mfcore.errors import DatasetNotFoundError, DownloadError, MFError
from ui.datasets import ENV_DATA_DIR

# source key -> the radio's label; the messages below name the sources by these labels
SOURCES: dict[str, str] = {
    "synthetic": "Synthetic (planted factors)",
    "movielens": "MovieLens",
    "zip": "Upload a MovieLens zip",
    "file": "Upload your own ratings file",
}


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
    return str(exc)


def download_failed_message(name: str, exc: MFError) -> str:
    """Why downloading MovieLens ``name`` failed, and the ways forward without a download."""
    url = DATASETS[name].url  # the GroupLens address, even when downloads go to a mirror
    offline = isinstance(exc, DownloadError)
    return (
        f"Could not download {name}: {exc}\n\n"
        + ("This machine may be offline. " if offline else "")
        + f"Ways forward: download **{url}** on a computer with internet access and upload it here "
        f"with *{SOURCES['zip']}*; or put the extracted folder into the folder named by "
        f"`{ENV_DATA_DIR}`; or use the synthetic dataset, which needs no download."
    )
