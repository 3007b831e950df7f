"""Server memory while browsers download a large checkpoint from the Runs page.

Starts ``streamlit run app.py`` (from ``--app-dir``, default this checkout) on 127.0.0.1 with a
fresh runs folder holding one finished run whose checkpoint is ``--size-mb`` MB of random
float32 tensors (``torch.save``), opens the Runs page in ``--clients`` browser contexts of
Debian's chromium, clicks "Checkpoint (.pt)" in each (and, where the page answers with a link,
that link), waits until every browser has saved the whole file, and samples the server's RSS
every 50 ms throughout. Works against both designs:

* ``memory``: ``st.download_button`` with the bytes read on click (ui/downloads.py up to
  commit 1983adc; run it with ``--app-dir`` of a worktree at that commit);
* ``static``: the link into ``static/downloads/`` served from disk (ui/downloads.py now).

    git worktree add /tmp/mf-before aa64117      # the in-memory version
    python benchmarks/downloads.py --app-dir /tmp/mf-before
    python benchmarks/downloads.py

Prints one JSON object: the mode, RSS before the clicks, peak while downloading, and 5 s
after, in MB, and the seconds until all downloads ended. The browsers' files are checked
(size and SHA-256 equal to the checkpoint's) and removed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psutil  # noqa: E402

from browser_support import app_env, goto_page, launch_chromium, open_app, start_server  # noqa: E402


def make_run(runs_dir: Path, size_mb: int) -> tuple[str, Path]:
    """A finished run in a new store whose checkpoint is ~``size_mb`` MB; (run id, checkpoint)."""
    import torch

    from mfcore.config import ModelConfig, TrainConfig
    from mfcore.runs.store import RunStore

    store = RunStore(runs_dir)
    run = store.create_run(dataset="synthetic", split="random:0.1", seed=0, model_config=ModelConfig(),
                           train_config=TrainConfig(epochs=1), status="queued", label="big checkpoint")
    store.update_status(run.id, "running")
    store.update_status(run.id, "finished")
    path = store.checkpoint_path_for(run.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    chunk = 25 * 1024 * 1024 // 4  # 25 MiB tensors
    n = max(1, round(size_mb * 1e6 / (chunk * 4)))
    torch.save({f"t{i}": torch.rand(chunk, generator=gen) for i in range(n)}, path)
    store.set_checkpoint(run.id, path)
    store.close()
    return run.id, path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Sampler(threading.Thread):
    """The peak RSS of a process (and its children), sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.proc, self.interval = psutil.Process(pid), interval
        self.peak = 0
        self.stop_event = threading.Event()

    def rss(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout whose app.py is served")
    ap.add_argument("--size-mb", type=int, default=700)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--timeout-s", type=float, default=600)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="mf-dl-bench-"))
    links = args.app_dir.resolve() / "static" / "downloads"
    links_before = set(links.iterdir()) if links.is_dir() else set()
    server = None
    try:
        run_id, ckpt = make_run(work / "runs", args.size_mb)
        size = ckpt.stat().st_size
        digest = sha256(ckpt)
        server = start_server(app_env(work / "runs", cache_dir=work / "cache"), work / "server.log",
                              app_dir=args.app_dir.resolve())
        with sync_playwright() as p:
            browser = launch_chromium(p)
            pages = []
            for _ in range(args.clients):
                page = browser.new_context(accept_downloads=True).new_page()
                page.set_default_timeout(args.timeout_s * 1000)
                open_app(page, server.url)
                goto_page(page, "Runs")
                page.get_by_role("button", name="Checkpoint (.pt)").wait_for()
                pages.append(page)
            time.sleep(2)
            sampler = Sampler(server.proc.pid)
            before = sampler.rss()
            sampler.start()
            t0 = time.perf_counter()
            in_memory = pages[0].locator('[data-testid="stDownloadButton"]', has_text="Checkpoint (.pt)")
            mode = "memory" if in_memory.count() else "static"
            downloads = []
            for page in pages:
                if mode == "memory":
                    with page.expect_download() as info:
                        page.get_by_role("button", name="Checkpoint (.pt)").click()
                else:
                    page.get_by_role("button", name="Checkpoint (.pt)").click()
                    link = page.get_by_role("link", name=f"Save mfstudio-{run_id}.pt")
                    with page.expect_download() as info:
                        link.click()
                downloads.append(info.value)
            files = [Path(d.path()) for d in downloads]  # waits until each has finished
            elapsed = time.perf_counter() - t0
            names = [d.suggested_filename for d in downloads]
            time.sleep(5)
            sampler.stop_event.set()
            sampler.join()
            after = sampler.rss()
            ok = all(f.stat().st_size == size and sha256(f) == digest for f in files)
            browser.close()
        result = {
            "mode": mode, "app_dir": str(args.app_dir), "clients": args.clients,
            "checkpoint_mb": round(size / 1e6, 1), "rss_before_mb": round(before / 1e6),
            "rss_peak_mb": round(sampler.peak / 1e6), "rss_added_peak_mb": round((sampler.peak - before) / 1e6),
            "rss_after_mb": round(after / 1e6), "seconds": round(elapsed, 1), "files_identical": ok,
            "saved_as": sorted(set(names)),
        }
        print(json.dumps(result, indent=1))
        return result
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
        for made in (set(links.iterdir()) if links.is_dir() else set()) - links_before:
            shutil.rmtree(made, ignore_errors=True)  # this run's links (hard links to the deleted checkpoint)


if __name__ == "__main__":
    main()
