"""The app starts and the Data page works: AppTest, plus the ui helpers it relies on.

Every test points the download cache at an empty temporary folder and the download base
at a closed local port, so nothing here can reach the internet or touch ~/.cache.
"""

from __future__ import annotations


import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mfcore.data.sources import load_dataset
from mfcore.errors import ConfigError, DataError, DatasetNotFoundError, DownloadError, UnsafeArchiveError
from tests.app_support import reader_text
from ui import column_mapping, data_charts, data_sources, data_split, datasets

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
CLOSED_PORT = "http://127.0.0.1:9"
CLI_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")  # e.g. "--data-dir": no use in a browser


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """An empty cache, no data folder, and a download base nobody listens on."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MFSTUDIO_CACHE", str(cache))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", CLOSED_PORT)
    monkeypatch.delenv("MFSTUDIO_DATA_DIR", raising=False)
    return cache


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(elements) -> str:
    return reader_text(elements)


def assert_no_cli_flags(at: AppTest) -> None:
    """Nothing on the page tells a browser user to pass a command-line flag."""
    shown = [at.error, at.warning, at.info, at.success, at.markdown, at.caption, at.exception,
             at.sidebar.markdown, at.sidebar.caption]
    flags = sorted({m.group() for elements in shown for m in CLI_FLAG.finditer(texts(elements))})
    assert flags == [], f"the page names CLI flags: {flags}"


def synthetic_ratings(spec: str) -> int:
    p = datasets.parse_synthetic_spec(spec)
    return round(p["density"] * p["n_users"] * p["n_items"])


# ----------------------------------------------------------------------------- app


def test_app_starts_on_the_data_page_with_the_synthetic_default():
    at = start()
    assert at.title[0].value == "Data"
    m = metrics(at)
    assert m["Ratings"] == f"{synthetic_ratings('synthetic'):,}"
    assert m["Users"] == "1,000" and m["Items"] == "1,500"
    assert m["Train ratings"] == "67,500" and m["Test ratings"] == "7,500"
    assert at.session_state["dataset_spec"] == "synthetic"
    assert at.session_state["split_spec"] == "random:0.1"
    assert len(at.get("plotly_chart")) == 4  # histogram, memory, two long tails
    assert "dense float64 matrix would take" in texts(at.markdown)
    assert "Current choice" in texts(at.sidebar.markdown)
    assert not at.error


def test_changing_synthetic_knobs_updates_the_counts():
    at = start()
    at.number_input(key="data_syn_n_users").set_value(200)
    at.number_input(key="data_syn_n_items").set_value(300)
    at.number_input(key="data_syn_density").set_value(0.1)
    at.number_input(key="data_syn_rank").set_value(4)
    at.button[0].click()  # the form's "Generate"
    at.run()
    assert not at.exception, at.exception
    spec = at.session_state["dataset_spec"]
    assert spec == "synthetic:n_users=200,n_items=300,density=0.1,rank=4,noise=0.3,popularity_skew=1.0,seed=0"
    m = metrics(at)
    assert m["Ratings"] == "6,000" and m["Users"] == "200" and m["Items"] == "300"
    assert m["Train ratings"] == "5,400"
    assert at.session_state["synthetic_params"]["n_users"] == 200


def test_impossible_synthetic_knobs_show_an_error_and_keep_the_data():
    at = start()
    at.number_input(key="data_syn_n_users").set_value(5000)
    at.number_input(key="data_syn_n_items").set_value(10)
    at.number_input(key="data_syn_density").set_value(0.01)  # 500 ratings < 5000 users
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert "raise the density" in texts(at.error)
    assert at.session_state["dataset_spec"] == "synthetic"


def test_too_many_synthetic_ratings_are_refused_before_generating():
    at = start()
    at.number_input(key="data_syn_n_users").set_value(300_000)
    at.number_input(key="data_syn_n_items").set_value(100_000)
    at.number_input(key="data_syn_density").set_value(0.5)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    from mfcore.limits import MAX_SYNTHETIC_RATINGS  # the engine's one limit, shown as the engine words it

    assert f"at most {MAX_SYNTHETIC_RATINGS:,}" in texts(at.error)
    assert at.session_state["dataset_spec"] == "synthetic"


def test_ml100k_from_the_shared_data_shows_100000_ratings_and_official_splits(monkeypatch, shared_data):
    monkeypatch.setenv("MFSTUDIO_DATA_DIR", str(shared_data))
    at = start()
    at.radio(key="data_source").set_value("movielens").run()
    assert not at.exception, at.exception
    assert at.session_state["dataset_spec"] == "ml-100k"
    m = metrics(at)
    assert m["Ratings"] == "100,000" and m["Users"] == "943" and m["Movies"] == "1,682"
    assert "Official ml-100k split" in at.radio(key="data_split_kind").options
    at.radio(key="data_split_kind").set_value("predefined").run()
    at.selectbox(key="data_split_official").set_value("ua").run()
    assert not at.exception, at.exception
    assert at.session_state["split_spec"] == "ua"
    m = metrics(at)
    assert m["Train ratings"] == "90,570" and m["Test ratings"] == "9,430"
    assert "ignores the seed" in texts(at.caption)


def test_split_choice_updates_train_test_sizes_in_state():
    at = start()
    at.radio(key="data_split_kind").set_value("user").run()
    at.slider(key="data_split_frac").set_value(0.2).run()
    at.number_input(key="data_seed").set_value(7).run()
    assert not at.exception, at.exception
    assert at.session_state["split_spec"] == "user:0.2"
    assert at.session_state["seed"] == 7
    m = metrics(at)
    n_test = int(m["Test ratings"].replace(",", ""))
    assert 0.18 * 75_000 < n_test < 0.22 * 75_000
    assert m["Cold users"] == "0"

    at.radio(key="data_split_kind").set_value("kfold").run()
    at.number_input(key="data_split_k").set_value(4).run()
    at.number_input(key="data_split_fold").set_value(3).run()
    assert at.session_state["split_spec"] == "kfold:4:3"
    assert metrics(at)["Test ratings"] == "18,750"

    at.radio(key="data_split_kind").set_value("temporal").run()
    assert at.session_state["split_spec"] == "temporal:0.2"
    assert not at.exception and not at.warning  # synthetic data has timestamps


def test_unreachable_download_shows_an_error_with_a_way_forward(offline):
    at = start()
    at.radio(key="data_source").set_value("movielens").run()
    at.selectbox(key="data_ml_name").set_value("ml-latest-small").run()
    assert not at.exception, at.exception
    assert "not on this machine yet" in texts(at.info)
    at.button(key="data_ml_download").click().run()
    assert not at.exception, at.exception
    message = texts(at.error)
    assert "Could not download ml-latest-small" in message
    assert "127.0.0.1:9" in message
    assert "files.grouplens.org/datasets/movielens/ml-latest-small.zip" in message
    assert "upload it here" in message and "synthetic dataset" in message
    assert_no_cli_flags(at)
    assert at.session_state["dataset_spec"] == "synthetic"  # the working data stays
    assert metrics(at)["Ratings"] == "75,000"
    assert not (offline / "ml-latest-small").exists()
    # the way forward works: one click back to the synthetic set
    at.button(key="data_dl_to_syn").click().run()
    assert not at.exception, at.exception
    assert at.radio(key="data_source").value == "synthetic"


def test_a_movielens_choice_no_longer_on_this_machine_offers_the_pages_ways_forward(offline):
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["dataset_spec"] = "ml-100k"  # chosen in this session, then the cache went away
    at.run()
    assert not at.exception, at.exception
    message = texts(at.error)
    assert "cannot be loaded any more: ml-100k is not on this machine" in message
    assert str(offline) in message  # where it looked
    assert "Upload a MovieLens zip" in message and "synthetic dataset" in message
    assert "files.grouplens.org/datasets/movielens/ml-100k.zip" in message
    assert_no_cli_flags(at)
    at.button(key="data_broken_to_zip").click().run()
    assert not at.exception, at.exception
    assert at.radio(key="data_source").value == "zip"


@pytest.fixture
def zip_server(monkeypatch):
    """A local HTTP server handing out a tiny ml-100k.zip (its pin relaxed for the test)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mfcore.data import download as dl

    body = _zip_bytes({"ml-100k/u.data": _tiny_u_data()})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.endswith("/ml-100k.zip"):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(dl.PINS, "ml-100k", dl.ZipPin("ml-100k.zip", None, None))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", f"http://127.0.0.1:{server.server_address[1]}/movielens")
    yield
    server.shutdown()
    server.server_close()


