"""Cached dataset loaders, dataset specs and upload handling for the app.

Every dataset the app shows is addressed by one *spec string*, the value stored under
``ui.state.DATASET_SPEC``, so any page (and the job runner) can load the same data:

* ``"synthetic"``: :func:`mfcore.data.synthetic.make_synthetic` with its defaults;
  ``"synthetic:n_users=1000,n_items=1500,density=0.05,rank=8,noise=0.3,popularity_skew=1.0,seed=0"``
  with knobs (see :func:`synthetic_spec` / :func:`parse_synthetic_spec`);
* a MovieLens name (``"ml-100k"`` ...), found in ``$MFSTUDIO_DATA_DIR``, else in the
  download cache (``$MFSTUDIO_CACHE`` or ``~/.cache/mfstudio``);
* a path: an uploaded MovieLens zip or ratings file, kept in ``<cache>/uploads/``.

Loaded data is cached once per server process (``st.cache_resource``: datasets are
read-only and can be large); statistics and split reports are cached per spec
(``st.cache_data``). The cache keys include the data and cache folders, so pointing the
environment variables elsewhere never serves stale data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import streamlit as st

from mfcore.data import download as dl
from mfcore.data.custom import ROLES, RatingsPreview, load_ratings_file, preview_ratings_file
from mfcore.data.dataset import RatingData
from mfcore.data.sources import DATASETS, find_local, load_dataset
from mfcore.data.splits import make_split, split_report
from mfcore.errors import ConfigError, DataError, MFError

ENV_DATA_DIR = "MFSTUDIO_DATA_DIR"
UPLOADS = "uploads"  # subfolder of the cache holding uploaded files, by content hash

# Synthetic specs live in the engine (the job runner loads them too).
from mfcore.data.synthetic_spec import (  # noqa: E402
    SYNTHETIC_DEFAULTS,
    SYNTHETIC_KNOBS,
    is_synthetic,
    parse_synthetic_spec,
    synthetic_spec,
)


# ----------------------------------------------------------------------------- where data lives


def data_dir() -> str | None:
    """``$MFSTUDIO_DATA_DIR`` (a folder of extracted MovieLens data or official zips), if set."""
    value = os.environ.get(ENV_DATA_DIR, "").strip()
    return value or None


def cache_dir() -> str:
    """The download cache: ``$MFSTUDIO_CACHE``, else ``~/.cache/mfstudio``."""
    return str(dl.resolve_cache_dir())


def dataset_location(name: str) -> str | None:
    """Where a MovieLens dataset is on this machine: "data folder", "download cache" or None."""
    folder = data_dir()
    if folder is not None and find_local(name, folder) is not None:
        return "data folder"
    if dl.cached_dataset(name, cache_dir()) is not None:
        return "download cache"
    return None


RATINGS_FILE = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "ml-10m": "ratings.dat"}  # the rest: ratings.csv


def ratings_file_name(name: str) -> str:
    """The file that holds a MovieLens dataset's ratings in its official folder."""
    return RATINGS_FILE.get(name, "ratings.csv")


def incomplete_folder(name: str) -> tuple[str, str, str | None] | None:
    """A folder of MovieLens ``name`` in the data folder that cannot be loaded because its
    ratings file is missing: (folder, the missing file's name, a partial file found instead),
    else None (the dataset is here, or no such folder exists)."""
    from mfcore.data.movielens import FOLDER_NAMES

    folder = data_dir()
    if folder is None or find_local(name, folder) is not None:
        return None
    base = Path(folder).expanduser()
    for candidate in [base / name] + [base / f for f, n in FOLDER_NAMES.items() if n == name and f != name]:
        if candidate.is_dir():
            partial = next((p.name for p in sorted(candidate.glob("ratings*.gz"))), None)
            return str(candidate), ratings_file_name(name), partial
    return None


