"""Real-browser smoke test: ``streamlit run app.py`` driven by Debian's chromium (Playwright).

Launch a run on the synthetic data, watch its chart gain points, leave the page and come
back while it trains, see the live redraws stop once it has finished, stop a second run,
and never see a Streamlit error box. Screenshots go to ``$MFSTUDIO_ARTIFACTS`` or
``artifacts/browser`` (git-ignored); the path is printed.

This test fails (it does not skip) when chromium is missing: ``scripts/test.sh`` installs
it with apt-get. Never ``playwright install``. All waits are Playwright's own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHARED_DATA = Path(os.environ.get("MFSTUDIO_SHARED_DATA", ROOT.parent / "shared" / "data"))
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


CHROMIUM_MISSING = (f"{CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium) "
                    "or run scripts/test.sh, which does")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        yield None  # the test itself fails (a FAILED test, not a skip or a fixture error)
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app on a free port of 127.0.0.1 with its own runs folder."""
    if browser is None:
        yield None
        return
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = {
        **os.environ,
        "MFSTUDIO_RUNS_DIR": str(tmp / "runs"),
        "MFSTUDIO_DATA_DIR": str(SHARED_DATA),
        "MFSTUDIO_CACHE": str(tmp / "cache"),
        "MFSTUDIO_DOWNLOAD_BASE": "http://127.0.0.1:9",
    }
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    waiter = browser.new_page()
    try:
        for _ in range(300):  # up to ~60 s for the server to come up
            if healthy(url) or proc.poll() is not None:
                break
            waiter.wait_for_timeout(200)
        waiter.close()
        if not healthy(url):
            pytest.fail(f"streamlit did not start (exit {proc.poll()}); log:\n{(tmp / 'server.log').read_text()[-3000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print(f"\nserver log: {tmp / 'server.log'}")


def no_error_boxes(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').all_inner_texts()
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, errors.all_inner_texts()


def metric(page, label: str):
    return page.locator('[data-testid="stMetric"]').filter(has_text=label).locator('[data-testid="stMetricValue"]')


def set_number(page, label: str, value: int) -> None:
    box = page.locator(f"input[aria-label='{label}']")
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_function(
        "([label, value]) => document.querySelector(`input[aria-label='${label}']`).value === String(value)",
        arg=[label, value],
    )


def set_text(page, label: str, text: str) -> None:
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(text)
    box.press("Enter")
    expect_value = text.replace("'", "\\'")
    page.wait_for_function(f"() => document.querySelector(`input[aria-label='{label}']`).value === '{expect_value}'")


def goto_page(page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
    page.wait_for_selector(f'h1:has-text("{name}")')


def scroll_to_chart(page) -> None:
    """Scroll the first chart into view by script: the live view redraws it every second,
    so a locator-based scroll can race with a replaced element."""
    page.wait_for_selector('[data-testid="stPlotlyChart"]')
    page.evaluate("() => document.querySelector('[data-testid=\"stPlotlyChart\"]')?.scrollIntoView({block: 'center'})")


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def test_train_watch_switch_pages_and_stop_in_a_real_browser(server, browser):
    if browser is None:
        pytest.fail(CHROMIUM_MISSING)
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sent: list[int] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(1)))
    page.goto(server)
    page.wait_for_selector('h1:has-text("Data")', timeout=60_000)
    goto_page(page, "Train")

    # D2L preset (Adam, batch 512) for 40 epochs: long enough (~30 s) that we see it grow.
    page.get_by_role("button", name="D2L", exact=True).click()
    # The preset's info box (the button's tooltip, when the mouse still hovers it, says the same).
    preset_info = page.locator('[data-testid="stAlert"]').filter(has_text="Reference: the book reports")
    expect(preset_info).to_be_visible(timeout=15_000)
    set_number(page, "Epochs", 40)
    set_text(page, "Run label", "browser run")
    page.get_by_role("button", name="Launch").click()

    expect(metric(page, "Epoch")).to_be_visible(timeout=30_000)
    page.wait_for_function(f"({POINTS_JS})() >= 1", timeout=60_000)
    first = page.evaluate(POINTS_JS)
    epoch_text = metric(page, "Epoch").inner_text()
    scroll_to_chart(page)
    print(f"\nscreenshots: {ARTIFACTS}")
    shot(page, "1-train-running")
    # The chart gains points while we only wait: the live fragment redraws by itself.
    page.wait_for_function(f"({POINTS_JS})() > {first}", timeout=60_000)
    assert metric(page, "Epoch").inner_text() != epoch_text or page.evaluate(POINTS_JS) > first
    no_error_boxes(page)

    # Leave the page while it trains and come back: the run went on without us.
    goto_page(page, "Runs")
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible(timeout=30_000)
    shot(page, "2-runs-while-training")
    no_error_boxes(page)
    goto_page(page, "Train")
    expect(metric(page, "Epoch")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Finished: test RMSE")).to_be_visible(timeout=240_000)
    expect(metric(page, "Epoch")).to_have_text("40/40")
    assert page.evaluate(POINTS_JS) == 40
    scroll_to_chart(page)
    shot(page, "3-train-finished")

    # Finished: the fragment's timer is off, so the browser stops asking for redraws.
    page.wait_for_timeout(1_500)
    before = len(sent)
    page.wait_for_timeout(4_000)
    idle_frames = len(sent) - before
    assert idle_frames <= 1, f"{idle_frames} messages sent in 4 s after the run finished: the timer still runs"
    no_error_boxes(page)

    # A second, long run, stopped from the page.
    set_number(page, "Epochs", 300)
    set_text(page, "Run label", "to be stopped")
    page.get_by_role("button", name="Launch").click()
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible(timeout=30_000)
    page.wait_for_function(f"({POINTS_JS})() >= 1", timeout=60_000)
    # While it runs the timer asks for a redraw about once a second (fewer on a busy machine).
    before = len(sent)
    page.wait_for_timeout(5_000)
    refreshes = len(sent) - before
    if refreshes < 2:
        shot(page, "failure-no-refresh")
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
    shot(page, "4-train-stopped")
    no_error_boxes(page)

    goto_page(page, "Runs")
    table = page.locator('[data-testid="stDataFrame"]').first
    expect(table).to_be_visible(timeout=30_000)
    shot(page, "5-runs")
    no_error_boxes(page)
    page.close()
