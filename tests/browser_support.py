"""Real-browser plumbing shared by the browser tests and ``benchmarks/classroom.py``.

* the app: :func:`start_server` runs ``streamlit run app.py`` on a free port of 127.0.0.1
  with the environment of :func:`app_env` and waits for ``/_stcore/health``;
  :func:`serve_for_test` wraps it for a pytest fixture;
* the browser: Debian's chromium (``/usr/bin/chromium``) through Playwright's
  ``executable_path`` (:func:`launch_chromium`, :func:`chromium_for_test`). Never
  ``playwright install``. When chromium is missing a test *fails*: :func:`new_page` fails it;
* the page: small helpers over Streamlit's test ids (:func:`open_app`, :func:`goto_page`,
  :func:`settle`, :func:`no_error_boxes`, :func:`shot`, ...). Waits on the page are
  Playwright's own.

Nothing here is collected by pytest (the name does not start with ``test_``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MFSTUDIO_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run")
CHROMIUM_MISSING = (f"{CHROMIUM} is missing; install Debian's chromium (apt-get install -y chromium) "
                    "or run scripts/test.sh, which does")
NO_DOWNLOADS = "http://127.0.0.1:9"  # a download base nothing listens on: the app never reaches the internet


# ---------------------------------------------------------------------------- the server
def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """Whether the Streamlit server at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def app_env(runs_dir: Path, data_dir: Path = SHARED_DATA, cache_dir: Path | None = None) -> dict[str, str]:
    """The app's settings for a test server: its own runs folder, the given data, no downloads."""
    env = {"MFSTUDIO_RUNS_DIR": str(runs_dir), "MFSTUDIO_DATA_DIR": str(data_dir), "MFSTUDIO_DOWNLOAD_BASE": NO_DOWNLOADS}
    if cache_dir is not None:
        env["MFSTUDIO_CACHE"] = str(cache_dir)
    return env


class ServerDidNotStart(RuntimeError):
    """``streamlit run`` exited or did not answer its health check in time (the message holds its log's tail)."""


