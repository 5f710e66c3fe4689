"""params.yaml values out of range fail when read, naming the key, instead of building nothing (a
negative size) or training something meaningless (a negative LoRA rank, dropout 7)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from impkit.config import (
    BackbonesConfig,
    Bound,
    ConfigError,
    DataConfig,
    TrainSettings,
    WorldConfig,
    from_dict,
)

PARAMS = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def _with(section: str, path: tuple[str, ...], value):
    data = copy.deepcopy(PARAMS[section])
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def _recipe(data, name="nano"):
    return from_dict(TrainSettings, data, "train").recipe(name)


CASES = [
    (WorldConfig, "world", ("sizes", "captions"), -5, "world.sizes.captions: must be >= 0, got -5"),
    (
        DataConfig,
        "data",
        ("quality", "max_quarantine_share"),
        1.5,
        "data.quality.max_quarantine_share: must be in [0, 1], got 1.5",
    ),
    (BackbonesConfig, "backbones", ("vision", "lr"), 0, "backbones.vision.lr: must be > 0, got 0"),
    (BackbonesConfig, "backbones", ("llm", "batch_size"), 0, "backbones.llm.batch_size: must be >= 1, got 0"),
    (_recipe, "train", ("recipes", "nano", "lora", "r"), -4, "train.recipes.nano.lora.r: must be >= 1, got -4"),
    (
        _recipe,
        "train",
        ("recipes", "nano", "lora", "dropout"),
        7,
        "train.recipes.nano.lora.dropout: must be in [0, 1), got 7",
    ),
    (
        _recipe,
        "train",
        ("recipes", "nano", "stage2", "learning_rate"),
        -1e-4,
        "train.recipes.nano.stage2.learning_rate: must be > 0",
    ),
    (
        _recipe,
        "train",
        ("recipes", "nano", "stage1", "warmup_ratio"),
        2,
        "train.recipes.nano.stage1.warmup_ratio: must be in [0, 1]",
    ),
]


@pytest.mark.parametrize(("build", "section", "path", "value", "message"), CASES)
def test_a_value_out_of_range_names_its_key(build, section, path, value, message):
    data = _with(section, path, value)
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        build(data) if build is _recipe else from_dict(build, data, section)


def test_the_shipped_params_are_in_range_and_edges_pass():
    from_dict(WorldConfig, _with("world", ("sizes", "captions"), 0), "world")  # 0: a family left out
    _recipe(_with("train", ("recipes", "nano", "lora", "dropout"), 0.0))
    for name in PARAMS["train"]["recipes"]:
        _recipe(PARAMS["train"], name)


@pytest.mark.parametrize(
    ("bound", "inside", "outside", "text"),
    [
        (Bound(0), [0, 3], [-1], ">= 0"),
        (Bound(0, low_open=True), [1e-9], [0], "> 0"),
        (Bound(0, 1), [0, 1], [1.01], "in [0, 1]"),
        (Bound(0, 1, high_open=True), [0, 0.99], [1], "in [0, 1)"),
    ],
)
def test_bounds(bound, inside, outside, text):
    assert str(bound) == text
    for value in inside:
        bound.check(value, "k")
    for value in outside:
        with pytest.raises(ConfigError, match="k: must be"):
            bound.check(value, "k")


def test_the_held_out_check_takes_a_count_or_every_question():
    assert from_dict(TrainSettings, _with("train", ("heldout_questions",), None), "train").heldout_questions is None
    assert from_dict(TrainSettings, _with("train", ("heldout_questions",), 900), "train").heldout_questions == 900
    with pytest.raises(ConfigError, match="train.heldout_questions"):
        from_dict(TrainSettings, _with("train", ("heldout_questions",), 0), "train")
