"""Test RMSE of a preset on the standard protocols, beside the baselines and the peers.

    python benchmarks/quality.py [--data-dir ../shared/data] [--preset default] [--all-presets]

Each row is one CLI command (shown), so every number can be reproduced alone. The
peers' figures are the best of tuned Surprise SVD / LensKit ALS / cornac / Spark ALS /
fastai measured on the same protocols (issue #2); the targets are ours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROTOCOLS = [
    # dataset, split, best peer RMSE, target
    ("ml-100k", "u1", 0.923, 0.915),
    ("ml-100k", "random:0.1", 0.891, 0.885),
    ("ml-latest-small", "random:0.2", 0.853, 0.848),
]


def run_cli(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "mfcore", "train", *args, "--json"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--all-presets", action="store_true", help="also run each tutorial preset on its own protocol")
    parser.add_argument("--json-out", help="write the rows as JSON here")
    args = parser.parse_args()

    rows = []
    for dataset, split, peer, target in PROTOCOLS:
        cli = ["--dataset", dataset, "--data-dir", args.data_dir, "--split", split, "--seed", "0", "--preset", args.preset]
        r = run_cli(cli)
        rows.append({"preset": args.preset, "dataset": dataset, "split": split, "peer": peer, "target": target, **r,
                     "command": "python -m mfcore train " + " ".join(cli) + " --json"})
    if args.all_presets:
        from mfcore.presets import PRESETS

        for p in PRESETS.values():
            if p.name == "default":
                continue
            cli = ["--dataset", p.dataset, "--data-dir", args.data_dir, "--split", p.split, "--preset", p.name]
            r = run_cli(cli)
            rows.append({"preset": p.name, "dataset": p.dataset, "split": p.split, "peer": None, "target": None, **r,
                         "command": "python -m mfcore train " + " ".join(cli) + " --json"})

    header = f"{'preset':<15} {'dataset':<16} {'split':<11} {'RMSE':>7} {'MAE':>7} {'biases':>7} {'mean':>7} {'peers':>6} {'target':>6} {'ok':>3} {'train s':>8} {'epochs':>6} device"
    print(header)
    print("-" * len(header))
    for r in rows:
        ok = "" if r["target"] is None else ("yes" if r["test_rmse"] <= r["target"] else "NO")
        peer = f"{r['peer']:.3f}" if r["peer"] else "-"
        target = f"{r['target']:.3f}" if r["target"] else "-"
        print(f"{r['preset']:<15} {r['dataset']:<16} {r['split']:<11} {r['test_rmse']:>7.4f} {r['test_mae']:>7.4f} "
              f"{r['baseline_rmse']:>7.4f} {r['global_mean_rmse']:>7.4f} {peer:>6} {target:>6} {ok:>3} "
              f"{r['train_seconds']:>8.2f} {r['epochs']:>6} {r['device']}")
    print()
    for r in rows:
        print(r["command"])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
