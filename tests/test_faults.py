"""Issue 11: nothing a file, a setting or a fault can do shows a traceback or loses what is stored.

Engine side of the audit: damaged zips, checkpoints and run stores; settings; CLI paths
and values (exit code and one stderr line each); the interrupted message's checkpoint
epoch; unfinished downloads; a checkpoint save failing during a run. The app's side (the
banner, the damaged-store box, literal text) is in the AppTest cases at the end and in
tests/test_browser_faults.py.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from mfcore import checkpoint
from mfcore.cli import main
from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig
from mfcore.data.leftovers import clean_partial_downloads
from mfcore.data.sources import load_dataset
from mfcore.errors import CheckpointError, ConfigError, DataError, StoreError
from mfcore.events import EpochEnded, RunStarted
from mfcore.runs.runner import JobRunner, RunRequest
from mfcore.runs.store import DB_NAME, RunStore
from mfcore.runs.store_health import move_aside
from mfcore.settings import SettingsError, check_settings, validate_settings

ROOT = Path(__file__).resolve().parents[1]
RATINGS = "".join(f"{u}\t{i}\t{(u * i) % 5 + 1}\t{880000000 + u * 100 + i}\n" for u in range(1, 21) for i in range(1, 16))


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        code = main(list(argv), out=out, err=err)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code)
    return code, out.getvalue(), err.getvalue()


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------- damaged zips
def _corrupt_zip(path: Path) -> Path:
    """A zip with a valid directory whose deflate data is garbage (zlib.error when read)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/u.data", RATINGS * 20)
    raw = bytearray(path.read_bytes())
    start = 30 + len("ml-100k/u.data")  # local header, then the compressed body
    for k in range(start + 10, start + 200):
        raw[k] = 0xFF
    path.write_bytes(bytes(raw))
    return path


def test_a_zip_with_a_damaged_body_is_a_data_error(tmp_path):
    bad = _corrupt_zip(tmp_path / "ml-100k.zip")
    with pytest.raises(DataError, match="not a valid zip file"):
        load_dataset(str(bad), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache" / "zips").glob("*")) if (tmp_path / "cache" / "zips").exists() else True


def test_cli_damaged_zip_one_line_exit_2(tmp_path):
    bad = _corrupt_zip(tmp_path / "ml-100k.zip")
    code, _, err = _cli("train", "--dataset", str(bad), "--cache-dir", str(tmp_path / "cache"), "--epochs", "1")
    assert code == 2
    assert "not a valid zip file" in _one_line(err)


# ---------------------------------------------------------------------------- checkpoints
def _trained(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    code, _, err = _cli("train", "--epochs", "2", "--save", str(path), "--json")
    assert code == 0, err
    return path


def test_checkpoint_with_mismatched_id_lists_is_refused(tmp_path):
    path = _trained(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["user_ids"] = payload["user_ids"][:-3]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="user ids for"):
        checkpoint.load(tmp_path / "bad.pt")
    payload = torch.load(path, weights_only=True)
    payload["item_ids"] = [str(x) for x in range(5)]
    torch.save(payload, tmp_path / "bad2.pt")
    with pytest.raises(CheckpointError, match="item ids for"):
        checkpoint.load(tmp_path / "bad2.pt")
    assert checkpoint.load(path).model is not None  # the good one still loads


def test_truncated_random_and_pickled_checkpoints_stay_refused(tmp_path):
    path = _trained(tmp_path)
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096))
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "mfstudio-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    for name in ("cut.pt", "noise.pt", "evil.pt"):
        with pytest.raises(CheckpointError):
            checkpoint.load(tmp_path / name)
    assert not marker.exists()


def test_read_epoch_is_the_checkpoints_last_epoch(tmp_path):
    assert checkpoint.read_epoch(_trained(tmp_path)) == 2
    assert checkpoint.read_epoch(tmp_path / "missing.pt") is None


