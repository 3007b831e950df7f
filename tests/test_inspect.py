"""Projections, Procrustes alignment and new-user fold-in."""

import numpy as np
import pytest
import torch

from mfcore.config import ModelConfig, TrainConfig
from mfcore.data.dataset import IdIndex
from mfcore.errors import ConfigError, UnknownIdError
from mfcore.inspect.foldin import fold_in, recommend_for
from mfcore.inspect.projection import align_to, aligned_frames, project
from mfcore.model import MFModel
from mfcore.recommender import TrainedModel


def _trained(n_items=40, k=3, seed=0, l2=0.05) -> TrainedModel:
    rng = np.random.default_rng(seed)
    config = ModelConfig(n_factors=k)
    m = MFModel(5, n_items, config, global_mean=3.5, rating_scale=(1.0, 5.0))
    with torch.no_grad():
        m.item_factors.copy_(torch.from_numpy(rng.normal(0, 1, (n_items, k)).astype(np.float32)))
        m.item_bias.copy_(torch.from_numpy(rng.normal(0, 0.3, (n_items, 1)).astype(np.float32)))
    return TrainedModel(m, IdIndex(np.arange(5), "user"), IdIndex(np.arange(100, 100 + n_items), "item"),
                        config, TrainConfig(l2=l2, l2_bias=0.01))


def test_fold_in_matches_the_closed_form_ridge_solution():
    t = _trained()
    ratings = {100: 5.0, 101: 1.0, 105: 4.0, 110: 3.0, 120: 2.5}
    folded = fold_in(t, ratings)
    idx = [0, 1, 5, 10, 20]
    X = np.hstack([t.item_factors()[idx].astype(np.float64), np.ones((5, 1))])
    y = np.array(list(ratings.values())) - 3.5 - t.item_biases()[idx]
    A = X.T @ X + np.diag([0.05 * 5] * 3 + [0.01 * 5])
    expected = np.linalg.solve(A, X.T @ y)
    assert np.allclose(np.append(folded.vector, folded.bias), expected)


def test_fold_in_gives_a_known_users_ratings_back():
    """A user whose ratings the model explains exactly is recovered with tiny l2."""
    t = _trained(n_items=40)
    true_vec, true_bias = np.array([0.2, -0.15, 0.1]), 0.05
    items = np.arange(100, 140)
    exact = 3.5 + t.item_biases() + true_bias + t.item_factors().astype(np.float64) @ true_vec
    assert exact.min() > 1 and exact.max() < 5  # no clipping, so the data is exactly explainable
    folded = fold_in(t, dict(zip(items.tolist(), exact.tolist())), l2=1e-6, l2_bias=1e-6)
    assert np.allclose(folded.vector, true_vec, atol=1e-3)
    assert folded.bias == pytest.approx(true_bias, abs=1e-3)
    assert np.allclose(folded.predict(t, items), exact, atol=1e-3)


def test_fold_in_recommends_unrated_items_only_and_rejects_bad_input():
    t = _trained()
    folded = fold_in(t, {100: 5.0, 101: 4.0})
    rec = recommend_for(t, folded, n=5)
    assert len(rec) == 5 and not set(rec["item"]) & {100, 101}
    assert rec["predicted"].is_monotonic_decreasing
    with pytest.raises(ConfigError, match="rate at least one movie"):
        fold_in(t, {})
    with pytest.raises(ConfigError, match="between 1 and 5"):
        fold_in(t, {100: 9.0})
    with pytest.raises(UnknownIdError, match="unknown item id 999"):
        fold_in(t, {999: 4.0})


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projections_are_deterministic_with_a_seed(method):
    X = np.random.default_rng(0).normal(size=(120, 8))
    a, b = project(X, method, seed=3), project(X, method, seed=3)
    assert a.coords.shape == (120, 2)
    assert np.array_equal(a.coords, b.coords)


def test_pca_explains_the_dominant_direction_and_samples_over_the_cap():
    rng = np.random.default_rng(1)
    X = np.outer(rng.normal(size=500), [3.0, 0, 0, 0]) + rng.normal(scale=0.1, size=(500, 4))
    p = project(X, "pca")
    assert p.explained_variance[0] > 0.95
    sampled = project(X, "tsne", max_points=100)
    assert len(sampled.rows) == 100 and "sample of 100 of 500" in sampled.note
    with pytest.raises(ConfigError, match="unknown projection 'lda'"):
        project(X, "lda")


def test_procrustes_undoes_rotation_and_reflection():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(50, 2))
    theta = 1.1
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([1, -1])
    moved = ref @ R + 5.0
    assert np.allclose(align_to(ref, moved), ref, atol=1e-5)


def test_aligned_frames_end_on_the_static_map():
    rng = np.random.default_rng(3)
    snaps = [rng.normal(size=(30, 4)) for _ in range(4)]
    frames = aligned_frames(snaps)
    assert len(frames) == 4
    assert np.allclose(frames[-1], project(snaps[-1], "pca").coords)
