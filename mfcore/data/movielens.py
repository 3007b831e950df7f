"""Readers for the official MovieLens layouts, each returning :class:`RatingData`.

Three layouts exist: ml-100k (``u.data`` + ``u.item``/``u.user``/``u.genre`` and the
official ``uN.base``/``uN.test`` splits), the CSV releases (ml-latest-small, ml-20m,
ml-25m, ml-32m: ``ratings.csv`` + ``movies.csv``) and the ``::`` releases (ml-1m, ml-10m:
``ratings.dat`` + ``movies.dat`` [+ ``users.dat``]).

The fast path is pandas' C parser with explicit dtypes (int32 ids, float32 ratings: ml-25m
has 25M rows). Only when it fails, or a value is out of range, do we scan the file line by
line so that the :class:`DataError` can name the file, the 1-based line and the fix.

Duplicate (user, item) pairs: we keep the LAST rating (latest timestamp, ties broken by the
later line) and say how many were dropped in ``RatingData.duplicates_dropped``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from mfcore.data._readers import (
    check_text_head,
    drop_duplicate_pairs,
    iter_lines,
    line_of_row,
    parser_detail,
    parser_line,
    read_separated,
)
from mfcore.data.dataset import RatingData, from_frame
from mfcore.errors import DataError
from mfcore.limits import excerpt, list_excerpt

# name -> (min, max, step) of the official rating scale
SCALES: dict[str, tuple[float, float, float]] = {
    "ml-100k": (1.0, 5.0, 1.0),
    "ml-1m": (1.0, 5.0, 1.0),
    "ml-latest-small": (0.5, 5.0, 0.5),
    "ml-10m": (0.5, 5.0, 0.5),
    "ml-20m": (0.5, 5.0, 0.5),
    "ml-25m": (0.5, 5.0, 0.5),
    "ml-32m": (0.5, 5.0, 0.5),
}

# extracted folder name (lower case) -> dataset name; ml-10m.zip extracts to ml-10M100K/
FOLDER_NAMES = {name: name for name in SCALES} | {"ml-10m100k": "ml-10m"}

# used when u.genre is missing; order = the 19 flag columns of u.item
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

# ml-1m README: the age code is the lower bound of a band; ml-100k exact ages use the same bands
AGE_GROUPS = ("Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
ML1M_AGES = dict(zip((1, 18, 25, 35, 45, 50, 56), AGE_GROUPS))
ML1M_OCCUPATIONS = {
    0: "other", 1: "academic/educator", 2: "artist", 3: "clerical/admin",
    4: "college/grad student", 5: "customer service", 6: "doctor/health care",
    7: "executive/managerial", 8: "farmer", 9: "homemaker", 10: "K-12 student",
    11: "lawyer", 12: "programmer", 13: "retired", 14: "sales/marketing", 15: "scientist",
    16: "self-employed", 17: "technician/engineer", 18: "tradesman/craftsman",
    19: "unemployed", 20: "writer",
}
ML100K_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")

_RATING_COLS = ("user", "item", "rating", "timestamp")
_DTYPES = {"user": "int32", "item": "int32", "rating": "float32", "timestamp": "int64"}
_YEAR_IN_TITLE = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


@dataclass(frozen=True)
class Layout:
    """What :func:`detect_layout` found: which reader, where, and the dataset's name."""

    kind: str  # "ml-100k" (u.data), "csv" (ratings.csv) or "dat" (ratings.dat[.gz])
    root: Path  # the folder holding the files
    ratings: Path
    name: str  # e.g. "ml-1m", or "ml-1m (partial: users 1-2999)"
    partial: bool = False


# --------------------------------------------------------------------------- detection


