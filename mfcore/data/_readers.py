"""Reading helpers shared by the MovieLens readers (:mod:`mfcore.data.movielens`) and the
reader of a user's own ratings file (:mod:`mfcore.data.custom`).

Opening (gzipped files too), the fast pandas read of a separated file, the 1-based line
numbers that every :class:`~mfcore.errors.DataError` names, and the one duplicate policy:
of each (user, item) pair the LAST rating is kept (latest timestamp, ties broken by the
later line).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
import pandas as pd

from mfcore.errors import DataError
from mfcore.limits import MAX_LINE_BYTES

_CHUNK = 1 << 20


# --------------------------------------------------------------------------- files


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when its name ends in ``.gz``."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def check_text_head(path: Path, *, allow_empty: bool = False) -> bytes:
    """First bytes of a (possibly gzipped) text file; rejects empty, UTF-16 and binary files."""
    try:
        with open_binary(path) as fh:
            head = fh.read(4096)
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except (OSError, EOFError) as exc:  # e.g. a truncated .gz
        raise DataError(f"cannot be read ({exc}); re-extract or re-download it", path=path) from None
    if not head and not allow_empty:
        raise DataError("file is empty; expected ratings, one per line", path=path)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        raise DataError(
            "looks like UTF-16 (or binary), not a text file in UTF-8/latin-1; re-save it as "
            "UTF-8 (e.g. in Excel: 'CSV UTF-8')", path=path, line=1,
        )
    return head


def read_separated(path: Path, sep: str, *, width: int | None = None, **read_csv: Any) -> pd.DataFrame:
    """``pandas.read_csv`` (C parser, ``index_col=False``) of a ``sep``-separated file.

    ``'::'`` (ml-1m, ml-10m) becomes a tab on the fly: the C parser on that beats the python
    engine tenfold. A line with extra fields raises ``pandas.errors.ParserWarning`` instead of
    being cut short in silence. Callers turn the pandas and decoding errors into a
    :class:`~mfcore.errors.DataError` naming the line (see :func:`line_of_row`).

    With ``width`` (the header's number of fields), every line is first checked by
    :func:`check_line_widths`: pandas builds a column for every field of its widest line,
    so one crafted line of 100,000 fields would cost gigabytes before any error.
    With ``chunksize`` the reader is returned open (an iterator of frames); close it.
    """
    if width is not None:
        check_line_widths(path, sep, width)
    if read_csv.get("chunksize"):
        raw = open_binary(path)
        source: IO[bytes] = raw
        if sep == "::":
            source = io.BufferedReader(DoubleColonToTab(raw), buffer_size=_CHUNK)
        return pd.read_csv(source, sep="\t" if sep == "::" else sep, index_col=False, engine="c", **read_csv)
    with open_binary(path) as raw, warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        source: IO[bytes] = raw
        if sep == "::":
            source = io.BufferedReader(DoubleColonToTab(raw), buffer_size=_CHUNK)
        return pd.read_csv(source, sep="\t" if sep == "::" else sep, index_col=False, engine="c", **read_csv)


class DoubleColonToTab(io.RawIOBase):
    """Stream a ``::``-separated file as tab-separated bytes, for pandas' C parser."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._carry = b""
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        while not len(self._pending):
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                if not self._carry:
                    return 0
                data, self._carry = self._carry, b""
            else:
                data = self._carry + chunk
                # hold back trailing colons: a '::' may straddle two chunks
                cut = len(data.rstrip(b":"))
                data, self._carry = data[:cut], data[cut:]
            self._pending = memoryview(data.replace(b"::", b"\t"))
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


# --------------------------------------------------------------------------- line widths


def check_line_widths(path: Path, sep: str, width: int, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
    """Refuse a line with more ``sep``-separated fields than ``width``, or longer than
    ``max_line_bytes``, streaming the file in 1 MiB blocks (memory stays at a block).

    Separators are counted as bytes; a line that seems too wide but holds a ``"`` is split
    again with the csv module (a quoted field may hold the separator). Raises DataError
    naming the line.
    """
    sep_bytes = b"\t" if sep == "::" else sep.encode()
    line_no = 0
    carry = b""
    with open_binary(path) as raw:
        source: IO[bytes] = io.BufferedReader(DoubleColonToTab(raw), buffer_size=_CHUNK) if sep == "::" else raw
        while True:
            chunk = source.read(_CHUNK)
            data = carry + chunk if carry else chunk
            if not chunk:
                if data:
                    _check_block(data + b"\n", sep, sep_bytes, width, line_no, max_line_bytes, path)
                return
            cut = data.rfind(b"\n") + 1
            block, carry = data[:cut], data[cut:]
            if len(carry) > max_line_bytes:
                raise _too_long(path, line_no + block.count(b"\n") + 1, max_line_bytes)
            if block:
                line_no = _check_block(block, sep, sep_bytes, width, line_no, max_line_bytes, path)


def _check_block(block: bytes, sep: str, sep_bytes: bytes, width: int, line_no: int, max_line_bytes: int,
                 path: Path) -> int:
    """Check the complete lines of ``block`` (it ends with a newline); return the last line number."""
    buf = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.r_[0, ends[:-1] + 1]
    long = np.flatnonzero(ends - starts > max_line_bytes)
    if len(long):
        raise _too_long(path, line_no + int(long[0]) + 1, max_line_bytes)
    if len(sep_bytes) == 1:
        seps = np.flatnonzero(buf == sep_bytes[0])
        fields = np.diff(np.r_[0, np.searchsorted(seps, ends)]) + 1
    else:  # a multi-byte separator (not produced by SEPARATORS today): count per line
        fields = np.array([block[s:e].count(sep_bytes) + 1 for s, e in zip(starts, ends)])
    for j in np.flatnonzero(fields > width):
        line = block[starts[j]:ends[j]].rstrip(b"\r")
        n = int(fields[j])
        if b'"' in line and sep != "::":
            n = len(next(csv.reader([line.decode("latin-1")], delimiter=sep), []))
            if n <= width:
                continue
        raise DataError(f"has {n:,} {_sep_word(sep)}-separated fields but the first line has "
                        f"{width}; every line needs the same columns", path=path, line=line_no + int(j) + 1)
    return line_no + len(ends)


def _too_long(path: Path, line: int, limit: int) -> DataError:
    return DataError(f"is longer than {limit // 1024} KiB; a ratings line holds a few short fields (user, item, "
                     "rating, timestamp), so this is not a ratings file", path=path, line=line)


def _sep_word(sep: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "'::'"}.get(sep, repr(sep))


# --------------------------------------------------------------------------- line numbers


def iter_lines(path: Path, encoding: str) -> Iterator[tuple[int, str | None, bytes]]:
    """(1-based line, decoded text or None if undecodable, raw bytes) for every line."""
    with open_binary(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            raw = raw.rstrip(b"\r\n")
            try:
                yield line_no, raw.decode(encoding), raw
            except UnicodeDecodeError:
                yield line_no, None, raw


def line_of_row(path: Path, row: int, *, header: bool) -> int:
    """File line of data row ``row`` (0-based), skipping blank lines as pandas does."""
    seen = -1 if header else 0
    with open_binary(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            if seen == row:
                return line_no
            seen += 1
    return row + 1 + int(header)


def parser_line(exc: Exception) -> int | None:
    """The line number in a pandas parser error, if it names one."""
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else None


def parser_detail(exc: Exception) -> str:
    """A pandas parser error without its 'Error tokenizing data' preamble, at most 200 characters
    (pandas may quote a whole bad field)."""
    text = str(exc).replace("Error tokenizing data. C error: ", "").strip()
    return text if len(text) <= 200 else f"{text[:200]}… ({len(text):,} characters)"


# --------------------------------------------------------------------------- duplicates


def drop_duplicate_pairs(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the last rating of each (user, item): latest timestamp, then later line.

    Returns the frame (file order kept) and the number of dropped rows.
    """
    key = _pair_key(frame["user"], frame["item"])
    # sorting 25M int64 is several times faster than hashing them; duplicates are rare
    ordered = np.sort(key)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return frame, 0
    dup = pd.Series(key).isin(np.unique(repeated)).to_numpy()
    idx = np.flatnonzero(dup)
    ts = frame["timestamp"].to_numpy()[idx] if "timestamp" in frame.columns else np.zeros(len(idx))
    order = np.lexsort((idx, ts, key[idx]))  # sort by key, then time, then line
    k = key[idx][order]
    last = np.r_[k[1:] != k[:-1], True]
    keep = np.ones(len(frame), dtype=bool)
    keep[idx[order[~last]]] = False
    return frame[keep].reset_index(drop=True), int((~keep).sum())


def _pair_key(users: pd.Series, items: pd.Series) -> np.ndarray:
    """One int64 per (user, item) pair, distinct for distinct pairs, for sorting 25M pairs quickly.

    Ids are labels: small non-negative integer ids are used as they are (the fast path);
    any others (strings, negative, or so large that ``user x (max item + 1)`` would not fit
    in an int64) are replaced by their factorized codes, which are below the row count.
    """
    u, i = users.to_numpy(), items.to_numpy()
    fast = (np.issubdtype(u.dtype, np.integer) and np.issubdtype(i.dtype, np.integer) and len(u)
            and int(u.min()) >= 0 and int(i.min()) >= 0
            and (int(u.max()) + 1) * (int(i.max()) + 1) < 2**63)
    if not fast:
        u = pd.factorize(users)[0]
        i = pd.factorize(items)[0]
    return u.astype(np.int64) * (int(i.max(initial=0)) + 1) + i.astype(np.int64)
