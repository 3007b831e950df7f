"""Every page reads cleanly at 800, 1280 and 1920 px (issue 10, "Narrow screens").

One server on 127.0.0.1 with its own runs folder. In the browser, the D2L preset (ml-100k
from the shared data) is launched for a few epochs on the Train page, then "Compare with
the tuned default", so the Train page has its learning curve and its overlay, the Runs page
runs to compare, and the Inspect pages a model; a two-point sweep gives the Sweeps page its chart. Then, for each width and each page,
every tab of the page is opened, a screenshot is saved to ``artifacts/widths/`` and the test
asserts:

* no text of the main controls is cut off: headings, buttons, metric values and labels,
  selectbox values, tab labels, table headers (``scrollWidth <= clientWidth + 1``);
* no plotly legend overlaps a chart's title, a subplot title or the modebar, and no title
  sits under the modebar or on the plot;
* no Streamlit exception and no error box.

Fails (never skips) when chromium is missing; helpers in tests/browser_support.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.browser_support import (
    ROOT, app_env, chromium_for_test, goto_page, new_page, no_error_boxes, open_app, serve_for_test, shot,
    set_input, settle,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("MFSTUDIO_ARTIFACTS", ROOT / "artifacts")) / "widths"
WIDTHS = (800, 1280, 1920)
PAGES = ("Data", "Train", "Sweeps", "Runs", "Embeddings & biases", "One user", "One movie", "2D map",
         "Rate movies yourself")
WAIT_MS = 120_000
HEIGHT = 1600  # tall enough that a screenshot shows most of a page (Streamlit scrolls inside its main area)

# Text wider than its box, in the main area (the sidebar is the app's menu, not a page).
CUT_OFF_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]') || document;
  const sel = ['h1', 'h2', 'h3', 'button', 'button p', '[data-testid="stMetricValue"]',
    '[data-testid="stMetricValue"] > div', '[data-testid="stMetricLabel"]', '[data-testid="stMetricLabel"] p',
    '[data-testid="stMetricDelta"]', '[data-testid="stMetricDelta"] > div',
    '[data-testid="stSelectbox"] [data-baseweb="select"] > div > div > div',
    '[data-testid="stSelectbox"] [data-baseweb="select"] input',
    '[data-testid="stTab"] p', '[data-testid="stTable"] th', '[data-testid="stWidgetLabel"] p', 'label p',
    '[data-testid="stPageLink"] span'].join(', ');
  const shown = [...main.querySelectorAll(sel)].filter(e => e.offsetParent !== null && e.clientWidth > 0
    && (e.innerText || e.value || '').trim() !== '');
  const cut = shown.filter(e => {
    if (e.tagName === 'INPUT') {  // a selectbox shows its value as a read-only input in some versions
      const c = document.createElement('canvas').getContext('2d');
      c.font = getComputedStyle(e).font;
      return c.measureText(e.value).width > e.clientWidth + 1;
    }
    return e.scrollWidth > e.clientWidth + 1;
  });
  return {checked: shown.length, cut: cut.map(e => `${e.tagName}.${e.getAttribute('data-testid') || ''} `
    + `"${(e.innerText || e.value || '').slice(0, 50)}" ${e.scrollWidth}>${e.clientWidth}`)};
}"""

# Streamlit scrolls inside its own containers: back to the top for the screenshot.
TO_TOP_JS = """() => document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"], '
  + '[data-testid="stAppScrollToBottomContainer"], section').forEach(e => { e.scrollTop = 0; })"""

# A plotly legend overlapping a title (the chart's or a subplot's) or the modebar; a title
# under the modebar or on the plot area.
OVERLAP_JS = """() => {
  const boxes = (root, sel) => [...root.querySelectorAll(sel)].map(e => [e, e.getBoundingClientRect()])
    .filter(([e, r]) => r.width > 0 && r.height > 0);
  const hit = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const out = [];
  let charts = 0;
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    if (plot.offsetParent === null) continue;
    charts += 1;
    const legends = boxes(plot, 'g.legend .bg');
    const others = [...boxes(plot, '.gtitle').map(([e, r]) => ['title', e, r]),
      ...boxes(plot, '.annotation-text').map(([e, r]) => ['subplot title', e, r]),
      ...boxes(plot, '.modebar').map(([e, r]) => ['modebar', e, r])];
    const name = `"${(plot.querySelector('.gtitle') || {}).textContent || '(untitled)'}"`;
    for (const [, l] of legends)
      for (const [kind, e, r] of others)
        if (hit(l, r)) out.push(`legend over ${kind} "${(e.textContent || '').slice(0, 40)}" in ${name}`);
    // the title itself: not under the modebar, not on the plot area
    for (const [, t] of boxes(plot, '.gtitle'))
      for (const [kind, r] of [...boxes(plot, '.modebar').map(([, r]) => ['modebar', r]),
                               ...boxes(plot, '.nsewdrag').map(([, r]) => ['plot area', r])])
        if (hit(t, r)) out.push(`title over the ${kind} in ${name}`);
  }
  return {charts, overlaps: out};
}"""