def test_download_with_progress_then_the_data_loads(offline, zip_server):
    at = start()
    at.radio(key="data_source").set_value("movielens").run()
    assert "not on this machine yet" in texts(at.info)
    at.button(key="data_ml_download").click().run()
    assert not at.exception, at.exception
    assert not at.error
    assert (offline / "ml-100k").is_dir()
    assert at.session_state["dataset_spec"] == "ml-100k"
    assert metrics(at)["Ratings"] == "48"
    assert "Found in the download cache" in texts(at.caption)


def test_malformed_uploaded_csv_shows_an_error():
    at = start()
    at.radio(key="data_source").set_value("file").run()
    at.file_uploader(key="data_file").set_value(("bad.csv", b"just one column\nanother line\n", "text/csv"))
    at.run()
    assert not at.exception, at.exception
    assert "bad.csv cannot be read as a ratings file" in texts(at.error)
    assert "separator" in texts(at.error)
    assert at.session_state["dataset_spec"] == "synthetic"


def test_uploaded_csv_with_a_column_mapping(offline):
    at = start()
    at.radio(key="data_source").set_value("file").run()
    body = "who,what,stars\n" + "".join(f"u{u},m{i},{1 + (u * i) % 5}\n" for u in range(6) for i in range(5))
    at.file_uploader(key="data_file").set_value(("mine.csv", body.encode(), "text/csv")).run()
    assert not at.exception, at.exception
    assert "Choose the user and item columns" in texts(at.warning)  # "stars" is a known rating name
    digest = next(p.name for p in (offline / "uploads").iterdir())
    for role, col in (("user", "who"), ("item", "what")):
        at.selectbox(key=f"data_map_{role}_{digest}").set_value(col)
    at.run()
    at.button(key=f"data_map_load_{digest}").click().run()
    assert not at.exception, at.exception
    spec = at.session_state["dataset_spec"]
    assert spec.endswith("mine.csv") and "mapped-" in spec
    m = metrics(at)
    assert m["Ratings"] == "30" and m["Users"] == "6" and m["Items"] == "5"
    # no timestamps: temporal splits are offered but disabled, with the reason
    at.radio(key="data_split_kind").set_value("temporal-user").run()
    assert not at.exception, at.exception
    assert "no timestamps" in texts(at.warning)
    assert at.session_state["split_spec"] == "random:0.1"