# ---------------------------------------------------------------------------- CLI paths and values
@pytest.mark.parametrize("case", ["parent_is_file", "directory", "unwritable"])
def test_cli_save_to_a_bad_place_is_one_line_exit_2_before_training(tmp_path, case):
    (tmp_path / "afile").write_text("x")
    target = {"parent_is_file": tmp_path / "afile" / "model.pt", "directory": tmp_path,
              "unwritable": Path("/proc/mfstudio-test/model.pt")}[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    t0 = time.perf_counter()
    code, out, err = _cli("train", "--epochs", "50", "--save", str(target))
    assert code == 2
    line = _one_line(err)
    assert str(target) in line and "checkpoint" in line
    assert "epoch" not in out  # refused before any training
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    assert time.perf_counter() - t0 < 30


def test_checkpoint_save_to_a_bad_place_raises_checkpoint_error(tmp_path):
    trained = checkpoint.load(_trained(tmp_path))
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile" / "m.pt", tmp_path):
        with pytest.raises(CheckpointError, match="could not be written"):
            checkpoint.save(trained, target)
    assert (tmp_path / "afile").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_batch_size_zero_with_plain_sgd_is_rejected():
    code, out, err = _cli("train", "--batch-size", "0", "--epochs", "1")
    assert code == 2 and "batch_size" in _one_line(err) and out == ""
    with pytest.raises(ConfigError, match="learning rate of 1 or more"):
        TrainConfig(optimizer="sgd", batch_size=0, lr=0.01)
    TrainConfig(optimizer="sgd", batch_size=0, lr=50.0, momentum=0.9)  # the lowrank preset's meaning stays
    TrainConfig(optimizer="adam", batch_size=0, lr=0.01)


def test_cli_misspelled_dataset_suggests_close_names_not_data_dir():
    code, _, err = _cli("train", "--dataset", "ml-100", "--epochs", "1")
    line = _one_line(err)
    assert code == 2 and "did you mean --dataset ml-100k" in line and "--data-dir" not in line
    code, _, err = _cli("train", "--dataset", "movielenz", "--epochs", "1")
    line = _one_line(err)
    assert code == 2 and "ml-latest-small" in line and "--data-dir" not in line


def test_cli_datasets_honours_cache_dir(tmp_path):
    folder = tmp_path / "cache" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / ".mfstudio-complete").write_text("{}")
    from mfcore.data.download import MARKER

    if MARKER != ".mfstudio-complete":
        (folder / MARKER).write_text("{}")
    code, out, err = _cli("datasets", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("ml-100k"))
    assert str(folder) in line


def test_cli_bad_settings_one_line_exit_2(monkeypatch):
    monkeypatch.setenv("MFSTUDIO_DEVICE", "tpu")
    code, _, err = _cli("train", "--epochs", "1")
    assert code == 2 and "tpu" in _one_line(err)


# ---------------------------------------------------------------------------- unfinished downloads
def test_part_files_of_dead_processes_are_cleaned_at_start(tmp_path):
    cache = tmp_path / "cache"
    (cache / "zips").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    orphan = cache / f"..ml-100k.zip.{dead}.abcd1234.part"
    orphan.write_bytes(b"x" * 100)
    live = cache / f"..ml-1m.zip.{os.getpid()}.efgh5678.part"  # this process: a download in progress
    live.write_bytes(b"x")
    old = cache / "zips" / ".up.zip.k2j3h4g5.part"  # no pid (older release), idle for an hour
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    fresh = cache / "zips" / ".up2.zip.a1b2c3d4.part"  # no pid, written a moment ago
    fresh.write_bytes(b"x")
    kept_data = cache / "ml-100k.zip"
    kept_data.write_bytes(b"y")
    removed = clean_partial_downloads(cache)
    assert sorted(removed) == sorted([orphan, old])
    assert live.exists() and fresh.exists() and kept_data.exists()


