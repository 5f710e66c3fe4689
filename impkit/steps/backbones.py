"""Step `backbones`: the offline backbones every nano preset starts from (a SigLIP-like vision tower
and one small LM per family, with their tokenizers), pretrained on the synthetic world; written to
models/backbones."""

from __future__ import annotations

import argparse

from impkit import paths
from impkit.steps import add_params_argument

NAME = "backbones"
HELP = "pretrain the offline vision tower and LMs (models/backbones)"
OMP_WAIT_POLICY = "PASSIVE"  # sleeping OpenMP threads: small torch kernels, shared cores (impkit.stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    from impkit.config import (
        BackbonesConfig,
        ConfigError,
        PresetConfig,
        TrainSettings,
        load_params,
        load_section,
        section,
    )
    from impkit.timings import note
    from impkit.train.backbones.build import build_backbones
    from impkit.train.launch import cpu_processes_to_start

    params = load_params(args.params)
    cfg = load_section(BackbonesConfig, "backbones", params)
    presets = section(params, "model")["presets"]
    train = load_section(TrainSettings, "train", params)
    unknown = sorted(set(train.presets) - set(presets))
    if unknown:
        raise ConfigError(f"train.presets names unknown presets {unknown}; known presets: {sorted(presets)}")
    build = {n: load_section(PresetConfig, f"model.presets.{n}", params) for n in train.presets}
    processes = cpu_processes_to_start(train.cpu_processes)  # the parts train side by side without a GPU
    report = build_backbones(
        cfg,
        build,
        paths.WORLD,
        paths.ASSEMBLED,
        paths.BACKBONES,
        processes=processes,
        timings_out=paths.BACKBONES_TIMINGS,
    )
    chosen = report.get("precision", {})
    note(precision=" / ".join(sorted(set(chosen.values()))) or None)
