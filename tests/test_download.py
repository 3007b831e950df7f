"""Downloads against a local HTTP server, safe extraction, the cache and ``load_dataset``.

No network: a ``http.server`` on 127.0.0.1 serves a zip built from ``shared_data/ml-100k``
at test time, plus broken variants (truncated, corrupt, unsafe, not MovieLens).
"""

from __future__ import annotations

import ast
import http.server
import io
import re
import stat
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from mfcore.cli import error_line, main
from mfcore.data import download as dl
from mfcore.data.download import ZipPin, extract_zip, fetch_movielens, sha256_of
from mfcore.data.sources import DATASET_NAMES, DATASETS, find_local, load_dataset, load_zip
from mfcore.errors import (
    ChecksumError,
    ConfigError,
    DataError,
    DatasetNotFoundError,
    DownloadError,
    UnsafeArchiveError,
)

ML100K_FILES = ("u.data", "u.item", "u.user", "u.genre")
ROOT = Path(__file__).resolve().parents[1]
CLI_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")  # "--data-dir", not "a--b" or "---"


def cli(args: list[str]) -> tuple[int, str]:
    """Exit status and stderr of ``python -m mfcore`` (in process)."""
    err = io.StringIO()
    return main(args, out=io.StringIO(), err=err), err.getvalue()


