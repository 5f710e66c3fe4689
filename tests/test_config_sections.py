"""Every params.yaml section loads through ``load_section`` into its class from ``impkit.config``, and
the classes hold no second copy of params.yaml's values: a key the shipped file carries has no
default in code, so leaving it out is an error that names it."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from sections import PARAMS, PARAMS_FILE, raw

import impkit.config as config
from impkit.config import ConfigError, load_section

SECTIONS = {
    "world": config.WorldConfig,
    "data": config.DataConfig,
    "backbones": config.BackbonesConfig,
    "train": config.TrainSettings,
    "eval": config.EvalConfig,
    "export": config.ExportConfig,
    "parity": config.ParityConfig,
    "eval_gguf": config.GGUFEvalConfig,
    "latency": config.LatencyConfig,
    "release": config.ReleaseConfig,
    "flows": config.FlowsConfig,
    "imports": config.ImportsConfig,
    "chat": config.ChatConfig,
    **{f"train.recipes.{name}": config.TrainRecipe for name in PARAMS["train"]["recipes"]},
    **{f"model.presets.{name}": config.PresetConfig for name in PARAMS["model"]["presets"]},
}
# Entries a user writes into a list or mapping; the keys they may leave out keep a default.
ENTRIES = {
    config.SourceConfig,
    config.MatchSpec,
    config.ExcludeRule,
    config.MixtureEntry,
    config.Mixture,
    config.BackboneSpec,
    config.JudgeConfig,
    config.DeviceProfile,
    config.PaperProfile,
    config.ImportedCheckpoint,
}


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_every_section_loads_from_the_shipped_params(name):
    from_file = load_section(SECTIONS[name], name, path=PARAMS_FILE)
    assert from_file == load_section(SECTIONS[name], name, PARAMS)


def _classes(cls: type, seen: set[type]) -> set[type]:
    """``cls`` and every dataclass its fields hold, however nested (in lists, mappings, unions)."""
    if cls in seen:
        return seen
    seen.add(cls)
    stack = list(typing.get_type_hints(cls, include_extras=True).values())
    while stack:
        hint = stack.pop()
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            _classes(hint, seen)
        stack.extend(typing.get_args(hint))
    return seen


def test_only_user_written_entries_keep_defaults():
    classes = set().union(*(_classes(cls, set()) for cls in SECTIONS.values()))
    classes |= {config.StageTraining, config.LoraTraining}  # a recipe's parts (train.recipes is a raw mapping)
    with_defaults = {
        cls
        for cls in classes
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    assert with_defaults <= ENTRIES, sorted(c.__name__ for c in with_defaults - ENTRIES)
    assert config.PaperProfile in classes and config.TwinSizes in classes  # the walk reaches nested classes


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("evaluation", r"params.yaml has no section 'evaluation' \(sections: \["),
        ("train.recipes.huge", r"params.yaml: train.recipes has no 'huge' \(known: \['nano', 'nano-long', 'real'\]\)"),
    ],
)
def test_a_missing_section_is_named(name, message):
    with pytest.raises(ConfigError, match=message):
        load_section(config.TrainRecipe, name, PARAMS)


def test_a_key_left_out_is_named_not_filled_in():
    section = raw("train")
    del section["sample_cache_mb"]
    with pytest.raises(ConfigError, match=r"^train: missing key 'sample_cache_mb'$"):
        load_section(config.TrainSettings, "train", {"train": section})
    stage = raw("train.recipes.real")
    del stage["stage1"]["share_prefix"]
    with pytest.raises(ConfigError, match=r"train.recipes.real.stage1: missing key 'share_prefix'"):
        load_section(config.TrainRecipe, "train.recipes.real", {"train": {"recipes": {"real": stage}}})
