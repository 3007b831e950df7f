"""Real-browser smoke test of the inspection pages: ``streamlit run app.py`` + Debian's chromium.

A short ALS run on the real ml-100k is trained in-process (the app's job runner, a
temporary runs folder) before the server starts; the server then finds it. The test opens
every inspection page through the sidebar links (Embeddings & biases, One user, One movie,
2D map, Rate movies yourself), searches a movie on the map and on the movie page, rates
movies on the new-user page, saves a screenshot of each page, and checks that no page shows
a Streamlit exception or an error alert.

Screenshots go to ``$MFSTUDIO_INSPECT_SHOTS`` or a folder under pytest's tmp dir; the path
is printed. The test fails (it does not skip) when chromium is missing; never
``playwright install``. All waits are Playwright's own.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mfcore.config import ModelConfig, TrainConfig
from mfcore.runs.runner import RunRequest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 120_000  # a busy 2-core machine can take long for a first page (model load, item tables)


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


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium) "
                    "or run scripts/test.sh, which does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_data):
    """The server's environment, with one finished ml-100k run in its runs folder."""
    tmp = tmp_path_factory.mktemp("browser_inspect")
    env = {
        "MFSTUDIO_RUNS_DIR": str(tmp / "runs"),
        "MFSTUDIO_DATA_DIR": str(shared_data),
        "MFSTUDIO_CACHE": str(tmp / "cache"),
        "MFSTUDIO_DOWNLOAD_BASE": "http://127.0.0.1:9",
    }
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
    tmp = Path(env["_tmp"])
    port = free_port()
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, **{k: v for k, v in env.items() if not k.startswith("_")}},
        stdout=log, stderr=subprocess.STDOUT,
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
            tail = (tmp / "server.log").read_text()[-3000:]
            pytest.fail(f"streamlit did not start (exit {proc.poll()}); log:\n{tail}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print(f"\nserver log: {tmp / 'server.log'}")


@pytest.fixture(scope="module")
def shots(env) -> Path:
    folder = Path(os.environ.get("MFSTUDIO_INSPECT_SHOTS") or Path(env["_tmp"]) / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


# ---------------------------------------------------------------------------- helpers
SETTLED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const shown = sel => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null);
  // plotly has drawn its svg; the table grid has drawn its rows (its accessible table appears then)
  return shown('[data-testid="stPlotlyChart"]').every(c => c.querySelector('.main-svg'))
      && shown('[data-testid="stDataFrame"]').every(d => d.querySelector('[role="row"]'));
}"""


def settle(page) -> None:
    """Wait until the script run is over (the app's script state) and the visible charts and
    tables have drawn, so a screenshot shows the page as a visitor sees it. Call it after
    waiting for something the run being awaited draws (a title, a result), not right after
    a click: the new run may not have started yet."""
    page.wait_for_function(SETTLED_JS, timeout=WAIT_MS)


def no_error_boxes(page, where: str) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{where}: {exceptions.all_inner_texts()}"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{where}: {errors.all_inner_texts()}"


def goto_page(page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
    page.wait_for_selector(f'h1:has-text("{name}")', timeout=WAIT_MS)


def shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def type_into(page, label: str, text: str) -> None:
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(text)
    box.press("Enter")


# ---------------------------------------------------------------------------- the test
def test_inspection_pages_in_a_real_browser(server, browser, shots):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(server)
    page.wait_for_selector('h1:has-text("Data")', timeout=WAIT_MS)

    # Embeddings & biases, One user: open, let every chart draw, no error.
    for n, name in enumerate(("Embeddings & biases", "One user"), start=1):
        goto_page(page, name)
        expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=WAIT_MS)
        settle(page)
        shot(page, shots, f"{n}-{name.split()[0].lower()}")
        no_error_boxes(page, name)

    # One movie: search a title in its picker.
    goto_page(page, "One movie")
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Movie (type part of the title")
    expect(picker).to_be_visible(timeout=WAIT_MS)
    settle(page)
    picker.locator("input").click()
    picker.locator("input").fill("Toy Story")
    page.get_by_role("option", name="Toy Story (1995)", exact=False).first.click()
    expect(page.get_by_text("· id 1", exact=False)).to_be_visible(timeout=WAIT_MS)
    settle(page)
    shot(page, shots, "3-movie-toy-story")
    no_error_boxes(page, "One movie")

    # 2D map: every movie drawn, then a search stars Star Wars and lists its neighbours.
    goto_page(page, "2D map")
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=WAIT_MS)
    settle(page)
    n_points = page.evaluate("""() => {
      const plot = document.querySelector('.js-plotly-plot');
      // _fullData: plotly's decoded traces (data may still hold base64 typed-array specs).
      return plot._fullData.filter(t => t.type === 'scattergl').reduce((n, t) => n + t._length, 0);
    }""")
    assert n_points == 1682
    shot(page, shots, "4-map")
    type_into(page, "Find a movie", "star wars")
    expect(page.get_by_text("Nearest neighbours of Star Wars (1977)")).to_be_visible(timeout=WAIT_MS)
    settle(page)
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
    goto_page(page, "Rate movies yourself")
    expect(page.get_by_text("No ratings yet")).to_be_visible(timeout=WAIT_MS)
    settle(page)
    shot(page, shots, "6-new-user-empty")
    # Two movies through the search. Wait for the matches box to show *this* search's movie:
    # the previous search's box stays on screen until the rerun replaces it.
    for n, title in enumerate(("alien", "toy story"), start=1):
        type_into(page, "Find a movie to rate", title)
        # The chosen match is the combobox's value (not its text): wait for this search's movie.
        matches = page.get_by_role("combobox", name=re.compile(r"\d+ match"))
        expect(matches).to_have_value(re.compile(title, re.IGNORECASE), timeout=WAIT_MS)
        settle(page)
        page.locator('[data-testid="stButton"]').filter(has_text="Add").locator("button").click()
        expect(page.get_by_text(f"Your ratings ({n})")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Recommended for you")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_text("Why this recommendation?")).to_be_visible(timeout=WAIT_MS)
    settle(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 2  # the waterfall and the users' map
    shot(page, shots, "7-new-user-recommendations")
    no_error_boxes(page, "Rate movies yourself")
    page.close()
