"""Real-browser smoke test of the inspection pages: ``streamlit run app.py`` + Debian's chromium.

A short ALS run on the real ml-100k is trained in-process (the app's job runner, a
temporary runs folder) before the server starts; the server then finds it. The test opens
every inspection page through the sidebar links (Embeddings & biases, One user, One movie,
2D map, Rate movies yourself), searches a movie on the map and on the movie page, rates
movies on the new-user page, saves a screenshot of each page, and checks that no page shows
a Streamlit exception or an error alert.

Screenshots go to ``$MFSTUDIO_INSPECT_SHOTS`` or a folder under pytest's tmp dir; the path
is printed. The test fails (it does not skip) when chromium is missing; never
``playwright install``. All waits on the page are Playwright's own. The server, browser and
page helpers live in ``tests/browser_support.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mfcore.config import ModelConfig, TrainConfig
from mfcore.runs.runner import RunRequest
from tests.browser_support import (
    app_env, chromium_for_test, goto_page, inspect_shots_folder, new_page, no_error_boxes, open_app, serve_prepared, settle,
    shot,
    type_into,
)

pytestmark = pytest.mark.browser

WAIT_MS = 120_000  # a busy 2-core machine can take long for a first page (model load, item tables)
MAP_WAIT_MS = 300_000  # the 2D map's first UMAP in a fresh server compiles umap-learn's kernels (13-40 s, busy box)


@pytest.fixture(scope="module")
def browser():
    yield from chromium_for_test()


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_data):
    """The server's environment, with one finished ml-100k run in its runs folder."""
    tmp = tmp_path_factory.mktemp("browser_inspect")
    env = app_env(tmp / "runs", shared_data, tmp / "cache")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        from ui import jobs

        runner = jobs._runner_for(str((tmp / "runs").resolve()))
        rid = runner.submit(RunRequest("ml-100k", "random:0.1", 0, ModelConfig(n_factors=16),
                                       TrainConfig(optimizer="als", epochs=5, l2=0.1), label="browser-inspect"))
        snap = runner.wait(rid, timeout=300)
        runner.shutdown(wait=True)
    assert snap.status == "finished", snap.message
    return {**env, "_tmp": str(tmp)}


@pytest.fixture(scope="module")
def server(env, browser):
    yield from serve_prepared(browser, env)


@pytest.fixture(scope="module")
def shots(env) -> Path:
    return inspect_shots_folder(Path(env["_tmp"]))


# ---------------------------------------------------------------------------- the test
def test_inspection_pages_in_a_real_browser(server, browser, shots):
    page = new_page(browser, viewport={"width": 1400, "height": 2400})  # fails when chromium is missing
    from playwright.sync_api import expect

    open_app(page, server, timeout_ms=WAIT_MS)

    # Embeddings & biases, One user: open, let every chart draw, no error.
    for n, name in enumerate(("Embeddings & biases", "One user"), start=1):
        goto_page(page, name, timeout_ms=WAIT_MS)
        expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=WAIT_MS)
        settle(page, timeout_ms=WAIT_MS)
        shot(page, shots, f"{n}-{name.split()[0].lower()}")
        no_error_boxes(page, name)

    # One movie: search a title in its picker.
    goto_page(page, "One movie", timeout_ms=WAIT_MS)
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Movie (type part of the title")
    expect(picker).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    picker.locator("input").click()
    picker.locator("input").fill("Toy Story")
    page.get_by_role("option", name="Toy Story (1995)", exact=False).first.click()
    expect(page.get_by_text("· id 1", exact=False)).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    shot(page, shots, "3-movie-toy-story")
    no_error_boxes(page, "One movie")

    # 2D map: every movie drawn, then a search stars Star Wars and lists its neighbours.
    goto_page(page, "2D map", timeout_ms=WAIT_MS)
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=MAP_WAIT_MS)
    settle(page, timeout_ms=MAP_WAIT_MS)
    n_points = page.evaluate("""() => {
      const plot = document.querySelector('.js-plotly-plot');
      // _fullData: plotly's decoded traces (data may still hold base64 typed-array specs).
      return plot._fullData.filter(t => t.type === 'scattergl').reduce((n, t) => n + t._length, 0);
    }""")
    assert n_points == 1682
    shot(page, shots, "4-map")
    type_into(page, "Find a movie", "star wars")
    expect(page.get_by_text("Nearest neighbours of Star Wars (1977)")).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    searched = page.evaluate("""() => {
      const plot = document.querySelector('.js-plotly-plot');
      const t = plot.data.find(t => t.name === 'searched');
      return t ? t.text[0] : null;
    }""")
    assert searched == "Star Wars (1977)"
    frames = page.evaluate("() => (document.querySelectorAll('.js-plotly-plot')[1]._transitionData || {})"
                           "._frames?.length ?? -1")
    assert frames == 5, f"{frames} animation frames, expected one per epoch (5)"
    shot(page, shots, "5-map-star-wars")
    no_error_boxes(page, "2D map")

    # Rate movies yourself: nothing rated yet, then two movies through the search.
    goto_page(page, "Rate movies yourself", timeout_ms=WAIT_MS)
    expect(page.get_by_text("Your recommendations appear here")).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    shot(page, shots, "6-new-user-empty")
    # Two movies through the search. Wait for the matches box to show *this* search's movie:
    # the previous search's box stays on screen until the rerun replaces it.
    for n, title in enumerate(("alien", "toy story"), start=1):
        type_into(page, "Find a movie to rate", title)
        # The chosen match is the combobox's value (not its text): wait for this search's movie.
        matches = page.get_by_role("combobox", name=re.compile(r"\d+ match"))
        expect(matches).to_have_value(re.compile(title, re.IGNORECASE), timeout=WAIT_MS)
        settle(page, timeout_ms=WAIT_MS)
        page.locator('[data-testid="stButton"]').filter(has_text="Add").locator("button").click()
        expect(page.get_by_text(f"Your ratings ({n})")).to_be_visible(timeout=WAIT_MS)
    # The sections under the rating controls follow on one click (an edit reruns only the controls).
    page.get_by_role("button", name="Update recommendations (2 ratings)").click()
    expect(page.get_by_text("Recommended for you")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Why this recommendation?")).to_be_visible(timeout=WAIT_MS)
    settle(page, timeout_ms=WAIT_MS)
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 2  # the waterfall and the users' map
    shot(page, shots, "7-new-user-recommendations")
    no_error_boxes(page, "Rate movies yourself")
    page.close()
