"""A user's own ratings file: CSV/TSV/``::``/``;``/``|``, with or without a header.

The app's upload step calls :func:`preview_ratings_file` to show what was sniffed
(separator, header, which column is user/item/rating/timestamp) and lets the user fix the
mapping before :func:`load_ratings_file` reads the whole file. Ids may be strings; ids made
only of digits become integers so that typing ``42`` finds user 42.

Same rules as the MovieLens readers: bad input raises :class:`DataError` naming the file,
the 1-based line and the fix; duplicate (user, item) pairs keep the LAST rating (latest
timestamp, ties broken by the later line) and the dropped count goes to
``RatingData.duplicates_dropped``.
"""

from __future__ import annotations

import codecs
import csv
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from mfcore.data._readers import (
    check_line_widths,
    check_text_head,
    drop_duplicate_pairs,
    iter_lines,
    line_of_row,
    open_binary,
    parser_detail,
    parser_line,
    read_separated,
)
from mfcore.data.dataset import RatingData, from_frame
from mfcore.errors import DataError
from mfcore.limits import EXCERPT_CHARS, excerpt, list_excerpt

SEPARATORS = ("::", "\t", ",", ";", "|")
ROLES = ("user", "item", "rating", "timestamp")
_REQUIRED = ("user", "item", "rating")

# compared after lower-casing and dropping spaces, '_' and '-': "User_ID" -> "userid"
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("userid", "user", "uid", "username", "customerid", "reviewerid"),
    "item": ("movieid", "itemid", "item", "movie", "iid", "productid", "asin", "bookid"),
    "rating": ("rating", "score", "ratings", "stars", "value"),
    "timestamp": ("timestamp", "time", "ts", "unixtime", "unixreviewtime", "datetime", "date"),
}
ITEM_ALIASES: dict[str, tuple[str, ...]] = {
    "item": ALIASES["item"] + ("id",),
    "title": ("title", "name", "movietitle", "itemname"),
    "genres": ("genres", "genre", "categories", "category", "tags"),
}
_SNIFF_BYTES = 1 << 16
_SNIFF_LINES = 50
_CHUNK_ROWS = 1 << 18  # lines typed at a time: their text (~25 MB) is all the peak adds to the typed arrays


@dataclass(frozen=True)
class RatingsPreview:
    """What was sniffed from a ratings file, for the app's column-mapping step."""

    path: str
    encoding: str  # "utf-8", or "cp1252"/"latin-1" when the file is not UTF-8
    separator: str  # one of SEPARATORS
    has_header: bool
    columns: list[str]  # header names, or "column 1", "column 2", ... without a header
    mapping: dict[str, str | None]  # role (user/item/rating/timestamp) -> column, None if unknown
    rows: pd.DataFrame = field(repr=False)  # first rows, as text, under ``columns``

    @property
    def complete(self) -> bool:
        """True when user, item and rating columns are all known."""
        return all(self.mapping.get(r) for r in _REQUIRED)


def preview_ratings_file(
    path: str | Path, n: int = 20, *, sep: str | None = None, header: bool | None = None
) -> RatingsPreview:
    """Sniff separator, header and column roles, and return the first ``n`` rows."""
    return _preview(Path(path), n, sep, header, min_fields=3)


def _preview(
    path: Path, n: int, sep: str | None, header: bool | None, *, min_fields: int
) -> RatingsPreview:
    text, encoding = _head_text(path)
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()][:_SNIFF_LINES]
    if not numbered:
        raise DataError("has no ratings (only blank lines)", path=path)
    if sep is None:
        sep = _sniff_separator(path, numbered, min_fields)
    elif sep not in SEPARATORS:
        raise DataError(f"separator {sep!r} is not supported; use one of {_seps()}", path=path)
    lines = [ln for _, ln in numbered]
    split = [_split(ln, sep) for ln in lines]
    if header is None:
        header = _looks_like_header(split)
    n_cols = max(len(r) for r in split)
    columns = (
        [c.strip() or f"column {i + 1}" for i, c in enumerate(split[0])]
        if header else [f"column {i + 1}" for i in range(n_cols)]
    )
    body = split[1:] if header else split
    rows = pd.DataFrame(
        [r + [""] * (len(columns) - len(r)) for r in body[:n]], columns=columns, dtype=object
    ) if body else pd.DataFrame(columns=columns, dtype=object)
    return RatingsPreview(
        path=str(path), encoding=encoding, separator=sep, has_header=header, columns=columns,
        mapping=_guess_mapping(columns, header, body), rows=rows,
    )


