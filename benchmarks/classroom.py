"""A class of N students on one MF Studio server: queue waits, page response, server memory.

    python benchmarks/classroom.py --sessions 10 [--epochs 100] [--rounds 2]
    python benchmarks/classroom.py --sessions 30 --url http://127.0.0.1:8501 --pid PID --runs-dir runs

Opens N real browser sessions (N pages of one Debian chromium, each in its own browser
context, so each is its own Streamlit session over its own websocket), opens the Train
page in each, and launches one short run per session at (nearly) the same moment: the
tuned default preset (per-rating SGD, 64 factors) on the synthetic data, ``--epochs`` epochs. While
the runs queue and train, every session navigates Train -> Runs -> Train, timing each
click until the page's content is rendered. Prints one row per session and a summary:

* queue wait: submission to start, and run time: start to end (from the run store, exact);
* page response: click on "Runs" until its table is visible, click on "Train" until the
  live view's Epoch figure is visible (milliseconds), split by whether any of the class's
  runs was queued or training at the click;
* server: resident memory (VmRSS from /proc) at start, peak and end; CPU seconds used.

Without ``--url`` the script starts ``streamlit run app.py`` itself on a free port, with a
fresh runs folder, and stops it at the end (``--app-dir`` runs the app from another copy of
the tree, e.g. ``git archive HEAD | tar -x -C /tmp/snap``, so that edits made meanwhile do
not reach the server under test). With ``--url`` give the server's ``--pid`` for
memory and ``--runs-dir`` (its store gives the queue waits). Browser and server share this
machine's cores, so response times include chromium's own load (reported separately: the
browser's CPU seconds). The server, chromium and page helpers are the browser tests' own
(``tests/browser_support.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/classroom.py
    sys.path.insert(0, str(ROOT))

from tests.browser_support import (  # noqa: E402
    CHROMIUM_MISSING, SHARED_DATA, ServerDidNotStart, app_env, have_chromium, launch_chromium, metric, open_app,
    set_input, shot, sidebar_link, start_server,
)

# Keep every tab drawing at full speed although only one of N is ever in front.
EXTRA_CHROMIUM_ARGS = ("--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                       "--disable-backgrounding-occluded-windows")
TICKS = os.sysconf("SC_CLK_TCK")
WAIT_MS = [600_000]  # how long one page may take to show something (--wait)


# ---------------------------------------------------------------------------- the server
def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (VmRSS)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int, children: bool = False) -> float:  # noqa: FBT001
    """User + system CPU seconds of a process (and, optionally, its waited-for children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + ((cutime + cstime) if children else 0)) / TICKS


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds of a process and all its live descendants (chromium's renderers)."""
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        total += cpu_seconds(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return total


class Sampler(threading.Thread):
    """Samples the server's RSS every 0.25 s (a plain thread reading /proc)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self._done = pid, [], threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.samples.append(rss_mb(self.pid))
            self._done.wait(0.25)

    def stop(self) -> None:
        self._done.set()
        self.join()


# ---------------------------------------------------------------------------- the sessions
@dataclass
class Session:
    index: int
    page: object
    label: str
    load_ms: float = float("nan")
    nav: list[tuple[str, float, int]] = field(default_factory=list)
    """(page, milliseconds, runs queued or running when clicked)"""
    frames: int = 0
    retries: int = 0
    """clicks that had to be repeated (lost on a saturated machine)"""


def epoch_visible(page, timeout_ms: float | None = None) -> None:
    """Wait for the live view's Epoch figure (default: ``--wait``)."""
    metric(page, "Epoch").first.wait_for(state="visible", timeout=WAIT_MS[0] if timeout_ms is None else timeout_ms)


def open_train(session: Session, url: str) -> None:
    # Through the front door and the sidebar, like a student.
    t0 = time.perf_counter()
    open_app(session.page, url, timeout_ms=WAIT_MS[0])
    sidebar_link(session.page, "Train").click()
    session.page.wait_for_selector('h1:has-text("Train")', timeout=WAIT_MS[0])
    session.page.locator("input[aria-label='Epochs']").wait_for(timeout=WAIT_MS[0])
    session.load_ms = (time.perf_counter() - t0) * 1000


def click_until(link, shown: Callable[[float], None], retry_s: float = 60.0) -> int:
    """Click a sidebar link until the page shows (``shown(timeout_ms)`` returns); returns the retries.

    On a saturated machine a click can be lost (e.g. while the websocket reconnects), so
    after ``retry_s`` without the new page the click is repeated; the time counts on.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.perf_counter() + WAIT_MS[0] / 1000
    retries = 0
    while True:
        link.click()
        try:
            shown(min(retry_s, max(1.0, deadline - time.perf_counter())) * 1000)
            return retries
        except PlaywrightTimeout:
            if time.perf_counter() >= deadline:
                raise
            retries += 1


def navigate(session: Session, active: Callable[[], int]) -> None:
    """Train -> Runs -> Train, timing each click until the new page's content shows."""
    page = session.page

    def runs_shown(ms: float) -> None:
        page.wait_for_selector('h1:has-text("Runs")', timeout=ms)
        page.locator('[data-testid="stDataFrame"]').first.wait_for(state="visible", timeout=ms)

    def train_shown(ms: float) -> None:
        page.wait_for_selector('h1:has-text("Train")', timeout=ms)
        epoch_visible(page, ms)

    for name, shown in (("runs", runs_shown), ("train", train_shown)):
        busy = active()
        t0 = time.perf_counter()
        retries = click_until(sidebar_link(page, name.title()), shown)
        session.nav.append((name, (time.perf_counter() - t0) * 1000, busy))
        session.retries += retries


@contextmanager
def screenshot_on_failure(session: Session, folder: Path, name: str, what: str) -> Iterator[None]:
    """If the block raises, save the session's page as ``folder/name-INDEX.png``, say so, re-raise."""
    try:
        yield
    except Exception:
        path = shot(session.page, folder, f"{name}-{session.index}")
        print(f"session {session.index}: {what}; screenshot {path}", file=sys.stderr)
        raise


def store_rows(runs_dir: Path) -> dict[str, tuple[float, float, float, str]]:
    """label -> (created, started, finished, status), read from the run store's SQLite file."""
    db = runs_dir / "runs.sqlite"
    if not db.is_file():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT label, created_at, started_at, finished_at, status FROM runs").fetchall()
    finally:
        conn.close()
    nan = float("nan")
    return {label: (c, nan if s is None else s, nan if f is None else f, st) for label, c, s, f, st in rows}


def count_active(runs_dir: Path, labels: set[str]) -> int:
    return sum(st in ("queued", "running") for label, (_, _, _, st) in store_rows(runs_dir).items() if label in labels)


def fmt_s(x: float) -> str:
    return "–" if x != x else f"{x:.1f}"


def fmt_ms(values: list[float]) -> str:
    return "–" if not values else " ".join(f"{v:.0f}" for v in values)


def summary(name: str, values: list[float], unit: str) -> str:
    values = [v for v in values if v == v]
    if not values:
        return f"{name:<34} –"
    q = statistics.quantiles(values, n=10, method="inclusive") if len(values) >= 2 else values
    p90 = q[-1] if len(values) >= 2 else values[0]
    return (f"{name:<34} median {statistics.median(values):8.1f} {unit}   p90 {p90:8.1f} {unit}   "
            f"max {max(values):8.1f} {unit}   (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", "-n", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=100, help="epochs of each session's run")
    parser.add_argument("--rounds", type=int, default=2, help="Train->Runs->Train navigations per session")
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--pid", type=int, help="the running server's process id (for memory and CPU)")
    parser.add_argument("--runs-dir", type=Path, help="the running server's runs folder (for exact queue waits)")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="the tree to run the app from (default: this one)")
    parser.add_argument("--viewport", default="1280x720")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for all runs to end")
    parser.add_argument("--wait", type=float, default=600, help="seconds one page may take to show something")
    args = parser.parse_args()
    WAIT_MS[0] = int(args.wait * 1000)
    if not have_chromium():
        raise SystemExit(CHROMIUM_MISSING)
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="mfstudio-classroom-"))
    server = None
    if args.url:
        if args.runs_dir is None:
            parser.error("--url needs --runs-dir (the server's MFSTUDIO_RUNS_DIR): queue waits come from its store")
        url, pid, runs_dir = args.url.rstrip("/"), args.pid, args.runs_dir
    else:
        runs_dir = tmp / "runs"
        try:
            server = start_server(app_env(runs_dir, SHARED_DATA), tmp / "server.log", args.app_dir.resolve(),
                                  timeout_s=90)
        except ServerDidNotStart as e:
            raise SystemExit(str(e)) from None
        url, pid = server.url, server.proc.pid
    width, height = (int(v) for v in args.viewport.split("x"))
    sampler = Sampler(pid) if pid else None
    cpu0 = cpu_seconds(pid) if pid else float("nan")
    if sampler:
        sampler.start()
    print(f"server {url} (pid {pid}), {args.sessions} sessions, {args.epochs} epochs each, {os.cpu_count()} cores")
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p, EXTRA_CHROMIUM_ARGS)
            sessions: list[Session] = []
            for i in range(args.sessions):
                page = browser.new_context(viewport={"width": width, "height": height}).new_page()
                page.set_default_timeout(args.wait * 1000)  # a busy 2-core machine can take that long
                s = Session(i + 1, page, f"class-{i + 1:02d}")
                page.on("websocket", lambda ws, s=s: ws.on("framesent", lambda _: setattr(s, "frames", s.frames + 1)))
                sessions.append(s)
            t_open = time.perf_counter()
            for s in sessions:
                open_train(s, url)
            print(f"opened {len(sessions)} Train pages in {time.perf_counter() - t_open:.1f} s")
            for s in sessions:
                set_input(s.page, "Epochs", args.epochs, timeout_ms=WAIT_MS[0])
                set_input(s.page, "Run label", s.label, timeout_ms=WAIT_MS[0])
            # Everyone presses Launch within a moment.
            labels = {x.label for x in sessions}
            active = lambda: count_active(runs_dir, labels)  # noqa: E731
            t_launch = time.perf_counter()
            for x in sessions:
                x.page.get_by_role("button", name="Launch").click()
            for x in sessions:
                with screenshot_on_failure(x, tmp, "failed-launch", "no live view after Launch"):
                    epoch_visible(x.page)
            print(f"all {len(sessions)} live views shown {time.perf_counter() - t_launch:.1f} s after the first click")
            frames0 = sum(x.frames for x in sessions)
            t_frames = time.perf_counter()
            # While runs queue and train: each session in turn navigates Train -> Runs -> Train.
            for _ in range(args.rounds):
                for x in sessions:
                    with screenshot_on_failure(x, tmp, "failed-session", "navigation failed"):
                        navigate(x, active)
            frames_rate = (sum(x.frames for x in sessions) - frames0) / (time.perf_counter() - t_frames)
            deadline = time.perf_counter() + args.timeout
            while active() and time.perf_counter() < deadline:
                sessions[0].page.wait_for_timeout(500)
            # Our descendants are Playwright's driver and chromium (read before they exit).
            browser_cpu = tree_cpu_seconds(os.getpid()) - cpu_seconds(os.getpid())
            browser.close()
    finally:
        if sampler:
            sampler.stop()
        cpu1 = cpu_seconds(pid) if pid else float("nan")
        if server is not None:
            server.stop(timeout_s=30)

    rows = store_rows(runs_dir)
    first = min((r[0] for r in rows.values()), default=float("nan"))
    last_end = max((r[2] for r in rows.values() if r[2] == r[2]), default=float("nan"))
    print()
    print(f"{'session':<10}{'status':<10}{'load ms':>9}{'queue s':>9}{'run s':>8}   "
          "click->shown ms while runs trained (R = Runs page, T = Train page; idle ones in brackets)")
    waits, runs, loads, busy_ms, idle_ms = [], [], [], {"runs": [], "train": []}, {"runs": [], "train": []}
    for x in sessions:
        created, started, finished, status = rows.get(x.label, (float("nan"),) * 3 + ("?",))
        waits.append(started - created)
        runs.append(finished - started)
        loads.append(x.load_ms)
        cells = []
        for page_name, ms, busy in x.nav:
            (busy_ms if busy else idle_ms)[page_name].append(ms)
            cell = f"{page_name[0].upper()}{ms:.0f}"
            cells.append(cell if busy else f"[{cell}]")
        print(f"{x.label:<10}{status:<10}{x.load_ms:>9.0f}{fmt_s(started - created):>9}{fmt_s(finished - started):>8}   "
              + " ".join(cells))
    print()
    print(summary("first load (front page -> Train)", loads, "ms"))
    print(summary("queue wait: submitted -> started", waits, "s"))
    print(summary("run time: started -> ended", runs, "s"))
    print(summary("click Runs -> table, runs training", busy_ms["runs"], "ms"))
    print(summary("click Train -> live view, training", busy_ms["train"], "ms"))
    print(summary("click Runs -> table, all idle", idle_ms["runs"], "ms"))
    print(summary("click Train -> live view, all idle", idle_ms["train"], "ms"))
    print(f"{'clicks repeated after 60 s':<34} {sum(x.retries for x in sessions)}")
    print(f"{'redraw + navigation messages':<34} {frames_rate:.1f} per second from all browsers")
    print(f"{'first submission -> last run ended':<34} {last_end - first:.1f} s")
    if sampler and sampler.samples:
        rss = [v for v in sampler.samples if v == v]
        print(f"{'server RSS':<34} start {rss[0]:.0f} MB   peak {max(rss):.0f} MB   end {rss[-1]:.0f} MB")
        print(f"{'server CPU':<34} {cpu1 - cpu0:.1f} s over {len(sampler.samples) * 0.25:.0f} s of wall time")
    print(f"{'browser CPU (driver + chromium)':<34} {browser_cpu:.1f} s")
    if server is not None and not any(tmp.glob("failed-*")):
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
