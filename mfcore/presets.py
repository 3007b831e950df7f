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
    split: str
    reference: str
    """What the source reports or what was measured here for a faithful re-implementation."""


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
            reference="benchmarks/quality.py gives the measured RMSEs",
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
            reference="the book reports test RMSE 1.066; a faithful re-implementation gives about 0.907",
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
            reference="measured: test RMSE about 1.19, worse than the global mean",
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
            reference="measured: about 0.878 on a 20% random split",
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
        ),
    )
}


def get_preset(name: str) -> Preset:
    """A preset by name (case-insensitive); unknown -> ConfigError listing the names."""
    key = name.strip().lower().replace("_", "-")
    if key not in PRESETS:
        raise ConfigError("preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[key]
