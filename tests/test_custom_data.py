"""A user's own ratings file: sniffing, column mapping, ids, scales and every error message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfcore.data.custom import load_items_file, load_ratings_file, preview_ratings_file
from mfcore.data.sources import load_dataset
from mfcore.errors import DataError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    ("text", "sep", "header"),
    [
        ("userId,movieId,rating,timestamp\n1,10,4.0,100\n2,10,3.5,200\n", ",", True),
        ("user_id\titem_id\tscore\n1\t10\t4\n2\t10\t3\n", "\t", True),
        ("1;10;4;100\n2;10;3;200\n", ";", False),
        ("1::10::4::100\n2::10::3::200\n", "::", False),
        ("1|10|4\n2|10|3\n", "|", False),
    ],
)
def test_preview_sniffs_separator_and_header(tmp_path: Path, text: str, sep: str, header: bool) -> None:
    preview = preview_ratings_file(write(tmp_path / "r.txt", text))
    assert (preview.separator, preview.has_header) == (sep, header)
    assert preview.complete and preview.encoding == "utf-8"
    assert len(preview.rows) == 2 and list(preview.rows.columns) == preview.columns
    data = load_ratings_file(tmp_path / "r.txt")
    assert data.n_ratings == 2 and data.rating.tolist() in ([4.0, 3.5], [4.0, 3.0])


def test_preview_recognises_column_names(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "Time,Score,Movie,User_ID,extra\n5,4,m1,u1,x\n6,2,m2,u2,y\n")
    preview = preview_ratings_file(path, n=1)
    assert preview.mapping == {"user": "User_ID", "item": "Movie", "rating": "Score", "timestamp": "Time"}
    assert len(preview.rows) == 1
    data = load_ratings_file(path)
    assert data.to_frame().values.tolist() == [["u1", "m1", 4.0, 5], ["u2", "m2", 2.0, 6]]


def test_headerless_positional_mapping_and_no_timestamp(tmp_path: Path) -> None:
    path = write(tmp_path / "r.tsv", "7\t70\t1\n8\t80\t5\n")
    preview = preview_ratings_file(path)
    assert preview.columns == ["column 1", "column 2", "column 3"]
    assert preview.mapping["timestamp"] is None
    data = load_ratings_file(path)
    assert data.timestamp is None and data.user_ids.raw.dtype == np.int64


def test_column_mapping_argument(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "a,b,c,d\nx,1,3,9\ny,2,4,9\n")
    assert not preview_ratings_file(path).complete
    with pytest.raises(DataError, match=r"cannot tell which column holds the user and item and rating"):
        load_ratings_file(path)
    data = load_ratings_file(path, columns={"user": "a", "item": "b", "rating": "c"})
    assert data.to_frame()["user"].tolist() == ["x", "y"] and data.timestamp is None
    by_position = load_ratings_file(path, columns={"user": 0, "item": 1, "rating": 2, "timestamp": 3})
    assert by_position.timestamp is not None
    with pytest.raises(DataError, match=r"column 'zz'.*no column 'zz' for user; the columns are a, b, c, d"):
        load_ratings_file(path, columns={"user": "zz", "item": "b", "rating": "c"})
    with pytest.raises(DataError, match=r"unknown role 'usr'"):
        load_ratings_file(path, columns={"usr": "a"})
    with pytest.raises(DataError, match=r"column position 9 for user is out of range"):
        load_ratings_file(path, columns={"user": 9, "item": "b", "rating": "c"})
    with pytest.raises(DataError, match=r"one column is mapped to two roles"):
        load_ratings_file(path, columns={"user": "a", "item": "a", "rating": "c"})


def test_ids_strings_ints_and_leading_zeros(tmp_path: Path) -> None:
    ints = load_ratings_file(write(tmp_path / "a.csv", "user,item,rating\n1,10,3\n2,11,4\n"))
    assert ints.user_ids.raw.dtype == np.int64 and ints.user_ids.index_of("2") == 1
    zeros = load_ratings_file(write(tmp_path / "b.csv", "user,item,rating\n007,10,3\n7,11,4\n"))
    assert zeros.n_users == 2  # "007" and "7" stay different ids
    strings = load_ratings_file(write(tmp_path / "c.csv", "user,item,rating\nann,tt01,3\nbob,tt02,4\n"))
    assert strings.item_ids.index_of("tt02") == 1


def test_scale_inferred_or_checked(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user,item,rating\n1,1,2\n1,2,8\n2,1,10\n")
    assert load_ratings_file(path).rating_scale == (2.0, 10.0)
    assert load_ratings_file(path, rating_scale=(1, 10)).rating_scale == (1.0, 10.0)
    with pytest.raises(DataError, match=r"line 3, column 'rating': rating '8' is outside the rating scale 1..5"):
        load_ratings_file(path, rating_scale=(1, 5))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("user,item,rating\n1,1,4\n1,2,good\n", r"line 3, column 'rating': rating 'good' is not a number"),
        ("user,item,rating\n1,1,4\n1,2,\n", r"line 3, column 'rating': rating is empty; every line needs a numeric rating"),
        ("user,item,rating\n1,1,4\n,2,3\n", r"line 3, column 'user': user is empty; every line needs a user id"),
        ("user,item,rating\n1,1,nan\n", r"line 2, column 'rating': rating 'nan' is not a number"),
        ("user,item,rating,time\n1,1,4,100\n1,2,4,yesterday\n", r"line 3, column 'time': timestamp 'yesterday' is not a Unix time"),
        ("user,item,rating,time\n1,1,4,2020-01-01\n1,2,4,yesterday\n", r"line 3, column 'time': timestamp 'yesterday' is not a Unix time or a date"),
        ("user,item,rating\n", r"has a header but no ratings"),
        ("", r"file is empty"),
        ("\n\n\n", r"has no ratings \(only blank lines\)"),
        ("1,2\n3,4\n", r"line 1: cannot detect the separator"),
        ("user,item,rating\n1,2,3\n4,5\n6,7,8\n", r"line 3: has 2 comma-separated fields but the first line has 3"),
    ],
)
def test_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_ratings_file(write(tmp_path / "r.csv", text))


def test_error_line_counts_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user,item,rating\n1,1,4\n\n\n1,2,x\n")
    with pytest.raises(DataError) as info:
        load_ratings_file(path)
    assert info.value.line == 5 and info.value.column == "rating"


def test_utf16_is_rejected_latin1_accepted(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 1: looks like UTF-16"):
        load_ratings_file(write(tmp_path / "u16.csv", "user,item,rating\n1,1,4\n", "utf-16"))
    path = write(tmp_path / "l1.csv", "user,item,rating\nJosé,1,4\nZoë,1,3\n", "cp1252")
    assert preview_ratings_file(path).encoding == "cp1252"
    assert load_ratings_file(path).user_ids.index_of("Zoë") == 1


def test_duplicates_keep_last(tmp_path: Path) -> None:
    with_time = write(tmp_path / "t.csv", "user,item,rating,timestamp\n1,1,5,200\n1,1,1,100\n1,1,2,200\n")
    data = load_ratings_file(with_time)
    assert data.rating.tolist() == [2.0] and data.duplicates_dropped == 2
    assert data.source == f"ratings file {with_time} (separator ',', utf-8)"  # a description only
    no_time = write(tmp_path / "n.csv", "user,item,rating\n1,1,5\n1,1,1\n")
    assert load_ratings_file(no_time).rating.tolist() == [1.0]
    assert load_ratings_file(no_time).duplicates_dropped == 1
    assert load_ratings_file(write(tmp_path / "u.csv", "user,item,rating\n1,1,5\n")).duplicates_dropped == 0


def test_dates_and_decimal_commas(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "user;item;rating;date\na;x;4,5;1970-01-02\nb;x;3;1970-01-01T00:01:00Z\n")
    data = load_ratings_file(path)
    assert data.rating.tolist() == [4.5, 3.0]
    assert data.timestamp is not None and data.timestamp.tolist() == [86400, 60]


def test_items_file(tmp_path: Path) -> None:
    ratings = write(tmp_path / "r.csv", "user,item,rating\n1,10,4\n1,11,3\n")
    items = write(tmp_path / "items.csv", 'id,name,genre\n10,"Heat, The",Crime|Drama\n11,Up,\n12,Unrated,\n')
    data = load_ratings_file(ratings, items_path=items)
    assert data.title_of(10) == "Heat, The" and data.items.loc[10, "genres"] == "Crime|Drama"
    assert data.title_of(12) == "Unrated"
    headerless = write(tmp_path / "items.tsv", "10\tHeat\n11\tUp\n")
    assert load_items_file(headerless).loc[11, "title"] == "Up"
    with pytest.raises(DataError, match=r"cannot tell which column holds the title"):
        load_items_file(write(tmp_path / "bad.csv", "id,foo\n10,x\n"))


def test_real_ml_latest_small_as_custom_file(shared_data: Path) -> None:
    root = shared_data / "ml-latest-small"
    data = load_ratings_file(root / "ratings.csv", items_path=root / "movies.csv")
    assert (data.n_ratings, data.n_users, data.n_items) == (100_836, 610, 9724)
    assert data.rating_scale == (0.5, 5.0) and data.title_of(1) == "Toy Story (1995)"


def test_load_dataset_dispatches_files_to_custom(tmp_path: Path) -> None:
    data = load_dataset(write(tmp_path / "mine.csv", "user,item,rating\n1,1,4\n"))
    assert data.name == "mine" and data.n_ratings == 1


def test_extra_field_past_the_sniffed_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "r.tsv", "1\t2\t3\n" * 60 + "1\t2\t3\t4\n")
    with pytest.raises(DataError, match=r"line 61: has 4 tab-separated fields but the first line has 3"):
        load_ratings_file(path)
