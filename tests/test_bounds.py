"""Issue 12, "bounded by design": crafted small inputs end with a clear message (or a bounded,
correct result), with memory and disk back where they were.

Peak memory is measured in a subprocess (VmHWM of the child); thresholds are generous for a
busy machine but far below the gigabytes these inputs used to take.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mfcore import checkpoint
from mfcore.data import download as dl
from mfcore.data.custom import load_ratings_file
from mfcore.data.sources import load_dataset, load_zip
from mfcore.errors import ConfigError, DataError, UnsafeArchiveError
from mfcore.limits import (
    MAX_LINE_BYTES,
    MAX_SNAPSHOTS,
    MAX_SYNTHETIC_RATINGS,
    check_run,
    estimate_run,
    excerpt,
)
from mfcore.training.snapshots import keep_snapshot, snapshot_epochs, snapshot_limit

ROOT = Path(__file__).resolve().parents[1]
MB = 1024**2


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS bytes) of ``python -m mfcore ...`` in a child."""
    script = textwrap.dedent("""
        import sys, runpy
        code = 0
        try:
            sys.argv = ["mfcore", *sys.argv[1:]]
            runpy.run_module("mfcore", run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                sys.stderr.write("\\nVMHWM " + line.split()[1] + "\\n")
        sys.exit(code)
    """)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "MFSTUDIO_CPU_THREADS": "1", **(env or {})}
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key)
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=ROOT)
    err, _, hwm = proc.stderr.rpartition("\nVMHWM ")
    return proc.returncode, proc.stdout, err, int(hwm.split()[0]) * 1024


def peak_of(code: str, *args: str) -> tuple[str, int]:
    """(stdout, peak RSS bytes) of a Python snippet run in a child."""
    script = code + textwrap.dedent("""
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                print("VMHWM", line.split()[1])
    """)
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out, _, hwm = proc.stdout.rpartition("VMHWM ")
    return out, int(hwm.split()[0]) * 1024


def ratings_lines(n: int) -> str:
    return "".join(f"{u % 97 + 1},{u % 301 + 1},{u % 5 + 1},{1_000_000 + u}\n" for u in range(n))


# ----------------------------------------------------------------------------- a very wide line


def test_a_wide_line_past_the_sniffed_head_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    head = "userId,movieId,rating,timestamp\n" + ratings_lines(5000)  # > 64 KiB: the sniffer never sees the line
    assert len(head) > 64 * 1024
    path = tmp_path / "wide.csv"
    path.write_text(head + ",".join(["1"] * 2_000_001) + "\n" + ratings_lines(10))  # a 4 MB line
    line = head.count("\n") + 1
    code, _, err, peak = run_cli("train", "--dataset", str(path))
    assert code == 2, err
    assert f"line {line}: is longer than {MAX_LINE_BYTES // 1024} KiB" in err
    assert len(err.strip().splitlines()) == 1 and len(err) < 400
    assert peak < 700 * MB, f"peak {peak / MB:.0f} MB"  # was 22.6 GB and still running at 300 s


def test_a_line_with_more_fields_than_the_header_is_refused_before_columns_are_built(tmp_path: Path) -> None:
    head = "userId,movieId,rating\n" + "".join(f"{u},{u % 7},{u % 5 + 1}\n" for u in range(8000))
    path = tmp_path / "wide.csv"
    path.write_text(head + ",".join(["1"] * 20_000) + "\n")  # 40 KB: under the line limit
    with pytest.raises(DataError, match=r"line 8002: has 20,000 comma-separated fields but the first line has 3"):
        load_ratings_file(path)
    # quoted fields that hold the separator are no extra fields
    ok = tmp_path / "quoted.csv"
    ok.write_text('user,item,rating\n"a,b",1,4\n"c",2,3\n')
    assert load_ratings_file(ok).n_ratings == 2


# ----------------------------------------------------------------------------- large files