@pytest.fixture(scope="module")
def browser():
    yield from chromium_for_test()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser, shared_data):
    tmp = tmp_path_factory.mktemp("browser-widths")
    env = {**app_env(tmp / "runs", shared_data, tmp / "cache"), "MFSTUDIO_CPU_THREADS": "1"}
    yield from serve_for_test(browser, env, tmp / "server.log")


def _goto(page, name: str) -> None:
    """The sidebar link ``name``, once the current page's run is over (its links are disabled
    while a live page reruns); tried three times."""
    for attempt in range(3):
        try:
            settle(page, timeout_ms=WAIT_MS)
            goto_page(page, name, timeout_ms=30_000)
            return
        except Exception:
            if attempt == 2:
                shot(page, ARTIFACTS, f"failure-goto-{_slug(name)}")
                raise


def _train_two_runs(page) -> None:
    """D2L on ml-100k for 4 epochs, then the tuned default beside it (the Train page's compare)."""
    from playwright.sync_api import expect

    _goto(page, "Train")
    settle(page, timeout_ms=WAIT_MS)
    page.get_by_role("button", name=re.compile(r"^D2L")).click()
    expect(page.get_by_text("What this lesson shows", exact=False)).to_be_visible(timeout=WAIT_MS)
    set_input(page, "Epochs", 4, timeout_ms=WAIT_MS)
    page.get_by_role("button", name="Launch", exact=True).click()
    compare = page.get_by_role("button", name="Compare with the tuned default")
    expect(compare).to_be_visible(timeout=WAIT_MS)
    compare.click()
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(p =>
        (p.data || []).some(t => t.name === 'tuned default' && (t.y || []).filter(v => v !== null).length >= 5))""",
                           timeout=WAIT_MS)


def _sweep(page) -> None:
    """A two-point sweep of factors k on the D2L form (4 epochs), so the Sweeps page has its chart."""
    _goto(page, "Sweeps")
    settle(page, timeout_ms=WAIT_MS)
    box = page.get_by_role("textbox", name="Values", exact=True)
    box.fill("4, 8")
    box.press("Enter")
    page.wait_for_selector("text=2 runs (limit", timeout=WAIT_MS)
    page.get_by_role("button", name="Launch sweep").click()
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(p => (p.data || [])
        .some(t => t.name === 'test RMSE (final)' && (t.y || []).filter(v => v !== null).length === 2))""",
                           timeout=WAIT_MS)


def _choose_compare_runs(page) -> None:
    """On the Runs page: overlay two runs so the compare chart and table show."""
    box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Runs to overlay")
    for _ in range(2):
        if page.locator('[data-testid="stMultiSelect"] [data-baseweb="tag"]').count() >= 2:
            return
        box.locator("input").click()
        options = page.get_by_role("option")
        options.first.wait_for(timeout=WAIT_MS)
        options.first.click()
        page.keyboard.press("Escape")
        settle(page, timeout_ms=WAIT_MS)


def _check(page, where: str, problems: list[str]) -> None:
    settle(page, timeout_ms=WAIT_MS)
    page.wait_for_timeout(300)  # plotly lays out its legend after the svg appears
    try:
        no_error_boxes(page, where)
    except AssertionError as exc:
        problems.append(str(exc))
    cut = page.evaluate(CUT_OFF_JS)
    if cut["checked"] < 2:
        problems.append(f"{where}: only {cut['checked']} controls found (is the page drawn?)")
    problems += [f"{where}: cut off: {c}" for c in cut["cut"]]
    problems += [f"{where}: {o}" for o in page.evaluate(OVERLAP_JS)["overlaps"]]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def test_every_page_reads_cleanly_at_800_1280_and_1920_px(server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}) if browser is not None else None
    page = new_page(context)  # fails when chromium is missing
    open_app(page, server, timeout_ms=WAIT_MS)
    _train_two_runs(page)
    _sweep(page)
    _goto(page, "Runs")
    settle(page, timeout_ms=WAIT_MS)
    _choose_compare_runs(page)

    problems: list[str] = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        for name in PAGES:
            _goto(page, name)
            tabs = page.locator('[data-testid="stMain"] [data-testid="stTab"]')
            settle(page, timeout_ms=WAIT_MS)
            labels = tabs.all_inner_texts() or [""]
            for n, label in enumerate(labels):
                if label:
                    tabs.nth(n).click()
                    page.wait_for_timeout(300)
                where = f"{width}px {name}" + (f" / {label}" if label else "")
                settle(page, timeout_ms=WAIT_MS)
                page.evaluate(TO_TOP_JS)
                page.wait_for_timeout(300)
                page.screenshot(path=str(_shot_path(width, name, label)))
                # hover the first chart so plotly shows its modebar where a visitor would see it
                chart = page.locator('[data-testid="stMain"] .js-plotly-plot').first
                if chart.count():
                    chart.hover()
                _check(page, where, problems)
    print(f"\nscreenshots: {ARTIFACTS}")
    assert not problems, "\n".join(problems)


def _shot_path(width: int, name: str, tab: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{width}-{_slug(name)}{'-' + _slug(tab) if tab else ''}.png"

