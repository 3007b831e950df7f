"""Command line: ``python -m mfcore train|presets|datasets``.

Bad input exits with status 2 and one line saying what is wrong and how to fix it;
nothing is written (``--save`` happens only after a successful run).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence, TextIO

from mfcore.errors import ChecksumError, DatasetNotFoundError, DownloadError, MFError

EXIT_BAD_INPUT = 2
EXIT_FAILED_RUN = 1


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m mfcore", description="MF Studio engine: train and evaluate MF recommenders.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    t = sub.add_parser("train", help="train a model and report test RMSE beside the baselines")
    t.add_argument("--dataset", help="ml-100k, ml-latest-small, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m, synthetic, "
                   "or a path to a ratings file, folder or zip (default: the preset's, else synthetic)")
    t.add_argument("--data-dir", type=Path, help="folder holding extracted MovieLens folders or official zips")
    t.add_argument("--cache-dir", type=Path, help="download cache (default $MFSTUDIO_CACHE or ~/.cache/mfstudio)")
    t.add_argument("--no-download", action="store_true", help="never download; fail if the data is not local")
    t.add_argument("--split", help="random:F, user:F, temporal:F, temporal-user:F, kfold:K:I, or u1..u5/ua/ub (ml-100k)")
    t.add_argument("--seed", type=int, help="seeds the split and the model (default: the preset's, 0)")
    t.add_argument("--preset", help="default, d2l, pytorch-basics, mf-advanced, lowrank (default: default)")
    t.add_argument("--factors", type=int, dest="n_factors")
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", help="sgd, adam, adamw, adagrad, sparse_adam, als")
    t.add_argument("--batch-size", type=int, help="ratings per step; 1 = classic per-rating SGD; 0 = full batch")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--l2", type=float, help="L2 penalty on the factor rows each rating touches")
    t.add_argument("--l2-bias", type=float)
    t.add_argument("--momentum", type=float)
    t.add_argument("--lr-decay", type=float)
    t.add_argument("--average-from", type=int, help="average the weights from this epoch on (SWA)")
    t.add_argument("--patience", type=int, dest="early_stopping_patience", help="early-stopping patience (0 = off)")
    t.add_argument("--init-std", type=float)
    implicit = t.add_mutually_exclusive_group()
    implicit.add_argument("--implicit", dest="implicit_feedback", action="store_true", default=None,
                          help="also learn from which movies each user rated (per-rating SGD only)")
    implicit.add_argument("--no-implicit", dest="implicit_feedback", action="store_false")
    bias = t.add_mutually_exclusive_group()
    bias.add_argument("--bias", dest="use_bias", action="store_true", default=None, help="biased MF")
    bias.add_argument("--no-bias", dest="use_bias", action="store_false", help="plain dot-product MF")
    t.add_argument("--output", choices=None, help="linear or sigmoid")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default auto)")
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0 = the measured default)")
    t.add_argument("--save", type=Path, help="write the checkpoint here after training")
    t.add_argument("--ranking", action="store_true", help="also report precision/recall/NDCG/MAP@10 and coverage")
    t.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    sub.add_parser("presets", help="list the presets")
    d = sub.add_parser("datasets", help="list the MovieLens datasets and where they would come from")
    d.add_argument("--data-dir", type=Path)
    d.add_argument("--cache-dir", type=Path, help="download cache (default $MFSTUDIO_CACHE or ~/.cache/mfstudio)")
    k = sub.add_parser("build-kernels", help="compile the default preset's kernels ahead of time for this CPU "
                                             "(scripts/env.sh does it; a fresh process then trains without numba)")
    k.add_argument("--if-stale", action="store_true", help="do nothing when the build matches the sources and CPU")
    k.add_argument("--dir", type=Path, help="where to build (default mfcore/training/_aot, or $MFSTUDIO_AOT_DIR)")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("train", "datasets"):
            from mfcore.data.leftovers import clean_partial_downloads

            clean_partial_downloads(args.cache_dir)  # downloads a killed run left unfinished
        if args.command == "train":
            return _train(args, out, err)
        if args.command == "presets":
            return _presets(out)
        if args.command == "build-kernels":
            return _build_kernels(args, out, err)
        return _datasets(args, out)
    except MFError as exc:
        print(f"error: {error_line(exc)}", file=err)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=err)
        return 130


def error_line(exc: MFError) -> str:
    """An engine error as one line, its way forward in terms of this command's flags.

    The engine's messages name no flags (the app shows them too); where an error carries the
    facts (which dataset, which URL), the CLI puts its own fix after the reason.
    """
    if isinstance(exc, DatasetNotFoundError) and exc.known:
        # a name that is simply wrong: the close names, not --data-dir (issue 11)
        hint = f"did you mean --dataset {exc.suggestion}? " if exc.suggestion else ""
        return (f"unknown dataset {exc.dataset!r}; {hint}valid names: {', '.join(exc.known)}, or a path to a "
                "ratings file, MovieLens folder or zip")
    if isinstance(exc, DatasetNotFoundError):
        return (f"{exc.reason}; drop --no-download to download it, put its extracted folder or "
                "official zip in the folder given with --data-dir, or use --dataset synthetic")
    if isinstance(exc, DownloadError) and not isinstance(exc, ChecksumError) and exc.url:
        first = f"{exc.fix}, or " if exc.fix else ""
        return f"{exc.reason}; {first}download {exc.url} yourself and pass its folder with --data-dir"
    return str(exc)


def _build_kernels(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from mfcore.training import aot

    ok, line = aot.ensure_built(args.dir, only_if_stale=args.if_stale)
    if line:
        print(line, file=out if ok else err)
    return 0  # a failed build is a warning: the JIT kernels train the same models


def _collect_again() -> None:
    """Turn the cyclic garbage collector back on (``python -m mfcore`` starts without it), the
    objects of the imports frozen first so that no collection walks them again."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _train(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from mfcore.config import RuntimeOptions
    from mfcore.data.sources import load_dataset
    from mfcore.data.splits import make_split
    from mfcore.events import EpochEnded, EpochProgress, RunFailed, RunFinished, RunStarted
    from mfcore.presets import get_preset
    from mfcore.training.trainer import Trainer

    preset = get_preset(args.preset or "default")
    model_config, train_config = _configs_from_args(args, preset)
    # Factor snapshots (the app's animated map) only go into a saved checkpoint: without --save
    # nobody could see them.
    runtime = RuntimeOptions(device=args.device, cpu_threads=args.threads, eval_ranking=args.ranking,
                             keep_snapshots=None if args.save else False)
    dataset = args.dataset or (preset.dataset if args.preset else "synthetic")
    split_spec = args.split or (preset.split if args.preset else "random:0.1")
    seed = train_config.seed

    _check_settings(args)
    if args.save:
        from mfcore.checkpoint import check_save_path

        check_save_path(args.save)  # a path that cannot be written fails now, not after training
    data = load_dataset(
        dataset, data_dir=args.data_dir, cache_dir=args.cache_dir, download=not args.no_download,
        progress=None if args.json else _download_progress(err),
    )
    split = make_split(data, split_spec, seed)
    _collect_again()
    from mfcore.limits import check_run

    check_run(data.n_users, data.n_items, split.n_train, model_config, train_config)  # bounded work and checkpoint
    trainer = Trainer(data, split, model_config, train_config, runtime)
    if not args.json:
        print(f"{data.name}: {data.n_ratings:,} ratings, {data.n_users:,} users, {data.n_items:,} items; "
              f"split {split.name}: {len(split.train):,} train / {len(split.test):,} test", file=out)
    finished: RunFinished | None = None
    started: RunStarted | None = None
    for event in trainer.run():
        if isinstance(event, RunStarted):
            started = event
            if not args.json:
                b = event.baselines
                print(f"device {event.device}; baselines: global mean RMSE {b.get('global_mean_rmse', math.nan):.4f}, "
                      f"biases RMSE {b.get('baseline_rmse', math.nan):.4f}", file=out)
        elif isinstance(event, EpochProgress) and not args.json:
            bar = _bar(event.done / max(1, event.total))
            print(f"\r  epoch {event.epoch}/{event.epochs} {bar} {event.examples_per_second:,.0f} ratings/s",
                  end="", file=err, flush=True)
        elif isinstance(event, EpochEnded) and not args.json:
            print(f"epoch {event.epoch:>3}/{event.epochs}  train loss {event.train_loss:.4f}  "
                  f"test RMSE {event.test_rmse:.4f}  MAE {event.test_mae:.4f}  "
                  f"{event.examples_per_second:,.0f} ratings/s  {event.seconds:.2f}s", file=out, flush=True)
        elif isinstance(event, RunFailed):
            print(f"error: run {event.reason}: {event.message}", file=err)
            return EXIT_FAILED_RUN
        elif isinstance(event, RunFinished):
            finished = event
    assert finished is not None and started is not None
    if args.save:
        from mfcore.checkpoint import from_trainer, save

        save(from_trainer(trainer, dataset=dataset, split=split_spec), args.save)
    summary: dict[str, Any] = {
        "dataset": data.name,
        "split": split.name,
        "preset": preset.name,
        "test_rmse": finished.metrics.get("test_rmse"),
        "test_mae": finished.metrics.get("test_mae"),
        "baseline_rmse": finished.metrics.get("baseline_rmse"),
        "baseline_mae": finished.metrics.get("baseline_mae"),
        "global_mean_rmse": finished.metrics.get("global_mean_rmse"),
        "global_mean_mae": finished.metrics.get("global_mean_mae"),
        "epochs": finished.epochs_run,
        "best_epoch": finished.best_epoch,
        "stopped": finished.reason,
        "train_seconds": round(finished.train_seconds, 4),
        "examples_per_second": round(finished.examples_per_second, 1),
        "device": finished.device,
        "seed": seed,
        **{k: v for k, v in finished.metrics.items() if k.startswith(("class_", "rank_"))},
    }
    if args.json:
        print(json.dumps(summary), file=out)
    else:
        print(f"done ({finished.reason}): test RMSE {summary['test_rmse']:.4f} (biases {summary['baseline_rmse']:.4f}, "
              f"global mean {summary['global_mean_rmse']:.4f}) in {finished.train_seconds:.2f}s of training"
              + (f"; saved {args.save}" if args.save else ""), file=out)
        m = finished.metrics
        if "class_accuracy" in m:
            print(f"as star classes: accuracy {m['class_accuracy']:.3f}, macro F1 {m['class_f1_macro']:.3f}, "
                  f"weighted F1 {m['class_f1_weighted']:.3f}", file=out)
        if "rank_ndcg_at_k" in m:
            print(f"top-{int(m['rank_k'])}: precision {m['rank_precision_at_k']:.4f}, recall {m['rank_recall_at_k']:.4f}, "
                  f"NDCG {m['rank_ndcg_at_k']:.4f}, MAP {m['rank_map_at_k']:.4f}, coverage {m['rank_coverage']:.3f} "
                  f"({int(m['rank_n_users'])} users)", file=out)
    return 0


