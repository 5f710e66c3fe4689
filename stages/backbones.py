"""DVC stage `backbones`: pretrain the offline presets' tokenizer, vision tower and LLMs."""

from __future__ import annotations

from pathlib import Path

from impkit.config import BackbonesConfig, ConfigError, PresetConfig, TrainSettings, from_dict, load_params, section
from impkit.stage import run_stage
from impkit.timings import note
from impkit.train.backbones.build import build_backbones
from impkit.train.launch import cpu_processes_to_start

OUT = Path("models/backbones")


def main() -> None:
    params = load_params()
    cfg = from_dict(BackbonesConfig, section(params, "backbones"), "backbones")
    presets = section(params, "model")["presets"]
    train = from_dict(TrainSettings, section(params, "train"), "train")
    names = train.presets
    unknown = sorted(set(names) - set(presets))
    if unknown:
        raise ConfigError(f"train.presets names unknown presets {unknown}; known presets: {sorted(presets)}")
    build = {n: from_dict(PresetConfig, presets[n], f"model.presets.{n}") for n in names}
    processes = cpu_processes_to_start(train.cpu_processes)  # the parts train side by side without a GPU
    report = build_backbones(cfg, build, Path("data/world"), Path("data/assembled"), OUT, processes=processes)
    chosen = report.get("precision", {})
    note(precision=" / ".join(sorted(set(chosen.values()))) or None)


if __name__ == "__main__":
    run_stage(main)