@dataclass
class Server:
    """A running ``streamlit run app.py``; :meth:`stop` ends it."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    _log: IO[str]

    def stop(self, timeout_s: float = 20) -> None:
        """Terminate the server (kill it after ``timeout_s``) and close its log."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start_server(env: Mapping[str, str], log_path: Path, app_dir: Path = ROOT, timeout_s: float = 60) -> Server:
    """Run ``streamlit run app.py`` from ``app_dir`` on a free port of 127.0.0.1, headless.

    ``env`` is added to this process's environment (see :func:`app_env`); stdout and stderr
    go to ``log_path``. Returns once ``/_stcore/health`` answers; raises
    :class:`ServerDidNotStart` (after stopping it) if the server exits or does not answer
    within ``timeout_s``.
    """
    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 (closed by Server.stop)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=app_dir, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )
    server = Server(proc, f"http://127.0.0.1:{port}", Path(log_path), log)
    deadline = time.monotonic() + timeout_s
    while not healthy(server.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            exit_code = proc.poll()
            server.stop()
            tail = Path(log_path).read_text()[-3000:]
            raise ServerDidNotStart(f"streamlit did not start (exit {exit_code}); log {log_path}:\n{tail}")
        time.sleep(0.2)
    return server


def serve_for_test(browser: Any, env: Mapping[str, str], log_path: Path) -> Iterator[str | None]:
    """Body of a pytest fixture: yields the URL of a server started with :func:`start_server`.

    Yields ``None`` without starting one when ``browser`` is ``None`` (chromium is missing:
    the test fails on its first page, see :func:`new_page`). Fails the test (with the log's
    tail) when the server does not start; stops it afterwards and prints where its log is.
    """
    import pytest

    if browser is None:
        yield None
        return
    try:
        server = start_server(env, log_path)
    except ServerDidNotStart as e:
        pytest.fail(str(e))
    try:
        yield server.url
    finally:
        server.stop()
        print(f"\nserver log: {log_path}")


def serve_prepared(browser: Any, prepared: Mapping[str, str]) -> Iterator[str | None]:
    """:func:`serve_for_test` for a module's prepared environment: keys starting with ``_`` are
    the preparing fixture's own notes (``_tmp``: its folder, which gets the server log)."""
    settings = {k: v for k, v in prepared.items() if not k.startswith("_")}
    yield from serve_for_test(browser, settings, Path(prepared["_tmp"]) / "server.log")


def inspect_shots_folder(tmp: Path) -> Path:
    """Where the inspection pages' screenshots go: ``$MFSTUDIO_INSPECT_SHOTS`` or ``tmp/screenshots``."""
    import os

    folder = Path(os.environ.get("MFSTUDIO_INSPECT_SHOTS") or Path(tmp) / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


# ---------------------------------------------------------------------------- the browser
def have_chromium() -> bool:
    return Path(CHROMIUM).is_file()


def launch_chromium(playwright: Any, extra_args: Sequence[str] = ()) -> Any:
    """Debian's chromium, headless, through Playwright (``playwright`` is ``sync_playwright()``'s handle)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


def chromium_for_test() -> Iterator[Any]:
    """Body of a pytest fixture: yields the browser, or ``None`` when chromium is missing.

    It does not fail by itself, so that the test (through :func:`new_page`) is reported as
    FAILED, not skipped and not as a fixture error.
    """
    if not have_chromium():
        yield None
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


def new_page(browser: Any, **options: Any) -> Any:
    """A new page of ``browser`` (``options`` go to ``browser.new_page``); fails the test when
    chromium is missing (``browser`` is ``None``)."""
    if browser is None:
        import pytest

        pytest.fail(CHROMIUM_MISSING)
    return browser.new_page(**options)


# ---------------------------------------------------------------------------- the page
SETTLED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const shown = sel => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null);
  // plotly has drawn its svg; the table grid has drawn its rows (its accessible table appears then)
  return shown('[data-testid="stPlotlyChart"]').every(c => c.querySelector('.main-svg'))
      && shown('[data-testid="stDataFrame"]').every(d => d.querySelector('[role="row"]'));
}"""


def open_app(page: Any, url: str, timeout_ms: float | None = None) -> None:
    """Open the app's front page (``url``) and wait for its default page, Data."""
    page.goto(url)
    page.wait_for_selector('h1:has-text("Data")', timeout=timeout_ms)


def sidebar_link(page: Any, name: str) -> Any:
    """The sidebar navigation's link to the page titled ``name``."""
    return page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True)


def goto_page(page: Any, name: str, timeout_ms: float | None = None) -> None:
    """Click the sidebar link ``name`` and wait for the page's title (``None``: Playwright's default timeout)."""
    sidebar_link(page, name).click()
    page.wait_for_selector(f'h1:has-text("{name}")', timeout=timeout_ms)


def settle(page: Any, timeout_ms: float | None = None) -> None:
    """Wait until the script run is over (the app's script state) and the visible charts and
    tables have drawn, so a screenshot shows the page as a visitor sees it. Call it after
    waiting for something the run being awaited draws (a title, a result), not right after
    a click: the new run may not have started yet."""
    page.wait_for_function(SETTLED_JS, timeout=timeout_ms)


def no_error_boxes(page: Any, where: str = "") -> None:
    """Assert that the page shows no Streamlit exception and no error alert (``where`` prefixes the message)."""
    prefix = f"{where}: " if where else ""
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, f"{prefix}{exceptions.all_inner_texts()}"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{prefix}{errors.all_inner_texts()}"


def metric(page: Any, label: str) -> Any:
    """The value of the ``st.metric`` labelled ``label``."""
    return page.locator('[data-testid="stMetric"]').filter(has_text=label).locator('[data-testid="stMetricValue"]')


def type_into(page: Any, label: str, text: str) -> None:
    """Type ``text`` into the text box labelled ``label`` and press Enter (no wait)."""
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(text)
    box.press("Enter")


def set_input(page: Any, label: str, value: object, timeout_ms: float | None = None) -> None:
    """Fill the text or number input labelled ``label``, press Enter and wait until it holds ``value``."""
    box = page.locator(f"input[aria-label='{label}']")
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_function(
        "([label, value]) => document.querySelector(`input[aria-label='${label}']`).value === value",
        arg=[label, str(value)], timeout=timeout_ms,
    )


def shot(page: Any, folder: Path, name: str) -> Path:
    """Save a screenshot of the page as ``folder/name.png`` (creating the folder); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    return path