def _check_settings(args: argparse.Namespace) -> None:
    """The device and thread settings (flags, then $MFSTUDIO_DEVICE / $MFSTUDIO_CPU_THREADS), checked
    before any data is loaded: a bad one is bad input (status 2), named, not a failed run."""
    from mfcore.device import default_cpu_threads, resolve_device

    resolve_device(args.device)
    if not args.threads:
        default_cpu_threads()


def _configs_from_args(args: argparse.Namespace, preset: Any) -> tuple[Any, Any]:
    """Preset configs overridden by every flag given (validated by the dataclasses)."""
    model_changes = {k: getattr(args, k) for k in ("n_factors", "use_bias", "init_std", "output") if getattr(args, k) is not None}
    train_keys = ("epochs", "lr", "optimizer", "batch_size", "weight_decay", "l2", "l2_bias", "momentum",
                  "lr_decay", "average_from", "early_stopping_patience", "seed", "implicit_feedback")
    train_changes = {k: getattr(args, k) for k in train_keys if getattr(args, k) is not None}
    if "optimizer" in train_changes:
        train_changes["optimizer"] = train_changes["optimizer"].strip().lower().replace("-", "_")
    if "use_bias" in model_changes and not model_changes["use_bias"]:
        model_changes.setdefault("global_bias", "none")
    if "implicit_feedback" not in train_changes and preset.train.implicit_feedback:
        # The preset's implicit feedback needs per-rating SGD: another optimizer switches it off.
        per_rating = (train_changes.get("optimizer", "sgd") == "sgd" and train_changes.get("batch_size", 1) == 1
                      and not train_changes.get("momentum") and not train_changes.get("weight_decay"))
        train_changes["implicit_feedback"] = per_rating
    train = replace(preset.train, **train_changes)
    if train.average_from is not None and train.average_from > train.epochs:
        train = replace(train, average_from=None)  # fewer epochs than the preset's averaging start
    return replace(preset.model, **model_changes), train


