"""Raw-id predictions, the unknown-id policy, decomposition, similar items, checkpoints."""

import numpy as np
import pytest
import torch

from mfcore import checkpoint
from mfcore.config import ModelConfig, TrainConfig
from mfcore.data.dataset import IdIndex
from mfcore.errors import CheckpointError, UnknownIdError
from mfcore.model import MFModel
from mfcore.recommender import TrainedModel


def _trained(output="linear", **cfg) -> TrainedModel:
    config = ModelConfig(n_factors=2, output=output, **cfg)
    m = MFModel(2, 3, config, global_mean=3.0, rating_scale=(1.0, 5.0))
    with torch.no_grad():
        m.user_factors.copy_(torch.tensor([[1.0, 2.0], [0.5, -1.0]]))
        m.item_factors.copy_(torch.tensor([[0.1, 0.2], [1.0, 1.0], [0.2, 0.4]]))
        m.user_bias.copy_(torch.tensor([[0.25], [-0.5]]))
        m.item_bias.copy_(torch.tensor([[0.1], [0.0], [-0.2]]))
    return TrainedModel(
        model=m, user_ids=IdIndex(np.array([101, 202]), "user"), item_ids=IdIndex(np.array([7, 8, 9]), "item"),
        model_config=config, train_config=TrainConfig(), dataset="hand", split="none",
        history={"epoch": [1, 2], "test_rmse": [1.0, 0.9]}, metrics={"test_rmse": 0.9},
        snapshots=[{"item_factors": np.zeros((3, 2), np.float16), "user_factors": np.ones((2, 2), np.float16)}],
    )


def test_predictions_by_raw_id():
    t = _trained()
    # user 101, item 7: 3 + 0.25 + 0.1 + 0.5 = 3.85 ; user 202, item 8: 3 - 0.5 + 0 - 0.5 = 2.0
    assert t.predict(101, 7).rating == pytest.approx(3.85)
    assert t.predict("202", 8).rating == pytest.approx(2.0)  # ids typed into a text box
    assert not t.predict(101, 7).fallback


def test_unknown_ids_fall_back_to_the_known_parts_with_a_flag():
    t = _trained()
    unknown_user = t.predict(999, 7)
    assert unknown_user.rating == pytest.approx(3.0 + 0.1) and not unknown_user.known_user and unknown_user.fallback
    unknown_item = t.predict(101, 999)
    assert unknown_item.rating == pytest.approx(3.0 + 0.25) and not unknown_item.known_item
    assert t.predict("nobody", "nothing").rating == pytest.approx(3.0)
    with pytest.raises(UnknownIdError, match="unknown user id 999"):
        t.user_vector(999)
    with pytest.raises(UnknownIdError, match="unknown item id 12"):
        t.similar_items(12)


@pytest.mark.parametrize("output", ["linear", "sigmoid"])
def test_decomposition_adds_up_to_the_prediction(output):
    t = _trained(output=output)
    for user in (101, 202):
        for item in (7, 8, 9):
            d = t.decompose(user, item)
            assert sum(d["parts"].values()) == pytest.approx(d["raw"], abs=1e-9)
            raw = torch.tensor(d["raw"], dtype=torch.float32)
            expected = float(t.model.squash(raw).clamp(1.0, 5.0))
            assert d["prediction"] == pytest.approx(expected, abs=1e-5)
            assert d["prediction"] == pytest.approx(t.predict(user, item).rating, abs=1e-6)
    d = t.decompose(101, 7)
    assert d["parts"]["factor 0"] == pytest.approx(0.1) and d["parts"]["factor 1"] == pytest.approx(0.4)


def test_recommend_excludes_seen_items_and_ranks_by_score():
    t = _trained()
    rec = t.recommend(101, n=2)
    # scores: item 7 3.85, item 8 3+0.25+0+3=6.25 -> clipped 5, item 9 3+0.25-0.2+1.0=4.05
    assert rec["item"].tolist() == [8, 9]
    assert t.recommend(101, n=5, exclude=[8])["item"].tolist() == [9, 7]


def test_similar_items_by_cosine():
    t = _trained()
    sim = t.similar_items(7, n=2)
    # item 9 = 2 x item 7: cosine 1
    assert sim["item"].tolist()[0] == 9 and sim["similarity"].iloc[0] == pytest.approx(1.0)
    assert 7 not in sim["item"].tolist()


def test_checkpoint_round_trip(tmp_path):
    t = _trained(output="sigmoid", output_range=(0.0, 5.5))
    path = checkpoint.save(t, tmp_path / "run.pt")
    back = checkpoint.load(path)
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, back.model.state_dict()[k])
    assert back.model_config == t.model_config and back.train_config == t.train_config
    assert back.user_ids.raw.tolist() == [101, 202] and back.item_ids.raw.tolist() == [7, 8, 9]
    assert back.history == {"epoch": [1.0, 2.0], "test_rmse": [1.0, 0.9]}
    assert back.predict(202, 9).rating == pytest.approx(t.predict(202, 9).rating)
    assert back.snapshots[0]["user_factors"].tolist() == [[1, 1], [1, 1]]
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_checkpoint_with_string_ids(tmp_path):
    t = _trained()
    t.user_ids = IdIndex(np.array(["ann", "bob"], dtype=object), "user")
    back = checkpoint.load(checkpoint.save(t, tmp_path / "s.pt"))
    assert back.predict("bob", 8).rating == pytest.approx(2.0)


def test_loading_refuses_foreign_or_pickled_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "mfstudio-checkpoint", "version": 1, "x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(evil)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an MF Studio checkpoint"):
        checkpoint.load(other)
    (tmp_path / "garbage.pt").write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "garbage.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")