def download_dataset(name: str, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download and extract an official MovieLens zip into the cache (DownloadError if offline)."""
    return dl.fetch_movielens(name, cache_dir=cache_dir(), progress=progress, timeout=30.0)


def official_url(name: str) -> str:
    return f"{dl.resolve_base_url()}/{dl.PINS[name].filename}"


# ----------------------------------------------------------------------------- cache eviction


ACTIVE_STATUSES = ("queued", "running")


def active_run_specs() -> list[str]:
    """The dataset specs of this server's queued and running runs: the download cache never
    evicts what they will load (:func:`mfcore.data.download.protect_in_use`)."""
    from mfcore.runs.store import DB_NAME, RunStore
    from ui import jobs  # not at import: ui.jobs imports this module's neighbours

    folder = jobs.runs_dir()
    if not (folder / DB_NAME).is_file():  # no run store yet: no runs (and none is created here)
        return []
    store = RunStore(folder)
    try:
        return sorted({r.dataset for r in store.list_runs(statuses=ACTIVE_STATUSES)})
    finally:
        store.close()


dl.protect_in_use(active_run_specs)


# ----------------------------------------------------------------------------- loading


def _normalize(spec: str) -> str:
    spec = spec.strip()
    return spec.lower() if spec.lower() in DATASETS or spec.lower() == "synthetic" else spec


def _load_uncached(spec: str, folder: str | None, cache: str) -> RatingData:
    # the engine enforces every size limit (synthetic sets: mfcore.limits.MAX_SYNTHETIC_RATINGS)
    return load_dataset(spec, data_dir=folder, cache_dir=cache, download=False)


@st.cache_resource(show_spinner=False, max_entries=6)
def _load_cached(spec: str, folder: str | None, cache: str) -> RatingData:
    return _load_uncached(spec, folder, cache)


def load_data(spec: str) -> RatingData:
    """The dataset of ``spec``, loaded once per server process; never downloads.

    Raises :class:`mfcore.errors.MFError` (e.g. DatasetNotFoundError for a MovieLens name
    that is neither in the data folder nor in the cache: see :func:`download_dataset`).
    """
    return _load_cached(_normalize(spec), data_dir(), cache_dir())


# ----------------------------------------------------------------------------- statistics

_MAX_CURVE_POINTS = 2_000


def _curve(sorted_desc: np.ndarray) -> dict[str, np.ndarray]:
    """Ranks (1-based) and counts of a long-tail curve, thinned to a few thousand points
    (every point of the head, evenly spaced ones after it) so 160k users stay cheap."""
    n = len(sorted_desc)
    if n <= _MAX_CURVE_POINTS:
        idx = np.arange(n)
    else:
        head = _MAX_CURVE_POINTS // 4
        idx = np.unique(np.concatenate([np.arange(head), np.linspace(0, n - 1, _MAX_CURVE_POINTS - head).astype(np.int64)]))
    return {"rank": idx + 1, "count": sorted_desc[idx]}


def _tail_summary(counts: np.ndarray) -> dict[str, float]:
    desc = np.sort(counts)[::-1]
    total = max(1, int(desc.sum()))
    top = max(1, int(round(0.1 * len(desc))))
    return {
        "top10_share": float(desc[:top].sum()) / total,
        "median": float(np.median(desc)) if len(desc) else 0.0,
        "min": int(desc[-1]) if len(desc) else 0,
        "max": int(desc[0]) if len(desc) else 0,
        "n_at_most_5": int((desc <= 5).sum()),
    }


def rating_histogram(rating: np.ndarray, scale: tuple[float, float]) -> dict[str, Any]:
    """Counts per rating value when ratings sit on a half-star grid, else 40 equal bins."""
    lo, hi = float(scale[0]), float(scale[1])
    if len(rating) == 0:
        return {"x": np.zeros(0), "count": np.zeros(0, dtype=np.int64), "width": 0.5, "discrete": True}
    doubled = rating.astype(np.float64) * 2.0
    codes = np.rint(doubled)
    if np.all(np.abs(doubled - codes) < 1e-6) and codes.min() >= 0:
        codes = codes.astype(np.int64)
        base = int(codes.min())
        counts = np.bincount(codes - base)
        x = (np.arange(len(counts)) + base) / 2.0
        if np.all(codes % 2 == 0):  # whole stars: no empty half-star bars between them
            whole = (np.arange(len(counts)) + base) % 2 == 0
            return {"x": x[whole], "count": counts[whole], "width": 0.8, "discrete": True}
        return {"x": x, "count": counts, "width": 0.4, "discrete": True}
    counts, edges = np.histogram(rating, bins=40, range=(lo, hi))
    return {"x": (edges[:-1] + edges[1:]) / 2.0, "count": counts, "width": (hi - lo) / 40.0, "discrete": False}


def memory_footprint(data: RatingData) -> dict[str, int]:
    """Bytes of a dense float64 user x item matrix versus the arrays actually kept."""
    sparse = data.user_idx.nbytes + data.item_idx.nbytes + data.rating.nbytes
    if data.timestamp is not None:
        sparse += data.timestamp.nbytes
    return {"dense": int(data.n_users) * int(data.n_items) * 8, "sparse": int(sparse)}


def compute_stats(data: RatingData) -> dict[str, Any]:
    """Everything the data page draws, as plain arrays and numbers (no Streamlit)."""
    per_item = np.bincount(data.item_idx, minlength=data.n_items)
    per_user = np.bincount(data.user_idx, minlength=data.n_users)
    return {
        "summary": data.summary(),
        "source": data.source,
        "histogram": rating_histogram(data.rating, data.rating_scale),
        "mean_rating": float(data.rating.mean()) if data.n_ratings else float("nan"),
        "per_item": _curve(np.sort(per_item)[::-1]),
        "per_user": _curve(np.sort(per_user)[::-1]),
        "item_tail": _tail_summary(per_item),
        "user_tail": _tail_summary(per_user),
        "memory": memory_footprint(data),
        "predefined_splits": sorted(data.predefined_splits),
        "is_movielens": data.name.split(" ")[0].lower().startswith("ml-"),
    }


@st.cache_data(show_spinner=False, max_entries=16)
def _stats_cached(spec: str, folder: str | None, cache: str) -> dict[str, Any]:
    return compute_stats(_load_cached(spec, folder, cache))


def dataset_stats(spec: str) -> dict[str, Any]:
    """:func:`compute_stats` of the dataset of ``spec``, cached per spec."""
    return _stats_cached(_normalize(spec), data_dir(), cache_dir())


@st.cache_data(show_spinner=False, max_entries=64)
def _split_cached(spec: str, split_spec: str, seed: int, folder: str | None, cache: str) -> dict[str, Any]:
    data = _load_cached(spec, folder, cache)
    split = make_split(data, split_spec, seed)
    return {**split_report(data, split), "describe": split.describe()}


def split_summary(spec: str, split_spec: str, seed: int) -> dict[str, Any]:
    """``split_report`` (sizes, cold users/items) of a split of the dataset, cached."""
    return _split_cached(_normalize(spec), split_spec, int(seed), data_dir(), cache_dir())


# ----------------------------------------------------------------------------- words


def human_bytes(n: float) -> str:
    """Decimal units, as disks and download pages count: 93.6e9 -> '94 GB'."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{int(n)} bytes"


def download_progress(done: int, total: int | None) -> tuple[float, str]:
    """A progress bar's share and text: '1.2 MB of 4.9 MB', or '1.2 MB downloaded' (size unknown)."""
    if total:
        return min(1.0, done / total), f"{human_bytes(done)} of {human_bytes(total)}"
    return 0.0, f"{human_bytes(done)} downloaded"


def describe_spec(spec: str) -> str:
    """A short human label for a dataset spec (sidebar, captions)."""
    if is_synthetic(spec):
        try:
            p = parse_synthetic_spec(spec)
        except ConfigError:
            return spec
        return (
            f"Synthetic: {p['n_users']:,} users x {p['n_items']:,} items, density {p['density']:g}, "
            f"rank {p['rank']}, noise {p['noise']:g}, skew {p['popularity_skew']:g}, seed {p['seed']}"
        )
    name = spec.strip().lower()
    if name in DATASETS:
        return f"{DATASETS[name].title} ({name})"
    upload = upload_name(spec)
    if upload is not None:
        return f"Uploaded: {upload}"
    return Path(spec).name or spec


def _under(path: Path, folder: Path) -> tuple[str, ...] | None:
    """``path``'s parts below ``folder`` (either spelled as given or resolved), or None."""
    for base in {folder, folder.resolve()}:
        try:
            return path.relative_to(base).parts
        except ValueError:
            continue
    return None


def _upload_in(folder: Path, suffix: str | None = None) -> str | None:
    """The name of the upload stored in ``<cache>/uploads/<digest>`` (the first, when one
    content was uploaded under several names)."""
    try:
        names = sorted(p.name for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".")
                       and (suffix is None or p.suffix.lower() == suffix))
    except OSError:
        return None
    return names[0] if names else None