def detect_layout(folder: str | Path, *, label: str | None = None) -> Layout:
    """Identify the MovieLens layout of ``folder`` (or of its single dataset subfolder).

    Official zips extract to one folder (``ml-100k/``), so a folder holding exactly one
    subfolder is looked into. A gzipped ``ratings*.dat.gz`` is accepted only here, when a
    folder is pointed at explicitly, and the name then says "partial" unless the file is
    plainly ``ratings.dat.gz``. ``label`` names the folder in errors (e.g. the zip it came
    from, rather than a temporary folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("is not a folder; expected an extracted MovieLens folder", path=folder)
    root = folder
    if _find_ratings(root) is None:
        subdirs = [p for p in folder.iterdir() if p.is_dir() and not _hidden(p)]
        files = [p for p in folder.iterdir() if p.is_file() and not _hidden(p)]
        if len(subdirs) == 1 and not files and _find_ratings(subdirs[0]) is not None:
            root = subdirs[0]
    found = _find_ratings(root)
    if found is None:
        err = DataError(
            f"no u.data or ratings.csv or ratings.dat found in {label or folder}; expected an extracted "
            "MovieLens folder such as ml-100k/ (u.data), ml-latest-small/ (ratings.csv) or "
            "ml-1m/ (ratings.dat), or a zip of one"
        )
        err.path = label or str(folder)
        raise err
    kind, ratings = found
    name = FOLDER_NAMES.get(root.name.lower(), root.name)
    partial = False
    if ratings.name.endswith(".gz") and ratings.name != "ratings.dat.gz":
        partial = True
        m = re.search(r"users?(\d+)-(\d+)", ratings.name)
        name = f"{name} (partial: users {m.group(1)}-{m.group(2)})" if m else f"{name} (partial)"
    return Layout(kind=kind, root=root, ratings=ratings, name=name, partial=partial)


def _find_ratings(root: Path) -> tuple[str, Path] | None:
    for kind, fname in (("ml-100k", "u.data"), ("csv", "ratings.csv"), ("dat", "ratings.dat")):
        if (root / fname).is_file():
            return kind, root / fname
    gz = sorted(p for p in root.glob("ratings*.dat.gz") if p.is_file())
    if gz:
        return "dat", gz[0]
    return None


def _hidden(p: Path) -> bool:
    return p.name.startswith(".") or p.name == "__MACOSX"


def load_movielens(folder: str | Path, *, name: str | None = None) -> RatingData:
    """Detect the layout of ``folder`` and read it with the matching reader."""
    layout = detect_layout(folder)
    name = name or layout.name
    if layout.kind == "ml-100k":
        return load_ml100k(layout.root, name=name)
    if layout.kind == "csv":
        return load_csv_layout(layout.root, name=name)
    return load_dat_layout(layout.root, name=name, ratings_file=layout.ratings)


def scale_for(name: str, kind: str, root: Path) -> tuple[float, float, float]:
    """The official scale for a known name; for a renamed folder, guess from its layout."""
    base = name.split(" (")[0]
    if base in SCALES:
        return SCALES[base]
    if kind == "ml-100k" or (kind == "dat" and (root / "users.dat").is_file()):
        return (1.0, 5.0, 1.0)  # ml-100k / ml-1m style
    return (0.5, 5.0, 0.5)


# --------------------------------------------------------------------------- ml-100k


def load_ml100k(folder: str | Path, *, name: str = "ml-100k") -> RatingData:
    """Read the ml-100k layout: ``u.data`` plus titles, genres, demographics and splits."""
    root = Path(folder)
    scale = scale_for(name, "ml-100k", root)
    frame = read_ratings_table(root / "u.data", sep="\t", header=False, encoding="latin-1")
    check_ratings(frame, root / "u.data", scale, header=False, dataset=name)
    frame, dropped = drop_duplicate_pairs(frame)
    items = _read_u_item(root) if (root / "u.item").is_file() else None
    users = _read_u_user(root, frame["user"]) if (root / "u.user").is_file() else None
    data = from_frame(
        frame, name=name, items=items, users=users, rating_scale=scale[:2],
        source=f"MovieLens {name} from {root / 'u.data'}", duplicates_dropped=dropped,
    )
    data.predefined_splits = OfficialSplits(root, frame["user"].to_numpy(), frame["item"].to_numpy())
    return data


def _read_u_item(root: Path) -> pd.DataFrame:
    path = root / "u.item"
    genres = _read_u_genre(root)
    check_text_head(path)
    try:
        raw = pd.read_csv(
            path, sep="|", header=None, encoding="latin-1", dtype=str,
            quoting=csv.QUOTE_NONE, keep_default_na=False, index_col=False,
        )
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{parser_detail(exc)}; u.item needs 24 '|'-separated fields per line "
            "(id|title|release date|video date|url|19 genre flags)", path=path,
            line=parser_line(exc),
        ) from None
    if raw.shape[1] != 5 + len(genres):
        raise DataError(
            f"has {raw.shape[1]} '|'-separated fields, expected {5 + len(genres)} "
            f"(id|title|release date|video date|url|{len(genres)} genre flags from u.genre)",
            path=path, line=1,
        )
    ids = pd.to_numeric(raw[0], errors="coerce")
    flags = raw.iloc[:, 5:].apply(pd.to_numeric, errors="coerce")
    bad = ids.isna().to_numpy() | flags.isna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            "movie id or a genre flag is missing or not a number; each line must be "
            "id|title|release date|video date|url followed by 0/1 genre flags",
            path=path, line=line_of_row(path, row, header=False),
        )
    names = np.array(genres, dtype=object)
    flag_arr = flags.to_numpy(dtype=np.int8) == 1
    # ml-100k's "unknown" genre is the absence of one, as "(no genres listed)" is in ml-latest
    joined = ["|".join(g for g in names[row] if g != "unknown") for row in flag_arr]
    titles = raw[1].str.strip()
    items = pd.DataFrame(
        {"title": titles.to_numpy(dtype=object), "genres": joined,
         "year": _years(titles, raw[2])},
        index=pd.Index(ids.to_numpy(dtype=np.int32), name="item"),
    )
    return items


def _read_u_genre(root: Path) -> tuple[str, ...]:
    path = root / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    check_text_head(path)
    pairs = []
    for line_no, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        name, _, gid = line.rpartition("|")
        if not name or not gid.strip().isdigit():
            raise DataError("expected 'genre name|genre id'", path=path, line=line_no)
        pairs.append((int(gid), name))
    return tuple(n for _, n in sorted(pairs))


def _read_u_user(root: Path, rated_users: pd.Series) -> pd.DataFrame:
    path = root / "u.user"
    rows = _split_lines(path, "|", 5, "latin-1", "user id|age|gender|occupation|zip code")
    frame = pd.DataFrame(rows, columns=["user", "age", "gender", "occupation", "zip"])
    for col in ("user", "age"):
        num = pd.to_numeric(frame[col], errors="coerce")
        if num.isna().any():
            row = int(np.flatnonzero(num.isna().to_numpy())[0])
            raise DataError(
                f"{col} is not a number; expected user id|age|gender|occupation|zip code",
                path=path, line=row + 1, column=col,
            )
        frame[col] = num.astype(np.int64)
    frame["age_group"] = age_group(frame["age"])
    users = frame.set_index("user")
    users.index = users.index.astype(np.int32)
    return users[users.index.isin(rated_users.unique())]


def age_group(ages: pd.Series) -> pd.Categorical:
    """Exact ages to the ml-1m README's bands, so both datasets share one vocabulary."""
    return pd.cut(
        ages, bins=[-np.inf, 17, 24, 34, 44, 49, 55, np.inf], labels=list(AGE_GROUPS),
    )


