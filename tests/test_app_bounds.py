"""Issue 12 in the app (AppTest): the Train form's size estimate and its refusal of a run past
the engine's bounds; the Data page refusing a zip bomb and a too-wide ratings file with a clear
message, no traceback and nothing left in the cache; the Runs page's checkpoint download served
from disk (a link into ``static/downloads/``, never the bytes in the server's memory)."""

from __future__ import annotations


import os
import re
import time
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mfcore.config import ModelConfig, TrainConfig
from mfcore.limits import MAX_EXTRACT_BYTES, MAX_LINE_BYTES
from mfcore.runs.store import RunStore
from tests.app_support import reader_text
from ui import downloads

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
MB = 1024**2


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path) -> Path:
    """An empty cache and runs folder, no data folder, a download base nobody listens on."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MFSTUDIO_CACHE", str(cache))
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MFSTUDIO_DOWNLOAD_BASE", "http://127.0.0.1:9")
    monkeypatch.setenv("MFSTUDIO_CPU_THREADS", "1")
    monkeypatch.delenv("MFSTUDIO_DATA_DIR", raising=False)
    return cache


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return reader_text(elements)


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ----------------------------------------------------------------------------- Train form


def test_the_train_form_shows_the_run_size_before_launch() -> None:
    at = start("pages/train.py")
    shown = texts(at.caption)
    assert "Estimated size:" in shown and "checkpoint about" in shown and "epoch snapshots" in shown
    assert "Too large for this server" not in texts(at.warning)


def test_a_too_large_run_is_refused_naming_the_field(offline: Path) -> None:
    at = start("pages/train.py")
    for key, value in (("tf_n_factors", 1024), ("tf_epochs", 100_000)):
        at.number_input(key=key).set_value(value).run()
        assert not at.exception, at.exception
    warning = texts(at.warning)
    assert "Too large for this server" in warning and "epochs x training ratings x factors" in warning
    at.button(key="train_launch").click().run()
    assert not at.exception, at.exception
    errors = texts(at.error)
    assert "**epochs**: epochs x training ratings x factors is 7.68e+12, over the limit of 2e+12" in errors, errors
    assert "Nothing was queued: fix epochs" in errors, errors
    assert not at.session_state["active_run"]
    runs = Path(os.environ["MFSTUDIO_RUNS_DIR"])
    assert not (runs / "runs.sqlite").exists() or RunStore(runs).list_runs() == []
    assert not any(runs.glob("*.pt"))


# ----------------------------------------------------------------------------- Data page


@pytest.fixture(scope="module")
def bomb_bytes(tmp_path_factory) -> bytes:
    """A ~1.7 MB zip whose ml-100k/u.data expands to 1.6 GiB of zeros: past the 1.5 GiB limit."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    chunk = bytes(16 * MB)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("ml-100k/u.data", "w", force_zip64=True) as out:
            for _ in range(1600 // 16):
                out.write(chunk)
    assert 1600 * MB > MAX_EXTRACT_BYTES
    return path.read_bytes()


def test_a_zip_bomb_upload_is_refused_and_leaves_nothing(offline: Path, bomb_bytes: bytes) -> None:
    assert len(bomb_bytes) < 4 * MB
    at = start()
    at.radio(key="data_source").set_value("zip").run()
    at.file_uploader(key="data_zip").set_value(("class-bomb.zip", bomb_bytes, "application/zip")).run()
    assert not at.exception, at.exception
    error = texts(at.error)
    assert "was refused" in error and "class-bomb" in error and "a zip bomb?" in error, error
    assert "Nothing was stored." in error and str(offline) not in error, error
    assert at.session_state["dataset_spec"] == "synthetic"
    assert files_in(offline) == []  # neither the upload nor anything extracted from it


def test_a_too_wide_ratings_file_is_refused_with_a_short_message(offline: Path) -> None:
    head = "user,item,rating\n" + "".join(f"{u},{u % 97},{1 + u % 5}\n" for u in range(8000))
    assert len(head) > MAX_LINE_BYTES  # the wide line lies past the part the sniffer reads
    body = (head + ",".join(["1"] * 100_000) + "\n").encode()
    at = start()
    at.radio(key="data_source").set_value("file").run()
    at.file_uploader(key="data_file").set_value(("wide ratings.csv", body, "text/csv")).run()
    assert not at.exception, at.exception
    if not at.error:  # the head looks fine: the width is found when the file is loaded
        digest = next(p.name for p in (offline / "uploads").iterdir())
        at.button(key=f"data_map_load_{digest}").click().run()
        assert not at.exception, at.exception
    error = texts(at.error)
    assert "wide ratings" in error and ("fields" in error or "longer than" in error), error
    assert len(error) < 1000 and str(offline) not in error, error
    assert at.session_state["dataset_spec"] == "synthetic"
    leftovers = [p for p in files_in(offline) if "mapped-" in str(p) or p.name.endswith((".part", ".tmp"))]
    assert leftovers == []


# ----------------------------------------------------------------------------- Runs page download


def _finished_run_with_checkpoint(runs: Path, size: int) -> tuple[str, Path]:
    store = RunStore(runs)
    run = store.create_run(dataset="synthetic", split="random:0.1", seed=0, model_config=ModelConfig(),
                           train_config=TrainConfig(epochs=1), label="big")
    store.update_status(run.id, "running")
    store.update_status(run.id, "finished")
    path = store.checkpoint_path_for(run.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)  # sparse: takes no disk
    store.set_checkpoint(run.id, path)
    store.close()
    return run.id, path


def test_the_checkpoint_download_is_a_link_to_the_file_on_disk(tmp_path: Path, monkeypatch) -> None:
    links = tmp_path / "static" / "downloads"
    monkeypatch.setattr(downloads, "DOWNLOADS_DIR", links)
    stale = links / "old-token"
    stale.mkdir(parents=True)
    (stale / "mfstudio-0123456789ab.pt").write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * 3600,) * 2)
    run_id, ckpt = _finished_run_with_checkpoint(Path(os.environ["MFSTUDIO_RUNS_DIR"]), 300 * MB)

    at = start("pages/runs.py")
    assert downloads.static_serving()  # .streamlit/config.toml: enableStaticServing = true
    assert "Checkpoint (.pt)" not in [b.label for b in at.get("download_button")]  # no bytes in memory
    at.button(key=f"dl_ckpt_{run_id}").click().run()
    assert not at.exception, at.exception
    html = next(m.value for m in at.markdown if "download=" in m.value)
    match = re.fullmatch(r'<a href="/app/static/downloads/([A-Za-z0-9_-]{22})/mfstudio-' + run_id
                         + r'\.pt" download="mfstudio-' + run_id + r'\.pt">Save mfstudio-' + run_id
                         + r'\.pt \(315 MB\)</a>', html)
    assert match, html
    published = links / match.group(1) / f"mfstudio-{run_id}.pt"
    assert published.stat().st_ino == ckpt.stat().st_ino  # a hard link: no copy, no bytes read
    assert not stale.exists()  # links older than an hour are removed when a new one is made
    assert "works for about 60 more minutes" in texts(at.caption)
    from streamlit.web.server.starlette import starlette_routes
    assert starlette_routes.MAX_APP_STATIC_FILE_SIZE >= 300 * MB  # Streamlit's 200 MB cap raised

    # a second visitor's click shares the published file (no second copy)
    other = start("pages/runs.py")
    other.button(key=f"dl_ckpt_{run_id}").click().run()
    assert next(m.value for m in other.markdown if "download=" in m.value) == html
    assert len(list(links.iterdir())) == 1


