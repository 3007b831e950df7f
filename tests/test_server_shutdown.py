"""Stopping the server during a run: the run ends "interrupted" with its epochs and checkpoint,
the job thread is joined (no "terminate called without an active exception"), and the process
exits promptly. A real ``streamlit run`` on 127.0.0.1, driven by Debian's chromium."""

from __future__ import annotations

import re
import time
from urllib.parse import urlparse

import pytest

from mfcore.runs.store import RunStore
from tests.browser_support import (
    SHARED_DATA, app_env, chromium_for_test, goto_page, metric, new_page, open_app, set_input, start_server,
)

pytestmark = pytest.mark.browser
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def browser():
    yield from chromium_for_test()


def test_stopping_the_server_during_a_run_interrupts_it_cleanly(browser, tmp_path):
    from playwright.sync_api import expect

    page = new_page(browser, viewport={"width": 1400, "height": 1000})  # fails when chromium is missing
    runs_dir = tmp_path / "runs"
    server = start_server(app_env(runs_dir, SHARED_DATA, tmp_path / "cache"), tmp_path / "server.log")
    try:
        assert urlparse(server.url).hostname == "127.0.0.1"
        open_app(page, server.url, timeout_ms=WAIT_MS)
        goto_page(page, "Train", timeout_ms=WAIT_MS)
        set_input(page, "Epochs", 30_000)
        set_input(page, "Run label", "cut short")
        page.get_by_role("button", name="Launch", exact=True).click()
        expect(metric(page, "Epoch")).to_have_text(re.compile(r"^([3-9]|\d\d+)/30,?000"), timeout=WAIT_MS)
        # A checkpoint exists once ten seconds have passed after an epoch.
        store = RunStore(runs_dir)
        run = next(r for r in store.list_runs() if r.label == "cut short")
        deadline = time.monotonic() + 60
        while not store.get(run.id).checkpoint_path and time.monotonic() < deadline:
            time.sleep(0.5)
        assert store.get(run.id).status == "running"
        t0 = time.monotonic()
        server.proc.terminate()
        server.proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        server.stop()
        page.close()
    log = (tmp_path / "server.log").read_text()
    assert "terminate called" not in log, log[-2000:]
    assert "Traceback" not in log, log[-3000:]
    ended = RunStore(runs_dir).get(run.id)
    assert ended.status == "interrupted", (ended.status, ended.message)
    assert ended.epochs_done >= 3 and ended.checkpoint_path
    print(f"\nserver exited {took:.2f} s after SIGTERM; run interrupted after {ended.epochs_done} epochs: "
          f"{ended.message}")
    assert took < 15, f"the server took {took:.1f} s to stop"
