"""MovieLens layouts: real files from ``shared_data`` plus tiny hand-written broken ones."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfcore.data._readers import DoubleColonToTab, drop_duplicate_pairs
from mfcore.data.movielens import detect_layout, load_movielens
from mfcore.data.splits import make_split
from mfcore.errors import DataError


@pytest.fixture(scope="module")
def ml100k(shared_data: Path):
    return load_movielens(shared_data / "ml-100k")


@pytest.fixture(scope="module")
def ml_small(shared_data: Path):
    return load_movielens(shared_data / "ml-latest-small")


def write(path: Path, text: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path


# --------------------------------------------------------------------------- real data


def test_ml100k_counts_titles_genres(ml100k) -> None:
    assert (ml100k.name, ml100k.n_ratings, ml100k.n_users, ml100k.n_items) == ("ml-100k", 100_000, 943, 1682)
    assert ml100k.rating_scale == (1.0, 5.0)
    assert ml100k.title_of(1) == "Toy Story (1995)"
    toy = ml100k.items.loc[1]
    assert toy["genres"] == "Animation|Children's|Comedy"
    assert toy["year"] == 1995
    unknown = ml100k.items.loc[267]  # the one item with no title, date or genre
    assert unknown["title"] == "unknown" and unknown["genres"] == "" and pd.isna(unknown["year"])
    assert ml100k.user_ids.raw.dtype == np.int32 and ml100k.rating.dtype == np.float32
    assert ml100k.timestamp is not None and ml100k.timestamp.dtype == np.int64
    assert set(np.unique(ml100k.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_ml100k_demographics(ml100k) -> None:
    users = ml100k.users
    assert users is not None and len(users) == 943
    first = users.loc[1]
    assert (first["age"], first["gender"], first["occupation"], first["zip"], first["age_group"]) == (
        24, "M", "technician", "85711", "18-24")
    assert set(users["age_group"].cat.categories) >= {"Under 18", "25-34", "56+"}
    assert not users["age_group"].isna().any()


def test_ml100k_official_splits(ml100k, shared_data: Path) -> None:
    assert set(ml100k.predefined_splits) == {"u1", "u2", "u3", "u4", "u5", "ua", "ub"}
    train, test = ml100k.predefined_splits["u1"]
    assert (len(train), len(test)) == (80_000, 20_000)
    assert not np.intersect1d(train, test).size
    assert len(np.union1d(train, test)) == 100_000
    # the rows really are the pairs of u1.test, with their ratings
    official = pd.read_csv(shared_data / "ml-100k" / "u1.test", sep="\t", header=None,
                           names=["user", "item", "rating", "timestamp"])
    ours = ml100k.to_frame(test).sort_values(["user", "item"]).reset_index(drop=True)
    official = official.sort_values(["user", "item"]).reset_index(drop=True)
    assert (ours["user"].to_numpy() == official["user"].to_numpy()).all()
    assert (ours["item"].to_numpy() == official["item"].to_numpy()).all()
    assert (ours["rating"].to_numpy() == official["rating"].to_numpy()).all()
    assert [len(p) for p in ml100k.predefined_splits["ua"]] == [90_570, 9_430]


def test_ml_latest_small(ml_small) -> None:
    assert (ml_small.n_ratings, ml_small.n_users, ml_small.n_items) == (100_836, 610, 9724)
    assert ml_small.rating_scale == (0.5, 5.0)
    assert set(np.unique(ml_small.rating)) == set(np.arange(1, 11) / 2)
    assert ml_small.title_of(1) == "Toy Story (1995)"
    assert ml_small.items.loc[1, "genres"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert ml_small.items.loc[114335, "genres"] == ""  # "(no genres listed)"
    assert len(ml_small.items) == 9742  # unrated movies keep their titles
    assert ml_small.users is None and ml_small.predefined_splits == {}


def test_ml1m_partial_gz_is_named_partial(shared_data: Path) -> None:
    data = load_movielens(shared_data / "ml-1m")
    assert data.name == "ml-1m (partial: users 1-2999)"
    assert (data.n_ratings, data.n_users, data.n_items) == (487_650, 2999, 3615)
    assert data.rating_scale == (1.0, 5.0)
    assert data.title_of(1) == "Toy Story (1995)"
    assert data.items.loc[1, "genres"] == "Animation|Children's|Comedy"
    users = data.users
    assert users is not None and len(users) == 2999  # only users with ratings
    assert (users.loc[1, "gender"], users.loc[1, "age_group"], users.loc[1, "occupation"]) == (
        "F", "Under 18", "K-12 student")
    assert users.loc[2, "age_group"] == "56+" and users.loc[2, "occupation"] == "self-employed"


def test_detect_layout(shared_data: Path, tmp_path: Path) -> None:
    assert detect_layout(shared_data / "ml-100k").kind == "ml-100k"
    assert detect_layout(shared_data / "ml-latest-small").kind == "csv"
    partial = detect_layout(shared_data / "ml-1m")
    assert partial.kind == "dat" and partial.partial
    # an official zip extracts to one folder: look inside it
    write(tmp_path / "outer" / "ml-10M100K" / "ratings.dat", "1::2::3.5::4\n")
    layout = detect_layout(tmp_path / "outer")
    assert (layout.kind, layout.name, layout.root.name) == ("dat", "ml-10m", "ml-10M100K")
    write(tmp_path / "junk" / "notes.txt", "hello")
    with pytest.raises(DataError, match="no u.data or ratings.csv or ratings.dat found in"):
        detect_layout(tmp_path / "junk")
    with pytest.raises(DataError, match="is not a folder"):
        detect_layout(tmp_path / "missing")


# --------------------------------------------------------------------------- duplicates


def test_duplicates_keep_last_by_timestamp_then_line(tmp_path: Path) -> None:
    write(tmp_path / "ml-latest-small" / "ratings.csv",
          "userId,movieId,rating,timestamp\n"
          "1,10,2.0,100\n"
          "1,20,4.0,100\n"
          "1,10,5.0,50\n"   # older: dropped although it comes later
          "1,10,3.0,100\n"  # same time as the first: the later line wins
          "2,10,1.0,7\n")
    data = load_movielens(tmp_path / "ml-latest-small")
    frame = data.to_frame()
    assert frame.values.tolist() == [[1, 20, 4.0, 100], [1, 10, 3.0, 100], [2, 10, 1.0, 7]]
    assert data.duplicates_dropped == 2 and data.summary()["duplicates_dropped"] == 2
    assert data.source == f"MovieLens ml-latest-small from {tmp_path / 'ml-latest-small' / 'ratings.csv'}"


def test_drop_duplicates_without_timestamp_keeps_later_line() -> None:
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "x", "x"], "rating": [1.0, 2.0, 3.0]})
    kept, dropped = drop_duplicate_pairs(frame)
    assert dropped == 1 and kept["rating"].tolist() == [2.0, 3.0]


def test_double_colon_reader_across_chunk_boundaries() -> None:
    class Dribble(io.RawIOBase):  # hands out 3 bytes at a time, whatever is asked
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def read(self, n: int = -1) -> bytes:
            out = self.data[self.pos: self.pos + 3]
            self.pos += len(out)
            return out

    text = b"1::22::3.5::444\n55::6::1::7\n8::9::2::10"
    out = io.BufferedReader(DoubleColonToTab(Dribble(text))).read()
    assert out == text.replace(b"::", b"\t")


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("content", "match", "line"),
    [
        ("1\t2\t3\t4\n1\t3\tx\t5\n", r"line 2, column 'rating': rating is 'x' is not a number", 2),
        ("1\t2\t3\t4\n1\t3\t4\n", r"has 3 fields, expected 4", 2),
        ("1\t2\t3\t4\n\n1\t3\t0.5\t5\n", r"rating 0.5 is outside ml-100k's rating scale 1..5 in steps of 1", 3),
        ("1\t2\t3\t4\n2\t3\t\t9\n", r"rating is empty or not a number", 2),
        ("1\t2\t3\t4\n1\t2.5\t3\t4\n", r"item is '2.5' is not an integer", 2),
    ],
)
def test_u_data_errors(tmp_path: Path, content: str, match: str, line: int) -> None:
    write(tmp_path / "ml-100k" / "u.data", content)
    with pytest.raises(DataError, match=match) as info:
        load_movielens(tmp_path / "ml-100k")
    assert info.value.line == line
    assert info.value.path is not None and info.value.path.endswith("u.data")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("user_id,movieId,rating,timestamp\n1,2,3,4\n", r"line 1, column 'userId': missing column\(s\) userId"),
        ("userid,movieId,rating\n1,2,3\n", r"'userid' should be spelled 'userId'"),
        ("userId,movieId,rating,timestamp\n1,2,3,4\n1,3,,5\n", r"line 3, column 'rating': rating is empty"),
        ("userId,movieId,rating,timestamp\n1,2,4.25,4\n", r"line 2.*4.25 is outside ml-latest-small's rating scale 0.5..5"),
        ("userId,movieId,rating,timestamp\n1,2,6,4\n", r"6 is outside"),
        ("userId,movieId,rating,timestamp\n1,2,five,4\n", r"line 2, column 'rating': rating is 'five' is not a number"),
        ("userId,movieId,rating,timestamp\n1,2,3,4,9\n", r"line 2: has 5 fields, expected 4"),
        ("", r"file is empty"),
        ("userId,movieId,rating,timestamp\n", r"has no ratings \(only a header\)"),
    ],
)
def test_ratings_csv_errors(tmp_path: Path, content: str, match: str) -> None:
    write(tmp_path / "ml-latest-small" / "ratings.csv", content)
    with pytest.raises(DataError, match=match):
        load_movielens(tmp_path / "ml-latest-small")


def test_utf16_ratings_file(tmp_path: Path) -> None:
    write(tmp_path / "ml-latest-small" / "ratings.csv", "userId,movieId,rating\n1,2,3\n", "utf-16")
    with pytest.raises(DataError, match=r"ratings.csv, line 1: looks like UTF-16.*re-save it as UTF-8"):
        load_movielens(tmp_path / "ml-latest-small")


def test_movies_csv_not_utf8(tmp_path: Path) -> None:
    root = tmp_path / "ml-latest-small"
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n")
    write(root / "movies.csv", "movieId,title,genres\n1,Toy Story (1995),Comedy\n2,Amélie (2001),Drama\n",
          "latin-1")
    with pytest.raises(DataError, match=r"movies.csv, line 3: is not valid UTF-8"):
        load_movielens(root)


def test_movies_csv_missing_column(tmp_path: Path) -> None:
    root = tmp_path / "ml-latest-small"
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n")
    write(root / "movies.csv", "movieId,name,genres\n1,Toy Story (1995),Comedy\n")
    with pytest.raises(DataError, match=r"movies.csv, line 1, column 'title': missing column\(s\) title"):
        load_movielens(root)


def test_dat_layout_errors_and_labels(tmp_path: Path) -> None:
    root = tmp_path / "ml-1m"
    write(root / "ratings.dat", "1::10::5::978300760\n2::10::3::978302109\n")
    write(root / "movies.dat", "10::GoldenEye (1995)::Action|Adventure|Thriller\n", "latin-1")
    write(root / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    data = load_movielens(root)
    assert data.name == "ml-1m" and data.users is not None
    assert data.users.loc[2, "age_group"] == "56+" and data.users.loc[1, "occupation"] == "K-12 student"
    write(root / "users.dat", "1::F::7::10::48067\n")
    with pytest.raises(DataError, match=r"users.dat, line 1, column 'age': age '7' is not a valid code"):
        load_movielens(root)
    write(root / "users.dat", "1::F::1::10::48067\n")
    write(root / "ratings.dat", "1::10::5::978300760\n1::10::5\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 2: has 3 fields, expected 4"):
        load_movielens(root)
    write(root / "ratings.dat", "1::10::4.5::978300760\n")
    with pytest.raises(DataError, match=r"4.5 is outside ml-1m's rating scale 1..5"):
        load_movielens(root)


def test_partial_gz_needs_explicit_folder_and_reads(tmp_path: Path) -> None:
    root = tmp_path / "ml-1m"
    with gzip.open(root.mkdir() or root / "ratings.users1-2.partial.dat.gz", "wt") as fh:
        fh.write("1::10::5::978300760\n2::11::3::978302109\n")
    data = load_movielens(root)
    assert data.name == "ml-1m (partial: users 1-2)" and data.n_ratings == 2


def test_u_item_wrong_field_count(tmp_path: Path) -> None:
    root = tmp_path / "ml-100k"
    write(root / "u.data", "1\t1\t3\t4\n")
    write(root / "u.item", "1|Toy Story (1995)|01-Jan-1995||url|0|1\n", "latin-1")
    with pytest.raises(DataError, match=r"u.item, line 1: has 7 '\|'-separated fields, expected 24"):
        load_movielens(root)


def test_split_pair_not_in_u_data(tmp_path: Path) -> None:
    root = tmp_path / "ml-100k"
    write(root / "u.data", "1\t1\t3\t4\n1\t2\t3\t4\n")
    write(root / "u1.base", "1\t1\t3\t4\n")
    write(root / "u1.test", "1\t2\t3\t4\n2\t2\t3\t4\n")
    data = load_movielens(root)  # the official splits are read when one is asked for
    assert list(data.predefined_splits) == ["u1"]
    with pytest.raises(DataError, match=r"u1.test, line 2: \(user 2, item 2\) is not in u.data"):
        make_split(data, "u1", 0)


def test_movies_dat_title_may_contain_separator(tmp_path: Path) -> None:
    root = tmp_path / "ml-10M100K"
    write(root / "ratings.dat", "1::10::4.5::978300760\n")
    write(root / "movies.dat", "10::Weird::Title (1999)::Comedy|Drama\n")
    data = load_movielens(root)
    assert data.name == "ml-10m" and data.rating_scale == (0.5, 5.0)
    assert data.items.loc[10, "title"] == "Weird::Title (1999)"
    assert data.items.loc[10, "genres"] == "Comedy|Drama" and data.items.loc[10, "year"] == 1999