def test_old_links_expire(tmp_path: Path) -> None:
    src = tmp_path / "c.pt"
    src.write_bytes(b"abc")
    folder = tmp_path / "downloads"
    link = downloads.publish(src, "mfstudio-abc.pt", folder=folder, now=time.time() - 2 * downloads.LINK_TTL_S)
    assert link.file.is_file() and not link.alive()
    fresh = downloads.publish(src, "mfstudio-abc.pt", folder=folder)
    assert fresh.url != link.url and not link.file.exists() and fresh.alive()
    bad = downloads.publish(src, "../../etc/passwd", folder=folder)
    assert bad.file.name == "checkpoint.pt" and bad.file.parent.parent == folder


def test_an_upload_is_named_by_its_own_file_name(offline: Path) -> None:
    from ui import datasets

    at = start()
    at.radio(key="data_source").set_value("file").run()
    body = b"userId,movieId,rating\n" + b"".join(b"%d,%d,%d\n" % (u, i, 1 + (u + i) % 5)
                                                  for u in range(6) for i in range(5))
    at.file_uploader(key="data_file").set_value(("my ratings (1).csv", body, "text/csv")).run()
    digest = next(p.name for p in (offline / "uploads").iterdir())
    at.button(key=f"data_map_load_{digest}").click().run()
    assert not at.exception, at.exception
    spec = at.session_state["dataset_spec"]
    assert datasets.describe_spec(spec) == "Uploaded: my ratings (1).csv"  # not my_ratings_1_.csv
    shown = "\n".join(texts(e) for e in (at.markdown, at.caption, at.sidebar.caption, at.error, at.info))
    assert "my ratings (1).csv" in shown.replace("\\", "") and str(offline) not in shown, shown


# ----------------------------------------------------------------------------- a real server


def test_a_checkpoint_over_streamlits_static_cap_downloads_from_a_real_server(tmp_path: Path) -> None:
    """A 250 MB checkpoint (past Streamlit's 200 MB static-file cap) is saved whole through the
    link the Runs page shows in Chromium, with the run's file name."""
    import shutil
    import urllib.request

    from tests.browser_support import app_env, goto_page, launch_chromium, open_app, start_server

    from playwright.sync_api import sync_playwright

    runs = tmp_path / "server-runs"
    run_id, ckpt = _finished_run_with_checkpoint(runs, 250 * MB)
    server = start_server(app_env(runs, cache_dir=tmp_path / "server-cache"), tmp_path / "server.log")
    token_dir = None
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            open_app(page, server.url)
            goto_page(page, "Runs")
            page.get_by_role("button", name="Checkpoint (.pt)").click()
            link = page.locator("a[download]")
            link.wait_for()
            href, name = link.get_attribute("href"), link.get_attribute("download")
            browser.close()
        assert name == f"mfstudio-{run_id}.pt" and href.endswith("/" + name), (href, name)
        token_dir = downloads.DOWNLOADS_DIR / href.split("/")[-2]
        got = 0
        with urllib.request.urlopen(server.url + href, timeout=60) as resp:
            assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"
            while chunk := resp.read(4 * MB):
                got += len(chunk)
        assert got == ckpt.stat().st_size == 250 * MB
    finally:
        server.stop()
        if token_dir is not None:
            shutil.rmtree(token_dir, ignore_errors=True)
