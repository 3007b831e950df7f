"""Every configuration error names the field, the value and what is allowed."""

import math

import pytest

from mfcore.config import ModelConfig, RuntimeOptions, TrainConfig, config_from_dict, config_to_dict
from mfcore.errors import ConfigError


@pytest.mark.parametrize(
    "kwargs, field, message",
    [
        ({"lr": math.nan}, "lr", "must be a finite number, got nan"),
        ({"lr": -0.1}, "lr", "must be above 0.0"),
        ({"lr": 0.0}, "lr", "must be above 0.0"),
        ({"epochs": 0}, "epochs", "between 1 and"),
        ({"epochs": 2.5}, "epochs", "whole number"),
        ({"optimizer": "rmsprop"}, "optimizer", "unknown value 'rmsprop'; choose one of sgd, adam"),
        ({"batch_size": -1}, "batch_size", "between 0 and"),
        ({"l2": math.inf}, "l2", "finite"),
        ({"momentum": 1.5}, "momentum", "at most 0.999"),
        ({"lr_decay": 0.0}, "lr_decay", "above 0.0"),
        ({"optimizer": "sparse_adam", "weight_decay": 0.1}, "weight_decay", "SparseAdam has no weight decay"),
        ({"optimizer": "als", "l2": 0.0}, "l2", "ALS needs a positive l2"),
        ({"seed": -1}, "seed", "between 0 and"),
        ({"average_from": 0}, "average_from", "between 1 and"),
    ],
)
def test_train_config_errors(kwargs, field, message):
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    "kwargs, field, message",
    [
        ({"n_factors": 0}, "n_factors", "between 1 and 1024, got 0"),
        ({"n_factors": True}, "n_factors", "whole number"),
        ({"init": "xavier"}, "init", "choose one of normal, uniform"),
        ({"init": "uniform", "init_low": 0.5, "init_high": 0.1}, "init_high", "must be above init_low"),
        ({"output": "tanh"}, "output", "choose one of linear, sigmoid"),
        ({"output_range": (5.0, 1.0)}, "output_range", "low must be below high"),
        ({"global_bias": "median"}, "global_bias", "choose one of mean, learned, none"),
        ({"init_std": math.nan}, "init_std", "finite"),
    ],
)
def test_model_config_errors(kwargs, field, message):
    with pytest.raises(ConfigError, match=message) as info:
        ModelConfig(**kwargs)
    assert info.value.field == field


def test_runtime_errors():
    with pytest.raises(ConfigError, match="progress_interval_s: must be above 0.0"):
        RuntimeOptions(progress_interval_s=0)
    with pytest.raises(ConfigError, match="cpu_threads"):
        RuntimeOptions(cpu_threads=-2)


def test_configs_round_trip_through_plain_dicts():
    mc = ModelConfig(n_factors=7, output="sigmoid", output_range=(0.0, 5.5))
    tc = TrainConfig(optimizer="adam", lr=0.003, average_from=5)
    assert config_from_dict(ModelConfig, config_to_dict(mc)) == mc
    assert config_from_dict(TrainConfig, {**config_to_dict(tc), "from_a_newer_version": 1}) == tc
