"""The model's arithmetic on hand-computed numbers, and the gradient check."""

import pytest
import torch

from mfcore.config import ModelConfig
from mfcore.model import MFModel
from mfcore.training.kernels import sgd_chunk_cpu, sgd_chunk_torch
from mfcore.training.objective import analytic_gradients, batch_objective


def _model(**cfg) -> MFModel:
    m = MFModel(2, 2, ModelConfig(n_factors=2, **cfg), global_mean=3.0, rating_scale=(1.0, 5.0))
    with torch.no_grad():
        m.user_factors.copy_(torch.tensor([[1.0, 2.0], [0.5, -1.0]]))
        m.item_factors.copy_(torch.tensor([[0.1, 0.2], [1.0, 1.0]]))
        m.user_bias.copy_(torch.tensor([[0.25], [-0.5]]))
        m.item_bias.copy_(torch.tensor([[0.1], [0.0]]))
    return m


def test_biased_prediction_by_hand():
    m = _model()
    # user 0, item 0: 3 + 0.25 + 0.1 + (1*0.1 + 2*0.2) = 3.85
    # user 1, item 1: 3 - 0.5 + 0 + (0.5 - 1) = 2.0
    out = m.predict(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert out.tolist() == pytest.approx([3.85, 2.0])


def test_plain_model_ignores_biases_and_clips():
    m = _model(use_bias=False, global_bias="none")
    # user 0 item 1: 1 + 2 = 3 ; user 1 item 1: -0.5 -> clipped to 1
    assert m.predict(torch.tensor([0, 1]), torch.tensor([1, 1])).tolist() == pytest.approx([3.0, 1.0])
    assert m.forward(torch.tensor([1]), torch.tensor([1])).item() == pytest.approx(-0.5)


def test_sigmoid_output_stays_in_range_and_starts_at_mean():
    m = MFModel(3, 3, ModelConfig(n_factors=2, output="sigmoid", output_range=(0.0, 5.5), init_std=0.0),
                global_mean=3.5, rating_scale=(0.5, 5.0))
    out = m.forward(torch.tensor([0, 1]), torch.tensor([0, 2]))
    assert out.tolist() == pytest.approx([3.5, 3.5], abs=1e-4)


def test_score_all_items_matches_pairwise_predictions():
    m = _model()
    grid = m.score_all_items(torch.tensor([0, 1]))
    pairs = m.predict(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))
    assert grid.flatten().tolist() == pytest.approx(pairs.tolist())


@pytest.mark.parametrize("global_bias", ["mean", "learned"])
def test_gradient_check_against_finite_differences(global_bias):
    """The hand-written gradient (used by the kernels) and autograd's both match
    central finite differences of the objective, in float64."""
    torch.manual_seed(0)
    m = MFModel(4, 5, ModelConfig(n_factors=3, global_bias=global_bias, init_std=0.5),
                global_mean=3.0, rating_scale=(1.0, 5.0)).double()
    with torch.no_grad():
        m.user_bias.normal_(0, 0.3)
        m.item_bias.normal_(0, 0.3)
    users = torch.tensor([0, 1, 1, 3, 2, 0])
    items = torch.tensor([0, 2, 4, 1, 1, 3])
    ratings = torch.tensor([4.0, 2.0, 5.0, 3.0, 1.0, 4.5], dtype=torch.float64)
    l2, l2b = 0.1, 0.05

    # Count-weighted L2 (TrainConfig.l2_count_power): one weight per rating's user/item.
    wu = torch.tensor([0.5, 1.5, 1.5, 2.0, 1.0, 0.5], dtype=torch.float64)
    wi = torch.tensor([1.0, 0.7, 1.2, 0.9, 0.9, 1.1], dtype=torch.float64)

    def objective():
        return batch_objective(m, users, items, ratings, l2, l2b, user_weight=wu, item_weight=wi)[0]

    loss = objective()
    loss.backward()
    manual = analytic_gradients(m, users, items, ratings, l2, l2b, user_weight=wu, item_weight=wi)
    eps = 1e-6
    for name, param in m.named_parameters():
        if not param.requires_grad:
            continue
        numeric = torch.zeros_like(param)
        flat = param.data.view(-1)
        for j in range(flat.numel()):
            old = flat[j].item()
            flat[j] = old + eps
            up = objective().item()
            flat[j] = old - eps
            down = objective().item()
            flat[j] = old
            numeric.view(-1)[j] = (up - down) / (2 * eps)
        assert torch.allclose(param.grad, numeric, atol=1e-7), name
        assert torch.allclose(manual[name], numeric, atol=1e-7), name


def test_one_kernel_step_is_minus_lr_times_the_gradient():
    """Per-rating SGD on one rating moves every parameter by -lr * gradient, on both
    the compiled CPU kernel and its torch twin."""
    lr, l2, l2b = 0.05, 0.1, 0.02
    users, items = torch.tensor([1], dtype=torch.int32), torch.tensor([0], dtype=torch.int32)
    ratings = torch.tensor([4.5])
    wu, wi = torch.tensor([1.0, 0.6]), torch.tensor([1.3, 1.0])  # per-row L2 weights
    ref = _model()
    grads = analytic_gradients(ref, users.long(), items.long(), ratings, l2, l2b,
                               user_weight=wu[users.long()], item_weight=wi[items.long()])
    expected = {k: v.detach() - lr * grads[k] for k, v in ref.named_parameters()}

    cpu = _model()
    w = [p.detach().numpy() for p in (cpu.user_factors, cpu.item_factors, cpu.user_bias, cpu.item_bias)]
    g = cpu.global_bias.detach().view(1).numpy()
    sgd_chunk_cpu(torch.tensor([0]).numpy(), users.numpy(), items.numpy(), ratings.numpy(), wu.numpy(), wi.numpy(),
                  *w, g, lr, l2, l2b, True, False)

    twin = _model()
    sgd_chunk_torch(torch.tensor([0]), users, items, ratings, wu, wi, twin.user_factors.data, twin.item_factors.data,
                    twin.user_bias.data, twin.item_bias.data, twin.global_bias.data, lr, l2, l2b, True, False)
    for model in (cpu, twin):
        for name, param in model.named_parameters():
            if name != "global_bias":
                assert torch.allclose(param.detach(), expected[name], atol=1e-6), name
