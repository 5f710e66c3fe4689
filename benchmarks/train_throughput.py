"""Benchmark: the stage-2 step of nano-3b on the CPU through the project's trainer vs a bare PyTorch
loop over the same model, batches and optimizer; and padding waste with/without length grouping.

    .venv/bin/python benchmarks/train_throughput.py [--records 640] [--preset nano-3b]

Needs the assembled data (`make repro` builds it). Both runs start from the same weights and see
the same batches in the same order (the modality-length grouped sampler), so the ratio of their
samples/s is the trainer's overhead. Both compute each batch's shared prompt prefix once when the
recipe says so (`share_prefix`); a third run, the trainer without it, shows what that saves. Padding waste = padded tokens / all tokens after padding each
batch to its longest sample, for the grouped order vs a random order of the same records.
"""

from __future__ import annotations

# isort: off
import impkit  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: on
import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from impkit.config import PresetConfig, StageTraining, TrainRecipe, from_dict, load_params
from impkit.model.image_processing import ImageProcessor
from impkit.model.presets import build_model, llava_config, num_image_tokens
from impkit.model.shared_prefix import with_shared_prefix
from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer, train_bpe
from impkit.train.dataset import DataCollator, ModalityLengthGroupedSampler, SupervisedDataset, chunked, padding_waste
from impkit.train.parts import prepare_stage2
from impkit.train.trainer import run_stage

ASSEMBLED = Path("data/assembled")


def build(preset: PresetConfig, tokenizer, recipe: TrainRecipe):
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = llava_config(preset, image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                          vocab_size=(len(tokenizer) + 255) // 256 * 256, special_ids=ids)  # fmt: skip
    return prepare_stage2(build_model(config, seed=0), preset.family, recipe.lora)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="nano-3b")
    parser.add_argument("--records", type=int, default=640, help="stage-2 records per run (one epoch)")
    args = parser.parse_args()
    if not (ASSEMBLED / "finetune.jsonl").is_file():
        raise SystemExit("data/assembled/finetune.jsonl not found: run `make repro` first")
    params = load_params()
    preset = from_dict(PresetConfig, params["model"]["presets"][args.preset])
    recipe = from_dict(TrainRecipe, params["train"]["recipes"][preset.train])
    lines = (ASSEMBLED / "finetune.jsonl").read_text().splitlines()
    texts = [t["value"] for line in lines for t in json.loads(line)["conversations"]]
    tokenizer = family_tokenizer(train_bpe(texts, params["backbones"]["vocab_size"]), preset.family)
    torch.set_num_threads(torch.get_num_threads())

    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "finetune.jsonl"
        rng = np.random.default_rng(0)
        subset.write_text(
            "\n".join(lines[i] for i in sorted(rng.choice(len(lines), args.records, replace=False))) + "\n"
        )
        n_img = num_image_tokens(preset)
        data = SupervisedDataset(subset, ASSEMBLED / "images", tokenizer, preset.template,
                                 image_processor=ImageProcessor(preset.vision.arch["image_size"], preset.image_aspect),
                                 num_image_tokens=n_img, max_length=recipe.stage2.max_length,
                                 image_length_words=n_img)  # fmt: skip
        stage: StageTraining = recipe.stage2
        stage = StageTraining(**{**stage.__dict__, "epochs": 1, "checkpoint_steps": 10**9, "logging_steps": 10**9})
        batch = stage.global_batch_size
        sampler = ModalityLengthGroupedSampler.for_dataset(data, batch, seed=0)
        order = list(sampler)
        token_lengths = np.array([len(data[i]["input_ids"]) for i in range(len(data))])
        tokens = int(token_lengths.sum())
        grouped = padding_waste(token_lengths, chunked(order, batch))
        shuffled = padding_waste(token_lengths, chunked(np.random.default_rng(1).permutation(len(data)), batch))

        # 1) the project's trainer (HF Trainer + ImpTrainer), one epoch; then without the shared prefix
        def trainer_seconds(cfg: StageTraining, name: str) -> float:
            result = run_stage(build(preset, tokenizer, recipe), data, DataCollator(tokenizer.pad_token_id), cfg,
                               checkpoint_dir=Path(tmp) / name, fingerprint={"bench": name}, seed=0, label=name,
                               sampler_factory=lambda b, s: ModalityLengthGroupedSampler.for_dataset(data, b, seed=s))  # fmt: skip
            return result.seconds

        trainer_time = trainer_seconds(stage, "trainer")
        unshared_time = trainer_seconds(dataclasses.replace(stage, share_prefix=False), "unshared")

        # 2) a bare loop: same initial weights, same batches, AdamW, forward/backward/step
        model = build(preset, tokenizer, recipe)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=stage.learning_rate, weight_decay=0.0)
        collate = DataCollator(tokenizer.pad_token_id)
        accumulation = stage.global_batch_size // stage.per_device_batch_size
        start = time.perf_counter()
        for batch_indices in chunked(order, stage.per_device_batch_size * accumulation):
            for micro in chunked(batch_indices, stage.per_device_batch_size):
                # the same autocast the Trainer applies for the recipe's precision
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=stage.precision == "bf16"):
                    inputs = collate([data[int(i)] for i in micro])
                    if stage.share_prefix:  # what the trainer does with the recipe's switch
                        inputs = with_shared_prefix(model, inputs, model.config.image_token_id)
                    loss = model(**inputs).loss / accumulation
                loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        bare_seconds = time.perf_counter() - start

    print(f"\n{args.preset} stage 2 (LoRA r={recipe.lora.r}), {len(data)} records, global batch {stage.global_batch_size}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'':36}{'samples/s':>10}{'tokens/s':>10}  (tokens: the unsplit samples')")
    shared = "shared prefix" if stage.share_prefix else "no shared prefix"
    for label, seconds in ((f"impkit trainer ({shared})", trainer_time), (f"bare PyTorch loop ({shared})", bare_seconds),
                           ("impkit trainer (no shared prefix)", unshared_time)):  # fmt: skip
        print(f"{label:36}{len(data) / seconds:>10.1f}{tokens / seconds:>10.0f}")
    print(f"trainer / bare loop: {bare_seconds / trainer_time:.1%}")
    if stage.share_prefix:
        print(f"shared prefix: the trainer's step {unshared_time / trainer_time:.2f}x as fast as without it")
    print(f"padding waste: {grouped:.1%} with modality-length grouping, {shuffled:.1%} in random order")


if __name__ == "__main__":
    main()
