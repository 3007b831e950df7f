"""One-file checkpoints: weights, both configs, id maps, history, metrics, snapshots.

The file is a plain dict of tensors, strings and numbers written by ``torch.save`` and
read back with ``weights_only=True``, so loading never runs pickled code.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfcore.config import ModelConfig, TrainConfig, config_from_dict, config_to_dict
from mfcore.data.dataset import IdIndex
from mfcore.errors import CheckpointError, MFError
from mfcore.model import MFModel
from mfcore.recommender import TrainedModel

FORMAT = "mfstudio-checkpoint"
VERSION = 1
TMP_SUFFIX = ".tmp"
_STALE_SECONDS = 3600.0  # a temp file without a writer pid (older releases) counts as orphaned after this
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def from_trainer(trainer: Any, *, dataset: str = "", split: str = "") -> TrainedModel:
    """Wrap a finished (or running) :class:`~mfcore.training.trainer.Trainer`'s model."""
    if trainer.model is None:
        raise CheckpointError("the trainer has no model yet; wait for the first event")
    return TrainedModel(
        model=trainer.model,
        user_ids=trainer.data.user_ids,
        item_ids=trainer.data.item_ids,
        model_config=trainer.model_config,
        train_config=trainer.train_config,
        dataset=dataset or trainer.data.name,
        split=split or trainer.split.name,
        history=trainer.history.to_dict(),
        metrics=dict(trainer.final_metrics),
        snapshots=list(trainer.snapshots),
    )


def check_save_path(path: str | Path) -> Path:
    """Refuse, before any work, a checkpoint path that cannot be written (CheckpointError).

    The path must not be a folder, its parent must be a folder (or creatable: the nearest
    existing ancestor is a writable folder), and the parent must accept a new file. Nothing
    is created: a missing parent is made by :func:`save` only.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give a file name for the checkpoint, e.g. {path / 'model.pt'}")
    if not path.name or path.name in (".", ".."):
        raise CheckpointError(f"{path}: give a file name for the checkpoint, e.g. model.pt")
    parent = path.parent
    existing = parent
    while not existing.exists():
        if existing.is_symlink():  # a dangling link
            raise CheckpointError(f"{path}: {existing} is a broken link; choose another place for the checkpoint")
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise CheckpointError(f"{path}: {existing} is a file, not a folder; choose another place for the checkpoint")
    if existing == parent:
        probe = None
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=parent)
            os.close(fd)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot write into {parent} ({exc.strerror or exc}); "
                                  "choose a writable place for the checkpoint") from None
        finally:
            if probe is not None:
                os.unlink(probe)
    else:  # the parent is to be created: try a folder there (and remove it again)
        try:
            probe_dir = tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=existing)
            os.rmdir(probe_dir)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot create folders in {existing} ({exc.strerror or exc}); "
                                  "choose a writable place for the checkpoint") from None
    return path


def save(trained: TrainedModel, path: str | Path) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half a checkpoint.

    A path that cannot be written raises CheckpointError (naming the path and why), and
    leaves nothing behind.
    """
    try:
        return _save(trained, Path(path))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, IsADirectoryError) and Path(path).is_dir():
            reason = "is a folder; give a file name for the checkpoint"
        elif isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "a part of the path is a file, not a folder"
        raise CheckpointError(f"{path}: the checkpoint could not be written ({reason})") from None


