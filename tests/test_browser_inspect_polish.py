"""Real-browser checks of issue 10's inspection fixes: ``streamlit run app.py`` + Debian's chromium.

1. **Rate movies yourself keeps every edit**: 20 edits in a row in the popular table's
   grid (double-click the *your rating* cell, type, Enter; no waiting for the page between
   edits), then all 20 are in the run store under the owner of the page's ``?u=`` token,
   and the page says so.
2. **One movie**: the CSV download of the per-user table holds every user; looking up one
   user id shows their row; ml-latest-small's picker is one control whose matches come
   most-rated first.
3. **2D map**: UMAP (the default) and t-SNE both draw every one of ml-100k's 1,682 movies.

Short ALS runs on the real ml-100k and ml-latest-small are trained in-process (the app's
job runner, a temporary runs folder) before the server starts. The test fails (it does not
skip) when chromium is missing; never ``playwright install``. Server on 127.0.0.1 only.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from mfcore.config import ModelConfig, TrainConfig
from mfcore.runs.access import owner_from_token
from mfcore.runs.runner import RunRequest
from mfcore.runs.store import RunStore
from tests.browser_support import (
    app_env, chromium_for_test, goto_page, inspect_shots_folder, new_page, no_error_boxes, open_app, serve_prepared, settle,
    shot,
)

pytestmark = pytest.mark.browser

WAIT_MS = 180_000  # a busy 2-core machine can take long for a first page (model load, item tables, UMAP)
EDITS = 20
ROW_PX = 35  # Streamlit's grid: header and rows 35 px high


@pytest.fixture(scope="module")
def browser():
    yield from chromium_for_test()


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_data):
    """The server's environment, with one finished run on ml-100k and one on ml-latest-small."""
    tmp = tmp_path_factory.mktemp("browser_polish")
    env = app_env(tmp / "runs", shared_data, tmp / "cache")
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        from ui import jobs

        runner = jobs._runner_for(str((tmp / "runs").resolve()))
        for dataset in ("ml-latest-small", "ml-100k"):  # ml-100k last: the newest run is the one selected
            rid = runner.submit(RunRequest(dataset, "random:0.1", 0, ModelConfig(n_factors=16),
                                           TrainConfig(optimizer="als", epochs=5, l2=0.1), label=f"polish-{dataset}"))
            snap = runner.wait(rid, timeout=300)
            assert snap.status == "finished", snap.message
            runs[dataset] = rid
        runner.shutdown(wait=True)
    return {**env, "_tmp": str(tmp), "_runs": runs}


@pytest.fixture(scope="module")
def server(env, browser):
    yield from serve_prepared(browser, env)


@pytest.fixture(scope="module")
def shots(env) -> Path:
    return inspect_shots_folder(Path(env["_tmp"]))


def owner_of(page) -> str:
    token = parse_qs(urlparse(page.url).query).get("u", [""])[0]
    assert token, f"no ?u= token in {page.url}"
    return owner_from_token(token)


def open_run(page, server: str, run_id: str, name: str) -> None:
    """Open the app on ``run_id`` (the ?run= link) and go to the page ``name``."""
    open_app(page, server, timeout_ms=WAIT_MS)
    token = parse_qs(urlparse(page.url).query).get("u", [""])[0]
    page.goto(f"{server}/?u={token}&run={run_id}")
    page.wait_for_selector('h1:has-text("Data")', timeout=WAIT_MS)
    goto_page(page, name, timeout_ms=WAIT_MS)


# ---------------------------------------------------------------------------- 1. rate movies yourself
def test_twenty_grid_edits_in_a_row_are_all_kept(server, browser, env, shots):
    page = new_page(browser, viewport={"width": 1400, "height": 1600})  # fails when chromium is missing
    from playwright.sync_api import expect

    open_run(page, server, env["_runs"]["ml-100k"], "Rate movies yourself")
    expect(page.get_by_text("Your recommendations appear here")).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    owner = owner_of(page)
    grid = page.locator('[data-testid="stDataFrame"]').first
    expect(grid).to_be_visible(timeout=WAIT_MS)
    canvas = grid.locator("canvas").first
    box = canvas.bounding_box()
    # The "your rating" column: find its header's x from the grid's column headers (accessible table).
    title_w = 200  # column_config width="medium"
    x = box["x"] + title_w + 30
    scroller = grid.locator(".dvn-scroller").first
    typed, reopened = {}, 0
    editor = page.locator("#portal input.gdg-input")  # the grid's cell editor, open after a double-click
    for n in range(EDITS):
        value = 1 + n % 5
        # Scroll so that row n is in view, read back where the grid scrolled to, then aim at it.
        top = scroller.evaluate(f"(el) => {{ el.scrollTop = Math.max(0, {n} * {ROW_PX} - 4 * {ROW_PX}); "
                                "return el.scrollTop; }")
        page.wait_for_timeout(60)
        y = box["y"] + ROW_PX + n * ROW_PX - top + ROW_PX / 2
        if editor.count() and editor.is_visible():
            # The previous cell's editor is still open (its Enter landed while the table was being
            # redrawn): the typed value shows in it, and a person commits it with Enter.
            reopened += 1
            editor.focus()
            editor.press("Enter")
            expect(editor).to_have_count(0, timeout=10_000)
        page.mouse.dblclick(x, y)
        expect(editor).to_be_focused(timeout=10_000)  # a person types once they see the cell open
        expect(editor).to_be_enabled()  # the rating column, not a read-only one
        page.keyboard.type(str(value), delay=20)
        page.keyboard.press("Enter")
        typed[n] = float(value)
        page.wait_for_timeout(150)  # a quick person, not a patient one: the previous edit's save is still going
    print(f"\n{reopened} of {EDITS} edits needed a second Enter (their editor stayed open)")
    if editor.count() and editor.is_visible():
        editor.focus()
        editor.press("Enter")
    # Every edit is confirmed; the last one by name.
    expect(page.get_by_text(re.compile(r"Saved: .*You have rated 20 movies"))).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    shot(page, shots, "1-new-user-20-edits")
    no_error_boxes(page, "Rate movies yourself")

    store = RunStore(Path(env["MFSTUDIO_RUNS_DIR"]))
    stored = store.user_ratings(owner, "ml-100k")
    assert len(stored) == EDITS, stored
    # The first 20 rows of the table are the 20 most-rated movies, in order.
    from mfcore.data.sources import load_dataset
    import numpy as np

    data = load_dataset("ml-100k", data_dir=env["MFSTUDIO_DATA_DIR"], download=False)
    counts = np.bincount(data.item_idx, minlength=data.n_items)
    order = np.lexsort((np.arange(data.n_items), -counts))[:EDITS]  # nlargest keeps the first of ties
    expected = {data.item_ids.raw[i].item(): typed[n] for n, i in enumerate(order)}
    assert stored == expected
    # The sections under the table follow on one click, with all 20.
    page.get_by_role("button", name=f"Update recommendations ({EDITS} ratings)").click()
    expect(page.get_by_text("Recommended for you")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text(f"Your ratings ({EDITS})")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text(f"from your {EDITS} rating(s)")).to_be_visible(timeout=WAIT_MS)
    # A reload (same ?u= link) brings them back.
    page.reload()
    expect(page.get_by_text(f"Your ratings ({EDITS})")).to_be_visible(timeout=WAIT_MS)
    assert RunStore(Path(env["MFSTUDIO_RUNS_DIR"])).user_ratings(owner, "ml-100k") == expected
    page.close()


