"""Real-browser smoke test: ``streamlit run app.py`` driven by Debian's chromium (Playwright).

Open a page by its URL as the fresh server's first request and get the router's navigation.
Launch a run on the synthetic data, watch its chart gain points, leave the page and come
back while it trains, see the live redraws stop once it has finished, stop a second run,
and never see a Streamlit error box. Screenshots go to ``$MFSTUDIO_ARTIFACTS`` or
``artifacts/browser`` (git-ignored); the path is printed.

These tests fail (they do not skip) when chromium is missing: ``scripts/test.sh`` installs
it with apt-get. Never ``playwright install``. All waits on the page are Playwright's own.
The server, browser and page helpers live in ``tests/browser_support.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.browser_support import (
    ROOT, SHARED_DATA, app_env, chromium_for_test, goto_page, metric, new_page, no_error_boxes, open_app,
    serve_for_test, set_input, settle, shot,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("MFSTUDIO_ARTIFACTS", ROOT / "artifacts")) / "browser"

# Points of the learning curve's "test RMSE" trace, read from the plotly graph in the page.
POINTS_JS = """() => {
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    for (const trace of (plot.data || [])) {
      if (trace.name === 'test RMSE') return (trace.y || []).filter(v => v !== null).length;
    }
  }
  return -1;
}"""


@pytest.fixture(scope="module")
def browser():
    yield from chromium_for_test()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app on a free port of 127.0.0.1 with its own runs folder."""
    tmp = tmp_path_factory.mktemp("browser")
    yield from serve_for_test(browser, app_env(tmp / "runs", SHARED_DATA, tmp / "cache"), tmp / "server.log")


def scroll_to_chart(page) -> None:
    """Scroll the first chart into view by script: the live view redraws it every second,
    so a locator-based scroll can race with a replaced element."""
    page.wait_for_selector('[data-testid="stPlotlyChart"]')
    page.evaluate("() => document.querySelector('[data-testid=\"stPlotlyChart\"]')?.scrollIntoView({block: 'center'})")


PAGES_OPENED: list[str] = []  # pages this module's tests opened, in order


def test_a_page_url_opened_first_runs_under_the_router(server, browser):
    """/train as the server's very first request gets app.py's navigation and page config,
    not Streamlit's pages/ folder navigation (file names, no sections, no session defaults).

    Runs before the other test of this module (pytest keeps a file's order): only the first
    request on a fresh server shows the problem.
    """
    page = new_page(browser, viewport={"width": 1400, "height": 1000})  # fails when chromium is missing
    from playwright.sync_api import expect

    assert not PAGES_OPENED, f"the server already served {PAGES_OPENED}: this check needs a fresh server"
    PAGES_OPENED.append("/train")
    page.goto(f"{server}/train")
    page.wait_for_selector('h1:has-text("Train")', timeout=60_000)
    settle(page, timeout_ms=60_000)
    nav = page.locator('[data-testid="stSidebarNav"]')
    # The two sections, in order (each header also holds its expand icon's name).
    expect(nav.locator('[data-testid="stNavSectionHeader"]')).to_contain_text(["Workflow", "Inspect"])
    expect(nav.get_by_role("link", name="Train", exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="app", exact=True)).to_have_count(0)  # the pages/ folder's entry page
    expect(page).to_have_title("MF Studio")  # app.py's st.set_page_config ran
    shot(page, ARTIFACTS, "0-train-opened-by-url")
    no_error_boxes(page, "/train opened first")
    page.close()