def load_ratings_file(
    path: str | Path,
    *,
    columns: Mapping[str, str | int | None] | None = None,
    sep: str | None = None,
    header: bool | None = None,
    rating_scale: tuple[float, float] | None = None,
    items_path: str | Path | None = None,
    items_columns: Mapping[str, str | int | None] | None = None,
    name: str | None = None,
) -> RatingData:
    """Read a ratings file into :class:`RatingData`.

    ``columns`` maps a role (user, item, rating, timestamp) to a column name, or a 0-based
    position; it overrides what was recognised (``{"timestamp": None}`` ignores one).
    ``rating_scale`` defaults to the data's (min, max); when given, ratings outside it are
    an error. ``items_path`` adds titles (and genres) from a second file.
    """
    path = Path(path)
    preview = preview_ratings_file(path, n=0, sep=sep, header=header)
    mapping = _apply_overrides(preview, columns, ROLES, path)
    missing = [r for r in _REQUIRED if not mapping.get(r)]
    if missing:
        raise DataError(
            f"cannot tell which column holds the {' and '.join(missing)}; the columns are "
            f"{list_excerpt(preview.columns)}. Pass columns={{'user': ..., 'item': ..., "
            f"'rating': ...}} (recognised names: userId/user_id/user, movieId/itemId/item, "
            "rating/score, timestamp/time)", path=path,
        )
    roles = [r for r in ROLES if mapping.get(r)]
    frame = _read_ratings(path, preview, [preview.columns.index(mapping[r]) for r in roles], roles,
                          mapping, rating_scale)
    frame, dropped = drop_duplicate_pairs(frame)
    items = None
    if items_path is not None:
        items = load_items_file(items_path, columns=items_columns,
                                id_kind=frame["item"].dtype.kind)
    source = f"ratings file {path} (separator {preview.separator!r}, {preview.encoding})"
    r = frame["rating"].to_numpy()
    if rating_scale is None and len(r) > 1 and r.min() == r.max():
        # the scale is taken from the data: a single value leaves nothing to learn (and no scale)
        raise DataError(f"every rating is {float(r[0]):g}, so there is nothing to learn; a ratings file "
                        "needs at least two different ratings", path=path)
    return from_frame(frame, name=name or path.stem, items=items, rating_scale=rating_scale,
                      source=source, duplicates_dropped=dropped)


def load_items_file(
    path: str | Path,
    *,
    columns: Mapping[str, str | int | None] | None = None,
    id_kind: str = "i",
) -> pd.DataFrame:
    """Titles (and genres) keyed by item id; ``id_kind`` is the ratings' id dtype kind."""
    path = Path(path)
    preview = _preview(path, 0, None, None, min_fields=2)
    if len(preview.columns) < 2:
        raise DataError("an items file needs at least an item id and a title column", path=path)
    guessed = {
        role: _match(preview.columns, aliases) if preview.has_header else None
        for role, aliases in ITEM_ALIASES.items()
    }
    if not preview.has_header:
        guessed = {"item": preview.columns[0], "title": preview.columns[1],
                   "genres": preview.columns[2] if len(preview.columns) > 2 else None}
    preview = RatingsPreview(preview.path, preview.encoding, preview.separator,
                             preview.has_header, preview.columns, guessed, preview.rows)
    mapping = _apply_overrides(preview, columns, tuple(ITEM_ALIASES), path)
    for role in ("item", "title"):
        if not mapping.get(role):
            raise DataError(
                f"cannot tell which column holds the {role}; the columns are "
                f"{list_excerpt(preview.columns)}; pass items_columns={{'item': ..., 'title': ...}}",
                path=path,
            )
    roles = [r for r in ITEM_ALIASES if mapping.get(r)]
    raw = _read_columns(path, preview, [preview.columns.index(mapping[r]) for r in roles], roles)
    ids = raw["item"].str.strip()
    if id_kind in "iu":
        ids = pd.to_numeric(ids, errors="coerce")
        raw, ids = raw[ids.notna()], ids[ids.notna()].astype(np.int64)
    items = pd.DataFrame(
        {"title": raw["title"].str.strip().to_numpy(dtype=object),
         "genres": (raw["genres"].str.strip().replace("(no genres listed)", "")
                    if "genres" in raw else pd.Series("", index=raw.index)).to_numpy(dtype=object)},
        index=pd.Index(ids.to_numpy(), name="item"),
    )
    return items[~items.index.duplicated(keep="last")]