def upload_name(spec: str | Path, cache: str | Path | None = None) -> str | None:
    """The file name a user uploaded for a spec that is a path in the cache's uploads folder
    (``uploads/<digest>/<name>``; a ratings file loaded with a chosen column mapping,
    ``uploads/<digest>/mapped-<key>/<stem>.csv``, is named by the upload it came from, with
    "(columns mapped)"); None for any other spec."""
    path = Path(str(spec))
    parts = _under(path, Path(cache or cache_dir()) / UPLOADS)
    if parts is None:
        if UPLOADS in path.parts[:-1]:  # another cache's upload (a run from an earlier setting)
            parts = path.parts[path.parts.index(UPLOADS) + 1:]
        else:
            return None
    if len(parts) == 2:
        return _uploaded_names(path.parent).get(parts[1], parts[1])
    if len(parts) == 3 and parts[1].startswith("mapped-"):
        folder = path.parent.parent
        stem = Path(parts[2]).stem
        stored = next((n for n in sorted(p.name for p in folder.glob(f"{stem}.*") if p.is_file())), None) \
            if folder.is_dir() else None
        original = _uploaded_names(folder).get(stored, stored) if stored else None
        return f"{original or parts[2]} (columns mapped)"
    return parts[-1] if parts else None


_CACHE_PATH_TAIL = r"(?:[/\\][A-Za-z0-9._-]*[A-Za-z0-9_-])*"  # a sentence's full stop is not part of a name


