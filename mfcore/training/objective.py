"""The training objective, written once, and its gradient by hand.

Per rating:  ½ (r - r̂)² + ½ l2 (|p_u|² + |q_i|²) + ½ l2_bias (b_u² + b_i²),
averaged over a batch. The autograd stepper differentiates :func:`batch_objective`;
the hand-written kernels apply :func:`analytic_gradients`' formulas; the gradient
check in the tests compares both against finite differences.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mfcore.model import MFModel


def batch_objective(
    model: MFModel,
    users: torch.Tensor,
    items: torch.Tensor,
    ratings: torch.Tensor,
    l2: float,
    l2_bias: float,
    *,
    sparse_grad: bool = False,
    user_weight: torch.Tensor | None = None,
    item_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean objective, squared errors) for a batch; differentiable.

    ``user_weight``/``item_weight`` (one per rating of the batch) scale each rating's
    penalty on its user's/item's rows (see TrainConfig.l2_count_power); None = 1.
    """
    sq = (ratings - model(users, items, sparse_grad=sparse_grad)).square()
    loss = 0.5 * sq.mean()
    wu = 1.0 if user_weight is None else user_weight
    wi = 1.0 if item_weight is None else item_weight
    if l2 > 0:
        # F.embedding (not indexing) so the penalty's gradient is sparse too.
        p = F.embedding(users, model.user_factors, sparse=sparse_grad)
        q = F.embedding(items, model.item_factors, sparse=sparse_grad)
        loss = loss + 0.5 * l2 * (wu * p.square().sum(1) + wi * q.square().sum(1)).mean()
    if l2_bias > 0 and model.config.use_bias:
        bu = F.embedding(users, model.user_bias, sparse=sparse_grad).squeeze(1)
        bi = F.embedding(items, model.item_bias, sparse=sparse_grad).squeeze(1)
        loss = loss + 0.5 * l2_bias * (wu * bu.square() + wi * bi.square()).mean()
    return loss, sq.detach()


@torch.no_grad()
def analytic_gradients(
    model: MFModel, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, l2: float, l2_bias: float,
    user_weight: torch.Tensor | None = None, item_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Gradient of the mean objective for a linear-output model, by the formulas
    the kernels use: ∂/∂p_u = -(e q_i - l2 p_u), ∂/∂b_u = -(e - l2_bias b_u), …"""
    n = len(ratings)
    p, q = model.user_factors[users], model.item_factors[items]
    e = ratings - model(users, items)
    wu = torch.ones_like(e) if user_weight is None else user_weight
    wi = torch.ones_like(e) if item_weight is None else item_weight
    grads = {name: torch.zeros_like(t) for name, t in model.named_parameters()}
    grads["user_factors"].index_add_(0, users, -(e[:, None] * q - (l2 * wu)[:, None] * p) / n)
    grads["item_factors"].index_add_(0, items, -(e[:, None] * p - (l2 * wi)[:, None] * q) / n)
    if model.config.use_bias:
        bu, bi = model.user_bias[users, 0], model.item_bias[items, 0]
        grads["user_bias"].index_add_(0, users, (-(e - l2_bias * wu * bu) / n)[:, None])
        grads["item_bias"].index_add_(0, items, (-(e - l2_bias * wi * bi) / n)[:, None])
    if model.config.global_bias == "learned":
        grads["global_bias"] = -e.mean()
    return grads