def test_the_cli_cleans_unfinished_downloads(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    orphan = cache / "..ml-100k.zip.999999999.abcd1234.part"
    orphan.write_bytes(b"x")
    code, _, _ = _cli("datasets", "--cache-dir", str(cache))
    assert code == 0 and not orphan.exists()


# ---------------------------------------------------------------------------- settings
def test_settings_are_checked_with_one_message_each(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(tmp_path / "afile"))
    monkeypatch.setenv("MFSTUDIO_MAX_JOBS", "0")
    monkeypatch.setenv("MFSTUDIO_CPU_THREADS", "abc")
    monkeypatch.setenv("MFSTUDIO_DATA_DIR", str(tmp_path / "missing"))
    problems = {p.name: p for p in check_settings()}
    assert set(problems) == {"MFSTUDIO_RUNS_DIR", "MFSTUDIO_MAX_JOBS", "MFSTUDIO_CPU_THREADS", "MFSTUDIO_DATA_DIR"}
    assert problems["MFSTUDIO_RUNS_DIR"].blocking and "is a file" in problems["MFSTUDIO_RUNS_DIR"].message
    assert problems["MFSTUDIO_MAX_JOBS"].blocking and "at least 1" in problems["MFSTUDIO_MAX_JOBS"].message
    assert not problems["MFSTUDIO_DATA_DIR"].blocking
    with pytest.raises(SettingsError) as info:
        validate_settings()
    assert [p.name for p in info.value.problems] == ["MFSTUDIO_RUNS_DIR", "MFSTUDIO_MAX_JOBS"]
    monkeypatch.setenv("MFSTUDIO_MAX_JOBS", "abc")
    assert "'abc'" in {p.name: p for p in check_settings()}["MFSTUDIO_MAX_JOBS"].message
    for name in ("MFSTUDIO_RUNS_DIR", "MFSTUDIO_MAX_JOBS", "MFSTUDIO_CPU_THREADS", "MFSTUDIO_DATA_DIR"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(tmp_path / "runs"))
    assert check_settings() == []
    assert not (tmp_path / "runs").exists()  # checking creates nothing


def test_runs_dir_that_is_a_file_is_a_store_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        RunStore(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "x"


def _in_read_only(code: str, folder: Path) -> subprocess.CompletedProcess:
    """Run ``code`` with ``folder`` read-only: by file modes for a normal user; for root (which
    ignores modes) in a private mount namespace where ``folder`` is bind-mounted read-only."""
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        cmd = ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder), *cmd]
    else:
        for p in [folder, *folder.iterdir()]:
            os.chmod(p, 0o555 if p.is_dir() else 0o444)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=120)


def test_read_only_runs_folder_gives_a_clear_message(tmp_path):
    runs = tmp_path / "runs"
    store = RunStore(runs)
    store.create_run(dataset="synthetic", split="random:0.1", seed=0, model_config={}, train_config={"epochs": 1})
    store.close()
    _checkpointed(runs)
    probe = (
        "import os\n"
        f"os.environ['MFSTUDIO_RUNS_DIR'] = {str(runs)!r}\n"
        "from mfcore.settings import check_settings\n"
        "print('SETTINGS', [p.name for p in check_settings()])\n"
        "from mfcore.runs.store import RunStore\n"
        "from mfcore.errors import StoreError\n"
        "try:\n"
        f"    s = RunStore({str(runs)!r})\n"
        "    s.create_run(dataset='synthetic', split='random:0.1', seed=0, model_config={}, train_config={'epochs': 1})\n"
        "    print('WROTE')\n"
        "except StoreError as exc:\n"
        "    print('STORE', exc.kind, exc)\n"
    )
    try:
        result = _in_read_only(probe, runs)
    finally:
        for p in [runs, *runs.iterdir()]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    assert "Traceback" not in result.stderr, result.stderr
    assert "SETTINGS ['MFSTUDIO_RUNS_DIR']" in result.stdout, result.stdout
    assert "STORE" in result.stdout and "writable" in result.stdout, result.stdout
    assert "WROTE" not in result.stdout


# ---------------------------------------------------------------------------- damaged run stores
def _store_with_runs(folder: Path) -> tuple[RunStore, list[str]]:
    store = RunStore(folder)
    ids = []
    for k in range(3):
        run_id = store.create_run(dataset="synthetic", split="random:0.1", seed=k, model_config={"n_factors": 4},
                                  train_config={"epochs": 2}, label=f"run {k}").id
        ids.append(run_id)
    store.close()
    return store, ids


def _damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "garbage_header":
        path.write_bytes(b"this is not sqlite at all" + raw[25:])
    elif how == "random_bytes":
        path.write_bytes(os.urandom(len(raw)))
    elif how == "truncated":
        path.write_bytes(raw[:300])
    elif how == "truncated_pages":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "zeroed_pages":
        page = 4096
        path.write_bytes(raw[:page] + b"\x00" * (len(raw) - page))


def _checkpointed(folder: Path) -> Path:
    conn = sqlite3.connect(folder / DB_NAME)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    return folder / DB_NAME


