"""Faults in a real browser (issue 11): markup injection from the data, and a damaged run store.

* **injection**: a small MovieLens-layout zip (30 users x 40 movies, ``ratings.csv`` +
  ``movies.csv``) whose titles and genres carry Markdown images, links, raw HTML and
  Streamlit directives is uploaded on the Data page; a run whose label carries the same is
  trained on it; then EVERY page is opened (Data, Train, Runs, Embeddings & biases, One
  user, One movie with such a title chosen, 2D map with such a title searched, Rate movies
  yourself with such a movie rated). The test asserts that no request leaves for any URL
  of the data (or for anything but the app's own server), that the literal text (e.g.
  ``![x](``) is visible, and that no page shows an exception or an error box.
* **damaged store**: a server on a runs folder whose ``runs.sqlite`` is garbage shows one
  clear error box (no ``stException``) naming the file; the move-aside button keeps the
  damaged file byte-identical under its new name, says so in a success note, and the app
  then works (pages open, no error box).

Every address is 127.0.0.1 (the URLs of the data point at port 9, where nothing listens;
a request to them is what the test catches). Screenshots at 1280 px go to
``$MFSTUDIO_ARTIFACTS/browser-faults`` (default ``artifacts/``). Fails (never skips) when
chromium is missing; never ``playwright install``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.browser_support import (
    ROOT, app_env, chromium_for_test, goto_page, new_page, no_error_boxes, open_app, serve_for_test, set_input,
    settle, shot, type_into,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("MFSTUDIO_ARTIFACTS", ROOT / "artifacts")) / "browser-faults"
WAIT_MS = 120_000
MAP_WAIT_MS = 300_000  # the 2D map's first UMAP in a fresh server compiles umap-learn's kernels
VIEWPORT = {"width": 1280, "height": 1600}
HOSTILE = "127.0.0.1:9/"  # every URL in the data points here (nothing listens)
N_USERS, N_ITEMS = 30, 40


def _title(i: int) -> str:
    kind = i % 4
    if kind == 0:
        return f"Movie {i} ![x](http://{HOSTILE}beacon-{i}.png)"
    if kind == 1:
        return f"Movie {i} [y](http://{HOSTILE}link-{i}) **strong**"
    if kind == 2:
        return f"Movie {i} <img src=http://{HOSTILE}html-{i}.png> <b>bold</b>"
    return f"Movie {i} :red[red] $x^2$ _em_ <a href=http://{HOSTILE}a-{i}>a</a>"


GENRES = f"![g](http://{HOSTILE}beacon-genre.png)|<img src=http://{HOSTILE}html-genre.png>|Drama"
LABEL = f"run ![x](http://{HOSTILE}beacon-label.png) <b>b</b> **s**"
BAD_VALUE = f"![x](http://{HOSTILE}beacon-err.png)"
BAD_RATINGS = f"user,item,rating\n1,1,4\n2,2,{BAD_VALUE}\n3,3,5\n".encode()
ZIP_NAME = "inject ![f](beacon-file.png).zip"  # a relative URL: it would hit the app's own server


def _hostile_zip() -> bytes:
    """ratings.csv + movies.csv of 30 users x 40 movies (12 ratings each), titles/genres with markup."""
    rng = np.random.default_rng(11)
    ratings = io.StringIO()
    ratings.write("userId,movieId,rating,timestamp\n")
    for u in range(1, N_USERS + 1):
        for i in sorted(rng.choice(N_ITEMS, size=12, replace=False)):
            ratings.write(f"{u},{i + 1},{rng.integers(1, 11) / 2:g},{1_000_000_000 + u * 1000 + int(i)}\n")
    movies = io.StringIO()
    writer = csv.writer(movies, lineterminator="\n")
    writer.writerow(["movieId", "title", "genres"])
    for i in range(N_ITEMS):
        writer.writerow([i + 1, _title(i), GENRES])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ratings.csv", ratings.getvalue())
        z.writestr("movies.csv", movies.getvalue())
    return out.getvalue()


@pytest.fixture(scope="module")
def browser():
    yield from chromium_for_test()


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser_faults")


@pytest.fixture(scope="module")
def server(tmp, browser):
    (tmp / "data").mkdir()
    env = app_env(tmp / "runs", tmp / "data", tmp / "cache")
    yield from serve_for_test(browser, env, tmp / "server.log")


@pytest.fixture(scope="module")
def damaged_runs(tmp) -> tuple[Path, bytes]:
    runs = tmp / "damaged-runs"
    runs.mkdir()
    garbage = b"this is not a database\x00" + bytes(range(256)) * 16
    (runs / "runs.sqlite").write_bytes(garbage)
    return runs, garbage


@pytest.fixture(scope="module")
def damaged_server(tmp, browser, damaged_runs):
    runs, _ = damaged_runs
    env = app_env(runs, tmp / "data", tmp / "cache-damaged")
    yield from serve_for_test(browser, env, tmp / "server-damaged.log")


class Requests:
    """Every URL the pages of a browser context asked for."""

    def __init__(self, context, server: str):
        self.urls: list[str] = []
        self.server = server
        context.on("request", lambda r: self.urls.append(r.url))

    def check(self, where: str) -> None:
        hostile = [u for u in self.urls if HOSTILE in u or re.search(r"beacon|html-|link-|/a-\d", u)]
        assert not hostile, f"{where}: requests for URLs from the data: {hostile}"
        foreign = [u for u in self.urls if not (u.startswith(self.server) or u.startswith(("data:", "blob:")))]
        assert not foreign, f"{where}: requests that leave the app's server: {foreign}"


def _visible(page, text: str, where: str) -> None:
    from playwright.sync_api import expect

    try:
        expect(page.get_by_text(text, exact=False).filter(visible=True).first).to_be_visible(timeout=WAIT_MS)
    except AssertionError:
        shot(page, ARTIFACTS, f"failure-{where}")
        raise


def _page_done(page, requests: Requests, name: str) -> None:
    settle(page, timeout_ms=WAIT_MS)
    shot(page, ARTIFACTS, name)
    no_error_boxes(page, name)
    requests.check(name)


def _uploader(page, label: str):
    """The file input of the uploader labelled ``label`` (a switched-away one may linger)."""
    return (page.locator('[data-testid="stFileUploader"]').filter(has_text=label)
            .locator('[data-testid="stFileUploaderDropzoneInput"]'))


# ---------------------------------------------------------------------------- (a) injection
def test_markup_from_the_data_is_shown_as_text_and_fetches_nothing(server, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT) if browser is not None else None
    page = new_page(context)  # fails when chromium is missing
    requests = Requests(context, server)
    open_app(page, server, timeout_ms=WAIT_MS)

    # Data: a ratings file whose bad line carries markup: the error box quotes it as text.
    page.get_by_text("Upload your own ratings file", exact=True).click()
    uploader = _uploader(page, "Ratings file")
    expect(uploader).to_be_attached(timeout=WAIT_MS)
    uploader.set_input_files({"name": "bad ratings.csv", "mimeType": "text/csv", "buffer": BAD_RATINGS})
    page.get_by_role("button", name="Load with this mapping").click()
    error = page.locator('[data-testid="stAlertContentError"]').filter(has_text="could not be loaded")
    expect(error).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    assert "line 3" in error.inner_text() and BAD_VALUE in error.inner_text(), error.inner_text()
    shot(page, ARTIFACTS, "0-bad-ratings-file")
    requests.check("bad ratings file")

    # Data: upload the zip through the page.
    page.get_by_text("Upload a MovieLens zip", exact=True).click()
    uploader = _uploader(page, "MovieLens zip")
    expect(uploader).to_be_attached(timeout=WAIT_MS)
    uploader.set_input_files({"name": ZIP_NAME, "mimeType": "application/zip", "buffer": _hostile_zip()})
    expect(page.get_by_text("Loaded inject", exact=False)).to_be_visible(timeout=WAIT_MS)
    ratings = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text("Ratings", exact=True))
    expect(ratings.locator('[data-testid="stMetricValue"]').first).to_have_text(f"{N_USERS * 12:,}", timeout=WAIT_MS)
    _visible(page, "beacon-file.png", "data")
    _page_done(page, requests, "1-data")

    # Train: a short run with a hostile label; its heading shows the label literally.
    goto_page(page, "Train", timeout_ms=WAIT_MS)
    set_input(page, "Epochs", 5, timeout_ms=WAIT_MS)
    set_input(page, "Run label", LABEL, timeout_ms=WAIT_MS)
    page.get_by_role("button", name="Launch", exact=True).click()
    expect(page.get_by_role("heading", name=LABEL, exact=False)).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("finished", exact=False).first).to_be_visible(timeout=WAIT_MS)
    _page_done(page, requests, "2-train")

    # Runs: the run listed and detailed under its literal label.
    goto_page(page, "Runs", timeout_ms=WAIT_MS)
    expect(page.get_by_text(re.compile(r"finished · by "))).to_be_visible(timeout=WAIT_MS)
    # the label is drawn in the table (canvas), the run chooser and the rename box: literally
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(re.compile(re.escape(LABEL)),
                                                                             timeout=WAIT_MS)
    expect(page.get_by_role("textbox", name="Label", exact=True)).to_have_value(LABEL, timeout=WAIT_MS)
    _page_done(page, requests, "3-runs")

    # Sweeps (when the app lists it): the data line names the upload literally.
    if page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Sweeps", exact=True).count():
        goto_page(page, "Sweeps", timeout_ms=WAIT_MS)
        _page_done(page, requests, "3b-sweeps")

    # Embeddings & biases, One user: every chart drawn (titles in plotly hover and labels).
    for n, name in ((4, "Embeddings & biases"), (5, "One user")):
        goto_page(page, name, timeout_ms=WAIT_MS)
        expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=WAIT_MS)
        _page_done(page, requests, f"{n}-{name.split()[0].lower()}")
    _visible(page, "![x](", "one-user")

    # One movie: choose the title carrying a Markdown image.
    goto_page(page, "One movie", timeout_ms=WAIT_MS)
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Movie (type part of the title")
    expect(picker).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    picker.locator("input").click()
    picker.locator("input").fill("Movie 8 ")
    page.get_by_role("option", name=_title(8), exact=False).first.click()
    expect(page.get_by_text("· id 9", exact=False)).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("combobox", name=re.compile("^Movie"))).to_have_value(re.compile(re.escape(_title(8))))
    _visible(page, "![g](", "movie-genres")
    _page_done(page, requests, "6-movie")
    # ... and the one with raw HTML.
    picker.locator("input").click()
    picker.locator("input").fill("Movie 10 ")
    page.get_by_role("option", name=_title(10), exact=False).first.click()
    expect(page.get_by_text("· id 11", exact=False)).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("combobox", name=re.compile("^Movie"))).to_have_value(re.compile(re.escape(_title(10))))
    _page_done(page, requests, "6b-movie-html")

    # 2D map: search a hostile title; the neighbours heading shows it literally. The neighbour
    # list is One movie's (at least 20 ratings by default); these movies have ~9 each, so the
    # floor goes to 1 or the list (and its heading) is empty.
    goto_page(page, "2D map", timeout_ms=WAIT_MS)
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=MAP_WAIT_MS)
    settle(page, timeout_ms=MAP_WAIT_MS)
    set_input(page, "Min. ratings", 1, timeout_ms=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    type_into(page, "Find a movie", "Movie 4 ")
    expect(page.get_by_text(f"Nearest neighbours of {_title(4)}", exact=False)).to_be_visible(timeout=WAIT_MS)
    _page_done(page, requests, "7-map")

    # Rate movies yourself: rate two hostile titles, see recommendations.
    goto_page(page, "Rate movies yourself", timeout_ms=WAIT_MS)
    expect(page.get_by_text("Your recommendations appear here")).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    for n, i in enumerate((12, 13), start=1):
        type_into(page, "Find a movie to rate", f"Movie {i} ")
        matches = page.get_by_role("combobox", name=re.compile(r"\d+ match"))
        expect(matches).to_have_value(re.compile(re.escape(f"Movie {i} ")), timeout=WAIT_MS)
        settle(page, timeout_ms=WAIT_MS)
        page.locator('[data-testid="stButton"]').filter(has_text="Add").locator("button").click()
        expect(page.get_by_text(f"Your ratings ({n})")).to_be_visible(timeout=WAIT_MS)
    # The sections under the rating controls follow on one click (an edit reruns only the controls).
    page.get_by_role("button", name="Update recommendations (2 ratings)").click()
    expect(page.get_by_text("Recommended for you")).to_be_visible(timeout=WAIT_MS)
    set_input(page, "Only movies with at least this many ratings", 1, timeout_ms=WAIT_MS)  # 9-13 ratings each here
    why = page.get_by_role("combobox", name="Recommendation", exact=True)
    expect(why).to_have_value(re.compile(r"^Movie \d+ "), timeout=WAIT_MS)  # the "why" section, titles as text
    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(2, timeout=WAIT_MS)
    _visible(page, "![x](", "new-user")
    _page_done(page, requests, "8-new-user")

    # Nothing was ever rendered as an <img>/<a> pointing at the data's URLs.
    for tag, attr in (("img", "src"), ("a", "href")):
        bad = page.evaluate(f"() => [...document.querySelectorAll('{tag}')].map(e => e.getAttribute('{attr}'))"
                            f".filter(v => v && (v.includes('{HOSTILE}') || v.includes('beacon')))")
        assert not bad, f"<{tag}> elements from the data: {bad}"
    requests.check("end")
    context.close()


# ---------------------------------------------------------------------------- (b) damaged store
def test_damaged_run_store_is_named_and_moved_aside(damaged_server, browser, damaged_runs):
    from playwright.sync_api import expect

    runs, garbage = damaged_runs
    page = new_page(browser, viewport=VIEWPORT)
    page.goto(damaged_server)
    box = page.locator('[data-testid="stAlertContentError"]').filter(has_text="The run store cannot be used")
    expect(box).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert "runs.sqlite" in box.inner_text()
    assert page.locator('[data-testid="stAlertContentError"]').count() == 1
    shot(page, ARTIFACTS, "9-damaged-store")
    assert (runs / "runs.sqlite").read_bytes() == garbage  # opening it changed nothing

    page.get_by_role("button", name="Move the damaged file aside and start an empty run store").click()
    note = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="was moved, unchanged")
    expect(note).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    shot(page, ARTIFACTS, "10-moved-aside")
    moved = sorted(runs.glob("runs.damaged-*.sqlite"))
    assert len(moved) == 1 and moved[0].read_bytes() == garbage, moved
    assert moved[0].name in note.inner_text()
    no_error_boxes(page, "after the move")
    assert (runs / "runs.sqlite").read_bytes() != garbage  # a fresh store in its place

    # The app works: Train and Runs open without an error box.
    for name in ("Train", "Runs"):
        goto_page(page, name, timeout_ms=WAIT_MS)
        settle(page, timeout_ms=WAIT_MS)
        no_error_boxes(page, name)
        assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, ARTIFACTS, "11-runs-after-move")
    page.close()