def _save(trained: TrainedModel, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = trained.model
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()},
        "model_config": config_to_dict(trained.model_config),
        "train_config": config_to_dict(trained.train_config),
        "rating_scale": list(m.rating_scale),
        "user_ids": _ids_out(trained.user_ids),
        "item_ids": _ids_out(trained.item_ids),
        "dataset": trained.dataset,
        "split": trained.split,
        "history": {k: [float(x) for x in v] for k, v in trained.history.items()},
        "metrics": {k: float(v) for k, v in trained.metrics.items()},
        "snapshots": _snapshots_out(trained.snapshots),
    }
    _clean_once(path.parent)
    # the writer's pid is in the name, so a later process can tell an orphan (kill -9) from a live write
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Read a checkpoint written by :func:`save` (any other file -> CheckpointError)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign/corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an MF Studio checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported (need {VERSION})")
    try:
        model_config = config_from_dict(ModelConfig, payload["model_config"])
        train_config = config_from_dict(TrainConfig, payload["train_config"])
        state = payload["state_dict"]
        n_users, n_items = state["user_factors"].shape[0], state["item_factors"].shape[0]
        model = MFModel(
            n_users, n_items, model_config,
            global_mean=0.0, rating_scale=tuple(payload["rating_scale"]),
        )
        model.load_state_dict(state)
        model.to(device)
        user_ids, item_ids = _ids_in(payload["user_ids"], "user"), _ids_in(payload["item_ids"], "item")
        for kind, ids, rows in (("user", user_ids, n_users), ("item", item_ids, n_items)):
            if len(ids) != rows:  # a crafted or mixed-up file: the id list must name every weight row
                raise CheckpointError(f"{path}: damaged checkpoint ({len(ids):,} {kind} ids for {rows:,} "
                                      f"{kind} weight rows); train the run again or use another checkpoint")
        snapshots = _snapshots_in(payload.get("snapshots"))
        for snap in snapshots[:1]:
            for key, value in snap.items():
                if key in state and np.ndim(value) >= 1 and value.shape[0] != state[key].shape[0]:
                    raise CheckpointError(f"{path}: damaged checkpoint (factor snapshots of {key} have "
                                          f"{value.shape[0]:,} rows, the weights {state[key].shape[0]:,})")
        return TrainedModel(
            model=model,
            user_ids=user_ids,
            item_ids=item_ids,
            model_config=model_config,
            train_config=train_config,
            dataset=payload.get("dataset", ""),
            split=payload.get("split", ""),
            history=payload.get("history", {}),
            metrics=payload.get("metrics", {}),
            snapshots=snapshots,
        )
    except CheckpointError:
        raise
    except MFError as exc:
        raise CheckpointError(f"{path}: invalid checkpoint contents ({exc})") from None
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None


def read_epoch(path: str | Path) -> int | None:
    """The last epoch recorded in a checkpoint's history (the epoch of the model it holds), or
    None when the file cannot tell. Cheap: the weights are memory-mapped, not read."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        epochs = payload.get("history", {}).get("epoch") or []
        return int(max(epochs)) if epochs else None
    except Exception:  # noqa: BLE001 - an unreadable file simply has no known epoch
        return None


def _ids_out(index: IdIndex) -> Any:
    raw = index.raw
    if np.issubdtype(raw.dtype, np.integer):
        return torch.from_numpy(raw.astype(np.int64))
    return [str(x) for x in raw]


def _ids_in(value: Any, kind: str) -> IdIndex:
    if isinstance(value, torch.Tensor):
        return IdIndex(value.numpy(), kind)
    return IdIndex(np.asarray(value, dtype=object), kind)


def _snapshots_out(snapshots: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor] | None:
    if not snapshots:
        return None
    return {key: torch.from_numpy(np.stack([s[key] for s in snapshots])) for key in snapshots[0]}


def _snapshots_in(value: Any) -> list[dict[str, np.ndarray]]:
    if not value:
        return []
    keys = list(value)
    n = value[keys[0]].shape[0]
    return [{k: value[k][e].numpy() for k in keys} for e in range(n)]


_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")
_OLD_TMP_NAME = re.compile(r"^.+\.pt[A-Za-z0-9_]{8}\.tmp$")


def clean_temporary_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files of checkpoint writes that will never finish.

    A write killed mid-way (kill -9, power loss) leaves its ``.tmp`` file behind; one whose
    writer process is gone (or, for a name without a pid, older than an hour) is removed.
    Call at start-up; :func:`save` also calls it once per folder and process. Returns the
    files removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for entry in folder.iterdir():
        if not entry.name.endswith(TMP_SUFFIX) or not entry.is_file():
            continue
        m = _TMP_NAME.match(entry.name)
        if m is not None:
            orphan = int(m.group("pid")) != os.getpid() and not _alive(int(m.group("pid")))
        elif _OLD_TMP_NAME.match(entry.name):
            try:
                orphan = now - entry.stat().st_mtime > _STALE_SECONDS
            except OSError:
                continue
        else:
            continue
        if orphan:
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _clean_once(folder: Path) -> None:
    key = str(folder.resolve())
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    clean_temporary_files(folder)
