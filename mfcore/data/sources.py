"""One entry point for every kind of data: :func:`load_dataset`.

A spec is a MovieLens name (looked up in ``data_dir``, then in the cache, then downloaded),
``"synthetic"``, or a path to a ratings file, an extracted MovieLens folder or a zip.
"""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass
from pathlib import Path

from mfcore.data import download as dl
from mfcore.data.custom import load_ratings_file
from mfcore.data.dataset import RatingData
from mfcore.data.movielens import FOLDER_NAMES, detect_layout, load_movielens
from mfcore.errors import DataError, DatasetNotFoundError, MFError

DATASET_NAMES: tuple[str, ...] = (
    "ml-100k", "ml-latest-small", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m",
)


@dataclass(frozen=True)
class DatasetInfo:
    """What a UI can show before downloading (counts are the published ones, approximate
    for ``items``: movies that have at least one rating)."""

    name: str
    title: str
    ratings: int
    users: int
    items: int
    zip_mb: float
    rating_scale: tuple[float, float]
    demographics: bool = False  # users frame with age/gender/occupation
    predefined_splits: bool = False  # ml-100k's u1..u5, ua, ub

    @property
    def url(self) -> str:
        return f"{dl.OFFICIAL_BASE_URL}/{dl.PINS[self.name].filename}"


DATASETS: dict[str, DatasetInfo] = {
    i.name: i
    for i in (
        DatasetInfo("ml-100k", "MovieLens 100K (1998)", 100_000, 943, 1_682, 4.9, (1.0, 5.0),
                    demographics=True, predefined_splits=True),
        DatasetInfo("ml-latest-small", "MovieLens latest, small (2018)", 100_836, 610, 9_724,
                    1.0, (0.5, 5.0)),
        DatasetInfo("ml-1m", "MovieLens 1M (2003)", 1_000_209, 6_040, 3_706, 5.9, (1.0, 5.0),
                    demographics=True),
        DatasetInfo("ml-10m", "MovieLens 10M (2009)", 10_000_054, 69_878, 10_677, 65.6,
                    (0.5, 5.0)),
        DatasetInfo("ml-20m", "MovieLens 20M (2015)", 20_000_263, 138_493, 26_744, 198.7,
                    (0.5, 5.0)),
        DatasetInfo("ml-25m", "MovieLens 25M (2019)", 25_000_095, 162_541, 59_047, 262.0,
                    (0.5, 5.0)),
        DatasetInfo("ml-32m", "MovieLens 32M (2023)", 32_000_204, 200_948, 84_432, 239.0,
                    (0.5, 5.0)),
    )
}

# extra spellings accepted for names: the folder ml-10m.zip extracts to, upper case, ...
_ALIASES = {"ml-10m100k": "ml-10m"}


def load_dataset(
    spec: str | Path,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    progress: dl.Progress | None = None,
    base_url: str | None = None,
) -> RatingData:
    """Load a MovieLens name, ``"synthetic"``, a ratings file, a MovieLens folder or a zip.

    A name is looked up in ``data_dir`` (extracted folders or the official zips), then in
    the cache (``cache_dir``, ``$MFSTUDIO_CACHE`` or ``~/.cache/mfstudio``), then downloaded
    (unless ``download=False``) from ``base_url`` / ``$MFSTUDIO_DOWNLOAD_BASE`` / GroupLens.
    """
    if isinstance(spec, str):
        key = _ALIASES.get(spec.strip().lower(), spec.strip().lower())
        if key.partition(":")[0] == "synthetic":
            from mfcore.data.synthetic import make_synthetic
            from mfcore.data.synthetic_spec import parse_synthetic_spec

            return make_synthetic(**parse_synthetic_spec(spec))
        if key in DATASET_NAMES:
            return _load_named(key, data_dir, cache_dir, download, progress, base_url)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_movielens(path)
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return load_zip(path, cache_dir=cache_dir)
        return load_ratings_file(path)
    if isinstance(spec, str) and "/" not in spec and "\\" not in spec and not path.suffix:
        raise _unknown_name(spec)
    raise DataError("no such file or folder; pass a MovieLens name, 'synthetic', or the path "
                    "to a ratings file, an extracted MovieLens folder or a zip", path=path)