# --------------------------------------------------------------------------- sniffing


def _head_text(path: Path) -> tuple[str, str]:
    """Decode the first 64 KiB, choosing UTF-8, else cp1252, else latin-1."""
    check_text_head(path)
    with open_binary(path) as fh:
        head = fh.read(_SNIFF_BYTES)
        truncated = bool(fh.read(1))
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            text = codecs.getincrementaldecoder(encoding)().decode(head, final=not truncated)
        except UnicodeDecodeError:
            continue
        text = text.lstrip("\ufeff")
        if truncated and "\n" in text:
            text = text[: text.rindex("\n")]  # drop the cut-off last line
        return text, encoding
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def _split(line: str, sep: str) -> list[str]:
    if sep == "::":
        return line.split("::")
    return next(csv.reader([line], delimiter=sep))


def _sniff_separator(path: Path, lines: list[tuple[int, str]], min_fields: int) -> str:
    """The first separator that splits every sniffed line like the first line."""
    best: tuple[float, str, int, int, int] | None = None  # (share, sep, width, line, fields)
    for sep in SEPARATORS:
        counts = [len(_split(text, sep)) for _, text in lines]
        width = counts[0]
        if width < min_fields:
            continue
        odd = [i for i, c in enumerate(counts) if c != width]
        if not odd:
            return sep
        share = 1 - len(odd) / len(counts)
        if share >= 0.5 and (best is None or share > best[0]):
            best = (share, sep, width, lines[odd[0]][0], counts[odd[0]])
    if best is not None:
        _, sep, width, line_no, n = best
        raise DataError(
            f"has {n} {_sep_name(sep)}-separated fields but the first line has {width}; "
            "every line needs the same columns", path=path, line=line_no)
    raise DataError(
        f"cannot detect the separator: none of {_seps()} splits the first line into at least "
        f"{min_fields} columns; a ratings file needs user, item, rating[, timestamp] on each "
        "line. Check the file, or pass sep=", path=path, line=lines[0][0],
    )


def _seps() -> str:
    return ", ".join(repr(s) if s != "\t" else "tab" for s in SEPARATORS)


def _is_number(value: str) -> bool:
    try:
        float(value.strip().replace(",", "."))
    except ValueError:
        return False
    return True


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def _looks_like_header(split: list[list[str]]) -> bool:
    first = split[0]
    known = {a for aliases in ALIASES.values() for a in aliases} | {
        a for aliases in ITEM_ALIASES.values() for a in aliases}
    if any(_norm(f) in known for f in first):
        return True
    rest = split[1:]
    if not rest:
        return not any(_is_number(f) for f in first)
    # a column that is numeric everywhere but in the first line
    return any(
        not _is_number(first[j]) and all(j < len(r) and _is_number(r[j]) for r in rest)
        for j in range(len(first))
    )


def _match(columns: list[str], aliases: tuple[str, ...]) -> str | None:
    normed = {_norm(c): c for c in reversed(columns)}
    for alias in aliases:
        if alias in normed:
            return normed[alias]
    return None


def _guess_mapping(columns: list[str], header: bool, body: list[list[str]]) -> dict[str, str | None]:
    if header:
        mapping = {role: _match(columns, aliases) for role, aliases in ALIASES.items()}
        used = [c for c in mapping.values() if c]
        if len(set(used)) != len(used):  # one column matched twice: keep the first role's
            seen: set[str] = set()
            for role in ROLES:
                if mapping[role] in seen:
                    mapping[role] = None
                elif mapping[role]:
                    seen.add(mapping[role])  # type: ignore[arg-type]
        return mapping
    # no header: MovieLens order user, item, rating[, timestamp]
    mapping = {role: (columns[i] if i < len(columns) else None) for i, role in enumerate(ROLES)}
    if mapping["timestamp"] and body and not all(
        len(r) > 3 and _is_number(r[3]) for r in body
    ):
        mapping["timestamp"] = None
    return mapping