class OfficialSplits(Mapping):
    """ml-100k's official splits (``u1``..``u5``, ``ua``, ``ub``: split name -> (train rows,
    test rows) of u.data), each read from its uN.base/uN.test the first time it is asked for:
    a run on a random split never reads the 14 files (~0.2 s of a cold CLI run). A split whose
    files are damaged raises its :class:`DataError` when it is asked for."""

    def __init__(self, root: Path, users: np.ndarray, items: np.ndarray) -> None:
        self._root = root
        self._users, self._items = users, items
        self._names = [s for s in ML100K_SPLITS
                       if (root / f"{s}.base").is_file() and (root / f"{s}.test").is_file()]
        self._read: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._index: pd.MultiIndex | None = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._read:
            self._read[name] = self._rows_of(name)
        return self._read[name]

    def _rows_of(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Map each (user, item) pair of uN.base and uN.test to its row of u.data."""
        if self._index is None:
            self._index = pd.MultiIndex.from_arrays([self._users, self._items])
        parts = []
        for path in (self._root / f"{split}.base", self._root / f"{split}.test"):
            part = read_ratings_table(path, sep="\t", header=False, encoding="latin-1")
            rows = self._index.get_indexer(
                pd.MultiIndex.from_arrays([part["user"].to_numpy(), part["item"].to_numpy()])
            )
            if (rows < 0).any():
                row = int(np.flatnonzero(rows < 0)[0])
                raise DataError(
                    f"(user {part['user'].iat[row]}, item {part['item'].iat[row]}) is not in "
                    "u.data; the official splits are subsets of u.data, re-extract the zip",
                    path=path, line=line_of_row(path, row, header=False),
                )
            parts.append(np.sort(rows).astype(np.int64))
        return parts[0], parts[1]


# --------------------------------------------------------------------------- CSV releases


def load_csv_layout(folder: str | Path, *, name: str | None = None) -> RatingData:
    """Read ml-latest-small / ml-20m / ml-25m / ml-32m (``ratings.csv`` + ``movies.csv``)."""
    root = Path(folder)
    name = name or FOLDER_NAMES.get(root.name.lower(), root.name)
    scale = scale_for(name, "csv", root)
    path = root / "ratings.csv"
    frame = read_ratings_table(path, sep=",", header=True, encoding="utf-8")
    check_ratings(frame, path, scale, header=True, dataset=name)
    frame, dropped = drop_duplicate_pairs(frame)
    items = _read_movies_csv(root / "movies.csv") if (root / "movies.csv").is_file() else None
    return from_frame(
        frame, name=name, items=items, rating_scale=scale[:2],
        source=f"MovieLens {name} from {path}", duplicates_dropped=dropped,
    )


def _read_movies_csv(path: Path) -> pd.DataFrame:
    _check_header(path, ("movieId", "title", "genres"), encoding="utf-8")
    try:
        raw = pd.read_csv(
            path, dtype={"movieId": "str", "title": "str", "genres": "str"},
            encoding="utf-8", keep_default_na=False, index_col=False,
        )
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{parser_detail(exc)}; movies.csv lines are movieId,title,genres "
            "(quote titles that contain commas)", path=path, line=parser_line(exc),
        ) from None
    ids = pd.to_numeric(raw["movieId"], errors="coerce")
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise DataError(
            "movieId is missing or not a number", path=path, column="movieId",
            line=line_of_row(path, row, header=True),
        )
    genres = raw["genres"].str.strip().replace("(no genres listed)", "")
    titles = raw["title"].str.strip()
    return pd.DataFrame(
        {"title": titles.to_numpy(dtype=object), "genres": genres.to_numpy(dtype=object),
         "year": _years(titles)},
        index=pd.Index(ids.to_numpy(dtype=np.int32), name="item"),
    )


# --------------------------------------------------------------------------- :: releases


def load_dat_layout(
    folder: str | Path, *, name: str | None = None, ratings_file: str | Path | None = None
) -> RatingData:
    """Read ml-1m / ml-10m (``ratings.dat`` + ``movies.dat`` [+ ``users.dat``]).

    ``ratings_file`` may point at a gzipped (possibly partial) ratings file in the folder.
    """
    root = Path(folder)
    path = Path(ratings_file) if ratings_file is not None else root / "ratings.dat"
    name = name or FOLDER_NAMES.get(root.name.lower(), root.name)
    scale = scale_for(name, "dat", root)
    frame = read_ratings_table(path, sep="::", header=False, encoding="latin-1")
    check_ratings(frame, path, scale, header=False, dataset=name)
    frame, dropped = drop_duplicate_pairs(frame)
    items = _read_movies_dat(root / "movies.dat") if (root / "movies.dat").is_file() else None
    users = (
        _read_users_dat(root / "users.dat", frame["user"]) if (root / "users.dat").is_file() else None
    )
    return from_frame(
        frame, name=name, items=items, users=users, rating_scale=scale[:2],
        source=f"MovieLens {name} from {path}", duplicates_dropped=dropped,
    )


def _read_movies_dat(path: Path) -> pd.DataFrame:
    # ml-1m's movies.dat is latin-1, ml-10m's is UTF-8: try UTF-8 first
    encoding = "utf-8"
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        encoding = "latin-1"
    rows = _split_lines(path, "::", 3, encoding, "MovieID::Title::Genres", free=1)
    raw = pd.DataFrame(rows, columns=["item", "title", "genres"])
    ids = pd.to_numeric(raw["item"], errors="coerce")
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise DataError("MovieID is not a number; expected MovieID::Title::Genres",
                        path=path, line=row + 1, column="MovieID")
    titles = raw["title"].str.strip()
    return pd.DataFrame(
        {"title": titles.to_numpy(dtype=object),
         "genres": raw["genres"].str.strip().replace("(no genres listed)", "").to_numpy(dtype=object),
         "year": _years(titles)},
        index=pd.Index(ids.to_numpy(dtype=np.int32), name="item"),
    )


def _read_users_dat(path: Path, rated_users: pd.Series) -> pd.DataFrame:
    rows = _split_lines(path, "::", 5, "latin-1", "UserID::Gender::Age::Occupation::Zip-code")
    raw = pd.DataFrame(rows, columns=["user", "gender", "age", "occupation", "zip"])
    for col, allowed in (("user", None), ("age", ML1M_AGES), ("occupation", ML1M_OCCUPATIONS)):
        num = pd.to_numeric(raw[col], errors="coerce")
        bad = num.isna() if allowed is None else ~num.isin(list(allowed))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            hint = "" if allowed is None else f" (one of the codes {sorted(allowed)} in the ml-1m README)"
            raise DataError(f"{col} {excerpt(raw[col].iat[row])} is not a valid code{hint}",
                            path=path, line=row + 1, column=col)
        raw[col] = num.astype(np.int64)
    users = pd.DataFrame(
        {
            # ml-1m gives only an age band: ``age`` is the band's lower bound (the official code)
            "age": raw["age"].to_numpy(),
            "gender": raw["gender"].to_numpy(dtype=object),
            "occupation": raw["occupation"].map(ML1M_OCCUPATIONS).to_numpy(dtype=object),
            "zip": raw["zip"].to_numpy(dtype=object),
            "age_group": pd.Categorical(raw["age"].map(ML1M_AGES), categories=list(AGE_GROUPS),
                                        ordered=True),
        },
        index=pd.Index(raw["user"].to_numpy(dtype=np.int32), name="user"),
    )
    return users[users.index.isin(rated_users.unique())]


# --------------------------------------------------------------------------- shared checks


def read_ratings_table(path: Path, *, sep: str, header: bool, encoding: str) -> pd.DataFrame:
    """Read user, item, rating, timestamp columns fast; explain the first bad line on failure.

    ``header=True`` means a CSV with ``userId,movieId,rating[,timestamp]``; otherwise the
    four fields are positional (u.data, ratings.dat).
    """
    path = Path(path)
    head = check_text_head(path)
    if header:
        names = _check_header(path, ("userId", "movieId", "rating"), encoding=encoding, head=head)
        usecols = ["userId", "movieId", "rating"] + (["timestamp"] if "timestamp" in names else [])
        rename = dict(zip(usecols, _RATING_COLS))
        dtypes = {src: _DTYPES[dst] for src, dst in rename.items()}
        kwargs = dict(header=0, usecols=usecols if len(names) > len(usecols) else None)
    else:
        rename, dtypes = {}, dict(_DTYPES)
        kwargs = dict(header=None, names=list(_RATING_COLS))
    try:
        frame = read_separated(path, sep, width=len(names) if header else len(_RATING_COLS), dtype=dtypes,
                               encoding=encoding, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError("has no ratings", path=path) from None
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError,
            OSError, EOFError) as exc:
        raise _diagnose(path, sep, header, encoding, exc) from None
    frame = frame.rename(columns=rename)
    if frame.empty:
        raise DataError("has no ratings (only a header)" if header else "has no ratings", path=path)
    return frame


def check_ratings(
    frame: pd.DataFrame, path: Path, scale: tuple[float, float, float], *,
    header: bool, dataset: str,
) -> None:
    """NaN and off-scale ratings -> DataError naming the first offending line."""
    lo, hi, step = scale
    r = frame["rating"].to_numpy()
    nan = np.isnan(r)
    off = ~nan & ((r < lo - 1e-6) | (r > hi + 1e-6) | (np.abs(r / step - np.round(r / step)) > 1e-6))
    for mask, what in ((nan, "is empty or not a number"), (off, None)):
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            line = line_of_row(path, row, header=header)
            if what is None:
                what = (f"{r[row]:g} is outside {dataset}'s rating scale {lo:g}..{hi:g} in steps "
                        f"of {step:g}; check that this is the right dataset, or load your own "
                        "file as a custom ratings file (its scale is taken from the data)")
            else:
                what += "; every line needs a numeric rating"
            raise DataError(f"rating {what}", path=path, line=line, column="rating")


def _years(titles: pd.Series, dates: pd.Series | None = None) -> pd.api.extensions.ExtensionArray:
    """Year from "Title (1995)", else from a release date like "01-Jan-1995"; NA if neither."""
    year = titles.str.extract(_YEAR_IN_TITLE, expand=False)
    if dates is not None:
        from_date = dates.str.extract(r"(\d{4})\s*$", expand=False)
        year = year.fillna(from_date)
    return pd.to_numeric(year, errors="coerce").astype("Int64").array


# --------------------------------------------------------------------------- line-level help


def _split_lines(
    path: Path, sep: str, n_fields: int, encoding: str, expected: str, *, free: int | None = None
) -> list[list[str]]:
    """Small metadata files (users, movies): strict field counts with line numbers.

    Field ``free`` (a title) may itself contain the separator.
    """
    check_text_head(path)
    rows = []
    for line_no, text, _ in iter_lines(path, encoding):
        if text is None:
            raise _utf8_error(path, line_no)
        if not text.strip():
            continue
        parts = text.split(sep)
        if free is not None and len(parts) > n_fields:
            extra = len(parts) - n_fields
            parts = parts[:free] + [sep.join(parts[free: free + extra + 1])] + parts[free + extra + 1:]
        if len(parts) != n_fields:
            raise DataError(f"has {len(parts)} fields, expected {n_fields}: {expected}",
                            path=path, line=line_no)
        rows.append([p.strip() for p in parts])
    return rows


def _check_header(
    path: Path, required: tuple[str, ...], *, encoding: str, head: bytes | None = None
) -> list[str]:
    head = head if head is not None else check_text_head(path)
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        names = [n.strip().strip('"') for n in first.decode(encoding).lstrip("\ufeff").split(",")]
    except UnicodeDecodeError:
        raise _utf8_error(path, 1) from None
    missing = [c for c in required if c not in names]
    if missing:
        lower = {n.lower(): n for n in names}
        hints = [f"{lower[c.lower()]!r} should be spelled {c!r}" for c in missing if c.lower() in lower]
        raise DataError(
            f"missing column(s) {', '.join(missing)}; found {list_excerpt(names) or 'nothing'}. "
            f"The header must be {','.join(required)}"
            + (f" ({'; '.join(hints)})" if hints else "")
            + "; for a file in another format, load it as a custom ratings file",
            path=path, line=1, column=missing[0],
        )
    return names


def _diagnose(path: Path, sep: str, header: bool, encoding: str, exc: Exception) -> DataError:
    """Find the first line that the fast reader choked on and say what is wrong with it."""
    if isinstance(exc, (OSError, EOFError)) and not isinstance(exc, UnicodeDecodeError):
        return DataError(f"cannot be read ({exc}); re-extract or re-download it", path=path)
    expected = "userId,movieId,rating,timestamp" if header else sep.join(
        ["user", "item", "rating", "timestamp"])
    if sep == "\t":
        expected = "user<TAB>item<TAB>rating<TAB>timestamp"
    n_header = len(_check_header(path, ("userId",), encoding=encoding)) if header else 4
    for line_no, text, _ in iter_lines(path, encoding):
        if header and line_no == 1:
            continue
        if text is None:
            return _utf8_error(path, line_no)
        if not text.strip():
            continue
        parts = text.split(sep)
        if len(parts) != n_header:
            return DataError(f"has {len(parts)} fields, expected {n_header}: {expected}",
                             path=path, line=line_no)
        for pos, (col, kind) in enumerate(zip(("user", "item", "rating", "timestamp"),
                                              (int, int, float, int))):
            if pos >= len(parts):
                break
            value = parts[pos].strip()
            try:
                kind(value)
            except ValueError:
                what = "empty" if not value else f"{excerpt(value)} is not a{'n integer' if kind is int else ' number'}"
                return DataError(f"{col} is {what}; expected {expected}", path=path,
                                 line=line_no, column=col)
    return DataError(f"cannot be parsed ({parser_detail(exc)}); expected lines like {expected}", path=path,
                     line=parser_line(exc))


def _utf8_error(path: Path, line: int | None = None) -> DataError:
    if line is None:
        for line_no, text, _ in iter_lines(path, "utf-8"):
            if text is None:
                line = line_no
                break
    return DataError("is not valid UTF-8 (MovieLens CSV files are UTF-8); re-save it as UTF-8",
                     path=path, line=line)