def make_zip(path: Path, members: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            if isinstance(content, Path):
                zf.write(content, name)
            else:
                zf.writestr(zipfile.ZipInfo(name), content)
    return path


@pytest.fixture(scope="module")
def zips(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One folder per server route, each holding an ``ml-100k.zip`` variant."""
    root = tmp_path_factory.mktemp("served")
    out = {}
    for route in ("good", "corrupt", "evil", "notml", "truncated"):
        (root / route).mkdir()
        out[route] = root / route / "ml-100k.zip"
    make_zip(out["good"], {f"ml-100k/{f}": shared_data / "ml-100k" / f for f in ML100K_FILES})
    (root / "truncated" / "ml-100k.zip").write_bytes(out["good"].read_bytes())
    out["corrupt"].write_bytes(b"PK\x03\x04" + b"\x00garbage" * 1000)
    make_zip(out["evil"], {"ml-100k/u.data": b"1\t1\t3\t4\n", "../evil": b"owned"})
    make_zip(out["notml"], {"ml-100k/README.txt": b"not ratings"})
    return out


class Server:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                if self.path.startswith("/truncated/"):
                    body = (root / self.path.lstrip("/")).read_bytes()[:50_000]
                    self.send_response(200)
                    self.send_header("Content-Length", str(50_000 + 10_000))
                    self.end_headers()
                    self.wfile.write(body)
                    return  # the connection closes short of Content-Length
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(zips: dict[str, Path]) -> Iterator[Server]:
    srv = Server(zips["good"].parent.parent)
    yield srv
    srv.close()


@pytest.fixture()
def pin_good(monkeypatch: pytest.MonkeyPatch, zips: dict[str, Path]) -> str:
    """Pin ml-100k to the test zip (as if it were the official one)."""
    digest = sha256_of(zips["good"])
    monkeypatch.setitem(dl.PINS, "ml-100k", ZipPin("ml-100k.zip", digest, zips["good"].stat().st_size))
    return digest


def everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --------------------------------------------------------------------------- downloads


def test_good_download_progress_and_cache(server: Server, pin_good: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFSTUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", f"{server.url}/good")
    calls: list[tuple[int, int | None]] = []
    before = len(server.requests)
    data = load_dataset("ml-100k", progress=lambda done, total: calls.append((done, total)))
    assert (data.name, data.n_ratings, data.n_users, data.n_items) == ("ml-100k", 100_000, 943, 1682)
    size = dl.PINS["ml-100k"].size
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(server.requests) == before + 1
    # only the finished folder is left: no .part file, no zip, no temporary folder
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["ml-100k"]
    again = load_dataset("ml-100k", progress=lambda *a: pytest.fail("no download expected"))
    assert again.n_ratings == 100_000 and len(server.requests) == before + 1
    assert dl.cached_dataset("ml-100k") == tmp_path / "cache" / "ml-100k"


def test_fetch_with_injected_checksums(server: Server, zips: dict[str, Path], tmp_path: Path) -> None:
    folder = fetch_movielens("ml-100k", cache_dir=tmp_path, base_url=f"{server.url}/good",
                             checksums={"ml-100k": sha256_of(zips["good"])})
    assert (folder / "ml-100k" / "u.data").is_file() and (folder / dl.MARKER).is_file()


def test_wrong_checksum_leaves_nothing(server: Server, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match=r"SHA-256 of .*ml-100k.zip is [0-9a-f]{64}, expected the pinned 0000"):
        fetch_movielens("ml-100k", cache_dir=tmp_path, base_url=f"{server.url}/good",
                        checksums={"ml-100k": "0" * 64})
    assert everything_in(tmp_path) == []


def test_official_pin_refuses_other_file_before_downloading(server: Server, tmp_path: Path) -> None:
    # the real pinned size (4,924,029 bytes) differs from the test zip: refused from the headers
    with pytest.raises(ChecksumError, match=r"announces \d+ bytes but the pinned official zip has 4924029"):
        load_dataset("ml-100k", cache_dir=tmp_path, base_url=f"{server.url}/good")
    assert everything_in(tmp_path) == []


def test_corrupt_zip(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is not a valid zip file"):
        fetch_movielens("ml-100k", cache_dir=tmp_path, base_url=f"{server.url}/corrupt",
                        checksums={"ml-100k": None})
    assert everything_in(tmp_path) == []


def test_zip_slip_is_refused(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(UnsafeArchiveError, match=r"member '../evil' has a '..' component"):
        fetch_movielens("ml-100k", cache_dir=cache, base_url=f"{server.url}/evil",
                        checksums={"ml-100k": None})
    assert everything_in(tmp_path) == ["deep", "deep/cache"]


def test_truncated_response(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"cut off after \d+ of 60000 bytes"):
        fetch_movielens("ml-100k", cache_dir=tmp_path, base_url=f"{server.url}/truncated",
                        checksums={"ml-100k": None})
    assert everything_in(tmp_path) == []


def test_zip_that_is_not_movielens(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no u.data or ratings.csv or ratings.dat found in ml-100k.zip"):
        fetch_movielens("ml-100k", cache_dir=tmp_path, base_url=f"{server.url}/notml",
                        checksums={"ml-100k": None})
    assert everything_in(tmp_path) == []


def test_http_404_and_unreachable(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"answered HTTP 404"):
        fetch_movielens("ml-1m", cache_dir=tmp_path, base_url=f"{server.url}/good",
                        checksums={"ml-1m": None})
    closed = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    url = f"http://127.0.0.1:{port}/ml-1m.zip"
    with pytest.raises(DownloadError, match=r"cannot reach .*; check the network$") as info:
        fetch_movielens("ml-1m", cache_dir=tmp_path, base_url=f"http://127.0.0.1:{port}",
                        checksums={"ml-1m": None}, timeout=5)
    assert everything_in(tmp_path) == []
    # the engine names no flag (the app shows its messages); the CLI adds its own way forward
    assert info.value.url == url and not CLI_FLAG.search(str(info.value))
    assert error_line(info.value).endswith(
        f"check the network, or download {url} yourself and pass its folder with --data-dir")


def test_progress_callback_can_cancel(server: Server, zips: dict[str, Path], tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def progress(done: int, total: int | None) -> None:
        if done:
            raise Stop

    with pytest.raises(Stop):
        fetch_movielens("ml-100k", cache_dir=tmp_path, base_url=f"{server.url}/good",
                        checksums={"ml-100k": sha256_of(zips["good"])}, progress=progress)
    assert everything_in(tmp_path) == []


# --------------------------------------------------------------------------- extraction


def test_extract_refuses_symlinks_absolute_paths_and_bombs(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("data/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match=r"'data/link' has a symbolic link"):
        extract_zip(tmp_path / "link.zip", tmp_path / "out")
    make_zip(tmp_path / "abs.zip", {"/tmp/x": b"1"})
    with pytest.raises(UnsafeArchiveError, match=r"'/tmp/x' has an absolute path"):
        extract_zip(tmp_path / "abs.zip", tmp_path / "out")
    make_zip(tmp_path / "big.zip", {"ml-100k/u.data": b"0" * 100_000})
    with pytest.raises(UnsafeArchiveError, match=r"would expand to 100000 bytes, over the 1000 byte limit"):
        extract_zip(tmp_path / "big.zip", tmp_path / "out", max_bytes=1000)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abs.zip", "big.zip", "link.zip"]


# --------------------------------------------------------------------------- load_dataset / load_zip


def test_load_zip_is_cached_by_hash(zips: dict[str, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_zip(zips["good"], cache_dir=tmp_path)
    assert data.name == "ml-100k" and data.n_ratings == 100_000
    assert [p.name for p in (tmp_path / "zips").iterdir()] == [sha256_of(zips["good"])[:16]]
    monkeypatch.setattr(dl, "extract_zip", lambda *a, **k: pytest.fail("extracted twice"))
    assert load_dataset(zips["good"], cache_dir=tmp_path).n_ratings == 100_000


def test_load_zip_with_files_at_top_and_bad_zips(tmp_path: Path) -> None:
    flat = make_zip(tmp_path / "ml-latest-small.zip", {
        "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.5,1\n2,1,3.0,2\n",
        "movies.csv": b"movieId,title,genres\n1,Toy Story (1995),Comedy\n",
    })
    data = load_zip(flat, cache_dir=tmp_path / "cache")
    assert data.name == "ml-latest-small" and data.rating_scale == (0.5, 5.0)
    not_ml = make_zip(tmp_path / "photos.zip", {"a.jpg": b"x"})
    with pytest.raises(DataError, match=r"no u.data or ratings.csv or ratings.dat found in photos.zip"):
        load_zip(not_ml, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache" / "zips").iterdir()) == [sha256_of(flat)[:16]]


def test_data_dir_with_folder_or_official_zip(shared_data: Path, zips: dict[str, Path], tmp_path: Path) -> None:
    data = load_dataset("ml-100k", data_dir=shared_data, cache_dir=tmp_path, download=False)
    assert data.n_ratings == 100_000 and everything_in(tmp_path) == []
    zip_dir = tmp_path / "zips_here"
    zip_dir.mkdir()
    (zip_dir / "ml-100k.zip").write_bytes(zips["good"].read_bytes())
    assert find_local("ml-100k", zip_dir) == zip_dir / "ml-100k.zip"
    data = load_dataset("ml-100k", data_dir=zip_dir, cache_dir=tmp_path / "cache", download=False)
    assert data.name == "ml-100k" and data.n_users == 943


def test_partial_ml1m_is_not_taken_for_ml1m(shared_data: Path, tmp_path: Path) -> None:
    assert find_local("ml-1m", shared_data) is None
    with pytest.raises(DatasetNotFoundError, match=r"ml-1m is not in .* downloads are off .*holds only a partial"
                                                   r".*; allow the download \(download=True\)") as info:
        load_dataset("ml-1m", data_dir=shared_data, cache_dir=tmp_path, download=False)
    exc = info.value
    assert (exc.dataset, exc.searched, exc.partial, exc.known) == (
        "ml-1m", (str(shared_data), str(tmp_path)), str(shared_data / "ml-1m"), ())
    assert not CLI_FLAG.search(str(exc))
    data = load_dataset(shared_data / "ml-1m")
    assert data.name == "ml-1m (partial: users 1-2999)"


def test_unknown_name_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"unknown dataset 'ml-100' \(did you mean 'ml-100k'\?\); "
                                                   r"valid names: ml-100k, ml-latest-small.*'synthetic'") as info:
        load_dataset("ml-100", cache_dir=tmp_path, download=False)
    assert info.value.suggestion == "ml-100k" and "ml-32m" in info.value.known
    assert not CLI_FLAG.search(str(info.value))
    with pytest.raises(DataError, match=r"no such file or folder"):
        load_dataset(tmp_path / "nope.csv")


def test_the_cli_phrases_missing_data_with_its_flags(tmp_path: Path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    code, err = cli(["train", "--dataset", "ml-1m", "--no-download", "--data-dir", str(empty),
                     "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: ml-1m is not in {empty} nor in the cache {tmp_path / 'cache'}")
    assert "drop --no-download" in err and "--data-dir" in err and "--dataset synthetic" in err
    assert "download=True" not in err  # the engine's own fix is for Python callers
    code, err = cli(["train", "--dataset", "ml-100", "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "did you mean --dataset ml-100k?" in err and "valid names: ml-100k" in err  # a close name, not a folder


def _non_docstring_strings(tree: ast.AST) -> Iterator[ast.Constant]:
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def test_engine_messages_name_no_cli_flags() -> None:
    """The app shows the engine's messages verbatim: only mfcore/cli.py may name its flags."""
    found = []
    for path in sorted((ROOT / "mfcore").rglob("*.py")):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in _non_docstring_strings(ast.parse(path.read_text(encoding="utf-8"))):
            if CLI_FLAG.search(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_synthetic_specs_load_with_their_knobs() -> None:
    data = load_dataset("synthetic:n_users=120,n_items=90,density=0.1,rank=3,noise=0.2,popularity_skew=1.0,seed=4")
    assert (data.n_users, data.n_items, data.n_ratings) == (120, 90, 1080)
    assert data.truth is not None and data.truth["item_factors"].shape == (90, 3)
    default = load_dataset("synthetic")
    assert (default.n_users, default.n_items) == (1000, 1500)
    with pytest.raises(ConfigError, match="not knob=value"):
        load_dataset("synthetic:users=10")


def test_dataset_table_matches_pins() -> None:
    assert set(DATASET_NAMES) == set(DATASETS) == set(dl.PINS)
    for name, info in DATASETS.items():
        pin = dl.PINS[name]
        assert pin.sha256 is not None and len(pin.sha256) == 64
        assert pin.size is not None and abs(info.zip_mb - pin.size / 1e6) < 0.1
        assert info.url.endswith(pin.filename)
    assert dl.PINS["ml-10m"].filename == "ml-10m.zip"
    assert DATASETS["ml-100k"].ratings == 100_000 and DATASETS["ml-1m"].rating_scale == (1.0, 5.0)


def test_cache_and_base_url_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MFSTUDIO_CACHE", raising=False)
    monkeypatch.delenv("MFSTUDIO_DOWNLOAD_BASE", raising=False)
    assert dl.resolve_cache_dir() == Path.home() / ".cache" / "mfstudio"
    assert dl.resolve_base_url() == "https://files.grouplens.org/datasets/movielens"
    monkeypatch.setenv("MFSTUDIO_CACHE", str(tmp_path))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", "http://127.0.0.1:1/x/")
    assert dl.resolve_cache_dir() == tmp_path and dl.resolve_base_url() == "http://127.0.0.1:1/x"
    assert dl.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert dl.resolve_base_url("http://h/y") == "http://h/y"