def _apply_overrides(
    preview: RatingsPreview, overrides: Mapping[str, str | int | None] | None,
    roles: tuple[str, ...], path: Path,
) -> dict[str, str | None]:
    mapping = dict(preview.mapping)
    for role, col in (overrides or {}).items():
        if role not in roles:
            raise DataError(f"unknown role {excerpt(role)} in the column mapping; use {', '.join(roles)}",
                            path=path)
        if col is None:
            mapping[role] = None
        elif isinstance(col, int) and not isinstance(col, bool):
            if not 0 <= col < len(preview.columns):
                raise DataError(f"column position {col} for {role} is out of range: the file has "
                                f"{len(preview.columns)} columns (0-based)", path=path)
            mapping[role] = preview.columns[col]
        elif col in preview.columns:
            mapping[role] = col
        else:
            raise DataError(f"no column {excerpt(col)} for {role}; the columns are "
                            f"{list_excerpt(preview.columns)}", path=path, column=str(col)[:EXCERPT_CHARS])
    used = [c for c in mapping.values() if c]
    if len(set(used)) != len(used):
        raise DataError(f"one column is mapped to two roles: "
                        f"{ {r: excerpt(c)[1:-1] for r, c in mapping.items() if c} }", path=path)
    return mapping


# --------------------------------------------------------------------------- reading


def _read_ratings(
    path: Path, preview: RatingsPreview, positions: list[int], roles: list[str],
    mapping: dict[str, str | None], scale: tuple[float, float] | None,
) -> pd.DataFrame:
    """The typed ratings (user, item, rating[, timestamp]) in file order.

    Every line's width is checked first (:func:`check_line_widths`); then only the needed
    columns are read, :data:`_CHUNK_ROWS` lines at a time, and each block is typed at once
    (int64 ids, float32 ratings, int64 times), so the text of at most one block is alive:
    peak memory follows the ratings kept, not the file's text.
    """
    check_line_widths(path, preview.separator, len(preview.columns))
    order = sorted(positions)  # pandas returns usecols in file order
    pick = [order.index(p) for p in positions]
    for attempt in (preview.encoding, "latin-1"):
        parts: list[pd.DataFrame] = []
        offset = 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                reader = read_separated(
                    path, preview.separator, header=0 if preview.has_header else None, dtype=str,
                    names=None if preview.has_header else list(range(len(preview.columns))),
                    keep_default_na=False, encoding=attempt, skipinitialspace=True, usecols=order,
                    chunksize=_CHUNK_ROWS,
                )
                with reader:
                    for raw in reader:
                        raw = raw.iloc[:, pick]
                        raw.columns = roles
                        parts.append(_typed_ratings(raw.fillna(""), path, preview, mapping, scale, offset))
                        offset += len(raw)
            break
        except DataError:
            raise
        except UnicodeDecodeError:
            continue  # non-UTF-8 bytes past the sniffed head: latin-1 reads any byte
        except pd.errors.EmptyDataError:
            raise DataError("has no ratings", path=path) from None
        except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as exc:
            raise _field_count_error(path, preview, attempt, exc) from None
    if not offset:
        raise DataError("has a header but no ratings" if preview.has_header else "has no ratings", path=path)
    return _concat(parts)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One frame of the typed blocks; ids become strings everywhere if one block had a non-integer id."""
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    for role in ("user", "item"):
        if any(p[role].dtype.kind not in "iu" for p in parts):
            for p in parts:
                if p[role].dtype.kind in "iu":  # digits without leading zeros: str() gives the text back
                    p[role] = p[role].astype(str).astype(object)
    return pd.concat(parts, ignore_index=True)


def _read_columns(path: Path, preview: RatingsPreview, positions: list[int], roles: list[str]) -> pd.DataFrame:
    """The chosen columns as text (file order kept), with parse errors turned into DataError."""
    check_line_widths(path, preview.separator, len(preview.columns))
    for attempt in (preview.encoding, "latin-1"):
        try:
            frame = read_separated(
                path, preview.separator, header=0 if preview.has_header else None, dtype=str,
                names=None if preview.has_header else list(range(len(preview.columns))),
                keep_default_na=False, encoding=attempt, skipinitialspace=True,
            )
            break
        except UnicodeDecodeError:
            # non-UTF-8 bytes past the sniffed head: latin-1 reads any byte
            continue
        except pd.errors.EmptyDataError:
            raise DataError("has no ratings", path=path) from None
        except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as exc:
            raise _field_count_error(path, preview, attempt, exc) from None
    frame = frame.iloc[:, positions]
    frame.columns = roles
    return frame.fillna("")


def _field_count_error(path: Path, preview: RatingsPreview, encoding: str, exc: Exception) -> DataError:
    """Name the first line whose number of fields differs from the first line's."""
    width = len(preview.columns)
    for line_no, text, _ in iter_lines(path, encoding):
        if text is not None and text.strip():
            n = len(_split(text, preview.separator))
            if n != width:
                return DataError(
                    f"has {n} {_sep_name(preview.separator)}-separated fields but the first "
                    f"line has {width}; every line needs the same columns", path=path, line=line_no)
    return DataError(f"cannot be parsed ({parser_detail(exc)})", path=path, line=parser_line(exc))


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "'::'"}[sep]


