"""A class of N students on one MF Studio server: shared launches, queue waits, page response, cost.

    python benchmarks/classroom.py --scenario identical --sessions 30                  # (a)
    python benchmarks/classroom.py --scenario different --sessions 30                  # (b)
    python benchmarks/classroom.py --scenario different --sessions 30 --dask-workers 2 # (b), LocalCluster on 127.0.0.1
    python benchmarks/classroom.py --scenario first-epoch                              # Launch -> first epoch

Starts ``streamlit run app.py`` on a free port of 127.0.0.1 with a fresh runs folder (and,
with ``--dask-workers``, a ``LocalCluster`` on 127.0.0.1 that the server's jobs run on),
gives each of N people a bookmarked link (a URL token whose stored choice is ``--dataset``
and ``--split``), opens N real browser sessions (one Debian chromium, a context each) on
the Train page and presses Launch in all of them within a moment:

* identical: everyone launches the tuned default preset: one computation, the others
  follow it live or reuse its stored result;
* different: session i launches its own (factors k, L2) pair (30 distinct configs);
* first-epoch: one session, an empty queue; the time from the Launch click to the first
  test-RMSE point on the live chart, ``--repeats`` times (a new model seed each).

While runs queue and train, every session navigates Train -> Runs -> Train, timing each
click until the page's content shows; then it waits until every page shows its run's
outcome. Prints one row per session and a summary: queue wait and run time (from the
run store), page response split by whether runs were training, first click -> every page
shows a finished run, the server's CPU per live redraw (the script thread's CPU time of
each fragment run, logged by ``ui.jobs.redraw_cost``), its memory and CPU. Browser and
server share this machine's cores: response times include chromium's own load (its CPU
seconds are reported). The server, chromium and page helpers are the browser tests' own
(``tests/browser_support.py``).
"""

from __future__ import annotations

import argparse
import os
import re
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
SHOTS = [Path(tempfile.gettempdir())]  # where failure screenshots go (the run's temporary folder)


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
    clicked: float = float("nan")
    """seconds after the first Launch click that this session's click was sent"""


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


def store_rows(runs_dir: Path) -> dict[str, tuple[float, float, float, str, str | None]]:
    """label -> (created, started, finished, status, shared_from), read from the run store's SQLite file."""
    db = runs_dir / "runs.sqlite"
    if not db.is_file():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT label, created_at, started_at, finished_at, status, shared_from FROM runs").fetchall()
    finally:
        conn.close()
    nan = float("nan")
    return {label: (c, nan if s is None else s, nan if f is None else f, st, sh) for label, c, s, f, st, sh in rows}


def count_active(runs_dir: Path, labels: set[str]) -> int:
    return sum(row[3] in ("queued", "running") for label, row in store_rows(runs_dir).items() if label in labels)


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


SCENARIOS = ("identical", "different", "first-epoch")
FINISHED_JS = """() => [...document.querySelectorAll('[data-testid="stAlert"]')]
    .some(a => /Finished|Stopped after|The run failed|Interrupted/.test(a.innerText))"""
POINTS_JS = """() => {
  for (const plot of document.querySelectorAll('.js-plotly-plot'))
    for (const trace of (plot.data || []))
      if (trace.name === 'test RMSE') return (trace.y || []).filter(v => v !== null).length;
  return 0;
}"""