def test_dropped_duplicates_are_noted_on_the_page(offline):
    at = start()
    assert "dropped while loading" not in texts(at.info)  # the synthetic set has no duplicates
    at.radio(key="data_source").set_value("file").run()
    body = b"userId,movieId,rating,timestamp\n1,10,4,200\n1,10,2,100\n2,10,5,100\n2,11,3,100\n1,10,1,150\n"
    at.file_uploader(key="data_file").set_value(("dups.csv", body, "text/csv")).run()
    digest = next(p.name for p in (offline / "uploads").iterdir())
    at.button(key=f"data_map_load_{digest}").click().run()
    assert not at.exception, at.exception
    assert metrics(at)["Ratings"] == "3"
    assert "2 ratings were dropped while loading" in texts(at.info)
    assert "latest timestamp" in texts(at.info)
    assert "(user, item)" not in texts(at.caption)  # the source caption is a plain description
    assert "dups.csv (separator ',', utf-8)" in texts(at.caption)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tiny_u_data() -> bytes:
    rows = [(u, i, 1 + (u + i) % 5, 880000000 + 10 * u + i) for u in range(1, 9) for i in range(1, 7)]
    return "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows).encode()


def test_uploaded_movielens_zip_is_loaded(offline):
    at = start()
    at.radio(key="data_source").set_value("zip").run()
    at.file_uploader(key="data_zip").set_value(
        ("tiny-lens.zip", _zip_bytes({"tiny-lens/u.data": _tiny_u_data()}), "application/zip")
    ).run()
    assert not at.exception, at.exception
    assert not at.error
    assert at.session_state["dataset_spec"].endswith("tiny-lens.zip")
    assert metrics(at)["Ratings"] == "48"


def test_unsafe_zip_upload_is_refused_in_the_app(offline):
    at = start()
    at.radio(key="data_source").set_value("zip").run()
    at.file_uploader(key="data_zip").set_value(
        ("evil.zip", _zip_bytes({"../evil/u.data": _tiny_u_data()}), "application/zip")
    ).run()
    assert not at.exception, at.exception
    assert "evil.zip was refused" in texts(at.error) and "'..'" in texts(at.error)
    assert at.session_state["dataset_spec"] == "synthetic"