def load_zip(
    path: str | Path, *, cache_dir: str | Path | None = None, name: str | None = None
) -> RatingData:
    """Load an uploaded MovieLens zip: extracted safely once, cached under its SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise DataError("zip file not found", path=path)
    digest = dl.sha256_of(path)
    cache = dl.resolve_cache_dir(cache_dir)
    dest = cache / "zips" / digest[:16]
    created = False
    if (dest / dl.MARKER).is_file():
        dl.touch(dest)
    else:
        # only the files the readers use are extracted (bounded by MAX_EXTRACT_BYTES), into a
        # temporary folder that is removed on any failure
        dl.extract_zip(path, dest, validate=lambda root: detect_layout(root, label=path.name),
                       keep=dl.is_movielens_file, marker={"source": path.name, "sha256": digest})
        created = True
    try:
        layout = detect_layout(dest, label=path.name)
        if name is None and layout.root == dest:  # files at the zip's top: name it after the zip
            stem = path.stem.lower()
            name = FOLDER_NAMES.get(stem, path.stem)
        data = load_movielens(dest, name=name)
    except (MFError, OSError):
        if created:  # a zip that does not load leaves nothing in the cache
            shutil.rmtree(dest, ignore_errors=True)
        raise
    if created:
        dl.evict_cache(cache, keep=(dest, path.parent))
    return data


def find_local(name: str, data_dir: str | Path) -> Path | None:
    """An extracted folder or official zip of ``name`` inside ``data_dir``, else None.

    A folder holding only a partial ratings file (e.g. the shared ml-1m gz) does not count:
    loading it under the bare name would pass it off as the full dataset.
    """
    base = Path(data_dir).expanduser()
    folders = [base / name] + [base / f for f, n in FOLDER_NAMES.items() if n == name and f != name]
    if FOLDER_NAMES.get(base.name.lower()) == name:
        folders.append(base)
    for folder in folders:
        if folder.is_dir():
            try:
                if not detect_layout(folder).partial:
                    return folder
            except DataError:
                continue
    zip_path = base / dl.PINS[name].filename
    return zip_path if zip_path.is_file() else None


def _load_named(
    name: str, data_dir: str | Path | None, cache_dir: str | Path | None, download: bool,
    progress: dl.Progress | None, base_url: str | None,
) -> RatingData:
    if data_dir is not None:
        local = find_local(name, data_dir)
        if local is not None and local.suffix == ".zip":
            return load_zip(local, cache_dir=cache_dir, name=name)
        if local is not None:
            return load_movielens(local, name=name)
    cached = dl.cached_dataset(name, cache_dir)
    if cached is None:
        if not download:
            raise _not_local(name, data_dir, dl.resolve_cache_dir(cache_dir))
        cached = dl.fetch_movielens(name, cache_dir=cache_dir, base_url=base_url, progress=progress)
    return load_movielens(cached, name=name)


def _not_local(name: str, data_dir: str | Path | None, cache: Path) -> DatasetNotFoundError:
    searched = [Path(data_dir).expanduser()] if data_dir is not None else []
    partial = searched[0] / name if searched and (searched[0] / name).is_dir() else None
    where = f"in {searched[0]} nor " if searched else ""
    note = (f" ({partial} holds only a partial ratings file; pass that folder's path to load "
            "it under its partial name)") if partial is not None else ""
    # the fix speaks of load_dataset's arguments; the CLI and the app phrase their own
    return DatasetNotFoundError(
        f"{name} is not {where}in the cache {cache} and downloads are off{note}",
        f"allow the download (download=True), put the extracted folder or "
        f"{dl.PINS[name].filename} in data_dir, or use 'synthetic'",
        dataset=name, searched=[*searched, cache], partial=partial)


def _unknown_name(spec: str) -> DatasetNotFoundError:
    close = difflib.get_close_matches(spec.lower(), [*DATASET_NAMES, "synthetic"], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return DatasetNotFoundError(
        f"unknown dataset {spec!r}{hint}",
        f"valid names: {', '.join(DATASET_NAMES)}, or 'synthetic', or a path to a ratings file, "
        "MovieLens folder or zip",
        dataset=spec, known=(*DATASET_NAMES, "synthetic"), suggestion=close[0] if close else None)
