"""Real browser (Debian's chromium): projector mode at 1280×720 cuts no text off, and the
Sweeps page runs a sweep whose chart fills in and marks the best point.

Fails (never skips) when chromium is missing; helpers in tests/browser_support.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser_support import (
    ROOT, SHARED_DATA, app_env, chromium_for_test, goto_page, new_page, no_error_boxes, serve_for_test, settle, shot,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("MFSTUDIO_ARTIFACTS", ROOT / "artifacts")) / "browser-teaching"

# Headings, buttons and metric values whose text is wider than their box (cut off or scrolled).
CUT_OFF_JS = """() => {
  const sel = 'h1, h2, h3, button, [data-testid="stMetricValue"], [data-testid="stMetricValue"] > div';
  const shown = [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null && e.clientWidth > 0);
  return {checked: shown.length, cut: shown.filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => `${e.tagName} "${e.innerText.slice(0, 40)}" ${e.scrollWidth}>${e.clientWidth}`)};
}"""

SWEEP_JS = """() => {
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const traces = plot.data || [];
    const test = traces.find(t => t.name === 'test RMSE (final)');
    const best = traces.find(t => (t.name || '').startsWith('best:'));
    if (test) return {points: (test.y || []).filter(v => v !== null).length, best: best ? best.y[0] : null,
                      min: Math.min(...(test.y || []).filter(v => v !== null))};
  }
  return null;
}"""


@pytest.fixture(scope="module")
def browser():
    yield from chromium_for_test()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    tmp = tmp_path_factory.mktemp("browser-teaching")
    env = {**app_env(tmp / "runs", SHARED_DATA, tmp / "cache"), "MFSTUDIO_CPU_THREADS": "1"}
    yield from serve_for_test(browser, env, tmp / "server.log")


def test_projector_mode_at_1280x720_cuts_no_text_off(server, browser):
    page = new_page(browser, viewport={"width": 1280, "height": 720})
    page.goto(f"{server}/?projector=1")
    page.wait_for_selector('h1:has-text("Data")', timeout=60_000)
    settle(page, timeout_ms=60_000)
    size = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('[data-testid=\"stMarkdownContainer\"] p')).fontSize)")
    assert size >= 19, f"projector text is {size}px"
    for name in ("Data", "Train", "Sweeps", "Runs"):
        if name != "Data":
            goto_page(page, name, timeout_ms=60_000)
            settle(page, timeout_ms=60_000)
        no_error_boxes(page, name)
        result = page.evaluate(CUT_OFF_JS)
        assert result["checked"] >= 3 and result["cut"] == [], f"{name}: {result}"
        shot(page, ARTIFACTS, f"projector-{name.lower()}")


def test_a_sweep_in_a_real_browser_fills_its_chart_and_marks_the_best_point(server, browser):
    page = new_page(browser, viewport={"width": 1400, "height": 1000})
    page.goto(server)
    page.wait_for_selector('h1:has-text("Data")', timeout=60_000)
    goto_page(page, "Sweeps", timeout_ms=60_000)
    settle(page, timeout_ms=60_000)
    box = page.get_by_role("textbox", name="Values", exact=True)
    box.fill("4, 8, 16")
    box.press("Enter")
    page.wait_for_selector('text=3 runs (limit', timeout=30_000)
    page.get_by_role("button", name="Launch sweep").click()
    page.wait_for_function(f"() => {{ const r = ({SWEEP_JS})(); return r && r.points === 3 && r.best !== null; }}",
                           timeout=180_000)
    result = page.evaluate(SWEEP_JS)
    assert result["points"] == 3 and result["best"] == pytest.approx(result["min"])
    no_error_boxes(page, "Sweeps")
    shot(page, ARTIFACTS, "sweep")