@pytest.mark.parametrize("how", ["garbage_header", "random_bytes", "truncated", "truncated_pages", "zeroed_pages"])
def test_a_damaged_runs_database_is_a_store_error_and_stays_untouched(tmp_path, how):
    _store_with_runs(tmp_path)
    db = _checkpointed(tmp_path)
    _damage(db, how)
    before = db.read_bytes()
    with pytest.raises(StoreError) as info:
        RunStore(tmp_path)
    assert info.value.kind == "damaged" and str(db) in str(info.value) and "Move it aside" in str(info.value)
    assert db.read_bytes() == before  # never overwritten
    moved = move_aside(db)
    assert moved.read_bytes() == before and moved.name.startswith("runs.damaged-") and not db.exists()
    fresh = RunStore(tmp_path)  # a fresh, empty store beside the damaged file
    assert fresh.list_runs() == []
    assert moved.read_bytes() == before


def test_move_aside_never_replaces_an_existing_file(tmp_path):
    db = tmp_path / DB_NAME
    db.write_bytes(b"first damaged")
    one = move_aside(db)
    db.write_bytes(b"second damaged")
    two = move_aside(db)
    assert one != two and one.read_bytes() == b"first damaged" and two.read_bytes() == b"second damaged"


def test_a_newer_schema_is_a_store_error_naming_the_fix(tmp_path):
    _store_with_runs(tmp_path)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    before = (tmp_path / DB_NAME).read_bytes()
    with pytest.raises(StoreError) as info:
        RunStore(tmp_path)
    assert info.value.kind == "newer" and "Upgrade MF Studio" in str(info.value)
    assert (tmp_path / DB_NAME).read_bytes() == before


def test_a_row_with_broken_json_is_flagged_not_raised(tmp_path):
    store, ids = _store_with_runs(tmp_path)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("UPDATE runs SET model_config = '{\"n_factors\": 4', metrics = 'nope' WHERE id = ?", (ids[1],))
    conn.commit()
    conn.close()
    runs = RunStore(tmp_path).list_runs()
    assert len(runs) == 3
    bad = next(r for r in runs if r.id == ids[1])
    assert bad.damaged == ("model_config", "metrics") and "damaged" in bad.message and bad.model_config == {}
    good = next(r for r in runs if r.id == ids[0])
    assert good.damaged == () and good.model_config == {"n_factors": 4}
    runner = JobRunner(RunStore(tmp_path), max_workers=1)
    try:
        from mfcore.runs.access import Actor

        with pytest.raises(Exception, match="damaged"):
            runner.relaunch(ids[1], Actor(""))
        assert len(runner.list()) == 3
    finally:
        runner.shutdown(wait=True)


def test_store_errors_during_use_name_the_file(tmp_path):
    store, ids = _store_with_runs(tmp_path)
    db = _checkpointed(tmp_path)
    _damage(db, "zeroed_pages")
    with pytest.raises(StoreError) as info:
        store.list_runs()
    assert str(db) in str(info.value)


# ---------------------------------------------------------------------------- kill -9 and checkpoints
def test_after_kill_9_the_message_names_the_checkpoints_epoch(tmp_path):
    """A run killed after 5 epochs whose last checkpoint holds epoch 3 says so."""
    store = RunStore(tmp_path)
    run_id = store.create_run(dataset="synthetic", split="random:0.1", seed=0, model_config={},
                              train_config={"epochs": 10}, process="otherhost:1:1").id
    store.record_event(run_id, RunStarted(device="cpu", n_train=10, n_test=2, epochs=10, batches_per_epoch=1, baselines={}))
    for e in range(1, 6):
        store.record_event(run_id, EpochEnded(epoch=e, epochs=10, train_loss=1.0, test_rmse=1.0, test_mae=1.0,
                                              examples_per_second=1.0, seconds=0.1, elapsed_s=0.1 * e, lr=0.1,
                                              device="cpu", is_best=False))
    code, _, err = _cli("train", "--epochs", "3", "--save", str(store.checkpoint_path_for(run_id)), "--json")
    assert code == 0, err
    store.set_checkpoint(run_id, store.checkpoint_path_for(run_id))
    store.update_status(run_id, "running")
    assert store.mark_interrupted() == 1
    message = store.get(run_id).message
    assert "5 epochs were completed" in message and "checkpoint from epoch 3" in message


