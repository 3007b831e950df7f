"""A class on one server, in a real browser: two people (two browser contexts) on one app.

* a reload (and a bookmarked URL in a fresh context) keeps the name, the runs, the data
  choice and the new-user ratings;
* three launches in a row each become the followed run;
* the Runs page turns "running" into "finished" without a click;
* another person sees the run with its owner's name but no Stop/Delete, and the engine
  refuses them too; a ``?run=`` link opens the run read-only;
* a wrong teacher key is refused; the right one unlocks Delete of anyone's run.

Every server address is 127.0.0.1. Fails (never skips) when chromium is missing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from mfcore.runs.access import Actor, PermissionDenied, owner_from_token
from mfcore.runs.store import RunStore
from tests.browser_support import (
    ROOT, SHARED_DATA, app_env, chromium_for_test, goto_page, metric, new_page, no_error_boxes, open_app,
    serve_for_test, set_input, settle, shot, type_into,
)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("MFSTUDIO_ARTIFACTS", ROOT / "artifacts")) / "browser-class"
TEACHER_KEY = "class-key-7f3a"
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def browser():
    yield from chromium_for_test()


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("class") / "runs"


@pytest.fixture(scope="module")
def server(runs_dir, browser):
    env = {**app_env(runs_dir, SHARED_DATA, runs_dir.parent / "cache"), "MFSTUDIO_TEACHER_KEY": TEACHER_KEY,
           "MFSTUDIO_MAX_JOBS": "1"}
    for url in serve_for_test(browser, env, runs_dir.parent / "server.log"):
        if url is not None:
            assert urlparse(url).hostname == "127.0.0.1"
        yield url


def _person(browser, width: int = 1400):
    context = browser.new_context(viewport={"width": width, "height": 1000}) if browser is not None else None
    return context, new_page(context if context is not None else None)


def _token(page) -> str:
    return parse_qs(urlparse(page.url).query).get("u", [""])[0]


def _launch(page, label: str, epochs: int) -> None:
    from playwright.sync_api import expect

    set_input(page, "Epochs", epochs)
    set_input(page, "Run label", label)
    page.get_by_role("button", name="Launch", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(re.escape(label)))).to_be_visible(timeout=WAIT_MS)


def _detail_text(page) -> str:
    return " ".join(page.locator('[data-testid="stMarkdown"]').all_inner_texts())


def _choose_run(page, label: str) -> None:
    """Pick ``label`` in the Runs page's detail chooser."""
    from playwright.sync_api import expect

    settle(page, timeout_ms=WAIT_MS)
    box = page.get_by_role("combobox", name="Run", exact=True)
    option = page.get_by_role("option", name=re.compile(re.escape(label))).first
    for attempt in range(3):  # a rerun that lands just then closes the list: open it again
        box.click()
        try:
            option.click(timeout=10_000)
            break
        except Exception:
            if attempt == 2:
                shot(page, ARTIFACTS, "failure-choose-run")
                raise
    expect(box).to_have_value(re.compile(re.escape(label)), timeout=WAIT_MS)