def different_config(i: int) -> dict[str, float]:
    """Session i's own settings in the "different" scenario: 30 distinct (k, L2) pairs."""
    ks = (8, 16, 32, 64, 128)
    l2s = (0.01, 0.02, 0.04, 0.08, 0.12, 0.16)
    return {"Factors k": ks[i % len(ks)], "L2 (factors)": l2s[(i // len(ks)) % len(l2s)]}


def prepare_people(runs_dir: Path, n: int, dataset: str, split: str) -> list[str]:
    """N URL tokens whose stored choices are ``dataset``/``split`` (a bookmarked class link each)."""
    from mfcore.runs.access import new_token, owner_from_token
    from mfcore.runs.store import RunStore

    store = RunStore(runs_dir)
    tokens = [new_token() for _ in range(n)]
    for k, token in enumerate(tokens):
        store.save_profile(owner_from_token(token), name=f"student-{k + 1:02d}",
                           prefs={"dataset": dataset, "split": split, "seed": 0})
    store.close()
    return tokens


def start_cluster(workers: int):
    """A LocalCluster of ``workers`` single-thread worker processes, every address on 127.0.0.1."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    addresses = [cluster.scheduler_address, *(w.address for w in cluster.workers.values())]
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
    from distributed import Client

    from mfcore.runs.dask_executor import warm_up

    with Client(cluster) as client:  # what the preload does for workers of scripts/cluster.sh (127.0.0.1)
        client.run(warm_up)
    return cluster


def redraw_costs(path: Path) -> dict[str, list[float]]:
    """name -> script-thread CPU seconds of each live redraw (ui.jobs.redraw_cost's log)."""
    out: dict[str, list[float]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, cpu, _wall = line.split("\t")
            out.setdefault(name, []).append(float(cpu))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", "-n", type=int, default=30)
    parser.add_argument("--scenario", choices=SCENARIOS, default="identical",
                        help="identical: everyone launches the tuned default; different: 30 (k, L2) pairs; "
                             "first-epoch: one session, time from Launch to the first live epoch")
    parser.add_argument("--dataset", default="ml-100k", help="everyone's data (a bookmarked choice), e.g. ml-100k")
    parser.add_argument("--split", default="random:0.1")
    parser.add_argument("--epochs", type=int, default=0, help="epochs of each run (0 = the preset's)")
    parser.add_argument("--rounds", type=int, default=1, help="Train->Runs->Train navigations per session")
    parser.add_argument("--repeats", type=int, default=3, help="first-epoch: launches timed")
    workers_help = "run jobs on a Dask LocalCluster of this many single-thread workers (0 = local threads)"
    parser.add_argument("--dask-workers", type=int, default=0, help=f"{workers_help}; it binds 127.0.0.1 only")
    parser.add_argument("--max-jobs", type=int, default=0, help="MFSTUDIO_MAX_JOBS of the server (0 = its default)")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="the tree to run the app from (default: this one)")
    parser.add_argument("--viewport", default="1280x720")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for all runs to end")
    parser.add_argument("--wait", type=float, default=600, help="seconds one page may take to show something")
    args = parser.parse_args()
    WAIT_MS[0] = int(args.wait * 1000)
    if not have_chromium():
        raise SystemExit(CHROMIUM_MISSING)
    from playwright.sync_api import sync_playwright

    n = 1 if args.scenario == "first-epoch" else args.sessions
    tmp = Path(tempfile.mkdtemp(prefix="mfstudio-classroom-"))
    runs_dir = tmp / "runs"
    SHOTS[0] = tmp
    tokens = prepare_people(runs_dir, n, args.dataset, args.split)
    env = {**app_env(runs_dir, SHARED_DATA), "MFSTUDIO_REDRAW_LOG": str(tmp / "redraws.tsv")}
    if args.max_jobs:
        env["MFSTUDIO_MAX_JOBS"] = str(args.max_jobs)
    cluster = None
    if args.dask_workers:
        os.environ.update({"MFSTUDIO_DATA_DIR": str(SHARED_DATA), "MFSTUDIO_DOWNLOAD_BASE": env["MFSTUDIO_DOWNLOAD_BASE"]})
        cluster = start_cluster(args.dask_workers)
        env["MFSTUDIO_DASK_SCHEDULER"] = cluster.scheduler_address
    try:
        server = start_server(env, tmp / "server.log", args.app_dir.resolve(), timeout_s=90)
    except ServerDidNotStart as e:
        if cluster is not None:
            cluster.close()
        raise SystemExit(str(e)) from None
    url, pid = server.url, server.proc.pid
    width, height = (int(v) for v in args.viewport.split("x"))
    sampler = Sampler(pid)
    cpu0 = cpu_seconds(pid)
    sampler.start()
    where = f"a {args.dask_workers}-worker Dask cluster" if cluster else "local threads"
    print(f"server {url} (pid {pid}), scenario {args.scenario}, {n} session(s) on {args.dataset} {args.split}, "
          f"runs on {where}, {os.cpu_count()} cores")
    first_epoch_s: list[float] = []
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p, EXTRA_CHROMIUM_ARGS)
            sessions: list[Session] = []
            for i in range(n):
                page = browser.new_context(viewport={"width": width, "height": height}).new_page()
                page.set_default_timeout(args.wait * 1000)  # a busy 2-core machine can take that long
                s = Session(i + 1, page, f"class-{i + 1:02d}")
                page.on("websocket", lambda ws, s=s: ws.on("framesent", lambda _: setattr(s, "frames", s.frames + 1)))
                sessions.append(s)
            t_open = time.perf_counter()
            for s, token in zip(sessions, tokens):
                open_train(s, f"{url}/?u={token}")
            print(f"opened {len(sessions)} Train pages in {time.perf_counter() - t_open:.1f} s")
            if args.scenario == "first-epoch":
                first_epoch_s = time_first_epochs(sessions[0], args.repeats)
                sessions_done: list[tuple[Session, float]] = []
            else:
                for i, x in enumerate(sessions):
                    if args.epochs:
                        set_input(x.page, "Epochs", args.epochs, timeout_ms=WAIT_MS[0])
                    if args.scenario == "different":
                        for label, value in different_config(i).items():
                            set_input(x.page, label, value, timeout_ms=WAIT_MS[0])
                    set_input(x.page, "Run label", x.label, timeout_ms=WAIT_MS[0])
                labels = {x.label for x in sessions}
                active = lambda: count_active(runs_dir, labels)  # noqa: E731
                t_launch = time.perf_counter()
                for x in sessions:
                    x.clicked = time.perf_counter() - t_launch
                    busy = active() if args.scenario == "different" else 0
                    x.page.get_by_role("button", name="Launch", exact=True).click()
                    if args.scenario == "different":  # its own live view, while the others' runs train
                        epoch_visible(x.page)
                        x.nav.append(("launch", (time.perf_counter() - t_launch - x.clicked) * 1000, busy))
                for x in sessions:
                    with screenshot_on_failure(x, tmp, "failed-launch", "no live view after Launch"):
                        epoch_visible(x.page)
                print(f"all {len(sessions)} live views shown {time.perf_counter() - t_launch:.1f} s after the first click")
                sessions_done: list[tuple[Session, float]] = []

                def wait_finished() -> None:
                    # Every page shows its run's outcome (the live view ends by itself); the pages
                    # are checked in turn, so a page's time is when this check saw it.
                    for x in sessions:
                        with screenshot_on_failure(x, tmp, "failed-finish", "no finished run shown"):
                            x.page.wait_for_function(FINISHED_JS, timeout=args.timeout * 1000)
                        sessions_done.append((x, time.perf_counter() - t_launch))
                    print(f"all {len(sessions)} pages show a finished run {sessions_done[-1][1]:.1f} s "
                          "after the first click")

                if args.scenario == "identical":  # the promise: everyone sees a finished run at once
                    wait_finished()
                frames0 = sum(x.frames for x in sessions)
                t_frames = time.perf_counter()
                for _ in range(args.rounds):
                    for x in sessions:
                        with screenshot_on_failure(x, tmp, "failed-session", "navigation failed"):
                            navigate(x, active)
                frames_rate = (sum(x.frames for x in sessions) - frames0) / (time.perf_counter() - t_frames)
                if args.scenario != "identical":  # navigations above happened while runs trained
                    wait_finished()
            browser_cpu = tree_cpu_seconds(os.getpid()) - cpu_seconds(os.getpid())
            browser.close()
    finally:
        sampler.stop()
        cpu1 = cpu_seconds(pid)
        server.stop(timeout_s=30)
        if cluster is not None:
            cluster.close()
    report(args, sessions, runs_dir, tmp, sampler, cpu1 - cpu0, browser_cpu, first_epoch_s,
           frames_rate if args.scenario != "first-epoch" else float("nan"), [t for _, t in sessions_done])
    if not any(tmp.glob("failed-*")):
        shutil.rmtree(tmp, ignore_errors=True)


def time_first_epochs(session: Session, repeats: int) -> list[float]:
    """Launch ``repeats`` runs (a new model seed each, so none is shared) and time Launch ->
    the first test RMSE point on the live chart; each run is awaited to its end."""
    page = session.page
    out = []
    for k in range(repeats):
        set_input(page, "Model seed", 100 + k, timeout_ms=WAIT_MS[0])
        set_input(page, "Run label", f"first-epoch-{k}", timeout_ms=WAIT_MS[0])
        page.wait_for_timeout(500)
        t0 = time.perf_counter()
        page.get_by_role("button", name="Launch", exact=True).click()
        with screenshot_on_failure(session, SHOTS[0], "failed-first-epoch", "no live epoch after Launch"):
            # This run's live view (its title), then its chart's first point.
            page.get_by_role("heading", name=re.compile(f"first-epoch-{k}$")).wait_for(timeout=WAIT_MS[0])
            page.wait_for_function(f"({POINTS_JS})() >= 1", timeout=WAIT_MS[0])
        out.append(time.perf_counter() - t0)
        page.wait_for_function(FINISHED_JS, timeout=WAIT_MS[0])  # (the default preset on ml-100k takes ~1 s)
    return out


def report(args, sessions, runs_dir: Path, tmp: Path, sampler: Sampler, server_cpu: float, browser_cpu: float,
           first_epoch_s: list[float], frames_rate: float, done_s: list[float]) -> None:
    rows = store_rows(runs_dir)
    print()
    if args.scenario == "first-epoch":
        print(summary("Launch -> first live epoch (s)", first_epoch_s, "s"))
        print("   each: " + " ".join(f"{v:.2f}" for v in first_epoch_s))
    else:
        print(f"{'session':<10}{'status':<10}{'load ms':>9}{'queue s':>9}{'run s':>8}  same-as  "
              "click->shown ms while runs trained (L = Launch, R = Runs page, T = Train page; idle ones in brackets)")
        waits, runs, loads = [], [], []
        busy_ms: dict[str, list[float]] = {"launch": [], "runs": [], "train": []}
        idle_ms: dict[str, list[float]] = {"launch": [], "runs": [], "train": []}
        shared = 0
        for x in sessions:
            created, started, finished, status = rows.get(x.label, (float("nan"),) * 3 + ("?",))[:4]
            same = rows.get(x.label, (None,) * 5)[4]
            shared += same is not None
            waits.append(max(0.0, started - created))  # a shared run may have started before it was asked
            runs.append(finished - started)
            loads.append(x.load_ms)
            cells = []
            for page_name, ms, busy in x.nav:
                (busy_ms if busy else idle_ms)[page_name].append(ms)
                cell = f"{page_name[0].upper()}{ms:.0f}"
                cells.append(cell if busy else f"[{cell}]")
            print(f"{x.label:<10}{status:<10}{x.load_ms:>9.0f}{fmt_s(max(0.0, started - created)):>9}"
                  f"{fmt_s(finished - started):>8}  {'yes' if same else 'no ':<7}  " + " ".join(cells))
        print()
        print(summary("first load (link -> Train)", loads, "ms"))
        print(summary("queue wait: submitted -> started", waits, "s"))
        print(summary("run time: started -> ended", runs, "s"))
        print(summary("click Launch -> own live view, training", busy_ms["launch"], "ms"))
        print(summary("click Runs -> table, runs training", busy_ms["runs"], "ms"))
        print(summary("click Train -> live view, training", busy_ms["train"], "ms"))
        print(summary("click Runs -> table, all idle", idle_ms["runs"], "ms"))
        print(summary("click Train -> live view, all idle", idle_ms["train"], "ms"))
        print(f"{'runs sharing a computation':<34} {shared} of {len(sessions)}")
        print(f"{'clicks repeated after 60 s':<34} {sum(x.retries for x in sessions)}")
        print(f"{'redraw + navigation messages':<34} {frames_rate:.1f} per second from all browsers")
        print(summary("first click -> page shows finished", done_s, "s"))
        own = [t - x.clicked for x, t in zip(sessions, done_s)]
        print(summary("own click -> page shows finished", own, "s"))
        print(f"{'Launch clicks sent over':<34} {max(x.clicked for x in sessions):.1f} s ({len(sessions)} pages in turn)")
    costs = redraw_costs(tmp / "redraws.tsv")
    for name, values in sorted(costs.items()):
        print(summary(f"server CPU per {name} redraw", [v * 1000 for v in values], "ms"))
    rss = [v for v in sampler.samples if v == v]
    if rss:
        print(f"{'server RSS':<34} start {rss[0]:.0f} MB   peak {max(rss):.0f} MB   end {rss[-1]:.0f} MB")
    print(f"{'server CPU':<34} {server_cpu:.1f} s over {len(sampler.samples) * 0.25:.0f} s of wall time")
    print(f"{'browser CPU (driver + chromium)':<34} {browser_cpu:.1f} s")


if __name__ == "__main__":
    main()