# ---------------------------------------------------------------------------- 2. one movie
def test_one_movie_csv_holds_every_user_and_one_id_can_be_looked_up(server, browser, env, shots):
    page = new_page(browser, viewport={"width": 1400, "height": 1800})
    from playwright.sync_api import expect

    open_run(page, server, env["_runs"]["ml-100k"], "One movie")
    expect(page.get_by_text("· id 50", exact=False)).to_be_visible(timeout=WAIT_MS)  # Star Wars, the most rated
    settle(page, timeout_ms=WAIT_MS)
    page.get_by_role("tab", name="Every user").click()
    button = page.get_by_role("button", name="Download all 943 users (CSV)")
    expect(button).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    with page.expect_download(timeout=WAIT_MS) as download:
        button.click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(rows) == 943 and len({r["user"] for r in rows}) == 943
    assert sum(1 for r in rows if r["actual"]) == 583  # Star Wars' ratings
    assert {"rank", "predicted", "unclipped", "actual", "age", "gender", "occupation"} <= set(rows[0])
    scores = [float(r["unclipped"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    page.get_by_role("textbox", name="Look up a user id").fill("42")
    page.get_by_role("textbox", name="Look up a user id").press("Enter")
    expect(page.get_by_text(re.compile(r"User 42 .*rank [0-9,]+ of 943"))).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    shot(page, shots, "2-movie-every-user")
    no_error_boxes(page, "One movie")
    page.close()


def test_ml_latest_small_movie_picker_is_one_control_ordered_by_ratings(server, browser, env, shots):
    page = new_page(browser, viewport={"width": 1400, "height": 1400})
    from playwright.sync_api import expect

    open_run(page, server, env["_runs"]["ml-latest-small"], "One movie")
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Movie (type part of the title")
    expect(picker).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    main = page.locator('[data-testid="stMain"]')
    assert main.locator('[data-testid="stTextInput"]').count() == 0  # no second search box above it
    assert main.locator('[data-testid="stSelectbox"]').count() == 1
    picker.locator("input").click()
    picker.locator("input").fill("star wars")
    options = page.get_by_role("option")
    expect(options.first).to_contain_text("Star Wars", timeout=WAIT_MS)
    labels = options.all_inner_texts()
    counts = [int(re.search(r"· ([0-9,]+) ratings", t).group(1).replace(",", "")) for t in labels]
    assert len(counts) >= 5 and counts == sorted(counts, reverse=True), labels
    assert all("star wars" in t.lower() for t in labels)
    shot(page, shots, "3-movie-picker-ml-latest-small")
    page.keyboard.press("Escape")
    page.close()


# ---------------------------------------------------------------------------- 3. the 2D map
def scattergl_points(page) -> int:
    return page.evaluate("""() => {
      const plot = document.querySelector('.js-plotly-plot');
      return plot._fullData.filter(t => t.type === 'scattergl').reduce((n, t) => n + t._length, 0);
    }""")


def test_umap_and_tsne_maps_draw_every_ml100k_movie(server, browser, env, shots):
    page = new_page(browser, viewport={"width": 1400, "height": 2000})
    from playwright.sync_api import expect

    open_run(page, server, env["_runs"]["ml-100k"], "2D map")
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    title = lambda: re.sub(r"<[^>]+>", "", page.evaluate(  # noqa: E731
        "() => document.querySelector('.js-plotly-plot').layout.title.text"))
    assert title().startswith("UMAP")  # the default
    assert scattergl_points(page) == 1682
    shot(page, shots, "4-map-umap")
    page.get_by_text("t-SNE", exact=True).click()
    expect(page.get_by_text("Showing all 1,682 points.", exact=False)).to_be_visible(timeout=WAIT_MS)
    page.wait_for_function("() => document.querySelector('.js-plotly-plot').layout.title.text.includes('t-SNE')",
                           timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    assert scattergl_points(page) == 1682
    shot(page, shots, "5-map-tsne")
    no_error_boxes(page, "2D map")
    page.close()