def friendly_text(text: str, cache: str | Path | None = None) -> str:
    """``text`` (an engine message) with every path in the download cache replaced by what
    the user knows it as: an upload by its file name, a file extracted from an uploaded zip
    as ``<zip name>/<member>``, a downloaded MovieLens file as ``<dataset>/<file>``, and the
    cache folder itself as "the download cache"."""
    base = Path(cache or cache_dir())
    spellings = sorted({str(base), str(base.resolve())}, key=len, reverse=True)
    pattern = re.compile("(?:" + "|".join(re.escape(s) for s in spellings) + ")" + _CACHE_PATH_TAIL)

    def name(match: re.Match) -> str:
        found = Path(match.group(0))
        parts = _under(found, base) or ()
        if not parts:
            return "the download cache"
        if parts[0] == UPLOADS:
            if len(parts) == 1:
                return "the uploads folder"
            return upload_name(found, base) or parts[-1]
        if parts[0] == "zips" and len(parts) >= 2:
            digest = parts[1].lstrip(".").split(".")[0]  # zips/<digest> or a temporary zips/.<digest>.<x>.tmp
            stored = _upload_in(base / UPLOADS / digest, ".zip")
            archive = _uploaded_names(base / UPLOADS / digest).get(stored, stored) if stored else "the uploaded zip"
            return "/".join((archive, *parts[2:]))
        if parts[0].startswith("."):  # a temporary extraction folder .<name>.<x>.tmp
            return "/".join((parts[0].lstrip(".").split(".")[0], *parts[1:]))
        return "/".join(parts)

    return pattern.sub(name, str(text))


def table_rows(spec: str) -> int | None:
    """Users + items of a dataset spec, known without loading it (MovieLens' published counts,
    the synthetic set's knobs); None for a file."""
    if is_synthetic(spec):
        try:
            p = parse_synthetic_spec(spec)
        except ConfigError:
            return None
        return int(p["n_users"]) + int(p["n_items"])
    info = DATASETS.get(spec.strip().lower())
    return info.users + info.items if info else None


def item_word(stats: Mapping[str, Any]) -> str:
    """What the items of the data in ``stats`` are called: 'movie' (MovieLens) or 'item'."""
    return "movie" if stats.get("is_movielens") else "item"


