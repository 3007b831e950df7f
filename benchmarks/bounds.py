"""Memory and disk bounds (issue 12): bytes per rating while loading a large ratings CSV,
and the checkpoint size of the default preset at 70 and 400 epochs.

    python benchmarks/bounds.py                    # both parts, ~200 MB CSV in a temp folder
    python benchmarks/bounds.py --csv-mb 50        # a smaller file
    python benchmarks/bounds.py --only load        # or: --only checkpoint

Loading runs in a fresh subprocess (a tiny script
calling :func:`mfcore.data.custom.load_ratings_file`) and reports its peak RSS (VmHWM)
against the kept data: int32 user and item indices, float32 ratings and int64 timestamps
are 20 bytes a rating. The checkpoint part trains the default preset on the default
synthetic set (``mfcore.presets``) and writes its checkpoint with :func:`mfcore.checkpoint.save`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_LOAD = """
import sys, time, json
t = time.perf_counter()
from mfcore.data.custom import load_ratings_file
data = load_ratings_file(sys.argv[1])
seconds = time.perf_counter() - t
kept = data.user_idx.nbytes + data.item_idx.nbytes + data.rating.nbytes + (
    0 if data.timestamp is None else data.timestamp.nbytes)
hwm = 0
for line in open('/proc/self/status'):
    if line.startswith('VmHWM:'):
        hwm = int(line.split()[1]) * 1024
print(json.dumps({"ratings": data.n_ratings, "users": data.n_users, "items": data.n_items,
                  "kept_bytes": kept, "peak_rss_bytes": hwm, "seconds": seconds}))
"""


def write_csv(path: Path, target_mb: float, seed: int = 0) -> int:
    """A MovieLens-like ``userId,movieId,rating,timestamp`` file of about ``target_mb`` MB."""
    rng = np.random.default_rng(seed)
    target = int(target_mb * 1e6)
    written, rows = 0, 0
    with open(path, "w", encoding="ascii") as fh:
        fh.write("userId,movieId,rating,timestamp\n")
        while written < target:
            n = 500_000
            users = rng.integers(1, 300_000, n)
            items = rng.integers(1, 90_000, n)
            ratings = rng.integers(1, 11, n) / 2
            ts = rng.integers(800_000_000, 1_700_000_000, n)
            block = "".join(f"{u},{i},{r:g},{t}\n" for u, i, r, t in zip(users, items, ratings, ts))
            fh.write(block)
            written += len(block)
            rows += n
    return rows


def measure_load(csv: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _LOAD, str(csv)], capture_output=True, text=True, env=env,
                         check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["file_bytes"] = csv.stat().st_size
    res["peak_bytes_per_rating"] = res["peak_rss_bytes"] / res["ratings"]
    res["peak_over_file"] = res["peak_rss_bytes"] / res["file_bytes"]
    res["peak_over_kept"] = res["peak_rss_bytes"] / res["kept_bytes"]
    return res


def measure_checkpoint(epochs: int, folder: Path) -> dict:
    from dataclasses import replace

    from mfcore import checkpoint
    from mfcore.data.sources import load_dataset
    from mfcore.data.splits import make_split
    from mfcore.presets import get_preset
    from mfcore.training.trainer import Trainer

    preset = get_preset("default")
    train = replace(preset.train, epochs=epochs)
    data = load_dataset("synthetic")
    split = make_split(data, "random:0.1", train.seed)
    trainer = Trainer(data, split, preset.model, train)
    t = time.perf_counter()
    for _ in trainer.run():
        pass
    train_s = time.perf_counter() - t
    path = folder / f"default-{epochs}.pt"
    t = time.perf_counter()
    checkpoint.save(checkpoint.from_trainer(trainer), path)
    save_s = time.perf_counter() - t
    return {"epochs": epochs, "snapshots": len(trainer.snapshots), "checkpoint_bytes": path.stat().st_size,
            "train_seconds": train_s, "save_seconds": save_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv-mb", type=float, default=200.0)
    ap.add_argument("--only", choices=("load", "checkpoint"))
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="mfstudio-bounds-") as tmp:
        folder = Path(tmp)
        if args.only in (None, "load"):
            csv = folder / "ratings.csv"
            rows = write_csv(csv, args.csv_mb)
            load = measure_load(csv)
            result["load"] = load
            print(f"load {load['file_bytes'] / 1e6:.0f} MB CSV ({rows:,} lines, {load['ratings']:,} ratings kept): "
                  f"peak RSS {load['peak_rss_bytes'] / 1e6:.0f} MB = {load['peak_bytes_per_rating']:.1f} bytes/rating "
                  f"= {load['peak_over_file']:.2f}x the file = {load['peak_over_kept']:.1f}x the kept arrays; "
                  f"{load['seconds']:.1f} s")
        if args.only in (None, "checkpoint"):
            result["checkpoint"] = []
            for epochs in (70, 400):
                c = measure_checkpoint(epochs, folder)
                result["checkpoint"].append(c)
                print(f"default preset, {epochs} epochs: {c['snapshots']} snapshots, checkpoint "
                      f"{c['checkpoint_bytes'] / 1e6:.1f} MB (saved in {c['save_seconds']:.2f} s; "
                      f"training {c['train_seconds']:.1f} s)")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
