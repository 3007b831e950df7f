"""Official GroupLens zips: downloaded once, checked against a pinned SHA-256, extracted
safely, and moved into the cache atomically.

Nothing half-written is ever left where a reader looks: the zip is streamed to a ``.part``
file in the cache dir and renamed only once its hash matches; extraction goes to a hidden
temporary folder that becomes the dataset folder with one ``os.replace``. A cached folder
holds a marker file, so its presence alone means "complete".

The cache is ``~/.cache/mfstudio`` unless ``MFSTUDIO_CACHE`` (or an argument) says
otherwise; the base URL can be pointed elsewhere with ``MFSTUDIO_DOWNLOAD_BASE`` (tests
serve zips from 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import ssl
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Mapping

from mfcore.data.movielens import detect_layout
from mfcore.errors import ChecksumError, DataError, DatasetNotFoundError, DownloadError, UnsafeArchiveError
from mfcore.limits import MAX_EXTRACT_BYTES, cache_max_bytes

OFFICIAL_BASE_URL = "https://files.grouplens.org/datasets/movielens"
ENV_CACHE = "MFSTUDIO_CACHE"
ENV_BASE_URL = "MFSTUDIO_DOWNLOAD_BASE"
MARKER = ".mfstudio-complete.json"
MAX_MEMBERS = 10_000
# the files the MovieLens readers use; nothing else in a zip is extracted (tags, genome scores, links)
_ML100K_SPLIT_FILES = {f"{s}.{part}" for s in ("u1", "u2", "u3", "u4", "u5", "ua", "ub") for part in ("base", "test")}
MOVIELENS_FILES = frozenset({"u.data", "u.item", "u.user", "u.genre", "ratings.csv", "movies.csv", "ratings.dat",
                             "movies.dat", "users.dat"} | _ML100K_SPLIT_FILES)
_CHUNK = 1 << 20
log = logging.getLogger(__name__)

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class ZipPin:
    """The published zip of one dataset: file name, SHA-256 and size in bytes."""

    filename: str
    sha256: str | None
    size: int | None


# SHA-256 and sizes of the official GroupLens zips, as pinned by other public projects:
# tensorflow/datasets url_checksums/movielens.txt (100k, latest-small, 1m, 20m, 25m),
# ISG-Siegen/OmniRec src/omnirec/data_loaders/movielens_{small,large}.py (1m, 10m, 20m, 25m,
# latest-small), several research repos for ml-10m (whose MD5 they cross-check against the
# official ml-10m.zip.md5, ce571fd55effeba0271552578f2648bd) and for ml-32m (238,950,008 bytes).
PINS: dict[str, ZipPin] = {
    "ml-100k": ZipPin("ml-100k.zip", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4_924_029),
    "ml-latest-small": ZipPin("ml-latest-small.zip", "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", 978_202),
    "ml-1m": ZipPin("ml-1m.zip", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5_917_549),
    "ml-10m": ZipPin("ml-10m.zip", "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862", 65_566_137),
    "ml-20m": ZipPin("ml-20m.zip", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", 198_702_078),
    "ml-25m": ZipPin("ml-25m.zip", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", 261_978_986),
    "ml-32m": ZipPin("ml-32m.zip", "e4a68655d7386b8f95f2f2424b2ff975dfdd15ffd59e0d864a14dca43e99d6ee", 238_950_008),
}
CHECKSUMS: dict[str, str | None] = {name: pin.sha256 for name, pin in PINS.items()}


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Argument, else ``$MFSTUDIO_CACHE``, else ``~/.cache/mfstudio``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mfstudio"


def resolve_base_url(base_url: str | None = None) -> str:
    """Argument, else ``$MFSTUDIO_DOWNLOAD_BASE``, else the GroupLens server."""
    return (base_url or os.environ.get(ENV_BASE_URL) or OFFICIAL_BASE_URL).rstrip("/")


def cached_dataset(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The completed cache folder of ``name``, or None (no network, no side effects)."""
    folder = resolve_cache_dir(cache_dir) / name
    if not (folder / MARKER).is_file():
        return None
    touch(folder)
    return folder


def is_movielens_file(rel: PurePosixPath) -> bool:
    """True for the files a MovieLens reader uses (``u.data``, ``ratings.csv``, ...): the
    only members of a zip that are extracted."""
    name = rel.name
    return name in MOVIELENS_FILES or (name.startswith("ratings") and name.endswith(".dat.gz"))