def test_a_checkpoint_that_cannot_be_written_is_said_once_and_training_goes_on(tmp_path, monkeypatch, caplog):
    calls = []

    def failing_save(trained, path):
        calls.append(path)
        raise CheckpointError(f"{path}: the checkpoint could not be written (No space left on device)")

    monkeypatch.setattr(checkpoint, "save", failing_save)
    store = RunStore(tmp_path)
    runner = JobRunner(store, max_workers=1, checkpoint_every_s=0.0)
    try:
        run_id = runner.submit(RunRequest("synthetic:n_users=40,n_items=30,density=0.3,rank=2,seed=0",
                                          "random:0.1", 0, ModelConfig(n_factors=2),
                                          TrainConfig(epochs=6, lr=0.01, batch_size=64),
                                          RuntimeOptions(device="cpu")))
        snap = runner.wait(run_id, timeout=120)
    finally:
        runner.shutdown(wait=True)
    assert snap.status == "finished" and snap.epochs_done == 6
    assert len(calls) >= 6  # every attempt was made
    assert snap.message.count("No space left on device") == 1, snap.message  # said once in the run
    warnings = [r for r in caplog.records if "No space left" in r.getMessage()]
    assert len(warnings) == 1  # and once in the log, not once per attempt


# ---------------------------------------------------------------------------- the app's start-up box
APP = str(ROOT / "app.py")


def _app_text(at) -> str:
    """The Markdown of the page's boxes as the browser shows it (backslash escapes resolved)."""
    import re

    return re.sub(r"\\(.)", r"\1", _raw_text(at))


def _raw_text(at) -> str:
    return " ".join(str(getattr(e, "value", "")) for kind in ("error", "warning", "info", "success", "markdown")
                    for e in getattr(at, kind))


def test_app_with_a_damaged_store_says_which_file_and_moves_it_aside_on_request(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    _store_with_runs(tmp_path / "runs")
    db = _checkpointed(tmp_path / "runs")
    _damage(db, "garbage_header")
    before = db.read_bytes()
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MFSTUDIO_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    text = _app_text(at)
    assert "run store cannot be used" in text and "damaged" in text and "runs.sqlite" in text
    assert db.read_bytes() == before
    at.button(key="health_move_aside").click().run()
    assert not at.exception, at.exception
    moved = list((tmp_path / "runs").glob("runs.damaged-*.sqlite"))
    assert len(moved) == 1 and moved[0].read_bytes() == before
    at.run()
    assert "run store cannot be used" not in _app_text(at)


@pytest.mark.parametrize("env", [{"MFSTUDIO_MAX_JOBS": "abc"}, {"MFSTUDIO_MAX_JOBS": "0"}, {"MFSTUDIO_RUNS_DIR": "FILE"}])
def test_app_with_bad_settings_shows_one_banner_not_a_traceback(tmp_path, monkeypatch, env):
    from streamlit.testing.v1 import AppTest

    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("MFSTUDIO_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MFSTUDIO_CACHE", str(tmp_path / "cache"))
    for k, v in env.items():
        monkeypatch.setenv(k, str(tmp_path / "afile") if v == "FILE" else v)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert len(at.error) == 1
    text = str(at.error[0].value).replace("\\", "")
    assert next(iter(env)) in text and "restart" in text


# ---------------------------------------------------------------------------- literal text (ui.text)
@pytest.mark.parametrize("value", [
    "Movie ![x](http://127.0.0.1:9/beacon.png)", "[y](https://example.org/link) **b** <img src=x>",
    "see www.example.org now", "a `tick` and ``two`` HTTP://A/``x", ":red[red] $x^2$ _em_ 18-24 #1",
])
def test_md_renders_literally_and_never_as_a_link(value):
    """Outside code spans every Markdown character is escaped and no URL is bare (GFM would
    autolink it); reading the result back (escapes removed, code spans unwrapped) gives the value."""
    import re

    from ui.text import md

    out = md(value)
    spans = re.compile(r"(`+)( ?)(.*?)\2\1")
    bare = spans.sub("", out)
    assert not re.search(r"(?i)https?://|www\.", bare), out
    assert not re.search(r"[\[\]()<>*_`!$:#-]", re.sub(r"\\.", "", bare)), out
    read = "".join(m.group(3) if m.group(1) else re.sub(r"\\(.)", r"\1", m.group(0))
                   for m in re.finditer(r"(`+)( ?)(.*?)\2\1|(?:[^`\\]|\\.)+", out))
    assert read == value, (out, read)