# ----------------------------------------------------------------------------- ui helpers


def test_synthetic_spec_round_trip():
    assert datasets.synthetic_spec({}) == "synthetic"
    assert datasets.synthetic_spec(datasets.SYNTHETIC_DEFAULTS) == "synthetic"
    spec = datasets.synthetic_spec({"n_users": 1000, "density": 0.02, "noise": 0.5})
    assert spec == "synthetic:n_users=1000,n_items=1500,density=0.02,rank=8,noise=0.5,popularity_skew=1.0,seed=0"
    assert datasets.parse_synthetic_spec(spec) == {**datasets.SYNTHETIC_DEFAULTS, "density": 0.02, "noise": 0.5}
    assert datasets.parse_synthetic_spec("synthetic") == datasets.SYNTHETIC_DEFAULTS
    with pytest.raises(ConfigError, match="unknown knob"):
        datasets.synthetic_spec({"users": 10})
    with pytest.raises(ConfigError, match="rank: must be an integer"):
        datasets.parse_synthetic_spec("synthetic:rank=2.5")
    with pytest.raises(ConfigError, match="not a number"):
        datasets.parse_synthetic_spec("synthetic:noise=lots")


def test_unsafe_and_foreign_zips_are_refused_and_nothing_is_stored(offline):
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.'"):
        datasets.load_uploaded_zip("evil.zip", _zip_bytes({"../x/u.data": _tiny_u_data()}))
    with pytest.raises(DataError, match="no u.data or ratings.csv"):
        datasets.load_uploaded_zip("photos.zip", _zip_bytes({"holiday/readme.txt": b"hello"}))
    with pytest.raises(DataError, match="not a valid zip"):
        datasets.load_uploaded_zip("broken.zip", b"PK\x03\x04 not really a zip")
    leftovers = [p for p in offline.rglob("*") if p.is_file()] if offline.exists() else []
    assert leftovers == []


def test_malformed_ratings_upload_raises_and_leaves_nothing(offline):
    with pytest.raises(DataError, match="cannot detect the separator"):
        datasets.stage_ratings_upload("bad.csv", b"a;b\n1,2,3,4\nx\n")
    with pytest.raises(DataError, match="empty"):
        datasets.stage_ratings_upload("empty.csv", b"")
    assert not any(p.is_file() for p in offline.rglob("*")) if offline.exists() else True