def plural(n: int, noun: str) -> str:
    """'1 rating' / '3 ratings' / '1,000 movies' (issue 10: never "1 ratings")."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _count(n: int, noun: str) -> str:
    """'1 item has' / '3 items have'."""
    return f"{n:,} {noun} has" if n == 1 else f"{n:,} {noun}s have"


def item_tail_sentence(stats: Mapping[str, Any]) -> str:
    """How concentrated the ratings are on a few items, in words."""
    it, word = stats["item_tail"], item_word(stats)
    return (
        f"The top 10% of {word}s get {it['top10_share']:.0%} of all ratings; the median {word} "
        f"has {it['median']:g}, and {_count(it['n_at_most_5'], word)} 5 or fewer."
    )


def user_tail_sentence(stats: Mapping[str, Any]) -> str:
    """How concentrated the ratings are on a few users, in words."""
    ut = stats["user_tail"]
    return (
        f"The top 10% of users give {ut['top10_share']:.0%} of all ratings; the median user gave "
        f"{ut['median']:g} (least {ut['min']:,}, most {ut['max']:,})."
    )


def memory_sentence(stats: dict[str, Any]) -> str:
    """E.g. '260,000 users x 45,000 movies as a dense float64 matrix would take ~94 GB; ...'."""
    s, mem = stats["summary"], stats["memory"]
    what = f"{item_word(stats)}s"
    less = mem["dense"] >= mem["sparse"]  # a tiny, nearly full matrix is cheaper dense
    ratio = max(mem["dense"], 1) / max(mem["sparse"], 1)
    ratio = ratio if less else 1 / ratio
    ratio_text = f"{ratio:,.0f} times" if ratio >= 10 else f"{ratio:.1f} times"
    compared = (f"{ratio_text} {'less' if less else 'more'} memory" if ratio >= 1.05
                else "about the same memory")  # never "1.0 times less"
    return (
        f"{s['users']:,} users x {s['items']:,} {what} as a dense float64 matrix would take "
        f"~{human_bytes(mem['dense'])}, {'although only' if s['density'] < 0.5 else 'and'} "
        f"{s['density']:.2%} of its cells hold a rating. "
        f"The sparse form used here keeps just the {s['ratings']:,} ratings as parallel arrays "
        f"(user index, item index, rating{', timestamp' if s['has_timestamps'] else ''}): "
        f"{human_bytes(mem['sparse'])}, {compared}."
    )


def duplicates_note(stats: Mapping[str, Any]) -> str | None:
    """The load-time note on dropped duplicate ratings (:func:`compute_stats`), or None."""
    s = stats["summary"]
    n = int(s.get("duplicates_dropped") or 0)
    if not n:
        return None
    kept = ("the one with the latest timestamp (on a tie, the later line)" if s.get("has_timestamps")
            else "the one on the later line")
    return (
        f"{n:,} rating{'s were' if n != 1 else ' was'} dropped while loading because the same user "
        f"rated the same {item_word(stats)} again: of each (user, item) pair only the last rating "
        f"is kept, {kept}."
    )


# ----------------------------------------------------------------------------- uploads


def _safe_name(filename: str, default: str) -> str:
    name = Path(str(filename).replace("\\", "/")).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or default
    return name[:120]


NAMES_FILE = ".names.json"  # in an upload's folder: stored name -> the name it was uploaded as
_MARKUP = re.compile(r"[\x00-\x1f\x7f*`\[\]<>\\|$~#]+")


def _display_name(filename: str, default: str) -> str:
    """The upload's own file name as the page may show it: its last path part, without control
    or Markdown/LaTeX characters (``[ ] * ` < > | $ ~ # \\`` become ``_``), at most 120 characters."""
    name = Path(str(filename).replace("\\", "/")).name
    name = _MARKUP.sub("_", name).strip() or default
    return name if len(name) <= 120 else name[:80] + "…" + name[-39:]


def _uploaded_names(folder: Path) -> dict[str, str]:
    try:
        names = json.loads((folder / NAMES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def _remember_name(folder: Path, stored: str, uploaded: str) -> None:
    names = _uploaded_names(folder)
    if names.get(stored) == uploaded:
        return
    names[stored] = uploaded
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".names.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(names, out)
        os.replace(tmp, folder / NAMES_FILE)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _store(filename: str, content: bytes, default: str, cache: str | None = None) -> tuple[Path, bool]:
    """Write an upload to ``<cache>/uploads/<sha256[:16]>/<name>`` (atomically), remembering
    the name it was uploaded as (:data:`NAMES_FILE`).

    Returns the path and whether this call created it (an identical upload is reused).
    """
    digest = hashlib.sha256(content).hexdigest()[:16]
    folder = Path(cache or cache_dir()) / UPLOADS / digest
    target = folder / _safe_name(filename, default)
    if target.is_file():
        _remember_name(folder, target.name, _display_name(filename, default))
        return target, False
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _remember_name(folder, target.name, _display_name(filename, default))
    return target, True


def _discard(path: Path) -> None:
    """Remove an upload this process stored (and its folder, when empty)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    names = path.parent / NAMES_FILE
    if names.is_file() and not any(p.name != NAMES_FILE for p in path.parent.iterdir()):
        names.unlink(missing_ok=True)  # the folder held only this upload
    for parent in (path.parent, path.parent.parent):
        if parent.name != UPLOADS and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def load_uploaded_zip(filename: str, content: bytes) -> str:
    """Check and load an uploaded MovieLens zip; return its dataset spec (a path).

    The zip is kept under the cache's uploads folder so the spec can be loaded again
    (e.g. by a training job); it is extracted once, safely, into the cache. An unsafe or
    non-MovieLens zip raises :class:`MFError` (UnsafeArchiveError, DataError; a disk error
    OSError) and leaves nothing behind: extraction is all-or-nothing and the stored copy is
    removed again. The error's ``upload_kept`` says whether a copy stays in the cache (only
    when an identical file was stored there earlier, by another upload).
    """
    if not content:
        exc = DataError(f"{filename} is empty; upload an official MovieLens zip such as ml-100k.zip")
        exc.upload_kept = False
        raise exc
    name = filename if str(filename).lower().endswith(".zip") else f"{filename}.zip"
    path, created = None, False
    try:
        path, created = _store(name, content, "upload.zip")
        load_data(str(path))
    except (MFError, OSError) as exc:
        if created:
            _discard(path)
        exc.upload_kept = path is not None and path.exists()
        raise
    return str(path)


def stage_ratings_upload(filename: str, content: bytes) -> tuple[Path, RatingsPreview]:
    """Store an uploaded ratings file and sniff it (separator, header, column roles).

    Raises :class:`mfcore.errors.DataError` for a file that cannot be a ratings table
    (the stored copy is then removed again).
    """
    if not content:
        raise DataError(f"{filename} is empty; a ratings file needs user, item and rating columns")
    path, created = _store(filename, content, "ratings.csv")
    try:
        preview = preview_ratings_file(path)
    except MFError:
        if created:
            _discard(path)
        raise
    return path, preview


def load_uploaded_ratings(path: str | Path, preview: RatingsPreview, mapping: Mapping[str, str | None]) -> str:
    """Load a staged ratings file with the chosen column mapping; return its spec (a path).

    When the mapping is the detected one the file itself is the spec. Otherwise the file
    is read with the mapping and rewritten once as ``user,item,rating[,timestamp]`` beside
    it, so that the spec still loads the same data anywhere (``load_dataset`` sniffs
    that header). Raises :class:`MFError` with the line and column at fault.
    """
    path = Path(path)
    chosen = {role: (mapping.get(role) or None) for role in ROLES}
    detected = {role: (preview.mapping.get(role) or None) for role in ROLES}
    if chosen == detected:
        spec = str(path)
    else:
        data = load_ratings_file(path, columns=chosen, sep=preview.separator, header=preview.has_header)
        key = hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:8]
        out = path.parent / f"mapped-{key}" / f"{path.stem}.csv"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".mapped.", suffix=".part")
            os.close(fd)
            try:
                data.to_frame().to_csv(tmp, index=False)
                os.replace(tmp, out)
            finally:
                Path(tmp).unlink(missing_ok=True)
        spec = str(out)
    load_data(spec)
    return spec


# ----------------------------------------------------------------------------- sidebar


def show_current_choice() -> None:
    """The chosen dataset, split and seed, in the sidebar (any page may call this)."""
    from ui import state
    from ui.text import md

    with st.sidebar:
        st.markdown("**Current choice**")
        st.caption(
            f"Data: {md(describe_spec(state.get(state.DATASET_SPEC)))}  \n"
            f"Split: `{state.get(state.SPLIT_SPEC)}`  \nSeed: {state.get(state.SEED)}"
        )
