"""Export a run for the tools people already use.

* TensorBoard's Embedding Projector (https://projector.tensorflow.org, "Load"): a vectors
  TSV (one row per item or user, the factor values tab-separated, no header) and a
  metadata TSV (a header row, then one row per vector, same order): items carry their
  id, title, genres, year and rating count; users their id, rating count and any
  demographics the data has.
* The learning history as CSV (one row per epoch).

Pure functions over a :class:`~mfcore.recommender.TrainedModel` (and optionally the
:class:`~mfcore.data.dataset.RatingData` it was trained on, for titles and counts).
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any, Mapping

import numpy as np
import pandas as pd

from mfcore.data.dataset import RatingData
from mfcore.recommender import TrainedModel

__all__ = ["vectors_tsv", "item_metadata", "user_metadata", "metadata_tsv", "projector_files", "projector_zip",
           "history_csv"]

_CELL = re.compile(r"[\t\r\n]+")


def _cell(value: Any) -> str:
    """A metadata cell: tabs and line breaks (which would break the TSV) become spaces; NaN empty."""
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):  # an array-like cell
        pass
    return _CELL.sub(" ", str(value)).strip()


def vectors_tsv(vectors: np.ndarray) -> str:
    """One row per vector, its values tab-separated (float32 precision), no header."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array, got shape {v.shape}")
    return "".join("\t".join(f"{x:.7g}" for x in row) + "\n" for row in v)


def _counts(data: RatingData | None, kind: str, ids: np.ndarray) -> np.ndarray:
    if data is None:
        return np.full(len(ids), -1)
    index = data.item_ids if kind == "item" else data.user_ids
    idx = data.item_idx if kind == "item" else data.user_idx
    counts = np.bincount(idx, minlength=len(index))
    where = index.indices_of(ids)
    return np.where(where >= 0, counts[np.where(where >= 0, where, 0)], 0)


def item_metadata(trained: TrainedModel, data: RatingData | None = None) -> pd.DataFrame:
    """id, title, genres, year, ratings (in the dataset) per model item, in the model's row order."""
    ids = np.asarray(trained.item_ids.raw)
    frame = pd.DataFrame({"id": ids})
    items = data.items.reindex(ids) if data is not None else pd.DataFrame(index=ids)
    for col in ("title", "genres", "year"):
        frame[col] = items[col].to_numpy() if col in items else ""
    frame["ratings"] = _counts(data, "item", ids) if data is not None else ""
    return frame


def user_metadata(trained: TrainedModel, data: RatingData | None = None) -> pd.DataFrame:
    """id, ratings (in the dataset) and any demographics per model user, in the model's row order."""
    ids = np.asarray(trained.user_ids.raw)
    frame = pd.DataFrame({"id": ids})
    frame["ratings"] = _counts(data, "user", ids) if data is not None else ""
    if data is not None and data.users is not None:
        demo = data.users.reindex(ids).reset_index(drop=True)
        for col in demo.columns:
            if col not in frame:
                frame[col] = demo[col].to_numpy()
    return frame


def metadata_tsv(frame: pd.DataFrame) -> str:
    """The Projector's metadata format: a header row (it has several columns), then one row per vector."""
    lines = ["\t".join(_cell(c) for c in frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("\t".join(_cell(v) for v in row))
    return "\n".join(lines) + "\n"


def projector_files(trained: TrainedModel, data: RatingData | None = None) -> dict[str, str]:
    """The four Projector files by name: item and user vectors and metadata."""
    return {
        "items_vectors.tsv": vectors_tsv(trained.item_factors()),
        "items_metadata.tsv": metadata_tsv(item_metadata(trained, data)),
        "users_vectors.tsv": vectors_tsv(trained.user_factors()),
        "users_metadata.tsv": metadata_tsv(user_metadata(trained, data)),
    }


README = """Embedding Projector files from MF Studio.
Open https://projector.tensorflow.org, press Load, choose items_vectors.tsv as the vectors
and items_metadata.tsv as the metadata (or the users_ pair). Rows are in the same order.
"""


def projector_zip(trained: TrainedModel, data: RatingData | None = None) -> bytes:
    """:func:`projector_files` in one zip (with a short README)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in projector_files(trained, data).items():
            z.writestr(name, text)
        z.writestr("README.txt", README)
    return out.getvalue()


def history_csv(history: pd.DataFrame | Mapping[str, Any]) -> str:
    """The learning history (one row per epoch) as CSV, epochs in order."""
    frame = pd.DataFrame(history)
    if "epoch" in frame:
        frame = frame.sort_values("epoch")
    return frame.to_csv(index=False)