def _typed_ratings(
    raw: pd.DataFrame, path: Path, preview: RatingsPreview, mapping: dict[str, str | None],
    scale: tuple[float, float] | None, offset: int = 0,
) -> pd.DataFrame:
    header = preview.has_header

    def fail(mask: np.ndarray, role: str, problem: str, fix: str) -> None:
        row = int(np.flatnonzero(mask)[0])
        value = raw[role].iat[row].strip()
        what = f"{role} {excerpt(value)} {problem}" if value else f"{role} is empty"
        raise DataError(f"{what}; {fix}", path=path, line=line_of_row(path, offset + row, header=header),
                        column=mapping[role])

    out = pd.DataFrame(index=raw.index)
    for role in ("user", "item"):
        ids = raw[role].str.strip()
        empty = (ids == "").to_numpy()
        if empty.any():
            fail(empty, role, "is empty", f"every line needs a {role} id")
        out[role] = _ids(ids)
    text = raw["rating"].str.strip()
    if preview.separator != ",":
        text = text.str.replace(",", ".", regex=False)  # decimal comma, e.g. "4,5" in a ;-file
    rating = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(rating)
    if bad.any():
        fail(bad, "rating", "is not a number", "every line needs a numeric rating")
    if scale is not None:
        lo, hi = scale
        off = (rating < lo) | (rating > hi)
        if off.any():
            fail(off, "rating", f"is outside the rating scale {lo:g}..{hi:g}",
                 "fix the value or pass the right rating_scale")
    out["rating"] = rating.astype(np.float32)
    if "timestamp" in raw:
        out["timestamp"] = _timestamps(raw["timestamp"].str.strip(), fail)
    return out


def _ids(values: pd.Series) -> pd.Series:
    """Integers when every id is made of digits, otherwise the strings as given."""
    # no leading zeros: "007" and "7" must stay two different ids
    if values.str.fullmatch(r"(?:0|-?[1-9]\d{0,17})").all():
        return values.astype(np.int64)
    return values.astype(object)


def _timestamps(values: pd.Series, fail) -> np.ndarray:
    """Unix seconds, or dates/datetimes (ISO etc.) converted to Unix seconds."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(dtype=np.float64).astype(np.int64)
    if numeric.notna().any():  # mostly Unix times: the others are typos, not dates
        fail(numeric.isna().to_numpy(), "timestamp", "is not a Unix time",
             "fix it, or leave the timestamp out with columns={'timestamp': None}")
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        fail(bad, "timestamp", "is not a Unix time or a date",
             "fix it, or leave the timestamp out with columns={'timestamp': None}")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