def test_ratings_upload_with_the_detected_mapping_is_its_own_spec(offline):
    body = b"userId,movieId,rating,timestamp\n1,10,4,100\n1,11,3,101\n2,10,5,102\n2,12,2,103\n"
    path, preview = datasets.stage_ratings_upload("r.csv", body)
    assert preview.mapping == {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
    spec = datasets.load_uploaded_ratings(path, preview, preview.mapping)
    assert spec == str(path)
    assert datasets.load_data(spec).n_ratings == 4
    with pytest.raises(DataError, match="one column is mapped to two roles"):
        datasets.load_uploaded_ratings(path, preview, {**preview.mapping, "rating": "userId"})


def test_stats_and_memory_words():
    data = datasets.load_data("synthetic:n_users=50,n_items=40,density=0.5,rank=2,noise=0.1,popularity_skew=1.0,seed=1")
    stats = datasets.compute_stats(data)
    assert stats["summary"]["ratings"] == 1000
    assert int(np.asarray(stats["histogram"]["count"]).sum()) == 1000
    assert stats["per_item"]["count"][0] >= stats["per_item"]["count"][-1]
    assert stats["memory"] == {"dense": 50 * 40 * 8, "sparse": 1000 * (4 + 4 + 4 + 8)}
    sentence = datasets.memory_sentence(stats)
    assert "50 users x 40 items" in sentence and "16 kB" in sentence
    assert datasets.human_bytes(260_000 * 45_000 * 8) == "94 GB"
    for fig in (
        data_charts.rating_histogram(stats["histogram"], stats["mean_rating"]),
        data_charts.long_tail(stats["per_user"], "user", log_y=True),
        data_charts.memory_bars(stats["memory"]["dense"], stats["memory"]["sparse"]),
    ):
        assert fig.layout.title.text


def test_half_star_ratings_get_a_bar_per_half_star():
    hist = datasets.rating_histogram(np.array([0.5, 1.0, 1.0, 4.5, 5.0], dtype=np.float32), (0.5, 5.0))
    assert hist["discrete"] and list(hist["x"]) == [0.5 * k for k in range(1, 11)]
    assert int(hist["count"].sum()) == 5
    whole = datasets.rating_histogram(np.array([1, 2, 2, 5], dtype=np.float32), (1.0, 5.0))
    assert list(whole["x"]) == [1.0, 2.0, 3.0, 4.0, 5.0] and list(whole["count"]) == [1, 2, 0, 0, 1]


def test_the_pages_words_for_missing_data_name_no_cli_flags(offline, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("ml-1m", data_dir=tmp_path, cache_dir=offline, download=False)
    words = data_sources.load_failed_message(info.value)
    assert words.startswith(f"ml-1m is not on this machine: it is not in `{tmp_path}` nor in `{offline}`.")
    assert "*Upload a MovieLens zip*" in words and "ml-1m.zip" in words and not CLI_FLAG.search(words)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("ml-100", download=False)
    words = data_sources.load_failed_message(info.value)
    assert words.startswith("unknown dataset 'ml-100' (did you mean 'ml-100k'?). Choose a dataset")
    assert not CLI_FLAG.search(words)
    unreachable = DownloadError("cannot reach http://127.0.0.1:9/ml-1m.zip (refused)", "check the network",
                                url="http://127.0.0.1:9/ml-1m.zip")
    words = data_sources.download_failed_message("ml-1m", unreachable)
    assert "This machine may be offline" in words and "MFSTUDIO_DATA_DIR" in words
    assert not CLI_FLAG.search(words)


def test_duplicates_note_words():
    stats = {"summary": {"duplicates_dropped": 1, "has_timestamps": True}, "is_movielens": True}
    assert datasets.duplicates_note(stats) == (
        "1 rating was dropped while loading because the same user rated the same movie again: of each "
        "(user, item) pair only the last rating is kept, the one with the latest timestamp (on a tie, the later line).")
    note = datasets.duplicates_note({"summary": {"duplicates_dropped": 1200, "has_timestamps": False},
                                     "is_movielens": False})
    assert note.startswith("1,200 ratings were dropped") and "same item" in note and note.endswith("the later line.")
    assert datasets.duplicates_note({"summary": {"duplicates_dropped": 0}, "is_movielens": True}) is None


def test_split_options_and_fallbacks():
    data = datasets.load_data("synthetic:n_users=50,n_items=40,density=0.5,rank=2,noise=0.1,popularity_skew=1.0,seed=1")
    options = data_split.SplitOptions.of(data)
    assert options.has_timestamps and options.predefined == () and "predefined" not in options.kinds
    assert data_split.fallback_split("user:0.2", options) == ("user:0.2", None)
    assert data_split.fallback_split("u1", options) == (
        "random:0.2", f"{data.name} has no official split u1; using a random 20% split instead.")
    bare = data_split.SplitOptions("mine", has_timestamps=False, predefined=("u1", "ua"))
    assert bare.unavailable("temporal-user") and not bare.unavailable("kfold")
    assert bare.caption("temporal") == "unavailable: this dataset has no timestamps"
    assert data_split.fallback_split("temporal:0.3", bare) == (
        "random:0.3", "mine has no timestamps, so the split `temporal:0.3` was replaced by a random one.")
    assert data_split.fallback_split("nonsense", bare) == ("random:0.1", None)


def test_column_mapping_words():
    assert column_mapping.mapping_of({"user": "who", "item": column_mapping.NONE, "rating": "r",
                                      "timestamp": column_mapping.NONE}) == {
        "user": "who", "item": None, "rating": "r", "timestamp": None}
    assert column_mapping.missing_message({"user": "who", "item": None, "rating": "r"}) == (
        "Choose the item column to go on.")
    assert column_mapping.missing_message({}) == "Choose the user, item and rating columns to go on."
    assert column_mapping.missing_message({"user": "u", "item": "i", "rating": "r"}) is None
    assert column_mapping.label("timestamp") == "Timestamp column (optional)"
    assert datasets.download_progress(2_500_000, 5_000_000) == (0.5, "2.5 MB of 5.0 MB")
    assert datasets.download_progress(1_000, None) == (0.0, "1.0 kB downloaded")
