"""DVC stages `align@<preset>` and `tune@<preset>`: stage-1 alignment and stage-2 tuning.

python -m stages.train align nano-3b
python -m stages.train tune nano-3b
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from impkit.stage import openmp_wait_policy, run_stage

openmp_wait_policy("PASSIVE")  # before torch loads OpenMP: sleeping threads train 3x faster here

from impkit.config import ConfigError, PresetConfig, TrainRecipe, TrainSettings, load_params, load_section, section
from impkit.hardware import read_machine, resolve_precision
from impkit.io import write_json
from impkit.timings import note
from impkit.train.launch import cpu_processes_to_start, is_main_process, launch_data_parallel, use_every_core
from impkit.train.layout import check_backbones

ASSEMBLED, WORLD, BACKBONES = Path("data/assembled"), Path("data/world"), Path("models/backbones")


def _setup(name: str) -> tuple[PresetConfig, TrainRecipe, TrainSettings]:
    params = load_params()
    presets = section(params, "model")["presets"]
    train = load_section(TrainSettings, "train", params)
    if name not in presets:
        raise ConfigError(f"unknown preset '{name}'; known presets: {sorted(presets)}")
    preset = load_section(PresetConfig, f"model.presets.{name}", params)
    return preset, train.recipe(preset.train), train


def _check_inputs(stage: str, name: str, preset: PresetConfig) -> None:
    """What the stage reads, checked before any process starts: a missing input is one line naming it."""
    records = ASSEMBLED / ("pretrain.jsonl" if stage == "align" else "finetune.jsonl")
    if not records.is_file():
        raise FileNotFoundError(f"{records} not found: run the assemble stage first (dvc repro assemble)")
    if stage == "align" and preset.offline:
        check_backbones(BACKBONES, preset.family)
    aligned = Path(f"models/aligned/{name}")
    if stage == "tune" and not aligned.is_dir():
        raise FileNotFoundError(f"{aligned} not found: stage 2 starts from stage 1's model (dvc repro align@{name})")


def _live(folder: Path):
    """dvclive logging of the Trainer's curves (shown by `dvc plots show`)."""
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    return DVCLiveCallback(live=Live(str(folder), save_dvc_exp=False, dvcyaml=None, report=None))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["align", "tune"])
    parser.add_argument("preset")
    args = parser.parse_args()
    preset, recipe, train = _setup(args.preset)
    _check_inputs(args.stage, args.preset, preset)
    requested = (recipe.stage1 if args.stage == "align" else recipe.stage2).precision
    # for the timings table; the training processes decide it again, and log it (impkit.train.trainer)
    note(precision=resolve_precision(requested, read_machine(), where=f"{args.stage} {args.preset}", quiet=True))
    processes = cpu_processes_to_start(train.cpu_processes)
    if processes > 1:  # this command again, as that many data-parallel processes (impkit.train.launch)
        code = launch_data_parallel(processes, "stages.train", [args.stage, args.preset])
        if code:
            sys.exit(code)
        return
    # imported here, after the launch: the launching process does not need transformers (seconds)
    from impkit.eval.heldout import check_release
    from impkit.train.pipeline import align, tune

    if not is_main_process():  # the other training processes work as the first, which says what happens
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("impkit.hardware").setLevel(logging.ERROR)  # its precision warning: once is enough
    seed = train.seed
    reports = Path("reports/train")
    # The curves are the first process's to write (dvclive clears its folder when it starts).
    live = [_live(reports / f"{args.stage}-{args.preset}")] if is_main_process() else []
    if args.stage == "align":
        align(
            args.preset,
            preset,
            recipe,
            backbones=BACKBONES if preset.offline else None,
            assembled=ASSEMBLED,
            checkpoints=Path(f"models/checkpoints/align-{args.preset}"),
            out=Path(f"models/aligned/{args.preset}"),
            seed=seed,
            callbacks=live,
            sample_cache_mb=train.sample_cache_mb,
        )
        return
    meta = tune(
        args.preset,
        preset,
        recipe,
        aligned=Path(f"models/aligned/{args.preset}"),
        assembled=ASSEMBLED,
        checkpoints=Path(f"models/checkpoints/tune-{args.preset}"),
        out=Path(f"releases/{args.preset}"),
        adapter_out=Path(f"models/adapters/{args.preset}"),
        seed=seed,
        callbacks=live,
        sample_cache_mb=train.sample_cache_mb,
    )
    if not is_main_process():
        return
    use_every_core()  # the other training processes are done: the held-out check gets their cores
    checked = {"release": Path(f"releases/{args.preset}"), "stage1_only": Path(f"models/aligned/{args.preset}")}
    check = {
        name: check_release(folder, WORLD, limit=train.heldout_questions, batch_size=train.eval_batch_size)
        for name, folder in checked.items()
    }
    write_json(
        reports / f"{args.preset}.json", {"train": meta["train"], "parameters": meta["parameters"], "heldout": check}
    )


if __name__ == "__main__":
    run_stage(main)