def _presets(out: TextIO) -> int:
    from mfcore.presets import PRESETS

    for p in PRESETS.values():
        print(f"{p.name:<15} {p.title}: {p.description} [{p.dataset}, {p.split}; {p.reference}]", file=out)
    return 0


def _datasets(args: argparse.Namespace, out: TextIO) -> int:
    from mfcore.data.download import cached_dataset
    from mfcore.data.sources import DATASETS, find_local

    for name, info in DATASETS.items():
        local = find_local(name, args.data_dir) if args.data_dir else None
        where = local or cached_dataset(name, args.cache_dir) or f"download {info.zip_mb:g} MB from {info.url}"
        print(f"{name:<16} {info.title}: {info.ratings:,} ratings, {info.users:,} users, {info.items:,} items, "
              f"scale {info.rating_scale[0]:g}-{info.rating_scale[1]:g} [{where}]", file=out)
    return 0


def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _download_progress(err: TextIO):
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and (total is None or done < total):
            return
        last[0] = now
        if total:
            print(f"\r  downloading {done / 1e6:.1f}/{total / 1e6:.1f} MB {_bar(done / total)}", end="", file=err, flush=True)
        else:
            print(f"\r  downloading {done / 1e6:.1f} MB", end="", file=err, flush=True)
        if total and done >= total:
            print(file=err)

    return report
