"""How many torch threads should one CPU training job use? Measured, quiet and busy.

    python benchmarks/threads.py [--ratings 300000] [--repeats 3]

Times one epoch of the autograd trainer (Adam, batch 8192), of ALS, and of per-rating
SGD on its cache-blocked multi-thread schedule (``sgd``: 5M ratings of 60,000 x 20,000,
above the 4M threshold) with 1 and 2 threads, first on a quiet machine, then while
another process keeps one core busy (as the web server or a second job does). Prints a
table of median seconds (the fastest epoch of each run). The engine's default
(mfcore.device.default_cpu_threads) follows from it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from mfcore.config import ModelConfig, TrainConfig, RuntimeOptions
from mfcore.data.synthetic import make_synthetic
from mfcore.data.splits import make_split
from mfcore.training.trainer import Trainer
if sys.argv[3] == "sgd":
    data = make_synthetic(n_users=60000, n_items=20000, n_ratings=5_000_000, rank=8, seed=0)
else:
    data = make_synthetic(n_users=3000, n_items=2000, n_ratings=int(sys.argv[2]), rank=8, seed=0)
split = make_split(data, "random:0.1", 0)
tc = {"adam": TrainConfig(optimizer="adam", lr=0.005, batch_size=8192, epochs=2, l2=0.01),
      "als": TrainConfig(optimizer="als", epochs=2, l2=0.05),
      "sgd": TrainConfig(optimizer="sgd", batch_size=1, lr=0.02, l2=0.02, epochs=3)}[sys.argv[3]]
times = [e.seconds for e in Trainer(data, split, ModelConfig(n_factors=32), tc,
                                    RuntimeOptions(cpu_threads=int(sys.argv[1]))).run() if e.kind == "epoch"]
print(min(times))
"""


def _spin(stop: mp.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _time(threads: int, ratings: int, job: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(ratings), job],
                         capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratings", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'job':<6} {'load':<6} {'threads':>7} {'epoch s (median)':>17}")
    for load in ("quiet", "busy"):
        stop = mp.Event()
        spinner = mp.Process(target=_spin, args=(stop,)) if load == "busy" else None
        if spinner:
            spinner.start()
        try:
            for job in ("adam", "als", "sgd"):
                for threads in (1, 2):
                    runs = [_time(threads, args.ratings, job) for _ in range(args.repeats)]
                    print(f"{job:<6} {load:<6} {threads:>7} {statistics.median(runs):>17.3f}", flush=True)
        finally:
            if spinner:
                stop.set()
                spinner.join()


if __name__ == "__main__":
    main()