def test_a_class_in_two_browser_contexts(server, browser, runs_dir):
    from playwright.sync_api import expect

    alice_ctx, alice = _person(browser)
    open_app(alice, server, timeout_ms=WAIT_MS)
    token = _token(alice)
    assert re.fullmatch(r"[0-9a-f]{32}", token), alice.url
    # A name typed once; the data choice (split seed 7) made on the Data page.
    name_box = alice.get_by_role("textbox", name="Your name")
    expect(name_box).to_have_value(re.compile(r"guest-[0-9a-f]{4}"))
    type_into(alice, "Your name", "Alice")
    set_input(alice, "Seed (split and model)", 7, timeout_ms=WAIT_MS)
    expect(alice.get_by_role("textbox", name="Your name")).to_have_value("Alice")

    # Three launches in a row: each becomes the followed run.
    goto_page(alice, "Train", timeout_ms=WAIT_MS)
    expect(alice.get_by_text("split seed 7", exact=False)).to_be_visible(timeout=WAIT_MS)
    for k in (1, 2, 3):
        _launch(alice, f"alice run {k}", epochs=3 if k < 3 else 20_000)  # the third runs until stopped
        follow = alice.get_by_role("combobox", name="Follow run") if k > 1 else None
        if follow is not None:
            expect(follow).to_have_value(re.compile(f"alice run {k}"), timeout=WAIT_MS)
    stop = alice.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_enabled(timeout=WAIT_MS)
    expect(metric(alice, "Epoch")).to_have_text(re.compile(r"/20,?000"), timeout=WAIT_MS)
    shot(alice, ARTIFACTS, "1-alice-third-launch-followed")
    no_error_boxes(alice, "three launches")

    # A second person: sees Alice's running run by name, but cannot stop or delete it.
    bob_ctx, bob = _person(browser)
    open_app(bob, server, timeout_ms=WAIT_MS)
    assert _token(bob) and _token(bob) != token
    type_into(bob, "Your name", "Bob")
    expect(bob.get_by_role("textbox", name="Your name")).to_have_value("Bob")
    goto_page(bob, "Runs", timeout_ms=WAIT_MS)
    _choose_run(bob, "alice run 3")
    expect(bob.get_by_text("by Alice", exact=False)).to_be_visible(timeout=WAIT_MS)
    expect(bob.get_by_text("only they can stop or delete it", exact=False)).to_be_visible(timeout=WAIT_MS)
    assert bob.get_by_role("button", name="Stop", exact=True).count() == 0
    assert bob.get_by_role("button", name=re.compile("^Delete")).count() == 0
    shot(bob, ARTIFACTS, "2-bob-sees-alice-run")
    no_error_boxes(bob, "Bob on Runs")
    # ... and the engine refuses him whatever a page draws.
    store = RunStore(runs_dir)
    running = next(r for r in store.list_runs() if r.label == "alice run 3")
    bob_actor = Actor(owner_from_token(_token(bob)))
    for refused in (lambda: store.delete(running.id, bob_actor), lambda: store.rename(running.id, "mine", bob_actor)):
        with pytest.raises(PermissionDenied):
            refused()
    assert store.get(running.id).status == "running" and store.get(running.id).label == "alice run 3"

    # Alice stops it; the Runs page (no click) then shows it ended.
    stop.click()
    expect(alice.get_by_text("Stopped after", exact=False)).to_be_visible(timeout=WAIT_MS)

    # A run that finishes while Alice watches the Runs page: the page updates without a click.
    _launch(alice, "alice live", epochs=2000)  # a few seconds: seen running, then finished
    goto_page(alice, "Runs", timeout_ms=WAIT_MS)
    _choose_run(alice, "alice live")
    expect(alice.get_by_text(re.compile(r"(queued|running) · by Alice"))).to_be_visible(timeout=WAIT_MS)
    expect(alice.get_by_text(re.compile(r"finished · by Alice"))).to_be_visible(timeout=WAIT_MS)
    shot(alice, ARTIFACTS, "3-runs-refreshed-to-finished")

    # Alice rates a movie of her run's data ("Rate movies yourself").
    goto_page(alice, "Rate movies yourself", timeout_ms=WAIT_MS)
    expect(alice.get_by_text("Your ratings (0)")).to_be_visible(timeout=WAIT_MS)
    type_into(alice, "Find a movie to rate", "Synthetic item 1")
    matches = alice.get_by_role("combobox", name=re.compile(r"\d+ match"))
    expect(matches).to_have_value(re.compile("Synthetic item 1"), timeout=WAIT_MS)
    settle(alice, timeout_ms=WAIT_MS)
    alice.locator('[data-testid="stButton"]').filter(has_text="Add").locator("button").click()
    expect(alice.get_by_text("Your ratings (1)")).to_be_visible(timeout=WAIT_MS)

    # Reload: the same person, runs, data choice and ratings.
    alice.reload()
    expect(alice.get_by_role("heading", name="Rate movies yourself", exact=True)).to_be_visible(timeout=WAIT_MS)
    assert _token(alice) == token
    expect(alice.get_by_role("textbox", name="Your name")).to_have_value("Alice", timeout=WAIT_MS)
    expect(alice.get_by_text("Your ratings (1)")).to_be_visible(timeout=WAIT_MS)
    goto_page(alice, "Runs", timeout_ms=WAIT_MS)
    expect(alice.get_by_text("4 of yours", exact=False)).to_be_visible(timeout=WAIT_MS)
    # A bookmarked URL in a brand-new browser context (a server restart keeps the store too).
    again_ctx, again = _person(browser)
    again.goto(f"{server}/train?u={token}")
    expect(again.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=WAIT_MS)
    expect(again.get_by_role("textbox", name="Your name")).to_have_value("Alice", timeout=WAIT_MS)
    expect(again.get_by_text("split seed 7", exact=False)).to_be_visible(timeout=WAIT_MS)
    assert again.get_by_text("No run yet").count() == 0
    shot(again, ARTIFACTS, "4-bookmark-brings-alice-back")
    no_error_boxes(again, "bookmarked URL")
    again_ctx.close()

    # A ?run= link opens the run read-only for anyone; a malformed one says so.
    finished = next(r for r in store.list_runs() if r.label == "alice run 1")
    carol_ctx, carol = _person(browser)  # someone new, opening the link pasted in the class chat
    carol.goto(f"{server}/runs?run={finished.id}")
    expect(carol.get_by_text(re.compile(r"finished · by Alice"))).to_be_visible(timeout=WAIT_MS)
    assert carol.get_by_role("button", name=re.compile("^Delete")).count() == 0
    assert carol.get_by_role("button", name="Stop", exact=True).count() == 0
    assert _token(carol) not in ("", token)
    shot(carol, ARTIFACTS, "5-run-link-read-only")
    no_error_boxes(carol, "run link")
    carol.goto(f"{server}/runs?run=../../etc&u={_token(carol)}")
    expect(carol.get_by_text("The run link is not valid", exact=False)).to_be_visible(timeout=WAIT_MS)
    carol.goto(f"{server}/runs?u=nottoken")
    expect(carol.get_by_text("The user token in this link is not valid", exact=False)).to_be_visible(timeout=WAIT_MS)
    carol_ctx.close()

    # The teacher key: a wrong one is refused, the right one unlocks Delete of Alice's run.
    bob.get_by_text("Teacher", exact=True).click()
    set_key = bob.get_by_label("Teacher key")
    set_key.fill("not-the-key")
    set_key.press("Enter")
    expect(bob.get_by_text("That is not the teacher key.")).to_be_visible(timeout=WAIT_MS)
    assert TEACHER_KEY not in bob.content()
    bob.get_by_text("Teacher", exact=True).click()
    set_key = bob.get_by_label("Teacher key")
    set_key.fill(TEACHER_KEY)
    set_key.press("Enter")
    expect(bob.get_by_text("Teacher mode: you can stop", exact=False)).to_be_visible(timeout=WAIT_MS)
    expect(bob.get_by_role("heading", name="Class leaderboard")).to_be_visible(timeout=WAIT_MS)
    _choose_run(bob, "alice run 1")
    bob.get_by_role("button", name=re.compile("^Delete")).click()
    bob.get_by_role("button", name="Yes, delete").click()
    expect(bob.get_by_text(f"Deleted run", exact=False)).to_be_visible(timeout=WAIT_MS)
    assert not store.exists(finished.id)
    shot(bob, ARTIFACTS, "6-teacher-deleted")
    no_error_boxes(bob, "teacher")
    alice_ctx.close()
    bob_ctx.close()
