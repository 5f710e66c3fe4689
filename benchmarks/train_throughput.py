"""Benchmark: the stage-2 step of nano-3b on the CPU through the project's trainer vs a bare PyTorch
loop over the same model, batches and optimizer; and padding waste with/without length grouping.

    .venv/bin/python benchmarks/train_throughput.py [--records 640] [--preset nano-3b] [--rounds 1] [--levers]

Needs the assembled data (`make repro` builds it). Both runs start from the same weights and see
the same batches in the same order (the modality-length grouped sampler), so the ratio of their
samples/s is the trainer's overhead. Both compute each batch's shared prompt prefix once when the
recipe says so (`share_prefix`); a third run, the trainer without it, shows what that saves. These
runs have the step speed-ups off, whatever the recipe says, so that trainer and bare loop do the
same work.
`--rounds N` runs the three in turn N times and keeps each one's fastest. Padding waste = padded
tokens / all tokens after padding each batch to its longest sample, for the grouped order vs a
random order of the same records.

`--levers` also times the step's forward and backward with the speed-ups of
`impkit.train.step_speedups` that keep the computation (LoRA dropout drawn from packed random words;
frozen Linear weights cast to bf16 once; transformers' eager attention instead of PyTorch's SDPA
kernel), alone and together, against the step without them, and without LoRA dropout (its whole
cost). The variants take turns on every global batch, so that on a noisy machine each comparison is
made seconds apart; a fourth trainer run, with all three on (as `nano-long` runs), gives their effect
on the whole trainer step.
"""

from __future__ import annotations

from impkit.stage import openmp_wait_policy

openmp_wait_policy("PASSIVE")  # first: before torch loads OpenMP, as the stages it measures set it

import argparse
import contextlib
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from impkit.config import PresetConfig, StageTraining, TrainRecipe, load_params, load_section
from impkit.hardware import read_machine
from impkit.model.image_processing import ImageProcessor
from impkit.model.presets import build_model, llava_config, num_image_tokens
from impkit.model.shared_prefix import with_shared_prefix
from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer, train_bpe
from impkit.train.dataset import DataCollator, SupervisedDataset
from impkit.train.parts import prepare_stage2
from impkit.train.sampler import ModalityLengthGroupedSampler, chunked, padding_waste
from impkit.train.step_speedups import replace_lora_dropout, step_speedups
from impkit.train.trainer import fit_stage, resolve_stage

ASSEMBLED = Path("data/assembled")


def build(preset: PresetConfig, tokenizer, recipe: TrainRecipe):
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = llava_config(
        preset,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vocab_size=(len(tokenizer) + 255) // 256 * 256,
        special_ids=ids,
    )
    return prepare_stage2(build_model(config, seed=0), preset.family, recipe.lora)


def preset_and_recipe(name: str) -> tuple[PresetConfig, TrainRecipe]:
    """The preset and its recipe with each stage's precision decided for this machine, as training does."""
    if not (ASSEMBLED / "finetune.jsonl").is_file():
        raise SystemExit("data/assembled/finetune.jsonl not found: run `make repro` first")
    params = load_params()
    preset = load_section(PresetConfig, f"model.presets.{name}", params)
    recipe = load_section(TrainRecipe, f"train.recipes.{preset.train}", params)
    machine = read_machine()
    return preset, dataclasses.replace(
        recipe,
        stage1=resolve_stage(recipe.stage1, machine, where=f"{name} stage 1"),
        stage2=resolve_stage(recipe.stage2, machine, where=f"{name} stage 2"),
    )


def stage2_records(preset: PresetConfig, recipe: TrainRecipe, records: int, folder: Path, cache_mb: float = 0):
    """The preset's tokenizer and a stage-2 dataset of ``records`` records of the assembled mixture,
    always the same ones (seed 0), written to ``folder`` (``cache_mb``: the dataset's sample cache)."""
    lines = (ASSEMBLED / "finetune.jsonl").read_text().splitlines()
    texts = [t["value"] for line in lines for t in json.loads(line)["conversations"]]
    tokenizer = family_tokenizer(train_bpe(texts, load_params()["backbones"]["vocab_size"]), preset.family)
    subset = folder / "finetune.jsonl"
    rng = np.random.default_rng(0)
    subset.write_text("\n".join(lines[i] for i in sorted(rng.choice(len(lines), records, replace=False))) + "\n")
    n_img = num_image_tokens(preset)
    data = SupervisedDataset(
        subset,
        ASSEMBLED / "images",
        tokenizer,
        preset.template,
        image_processor=ImageProcessor(preset.vision.arch["image_size"], preset.image_aspect),
        num_image_tokens=n_img,
        max_length=recipe.stage2.max_length,
        image_length_words=n_img,
        cache_mb=cache_mb,
    )
    return tokenizer, data