def fetch_movielens(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    progress: Progress | None = None,
    checksums: Mapping[str, str | None] | None = None,
    timeout: float = 60.0,
    max_bytes: int = MAX_EXTRACT_BYTES,
) -> Path:
    """The extracted folder of an official dataset, downloading it on first use.

    ``checksums`` replaces the pinned SHA-256 table (tests); with it, the pinned sizes are
    not checked either. A name pinned to None is checked for size only, if a size is known.
    Raising from ``progress`` cancels the download and leaves nothing behind.
    """
    if name not in PINS:
        raise DatasetNotFoundError(f"no official download for {name!r}", f"known: {', '.join(PINS)}",
                                   dataset=name, known=tuple(PINS))
    found = cached_dataset(name, cache_dir)
    if found is not None:
        return found
    pin = PINS[name]
    sha = checksums.get(name) if checksums is not None else pin.sha256
    size = None if checksums is not None else pin.size
    url = f"{resolve_base_url(base_url)}/{pin.filename}"
    cache = resolve_cache_dir(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    zip_path = cache / f".{pin.filename}"
    try:
        download_file(url, zip_path, sha256=sha, size=size, progress=progress, timeout=timeout)

        def validate(root: Path) -> None:
            layout = detect_layout(root, label=f"{pin.filename} from {url}")
            if layout.partial:
                raise DataError(f"{pin.filename} holds only a partial ratings file", path=url)

        extract_zip(zip_path, cache / name, validate=validate, max_bytes=max_bytes, keep=is_movielens_file,
                    marker={"source": url, "sha256": sha, "size": size})
    finally:
        zip_path.unlink(missing_ok=True)
    evict_cache(cache, keep=(cache / name,))
    return cache / name


def download_file(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
) -> Path:
    """Stream ``url`` to ``dest`` via a ``.part`` file beside it; verify, then rename.

    ``progress(bytes_done, bytes_total)`` is called after every chunk (total is None when
    the server does not say). Raises DownloadError / ChecksumError; on any failure the
    ``.part`` file is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the name lets the next start tell an orphan (kill -9) from a live download
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.{os.getpid()}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, done, total = _stream(url, out, progress, timeout, size)
        if total is not None and done != total:
            raise DownloadError(f"download of {url} was cut off after {done} of {total} bytes", "try again",
                                url=url)
        if size is not None and done != size:
            raise ChecksumError(
                f"{url} has {done} bytes but the pinned official zip has {size}; the file is "
                "not the expected release (or is corrupt), so it was not used", url=url)
        if sha256 is not None and digest != sha256.lower():
            raise ChecksumError(
                f"SHA-256 of {url} is {digest}, expected the pinned {sha256}; the download "
                "is corrupt or the file changed upstream, so it was not used", url=url)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _stream(
    url: str, out, progress: Progress | None, timeout: float, size: int | None
) -> tuple[str, int, int | None]:
    hasher = hashlib.sha256()
    done, total = 0, None
    request = urllib.request.Request(url, headers={"User-Agent": "mfstudio"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if size is not None and total is not None and total != size:
                # refuse before spending bandwidth on the wrong file
                raise ChecksumError(
                    f"{url} announces {total} bytes but the pinned official zip has {size}; "
                    "it is not the expected release, so it was not downloaded", url=url)
            if progress is not None:
                progress(0, total)
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}", url=url) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise DownloadError(
                f"the TLS certificate of {url} does not verify ({exc.reason.verify_message})",
                f"the zips are checked against pinned SHA-256 hashes, so plain http is safe: set "
                f"{ENV_BASE_URL}=http://files.grouplens.org/datasets/movielens", url=url) from None
        # no interface's way forward here (a CLI flag, a button): callers add their own
        raise DownloadError(f"cannot reach {url} ({exc.reason})", "check the network", url=url) from None
    except http.client.IncompleteRead as exc:
        got = done + len(exc.partial)
        raise DownloadError(f"download of {url} was cut off after {got} of {total} bytes", "try again",
                            url=url) from None
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"download of {url} failed after {done} bytes: {exc}", "try again",
                            url=url) from None
    return hasher.hexdigest(), done, total


def extract_zip(
    zip_path: str | Path,
    dest: str | Path,
    *,
    validate: Callable[[Path], object] | None = None,
    max_bytes: int = MAX_EXTRACT_BYTES,
    max_members: int = MAX_MEMBERS,
    marker: Mapping[str, object] | None = None,
    keep: Callable[[PurePosixPath], bool] | None = None,
) -> Path:
    """Extract a zip into ``dest`` (which must not exist yet) all-or-nothing.

    Members with absolute paths, ``..``, drive letters or symlinks raise
    UnsafeArchiveError before anything is written; only members for which ``keep`` is true
    are extracted (all when None), and their uncompressed total is capped at ``max_bytes``
    (checked against the header first, then counted while writing). Extraction goes to a
    temporary folder beside ``dest``; ``validate`` sees it before it is moved into place; on
    any failure nothing is kept.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = _check_members(zf, zip_path, max_bytes, max_members, keep)
                written = 0
                for info, rel in members:
                    target = tmp.joinpath(*rel.parts)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        while chunk := src.read(_CHUNK):
                            written += len(chunk)
                            if written > max_bytes:
                                raise UnsafeArchiveError(
                                    f"expands past the {max_bytes} byte limit while extracting "
                                    f"{_member_name(info.filename)} (a zip bomb?); nothing was kept",
                                    path=zip_path)
                            out.write(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
            # zlib.error: a valid directory over damaged deflate data (issue 11)
            raise DataError(f"is not a valid zip file ({exc}); the download or upload may be "
                            "corrupt or truncated", path=zip_path) from None
        except (NotImplementedError, RuntimeError) as exc:  # encrypted / unknown compression
            raise DataError(f"cannot be extracted ({exc})", path=zip_path) from None
        if validate is not None:
            validate(tmp)
        if marker is not None:
            info_doc = {**marker, "zip": zip_path.name, "extracted_at": time.time()}
            (tmp / MARKER).write_text(json.dumps(info_doc, indent=1), encoding="utf-8")
        _move_into_place(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _member_name(name: str) -> str:
    from mfcore.limits import excerpt

    return excerpt(name, 80)


def _check_members(
    zf: zipfile.ZipFile, zip_path: Path, max_bytes: int, max_members: int,
    keep: Callable[[PurePosixPath], bool] | None = None,
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = zf.infolist()
    if len(infos) > max_members:
        raise UnsafeArchiveError(f"has {len(infos)} members, more than the limit of {max_members}",
                                 path=zip_path)
    safe = []
    for info in infos:
        name = info.filename
        rel = PurePosixPath(name.replace("\\", "/"))
        mode = info.external_attr >> 16
        reason = None
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            reason = "an absolute path"
        elif ".." in rel.parts:
            reason = "a '..' component"
        elif "\x00" in name:
            reason = "a NUL byte in its name"
        elif stat.S_ISLNK(mode):
            reason = "a symbolic link"
        if reason:
            raise UnsafeArchiveError(
                f"member {name!r} has {reason}; refusing to extract anything from this zip",
                path=zip_path)
        parts = [p for p in rel.parts if p not in ("", ".")]
        if not parts or parts[0] == "__MACOSX":
            continue
        if keep is not None and not info.is_dir() and not keep(PurePosixPath(*parts)):
            continue
        safe.append((info, PurePosixPath(*parts)))
    total = sum(i.file_size for i, _ in safe)
    if total > max_bytes:
        raise UnsafeArchiveError(
            f"would expand to {total} bytes, over the {max_bytes} byte limit (a zip bomb?); nothing was "
            "extracted", path=zip_path)
    return safe


# --------------------------------------------------------------------------- cache size


def touch(entry: Path) -> None:
    """Mark a cache entry as just used (eviction removes the least recently used first)."""
    try:
        os.utime(entry / MARKER if (entry / MARKER).is_file() else entry)
    except OSError:
        pass


def _entry_size(entry: Path) -> int:
    total = 0
    for root, _, files in os.walk(entry):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _entry_time(entry: Path) -> float:
    try:
        marker = entry / MARKER
        return (marker if marker.is_file() else entry).stat().st_mtime
    except OSError:
        return 0.0


def cache_entries(cache_dir: str | Path | None = None) -> list[Path]:
    """The evictable entries of the cache: extracted datasets, extracted uploaded zips and uploads."""
    cache = resolve_cache_dir(cache_dir)
    entries = []
    for parent in (cache, cache / "zips", cache / "uploads"):
        if not parent.is_dir():
            continue
        for entry in parent.iterdir():
            if entry.is_dir() and not entry.name.startswith(".") and not (parent == cache and entry.name in
                                                                          ("zips", "uploads")):
                entries.append(entry)
    return entries


InUse = Callable[[], Iterable["str | Path"]]
_IN_USE: list[InUse] = []


def protect_in_use(provider: InUse) -> None:
    """Register ``provider``: a callable giving the dataset specs still needed (a server's
    queued and running runs). :func:`evict_cache` never removes the cache entries they name;
    registering the same callable again changes nothing."""
    if provider not in _IN_USE:
        _IN_USE.append(provider)


def unprotect_in_use(provider: InUse) -> None:
    """Forget a provider registered with :func:`protect_in_use`."""
    if provider in _IN_USE:
        _IN_USE.remove(provider)


def entries_of_spec(spec: str | Path, cache_dir: str | Path | None = None) -> set[Path]:
    """The cache entries a dataset spec needs: a MovieLens name's folder; for a path in the
    cache, its entry (``uploads/<digest>``, ``zips/<digest>``, ``<name>``); for a zip (an
    upload or any other), also the folder it is extracted to (``zips/<sha256[:16]>``)."""
    cache = resolve_cache_dir(cache_dir)
    text = str(spec).strip()
    if not text or text.lower().partition(":")[0] == "synthetic":
        return set()
    if text.lower() in PINS:
        return {cache / text.lower()}
    path = Path(text).expanduser()
    out: set[Path] = set()
    for base in {cache, cache.resolve()}:
        try:
            parts = path.relative_to(base).parts
        except ValueError:
            continue
        if parts:
            depth = 2 if parts[0] in ("zips", "uploads") and len(parts) > 1 else 1
            out.add(cache.joinpath(*parts[:depth]))
            if parts[0] == "uploads" and len(parts) > 2 and path.suffix.lower() == ".zip":
                out.add(cache / "zips" / parts[1])  # uploads are stored under their SHA-256[:16]
                return out
    if path.suffix.lower() == ".zip" and path.is_file():
        try:
            out.add(cache / "zips" / sha256_of(path)[:16])
        except OSError:
            pass
    return out


def evict_cache(cache_dir: str | Path | None = None, *, keep: tuple[Path, ...] = (),
                max_bytes: int | None = None) -> list[Path]:
    """Remove the least recently used cache entries until the cache is under ``max_bytes``
    (default :func:`mfcore.limits.cache_max_bytes`); entries in ``keep`` stay, and so do those
    the datasets named by :func:`protect_in_use` providers need (when a provider fails, nothing
    is evicted this time). Also removes temporary extraction folders and ``.part`` downloads
    older than an hour (a killed process's leftovers). Returns the entries removed."""
    cache = resolve_cache_dir(cache_dir)
    limit = cache_max_bytes() if max_bytes is None else max_bytes
    removed: list[Path] = []
    in_use: set[Path] = set()
    for provider in list(_IN_USE):
        try:
            for spec in provider():
                in_use |= entries_of_spec(spec, cache)
        except Exception as exc:  # noqa: BLE001 - unknown use: keep everything rather than guess
            log.warning("cache eviction skipped: cannot tell which datasets are in use (%s)", exc)
            limit = None
    now = time.time()
    for parent in (cache, cache / "zips", cache / "uploads"):
        if parent.is_dir():
            for leftover in parent.iterdir():
                if leftover.name.startswith(".") and leftover.name.endswith((".tmp", ".part")) \
                        and now - _entry_time(leftover) > 3600:
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    if limit is None:
        return removed
    kept = {Path(k).resolve() for k in (*keep, *in_use)}
    entries = [(e, _entry_size(e), _entry_time(e)) for e in cache_entries(cache)]
    total = sum(size for _, size, _ in entries)
    for entry, size, _ in sorted(entries, key=lambda x: x[2]):
        if total <= limit:
            break
        if entry.resolve() in kept:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
        total -= size
    return removed


def _move_into_place(tmp: Path, dest: Path) -> None:
    """``os.replace`` the finished folder; if another process won the race, keep theirs."""
    try:
        os.replace(tmp, dest)
        return
    except OSError:
        if (dest / MARKER).is_file():
            return
    # a leftover folder without a marker is incomplete: set it aside, then retry
    stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}-{time.time_ns()}")
    os.replace(dest, stale)
    shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, dest)


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