def test_train_watch_switch_pages_and_stop_in_a_real_browser(server, browser):
    page = new_page(browser, viewport={"width": 1400, "height": 1000})  # fails when chromium is missing
    from playwright.sync_api import expect

    PAGES_OPENED.append("/")
    sent: list[int] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(1)))
    open_app(page, server, timeout_ms=60_000)
    goto_page(page, "Train")

    # D2L preset (Adam, batch 512) for 40 epochs: long enough (~30 s) that we see it grow.
    page.get_by_role("button", name="D2L", exact=True).click()
    # The preset's info box (the button's tooltip, when the mouse still hovers it, says the same).
    preset_info = page.locator('[data-testid="stAlert"]').filter(has_text="What this lesson shows")
    expect(preset_info).to_be_visible(timeout=15_000)
    set_input(page, "Epochs", 40)
    set_input(page, "Run label", "browser run")
    page.get_by_role("button", name="Launch", exact=True).click()

    expect(metric(page, "Epoch")).to_be_visible(timeout=30_000)
    page.wait_for_function(f"({POINTS_JS})() >= 1", timeout=60_000)
    first = page.evaluate(POINTS_JS)
    epoch_text = metric(page, "Epoch").inner_text()
    scroll_to_chart(page)
    print(f"\nscreenshots: {ARTIFACTS}")
    shot(page, ARTIFACTS, "1-train-running")
    # The chart gains points while we only wait: the live fragment redraws by itself.
    page.wait_for_function(f"({POINTS_JS})() > {first}", timeout=60_000)
    assert metric(page, "Epoch").inner_text() != epoch_text or page.evaluate(POINTS_JS) > first
    no_error_boxes(page)

    # Leave the page while it trains and come back: the run went on without us.
    goto_page(page, "Runs")
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible(timeout=30_000)
    shot(page, ARTIFACTS, "2-runs-while-training")
    no_error_boxes(page)
    goto_page(page, "Train")
    expect(metric(page, "Epoch")).to_be_visible(timeout=30_000)
    # "Finished: test RMSE ..." or, for a run worse than a baseline, "Finished worse than ...: test RMSE ..."
    expect(page.locator('[data-testid="stAlert"]').filter(has_text=re.compile(r"Finished.*test RMSE"))
           ).to_be_visible(timeout=240_000)
    expect(metric(page, "Epoch")).to_have_text("40/40")
    assert page.evaluate(POINTS_JS) == 40
    scroll_to_chart(page)
    shot(page, ARTIFACTS, "3-train-finished")

    # Finished: the fragment's timer is off, so the browser stops asking for redraws.
    page.wait_for_timeout(1_500)
    before = len(sent)
    page.wait_for_timeout(4_000)
    idle_frames = len(sent) - before
    assert idle_frames <= 1, f"{idle_frames} messages sent in 4 s after the run finished: the timer still runs"
    no_error_boxes(page)

    # A second, long run, stopped from the page.
    set_input(page, "Epochs", 300)
    set_input(page, "Run label", "to be stopped")
    page.get_by_role("button", name="Launch", exact=True).click()
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible(timeout=30_000)
    page.wait_for_function(f"({POINTS_JS})() >= 1", timeout=60_000)
    # While it runs the timer asks for a redraw about once a second (fewer on a busy machine).
    before = len(sent)
    page.wait_for_timeout(5_000)
    refreshes = len(sent) - before
    if refreshes < 2:
        shot(page, ARTIFACTS, "failure-no-refresh")
    assert refreshes >= 2, (
        "the live view did not refresh while the run was going: "
        + " | ".join(page.locator('[data-testid="stHeading"], [data-testid="stAlert"]').all_inner_texts())
    )
    stop.click()
    expect(page.get_by_text("Stopped after")).to_be_visible(timeout=30_000)
    expect(stop).to_be_disabled()
    page.wait_for_timeout(1_500)
    before = len(sent)
    page.wait_for_timeout(3_000)
    assert len(sent) - before <= 1, "the live view kept refreshing after the run was stopped"
    done = int(metric(page, "Epoch").inner_text().split("/")[0])
    assert 1 <= done < 300
    scroll_to_chart(page)
    shot(page, ARTIFACTS, "4-train-stopped")
    no_error_boxes(page)

    goto_page(page, "Runs")
    table = page.locator('[data-testid="stDataFrame"]').first
    expect(table).to_be_visible(timeout=30_000)
    shot(page, ARTIFACTS, "5-runs")
    no_error_boxes(page)
    page.close()