def test_loading_memory_follows_the_ratings_kept(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    rng = np.random.default_rng(0)
    n = 1_500_000  # ~40 MB of text
    with open(path, "w") as fh:
        fh.write("userId,movieId,rating,timestamp\n")
        for s in range(0, n, 250_000):
            u, i = rng.integers(1, 100_000, 250_000), rng.integers(1, 30_000, 250_000)
            r, t = rng.integers(1, 11, 250_000) / 2, rng.integers(8e8, 1.7e9, 250_000)
            fh.write("".join(f"{a},{b},{c:g},{d}\n" for a, b, c, d in zip(u, i, r, t)))
    size = path.stat().st_size
    out, peak = peak_of(textwrap.dedent("""
        import sys
        from mfcore.data.custom import load_ratings_file
        import resource
        d = load_ratings_file(sys.argv[1])
        print(d.n_ratings)
    """), str(path))
    kept = int(out.split()[0])
    assert kept > 0.99 * n
    # baseline interpreter + pandas/pyarrow ~100-150 MB; before: 11.6x the file on top
    assert peak < 150 * MB + 6 * size, f"peak {peak / MB:.0f} MB for a {size / MB:.0f} MB file ({kept:,} ratings)"


def test_the_upload_limit_is_stated_in_the_streamlit_config() -> None:
    from mfcore.limits import UPLOAD_MAX_MB

    config = (ROOT / ".streamlit" / "config.toml").read_text()
    assert f"maxUploadSize = {UPLOAD_MAX_MB}\n" in config


# ----------------------------------------------------------------------------- snapshots and checkpoints


def test_snapshots_are_bounded_and_span_the_run() -> None:
    kept: list[dict] = []
    for epoch in range(1, 100_001):
        keep_snapshot(kept, epoch, {"item_factors": np.zeros((2, 2), np.float16)}, MAX_SNAPSHOTS)
    epochs = snapshot_epochs(kept)
    assert len(kept) == MAX_SNAPSHOTS
    assert epochs[0] == 1 and epochs[-1] == 100_000 and epochs == sorted(epochs)
    ratios = np.diff(np.log(epochs[5:]))  # geometric: no gap much wider than the others
    assert ratios.max() < 4 * ratios.mean()
    # the byte budget wins for wide models: 1,024 factors on 2,500 rows keep 6, a huge table none
    assert snapshot_limit(1000, 1500, 64) == MAX_SNAPSHOTS
    assert 2 <= snapshot_limit(1000, 1500, 1024) < MAX_SNAPSHOTS
    assert snapshot_limit(300_000, 90_000, 1024) == 0


def test_a_long_run_writes_a_bounded_checkpoint(tmp_path: Path) -> None:
    from mfcore.data.splits import make_split
    from mfcore.presets import get_preset
    from mfcore.training.trainer import Trainer

    preset = get_preset("default")
    data = load_dataset("synthetic:n_users=200,n_items=300,density=0.1")
    split = make_split(data, "random:0.1", 0)
    trainer = Trainer(data, split, preset.model, replace(preset.train, epochs=300, average_from=None))
    for _ in trainer.run():
        pass
    path = checkpoint.save(checkpoint.from_trainer(trainer), tmp_path / "run.pt")
    one = (data.n_users + data.n_items) * preset.model.n_factors * 2
    assert len(trainer.snapshots) == MAX_SNAPSHOTS
    assert path.stat().st_size < MAX_SNAPSHOTS * one + 2 * MB  # every epoch kept: 300 snapshots
    back = checkpoint.load(path)
    assert snapshot_epochs(back.snapshots)[0] == 1 and snapshot_epochs(back.snapshots)[-1] == 300


def test_an_orphaned_checkpoint_temp_file_is_removed_at_the_next_save(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = tmp_path / f".run.pt.{dead}.abcd1234.tmp"
    orphan.write_bytes(b"x" * 1000)
    live = tmp_path / f".run.pt.{os.getpid()}.efgh5678.tmp"
    live.write_bytes(b"x")
    unrelated = tmp_path / "notes.tmp"
    unrelated.write_text("keep")
    assert checkpoint.clean_temporary_files(tmp_path) == [orphan]
    assert live.exists() and unrelated.exists() and not orphan.exists()


def test_too_large_runs_are_refused_with_the_estimate() -> None:
    from mfcore.config import ModelConfig, TrainConfig

    big = check_run
    with pytest.raises(ConfigError, match=r"epochs: epochs x training ratings x factors is 6.91e\+12, over the limit"):
        big(1000, 1500, 67_500, ModelConfig(n_factors=1024), TrainConfig(epochs=100_000))
    with pytest.raises(ConfigError, match=r"n_factors: the model would have .* parameters"):
        big(300_000, 90_000, 1_000_000, ModelConfig(n_factors=1024), TrainConfig(epochs=1))
    est = estimate_run(1000, 1500, 67_500, ModelConfig(n_factors=64), TrainConfig(epochs=400))
    assert est.ok and est.snapshots == MAX_SNAPSHOTS and est.checkpoint_bytes < 20 * MB
    code, _, err, _ = run_cli("train", "--factors", "1024", "--epochs", "100000")
    assert code == 2 and "epochs x training ratings x factors" in err


# ----------------------------------------------------------------------------- synthetic sizes


def test_a_huge_synthetic_spec_is_refused_by_the_engine_in_bounded_memory() -> None:
    code, _, err, peak = run_cli("train", "--dataset", "synthetic:n_users=1000000,n_items=1000000,density=1")
    assert code == 2, err
    assert f"density: gives 1,000,000,000,000 ratings" in err and f"at most {MAX_SYNTHETIC_RATINGS:,}" in err
    assert "Traceback" not in err and peak < 700 * MB
    with pytest.raises(ConfigError, match=r"rank: must be at most 1,024"):
        load_dataset("synthetic:rank=1000000")


# ----------------------------------------------------------------------------- zip bombs and the cache


def _zip(path: Path, members: dict[str, bytes | int]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, body in members.items():
            if isinstance(body, int):  # that many zero bytes, streamed
                with zf.open(name, "w", force_zip64=True) as out:
                    for _ in range(body // MB):
                        out.write(bytes(MB))
            else:
                zf.writestr(name, body)
    return path


def _disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


U_DATA = "".join(f"{u % 50 + 1}\t{u // 50 + 1}\t{u % 5 + 1}\t{880_000_000 + u}\n" for u in range(2000)).encode()


def test_only_the_files_a_reader_needs_are_extracted(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    z = _zip(tmp_path / "ml-100k.zip", {"ml-100k/u.data": U_DATA, "ml-100k/genome-scores.csv": 300 * MB})
    assert z.stat().st_size < 2 * MB
    data = load_zip(z, cache_dir=cache)
    assert data.n_ratings == 2000
    assert _disk(cache) < 1 * MB  # the 300 MB member was never written


def test_a_zip_bomb_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bomb = _zip(tmp_path / "bomb.zip", {"ml-100k/u.data": 64 * MB})
    with pytest.raises(UnsafeArchiveError, match=r"would expand to 67108864 bytes, over the 1048576 byte limit"):
        dl.extract_zip(bomb, cache / "x", max_bytes=MB)
    assert _disk(cache) == 0 and not any(cache.rglob("*.tmp"))
    # under the limit but not ratings: extracted to a temporary place, then removed
    with pytest.raises(DataError):
        load_zip(bomb, cache_dir=cache)
    assert _disk(cache) == 0, list(cache.rglob("*"))


def test_the_cache_evicts_its_oldest_entries_past_its_size_limit(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for k, age in (("a", 300), ("b", 200), ("c", 100)):
        folder = cache / "zips" / k
        folder.mkdir(parents=True)
        (folder / "u.data").write_bytes(bytes(MB))
        (folder / dl.MARKER).write_text("{}")
        os.utime(folder / dl.MARKER, (os.path.getmtime(folder) - age,) * 2)
    removed = dl.evict_cache(cache, keep=(cache / "zips" / "a",), max_bytes=2 * MB + 100)
    assert removed == [cache / "zips" / "b"]
    assert (cache / "zips" / "a").is_dir() and (cache / "zips" / "c").is_dir()


# ----------------------------------------------------------------------------- ids are labels


@pytest.mark.parametrize("users,items", [
    ([0, 4294967296, 1], [5, 5, 4294967295]),  # int64 overflow of user x (max item + 1)
    ([2**63 - 1, 2**63 - 2, -(2**63)], [7, 7, 7]),
    ([-1, 1, -1], [-5, -5, 5]),
    ([9223372036854775807, 9223372036854775808, 18446744073709551616], [1, 1, 1]),
])
def test_every_distinct_pair_survives_whatever_the_ids(tmp_path: Path, users: list[int], items: list[int]) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("user,item,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in zip(users, items, (5, 4, 3))))
    data = load_ratings_file(path)
    assert data.n_ratings == 3 and data.duplicates_dropped == 0
    frame = data.to_frame()
    assert sorted(f"{u}|{i}" for u, i in zip(frame["user"], frame["item"])) == sorted(
        f"{u}|{i}" for u, i in zip(users, items))


def test_a_real_duplicate_is_still_dropped_with_huge_ids(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("user,item,rating,timestamp\n4294967296,5,1,10\n0,5,2,11\n4294967296,5,3,12\n")
    data = load_ratings_file(path)
    assert data.n_ratings == 2 and data.duplicates_dropped == 1
    assert sorted(data.rating.tolist()) == [2.0, 3.0]


# ----------------------------------------------------------------------------- messages


def test_a_huge_bad_value_is_quoted_as_a_short_excerpt(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user,item,rating\n1,2,3\n1,3," + "x" * 60_000 + "\n")
    with pytest.raises(DataError) as info:
        load_ratings_file(path)
    message = str(info.value)
    assert "rating 'xxxx" in message and "(60,000 characters)" in message and len(message) < 400
    assert excerpt("a\nb" * 100).startswith("'a\\nb")


def test_a_constant_rating_file_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "const.csv"
    path.write_text("user,item,rating\n1,1,4\n2,2,4\n3,1,4\n")
    code, _, err, _ = run_cli("train", "--dataset", str(path))
    assert code == 2 and "every rating is 4, so there is nothing to learn" in err


def test_a_split_without_test_ratings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text("user,item,rating\n1,1,4\n2,2,3\n3,1,5\n1,2,2\n")
    code, out, err, _ = run_cli("train", "--dataset", str(path), "--split", "user:0.1", "--json")
    assert code == 2 and "leaves no test ratings" in err and "NaN" not in out


def test_bad_device_and_thread_settings_name_the_setting() -> None:
    code, _, err, _ = run_cli("train", "--epochs", "1", env={"MFSTUDIO_DEVICE": "bogus"})
    assert code == 2 and "unknown device 'bogus' (from $MFSTUDIO_DEVICE)" in err
    code, _, err, _ = run_cli("train", "--epochs", "1", env={"MFSTUDIO_CPU_THREADS": "many"})
    assert code == 2 and "MFSTUDIO_CPU_THREADS='many' is not a whole number of threads" in err


# ----------------------------------------------------------------------------- eviction and active runs


def _entry(folder: Path, age_s: float, size: int = MB, name: str = "u.data") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(bytes(size))
    (folder / dl.MARKER).write_text("{}")
    old = os.path.getmtime(folder) - age_s
    os.utime(folder / dl.MARKER, (old, old))
    return folder


def test_eviction_never_removes_what_a_queued_or_running_run_will_load(tmp_path: Path, monkeypatch) -> None:
    from mfcore.config import ModelConfig, TrainConfig
    from mfcore.runs.store import RunStore
    from ui import datasets  # registers the app's provider: the run store's queued and running runs

    cache, runs = tmp_path / "cache", tmp_path / "runs"
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(runs))
    csv = _entry(cache / "uploads" / "aaaa", 900, name="mine.csv") / "mine.csv"   # queued run's upload
    zipped = _entry(cache / "uploads" / "bbbb", 800, name="lens.zip") / "lens.zip"  # running run's zip...
    _entry(cache / "zips" / "bbbb", 700)                                           # ...and its extraction
    _entry(cache / "ml-100k", 600)                                                 # a running run's MovieLens
    _entry(cache / "uploads" / "cccc", 500, name="done.csv")                      # a finished run's upload
    _entry(cache / "zips" / "dddd", 400)                                           # nobody's
    newest = _entry(cache / "zips" / "eeee", 0)
    store = RunStore(runs)
    for spec, status in ((str(csv), "queued"), (str(zipped), "running"), ("ml-100k", "running"),
                         (str(cache / "uploads" / "cccc" / "done.csv"), "finished"), ("synthetic", "running")):
        run = store.create_run(dataset=spec, split="random:0.1", seed=0, model_config=ModelConfig(),
                               train_config=TrainConfig(epochs=1))
        if status != "queued":
            store.update_status(run.id, "running")
        if status == "finished":
            store.update_status(run.id, "finished")
    store.close()
    assert sorted(datasets.active_run_specs()) == sorted([str(csv), str(zipped), "ml-100k", "synthetic"])

    removed = dl.evict_cache(cache, keep=(newest,), max_bytes=MB // 2)  # far over: evict all it may
    assert sorted(p.relative_to(cache).as_posix() for p in removed) == ["uploads/cccc", "zips/dddd"]
    for kept in ("uploads/aaaa", "uploads/bbbb", "zips/bbbb", "ml-100k", "zips/eeee"):
        assert (cache / kept).is_dir(), kept

    # once the runs end, their data may go (oldest first)
    RunStore(runs).update_status(RunStore(runs).list_runs(statuses=("queued",))[0].id, "stopped")
    removed = dl.evict_cache(cache, keep=(newest,), max_bytes=MB // 2)
    assert [p.relative_to(cache).as_posix() for p in removed] == ["uploads/aaaa"]


def test_eviction_keeps_everything_when_it_cannot_tell_what_is_in_use(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = _entry(cache / "zips" / "old", 900)

    def broken() -> list[str]:
        raise RuntimeError("database is locked")

    dl.protect_in_use(broken)
    try:
        assert dl.evict_cache(cache, max_bytes=0) == [] and old.is_dir()
    finally:
        dl.unprotect_in_use(broken)
    assert dl.evict_cache(cache, max_bytes=0) == [old]


# ----------------------------------------------------------------------------- a real-size zip bomb


def _real_bomb(path: Path, gib: float) -> Path:
    """A zip of a few MB whose ml-100k/u.data is ``gib`` GiB of zeros (deflate level 9, streamed)."""
    chunk = bytes(16 * MB)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("ml-100k/u.data", "w", force_zip64=True) as out:
            for _ in range(int(gib * 1024 / 16)):
                out.write(chunk)
    return path


def _free_disk(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def test_a_real_size_zip_bomb_upload_is_refused_with_memory_and_disk_bounded(tmp_path: Path) -> None:
    import threading
    import time

    bomb = _real_bomb(tmp_path / "bomb.zip", 3.2)  # 3.2 GiB of zeros in ~3 MB (~15 s to build here)
    assert bomb.stat().st_size < 8 * MB
    assert sum(i.file_size for i in zipfile.ZipFile(bomb).infolist()) > 3 * 1024**3
    cache = tmp_path / "cache"
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["MFSTUDIO_CACHE"] = {str(cache)!r}
        os.environ["MFSTUDIO_RUNS_DIR"] = {str(tmp_path / "runs")!r}
        from ui import datasets, data_sources
        content = open({str(bomb)!r}, "rb").read()
        try:
            datasets.load_uploaded_zip("bomb.zip", content)
            print("LOADED")
        except Exception as exc:
            print(type(exc).__name__)
            print(data_sources.zip_refused_message("bomb.zip", exc))
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                print("VMHWM", line.split()[1])
    """)
    lowest = [_free_disk(tmp_path)]
    start = lowest[0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            lowest[0] = min(lowest[0], _free_disk(tmp_path))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        done.set()
        watcher.join()
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.splitlines()[0] == "UnsafeArchiveError", out
    readable = re.sub(r"\\(.)", r"\1", out)  # the page shows Markdown-escaped text as plain text
    assert "bomb.zip was refused" in readable and "over the 1610612736 byte limit (a zip bomb?)" in readable, out
    assert "Nothing was stored." in out and str(cache) not in out, out  # named by the upload, not the cache path
    peak = int(out.split("VMHWM")[1].split()[0]) * 1024
    assert peak < 700 * MB, f"peak RSS {peak / MB:.0f} MB"
    assert start - lowest[0] < 400 * MB, f"free disk fell by {(start - lowest[0]) / MB:.0f} MB while refusing"
    leftovers = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert leftovers == []
