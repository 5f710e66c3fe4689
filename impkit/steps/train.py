"""Step `train`: stage 1 (`align`: the projector on captions, to models/aligned/<preset>) or stage 2
(`tune`: LoRA and the projector on instructions, merged into the release releases/<preset>), then,
after stage 2, the held-out check of the release and of the stage-1 model through evaluation's own
runner (reports/train/<preset>.json). Curves go to reports/train/<stage>-<preset> (dvclive).

The step starts one data-parallel process of itself per GPU, or without a GPU
``train.cpu_processes`` of them (``python -m impkit.steps.train``; ``train.launcher``,
impkit.train.launch); each runs this module's ``main``, under the recipe's DeepSpeed config on GPUs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from impkit import paths
from impkit.steps import add_params_argument, add_preset_argument

NAME = "train"
HELP = "train stage 1 (align) or stage 2 (tune) of a preset (models/aligned/<preset>, releases/<preset>)"
OMP_WAIT_POLICY = "PASSIVE"  # sleeping OpenMP threads: small torch kernels, shared cores (impkit.stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=["align", "tune"], help="align: stage 1; tune: stage 2 and the release")
    add_preset_argument(parser)
    add_params_argument(parser)


def _setup(name: str, params_file: str):
    from impkit.config import ConfigError, PresetConfig, TrainSettings, load_params, load_section, section

    params = load_params(params_file)
    presets = section(params, "model")["presets"]
    train = load_section(TrainSettings, "train", params)
    if name not in presets:
        raise ConfigError(f"unknown preset '{name}'; known presets: {sorted(presets)}")
    preset = load_section(PresetConfig, f"model.presets.{name}", params)
    return preset, train.recipe(preset.train), train


def _check_inputs(stage: str, name: str, offline: bool, family: str) -> None:
    """What the stage reads, checked before any process starts: a missing input is one line naming it."""
    from impkit.train.layout import check_backbones

    records = paths.ASSEMBLED / ("pretrain.jsonl" if stage == "align" else "finetune.jsonl")
    if not records.is_file():
        raise FileNotFoundError(f"{records} not found: run the assemble stage first (dvc repro assemble)")
    if stage == "align" and offline:
        check_backbones(paths.BACKBONES, family)
    aligned = paths.aligned(name)
    if stage == "tune" and not aligned.is_dir():
        raise FileNotFoundError(f"{aligned} not found: stage 2 starts from stage 1's model (dvc repro align@{name})")


def _live(folder):
    """dvclive logging of the Trainer's curves (shown by `dvc plots show`)."""
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    return DVCLiveCallback(live=Live(str(folder), save_dvc_exp=False, dvcyaml=None, report=None))


def main(args: argparse.Namespace) -> None:
    from impkit.hardware import read_machine, resolve_precision
    from impkit.timings import note
    from impkit.train.launch import is_main_process, launch_data_parallel, processes_to_start

    preset, recipe, train = _setup(args.preset, args.params)
    _check_inputs(args.stage, args.preset, preset.offline, preset.family)
    requested = (recipe.stage1 if args.stage == "align" else recipe.stage2).precision
    # for the timings table; the training processes decide it again, and log it (impkit.train.trainer)
    note(precision=resolve_precision(requested, read_machine(), where=f"{args.stage} {args.preset}", quiet=True))
    processes = processes_to_start(train.launcher, train.cpu_processes)
    if processes > 1:  # this step again, as that many data-parallel processes (impkit.train.launch)
        code = launch_data_parallel(processes, __spec__.name, [args.stage, args.preset, "--params", args.params])
        if code:
            sys.exit(code)
        return
    if not is_main_process():  # the other training processes work as the first, which says what happens
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("impkit.hardware").setLevel(logging.ERROR)  # its precision warning: once is enough
    # The curves are the first process's to write (dvclive clears its folder when it starts).
    live = [_live(paths.train_curves(args.stage, args.preset))] if is_main_process() else []
    if args.stage == "align":
        _align(args.preset, preset, recipe, train, live)
    else:
        _tune(args.preset, preset, recipe, train, live)


def _deepspeed(recipe, stage: str) -> str | None:
    from impkit.train.launch import deepspeed_config

    return deepspeed_config(getattr(recipe.deepspeed, stage) if recipe.deepspeed else None)


def _align(name, preset, recipe, train, live) -> None:
    from impkit.train.launch import leave_process_group
    from impkit.train.pipeline import align

    align(
        name,
        preset,
        recipe,
        backbones=paths.BACKBONES if preset.offline else None,
        assembled=paths.ASSEMBLED,
        checkpoints=paths.checkpoints("align", name),
        out=paths.aligned(name),
        seed=train.seed,
        callbacks=live,
        sample_cache_mb=train.sample_cache_mb,
        deepspeed=_deepspeed(recipe, "stage1"),
    )
    leave_process_group()


def _tune(name, preset, recipe, train, live) -> None:
    from impkit.eval.heldout import check_release
    from impkit.io import write_json
    from impkit.train.launch import is_main_process, leave_process_group, use_every_core
    from impkit.train.pipeline import tune

    meta = tune(
        name,
        preset,
        recipe,
        aligned=paths.aligned(name),
        assembled=paths.ASSEMBLED,
        checkpoints=paths.checkpoints("tune", name),
        out=paths.release(name),
        adapter_out=paths.adapters(name),
        seed=train.seed,
        callbacks=live,
        sample_cache_mb=train.sample_cache_mb,
        deepspeed=_deepspeed(recipe, "stage2"),
    )
    leave_process_group()
    if not is_main_process():
        return
    use_every_core()  # the other training processes are done: the held-out check gets their cores
    checked = {"release": paths.release(name), "stage1_only": paths.aligned(name)}
    check = {
        what: check_release(folder, paths.WORLD, limit=train.heldout_questions, batch_size=train.eval_batch_size)
        for what, folder in checked.items()
    }
    write_json(paths.train_report(name), {"train": meta["train"], "parameters": meta["parameters"], "heldout": check})


if __name__ == "__main__":  # a data-parallel training process started by main (impkit.train.launch)
    from impkit.stage import run_step

    run_step(sys.modules[__name__])