SPEEDUPS_OFF = {"attention": None, "bf16_frozen_weights": False, "packed_dropout": False}
LEVERS = {  # label: the stage-2 settings of impkit.train.step_speedups that the variant switches on
    "without speed-ups": {},
    "LoRA dropout, packed draws": {"packed_dropout": True},
    "frozen Linears in bf16 once": {"bf16_frozen_weights": True},
    "eager attention": {"attention": "eager"},
    "bf16 once + eager attention": {"bf16_frozen_weights": True, "attention": "eager"},
    "all three": {"packed_dropout": True, "bf16_frozen_weights": True, "attention": "eager"},
    "no LoRA dropout (its whole cost)": None,  # not a speed-up: the paper's LoRA dropout is 0.05
}


@contextlib.contextmanager
def without_lora_dropout(model: torch.nn.Module):
    """LoRA dropout replaced by the identity: what dropout costs in all."""
    undo = replace_lora_dropout(model, lambda p: torch.nn.Identity())
    try:
        yield
    finally:
        undo()


def forward_backward(model: torch.nn.Module, inputs: dict, stage: StageTraining, accumulation: int) -> None:
    """One micro-batch as the trainer runs it: the autocast of the recipe's precision, the batch's
    shared prefix computed once when the recipe says so, the loss scaled for accumulation."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=stage.precision == "bf16"):
        if stage.share_prefix:
            inputs = with_shared_prefix(model, inputs, model.config.image_token_id)
        loss = model(**inputs).loss / accumulation
    loss.backward()


def lever_step_seconds(model: torch.nn.Module, steps: list[list[dict]], stage: StageTraining) -> dict[str, list[float]]:
    """Forward and backward of every global batch in ``steps`` under each of LEVERS in turn (no
    optimizer step: the weights stay put), so that a burst of noise hits neighbouring variants alike."""
    model.train()
    seconds: dict[str, list[float]] = {label: [] for label in LEVERS}
    for micro_batches in steps:
        for label, settings in LEVERS.items():
            variant = (
                without_lora_dropout(model)
                if settings is None
                else step_speedups(model, dataclasses.replace(stage, **settings))
            )
            with variant:  # switching (e.g. making the bf16 copies) is not timed
                start = time.perf_counter()
                for inputs in micro_batches:
                    forward_backward(model, inputs, stage, len(micro_batches))
                model.zero_grad(set_to_none=True)
                seconds[label].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="nano-3b")
    parser.add_argument("--records", type=int, default=640, help="stage-2 records per run (one epoch)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="passes over every run, in turn; each run's fastest counts"
    )
    parser.add_argument(
        "--levers",
        action="store_true",
        help="also time the step's forward and backward with the step speed-ups, alone and together, in turn",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    preset, recipe = preset_and_recipe(args.preset)
    if args.levers and recipe.stage2.precision != "bf16":  # the bf16-once weights stand in for bf16 autocast's
        raise SystemExit(
            f"--levers compares variants of a bf16 step; {preset.train}'s stage 2 runs in {recipe.stage2.precision}"
        )
    torch.set_num_threads(torch.get_num_threads())

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, data = stage2_records(preset, recipe, args.records, Path(tmp))
        # the recipe's stage 2 for one epoch, without the step speed-ups (the bare loop has none)
        stage = dataclasses.replace(
            recipe.stage2, epochs=1, checkpoint_steps=10**9, logging_steps=10**9, **SPEEDUPS_OFF
        )
        batch = stage.global_batch_size
        sampler = ModalityLengthGroupedSampler.for_dataset(data, batch, seed=0)
        order = list(sampler)
        token_lengths = np.array([len(data[i]["input_ids"]) for i in range(len(data))])
        tokens = int(token_lengths.sum())
        grouped = padding_waste(token_lengths, chunked(order, batch))
        shuffled = padding_waste(token_lengths, chunked(np.random.default_rng(1).permutation(len(data)), batch))

        # 1) the project's trainer (HF Trainer + ImpTrainer), one epoch; then without the shared prefix
        def trainer_seconds(cfg: StageTraining, name: str) -> float:
            result = fit_stage(
                build(preset, tokenizer, recipe),
                data,
                DataCollator(tokenizer.pad_token_id),
                cfg,
                checkpoint_dir=Path(tempfile.mkdtemp(dir=tmp)),
                fingerprint={"bench": name},
                seed=0,
                label=name,
                sampler_factory=lambda b, s: ModalityLengthGroupedSampler.for_dataset(data, b, seed=s),
            )
            return result.seconds

        # 2) a bare loop: same initial weights, same batches, AdamW, forward/backward/step
        def bare_loop_seconds() -> float:
            model = build(preset, tokenizer, recipe)
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=stage.learning_rate, weight_decay=0.0)
            collate = DataCollator(tokenizer.pad_token_id)
            accumulation = stage.global_batch_size // stage.per_device_batch_size
            start = time.perf_counter()
            for batch_indices in chunked(order, stage.per_device_batch_size * accumulation):
                for micro in chunked(batch_indices, stage.per_device_batch_size):
                    forward_backward(model, collate([data[int(i)] for i in micro]), stage, accumulation)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            return time.perf_counter() - start

        shared = "shared prefix" if stage.share_prefix else "no shared prefix"
        runs = {
            f"impkit trainer ({shared})": lambda: trainer_seconds(stage, "trainer"),
            f"bare PyTorch loop ({shared})": bare_loop_seconds,
            "impkit trainer (no shared prefix)": lambda: trainer_seconds(
                dataclasses.replace(stage, share_prefix=False), "unshared"
            ),
        }
        if args.levers:  # the whole trainer (optimizer, sampler, logging) with every step speed-up on
            runs["impkit trainer (speed-ups on)"] = lambda: trainer_seconds(
                dataclasses.replace(stage, **LEVERS["all three"]), "speedups"
            )
        seconds: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(args.rounds):  # in turn, each run's fastest round counts: noise only adds time
            for label, run in runs.items():
                seconds[label].append(run())
        best = {label: min(times) for label, times in seconds.items()}
        if args.levers:  # the step speed-ups, taking turns on the same batches
            collate = DataCollator(tokenizer.pad_token_id)
            steps = [
                [
                    collate([data[int(i)] for i in micro])
                    for micro in chunked(batch_indices, stage.per_device_batch_size)
                ]
                for batch_indices in chunked(order, stage.global_batch_size)
            ]
            lever_seconds = lever_step_seconds(build(preset, tokenizer, recipe), steps, stage)

    print(
        f"\n{args.preset} stage 2 (LoRA r={recipe.lora.r}), {len(data)} records, global batch {stage.global_batch_size}, "
        f"{torch.get_num_threads()} threads, fastest of {args.rounds} round(s)"
    )
    print(f"{'':36}{'samples/s':>10}{'tokens/s':>10}  (tokens: the unsplit samples')")
    trainer_time, bare_seconds, unshared_time = list(best.values())[:3]
    for label, took in best.items():
        spread = f"  rounds {' / '.join(f'{len(data) / t:.1f}' for t in seconds[label])}" if args.rounds > 1 else ""
        print(f"{label:36}{len(data) / took:>10.1f}{tokens / took:>10.0f}{spread}")
    print(f"trainer / bare loop: {bare_seconds / trainer_time:.1%}")
    if stage.share_prefix:
        print(f"shared prefix: the trainer's step {unshared_time / trainer_time:.2f}x as fast as without it")
    if args.levers:
        print(
            f"step speed-ups: the trainer {trainer_time / best['impkit trainer (speed-ups on)']:.2f}x as fast with all three on"
        )
        print(f"\nthe step's forward and backward ({len(steps)} global batches, the variants in turn on each):")
        base = lever_seconds["without speed-ups"]
        for label, times in lever_seconds.items():
            ratios = sorted(b / t for b, t in zip(base, times, strict=True))
            print(
                f"  {label:34}{len(data) / sum(times):>6.1f} samples/s   step {ratios[len(ratios) // 2]:.2f}x as fast "
                f"(median of the batches; middle half {ratios[len(ratios) // 4]:.2f}-{ratios[3 * len(ratios) // 4]:.2f}x)"
            )
    print(f"padding waste: {grouped:.1%} with modality-length grouping, {shuffled:.1%} in random order")


if __name__ == "__main__":
    main()
