"""DVC stage `backbones`: pretrain the offline presets' tokenizer, vision tower and LLMs."""

from __future__ import annotations

from pathlib import Path

from impkit.stage import openmp_wait_policy, run_stage

openmp_wait_policy("PASSIVE")  # before torch loads OpenMP: sleeping threads train 3x faster here

from impkit.config import BackbonesConfig, ConfigError, PresetConfig, TrainSettings, load_params, load_section, section
from impkit.timings import note
from impkit.train.launch import cpu_processes_to_start
from impkit.train.pipeline import build_backbones

OUT = Path("models/backbones")


def main() -> None:
    params = load_params()
    cfg = load_section(BackbonesConfig, "backbones", params)
    presets = section(params, "model")["presets"]
    train = load_section(TrainSettings, "train", params)
    names = train.presets
    unknown = sorted(set(names) - set(presets))
    if unknown:
        raise ConfigError(f"train.presets names unknown presets {unknown}; known presets: {sorted(presets)}")
    build = {n: load_section(PresetConfig, f"model.presets.{n}", params) for n in names}
    processes = cpu_processes_to_start(train.cpu_processes)  # the parts train side by side without a GPU
    report = build_backbones(cfg, build, Path("data/world"), Path("data/assembled"), OUT, processes=processes)
    chosen = report.get("precision", {})
    note(precision=" / ".join(sorted(set(chosen.values()))) or None)


if __name__ == "__main__":
    run_stage(main)
