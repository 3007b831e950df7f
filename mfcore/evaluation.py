"""End-of-run evaluation of a model on a split: errors, rating classes, top-N ranking.

RMSE/MAE are computed over all test ratings at once (never averaged over batches).
The rating-class report rounds predictions to the dataset's star grid (whole stars for
ml-100k/ml-1m, half stars for the newer sets), as the "MF advanced" tutorial does.
Ranking metrics score every candidate item for (a seeded sample of) the test users.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mfcore.data.dataset import RatingData
from mfcore.data.splits import Split
from mfcore.metrics import iter_score_batches, ranking_metrics, ranking_users, rating_class_report
from mfcore.model import MFModel

RANKING_MAX_USERS = 5_000  # more users cost n_users x n_items scores; a sample says enough
CHUNK_WITH_BUFFERS = 1 << 20  # test sets up to this size are predicted in the caller's buffers


def star_grid(data: RatingData) -> float:
    """1.0 when every rating is a whole star, else 0.5."""
    head = data.rating[: 100_000]
    return 1.0 if np.array_equal(head, np.rint(head)) else 0.5  # (np.mod took ~10x longer)


@torch.no_grad()
def evaluate(
    model: MFModel,
    data: RatingData,
    split: Split,
    *,
    ranking: bool = False,
    k: int = 10,
    threshold: float | None = None,
    seed: int = 0,
    buffers: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Test metrics of ``model``: rmse, mae, rating-class accuracy/precision/recall/F1
    (macro and weighted) and, with ``ranking``, precision/recall/NDCG/MAP@k and coverage.

    ``threshold`` ("relevant" = test rating >= it) defaults to 4 stars on the 1-5
    scale, i.e. 80% of the scale's top. ``buffers`` (see ``MFModel.predict_with_buffers``): memory the
    predictions may reuse, e.g. the trainer's per-epoch evaluation buffers (same values).
    """
    if len(split.test) == 0:
        return {"test_rmse": math.nan, "test_mae": math.nan}
    dev = model.device
    users = torch.from_numpy(data.user_idx[split.test]).to(dev)
    items = torch.from_numpy(data.item_idx[split.test]).to(dev)
    truth = data.rating[split.test]
    if buffers is not None and len(users) <= CHUNK_WITH_BUFFERS:
        pred = model.predict_with_buffers(users, items, buffers).cpu().numpy().copy()
    else:
        pred = model.predict_in_chunks(users, items).cpu().numpy()
    err = pred.astype(np.float64) - truth
    out: dict[str, Any] = {"test_rmse": float(np.sqrt(np.mean(err**2))), "test_mae": float(np.mean(np.abs(err)))}
    report = rating_class_report(pred, truth, grid=star_grid(data), scale=data.rating_scale)
    out.update({f"class_{key}": value for key, value in report.items() if key != "per_class"})
    if ranking:
        lo, hi = data.rating_scale
        thr = threshold if threshold is not None else lo + 0.75 * (hi - lo)
        test_u = data.user_idx[split.test]
        candidates = ranking_users(test_u, truth, thr)
        if len(candidates) > RANKING_MAX_USERS:
            candidates = np.sort(np.random.default_rng(seed).choice(candidates, RANKING_MAX_USERS, replace=False))
        scores = iter_score_batches(
            lambda batch: model.score_all_items(torch.from_numpy(batch).to(dev)), candidates, batch_size=512
        )
        metrics = ranking_metrics(
            scores, n_items=data.n_items,
            train_user_idx=data.user_idx[split.train], train_item_idx=data.item_idx[split.train],
            test_user_idx=test_u, test_item_idx=data.item_idx[split.test], test_rating=truth,
            k=k, threshold=thr,
        )
        out.update({f"rank_{key}": float(value) for key, value in metrics.items()})
    return out
