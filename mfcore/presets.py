"""Presets: each classic tutorial's published configuration, and our tuned default.

A preset is a model config, a train config, and the data/split its source used, so a
student can reproduce a tutorial's number with one click and then see what changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mfcore.config import ModelConfig, TrainConfig
from mfcore.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    model: ModelConfig
    train: TrainConfig
    dataset: str
    """The data its source used (a spec for ``load_dataset``; the CLI's default data for this preset)."""
    split: str
    """The split its source used."""
    reference: str
    """What the source reports or what was measured here for a faithful re-implementation."""
    published_rmse: float | None = None
    """The test RMSE the source itself published, None when it published none."""
    published_source: str = ""
    """Where that figure is (or why there is none), in words."""
    measured_rmse: float | None = None
    """What this preset measured here on its data and split (MF Studio, seed 0)."""
    lesson: str = ""
    """One line: what this lesson shows."""
    keeps_data: bool = False
    """In the app, applying it keeps the data and split chosen now (the tuned default) instead of
    switching to ``dataset``/``split``."""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="default",
            title="MF Studio default (tuned)",
            description=(
                "Biased MF, 64 factors, per-rating SGD that also learns from which movies each user rated "
                "(SVD++-style, folded into the user vectors, so the model stays plain biased MF); L2 that grows "
                "with the square root of a user's or movie's rating count; weights averaged over the last 19 of 40 epochs."
            ),
            model=ModelConfig(n_factors=64, use_bias=True, global_bias="mean", init="normal", init_std=0.02),
            train=TrainConfig(
                optimizer="sgd", lr=0.016, epochs=40, batch_size=1, l2=0.12, l2_bias=0.02, l2_count_power=0.5,
                implicit_feedback=True, l2_implicit=1.5, average_from=22, seed=0,
            ),
            dataset="ml-100k",
            split="random:0.1",
            keeps_data=True,
            reference="benchmarks/quality.py gives the measured RMSEs",
            published_rmse=0.8803,
            published_source="this project's README (benchmarks/quality.py): ml-100k random 90/10, seed 0",
            measured_rmse=0.8803,
            lesson="What a tuned model reaches: biases, regularisation and averaging together beat every tutorial.",
        ),
        Preset(
            name="d2l",
            title="D2L (Dive into Deep Learning, 21.3)",
            description="Biased MF without a global mean, 30 factors, normal(0, 0.01), Adam lr 0.002, weight decay 1e-5.",
            model=ModelConfig(n_factors=30, use_bias=True, global_bias="none", init="normal", init_std=0.01),
            train=TrainConfig(
                optimizer="adam", lr=0.002, epochs=20, batch_size=512, l2=0.0, l2_bias=0.0, weight_decay=1e-5, seed=0
            ),
            dataset="ml-100k",
            split="random:0.1",
            reference="re-implemented faithfully here, the same setup does better",
            published_rmse=1.066,
            published_source="Dive into Deep Learning, section 21.3 (its training output, ml-100k, random 90/10)",
            measured_rmse=0.907,
            lesson="Biases matter: user and movie biases carry most of what MF predicts.",
        ),
        Preset(
            name="pytorch-basics",
            title="PyTorch basics (plain MF)",
            description=(
                "Plain dot-product MF without biases, 8 factors, uniform(0, 0.05), Adam lr 0.001, 128 epochs, "
                "batch 128. It overfits, and items unseen in training keep their initial vectors: a lesson."
            ),
            model=ModelConfig(n_factors=8, use_bias=False, global_bias="none", init="uniform", init_low=0.0, init_high=0.05),
            train=TrainConfig(optimizer="adam", lr=0.001, epochs=128, batch_size=128, l2=0.0, l2_bias=0.0, seed=0),
            dataset="ml-latest-small",
            split="random:0.2",
            reference="worse than predicting the global mean for everyone",
            published_rmse=None,
            published_source="the tutorial prints training loss only and publishes no test RMSE",
            measured_rmse=1.19,
            lesson="Overfitting without regularisation: train error falls while test error rises above the global mean.",
        ),
        Preset(
            name="mf-advanced",
            title="MF advanced (biases + sigmoid range)",
            description="Biased MF with a learned global offset, 32 factors, uniform(0, 0.05), sigmoid range (0, 5.5), Adam lr 0.005, batch 8192.",
            model=ModelConfig(
                n_factors=32, use_bias=True, global_bias="learned", init="uniform", init_low=0.0, init_high=0.05,
                output="sigmoid", output_range=(0.0, 5.5),
            ),
            train=TrainConfig(optimizer="adam", lr=0.005, epochs=10, batch_size=8192, l2=0.0, l2_bias=0.0, seed=0),
            dataset="ml-latest-small",
            split="random:0.2",
            reference="on a 20% random split",
            published_rmse=None,
            published_source="the tutorial publishes no test RMSE for this data and split",
            measured_rmse=0.878,
            lesson="The sigmoid range keeps predictions inside the rating scale, so a few epochs already beat the biases.",
        ),
        Preset(
            name="lowrank",
            title="Low-rank numpy tutorial (full-batch gradient descent)",
            description=(
                "Plain MF trained by full-batch gradient descent on the squared error with L2 regularisation, "
                "the tutorial that also teaches the gradient check."
            ),
            model=ModelConfig(n_factors=10, use_bias=False, global_bias="none", init="normal", init_std=0.1),
            train=TrainConfig(optimizer="sgd", lr=50.0, epochs=300, batch_size=0, l2=0.05, l2_bias=0.0, momentum=0.9, seed=0),
            dataset="ml-100k",
            split="random:0.1",
            reference="a slow, smooth descent: compare its curve with the stochastic optimizers",
            published_rmse=None,
            published_source="the tutorial reports a gradient check and a training curve, no test RMSE",
            measured_rmse=None,
            lesson="The dense-matrix memory wall: full-batch descent on the whole user x movie matrix fits ml-100k, not ml-25m.",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """A preset by name (case-insensitive); unknown -> ConfigError listing the names."""
    key = name.strip().lower().replace("_", "-")
    if key not in PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[key]
