"""The training stages as typed functions: stage-1 alignment and stage-2 tuning (the backbones stage
is ``impkit.train.backbones.build``). ``stages/*.py`` are thin wrappers that read params and call these.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from impkit.config import PresetConfig, StageTraining, TrainRecipe
from impkit.hardware import read_machine
from impkit.model.image_processing import ImageProcessor
from impkit.model.presets import describe, num_image_tokens
from impkit.release import Release, write_release
from impkit.train.dataset import IMAGE_LENGTH_WORDS, DataCollator, SupervisedDataset
from impkit.train.launch import is_main_process
from impkit.train.parts import count_parameters, gathered_weights, merged, prepare_stage1, prepare_stage2
from impkit.train.sampler import ModalityLengthGroupedSampler
from impkit.train.starting_model import starting_model
from impkit.train.trainer import StageResult, fit_stage, resolve_stage

log = logging.getLogger(__name__)


def _fingerprint(*parts: Any) -> dict[str, str]:
    return {"inputs": hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()}


def _dataset(
    records: Path, image_root: Path, tokenizer, template: str, preset: PresetConfig, max_length: int, cache_mb: float
):
    n_tokens = num_image_tokens(preset)
    # Length grouping counts an image as a constant number of words, as Imp's data module does
    # (IMAGE_LENGTH_WORDS = 700 for 729 SigLIP tokens). The offline analogs scale it to their own
    # image size (16 or 9 tokens), which keeps their long/short balance and their byte-identical builds.
    image_words = n_tokens if preset.offline else IMAGE_LENGTH_WORDS
    return SupervisedDataset(
        records,
        image_root,
        tokenizer,
        template,
        image_processor=ImageProcessor(size=preset.vision.arch["image_size"], aspect=preset.image_aspect),
        num_image_tokens=n_tokens,
        max_length=max_length,
        image_length_words=image_words,
        cache_mb=cache_mb,
    )


def _train(
    model,
    tokenizer,
    dataset: SupervisedDataset,
    stage_cfg,
    *,
    checkpoints: Path,
    fingerprint,
    seed: int,
    label: str,
    callbacks=(),
    deepspeed: str | None = None,
) -> StageResult:
    report = dataset.scan()
    if report["count"]:
        log.warning(
            "%s: %d records whose segment-wise tokenization differs from the whole text "
            "(trained as segmented; first ids: %s)",
            label,
            report["count"],
            report["ids"][:10],
        )
    return fit_stage(
        model,
        dataset,
        DataCollator(tokenizer.pad_token_id),
        stage_cfg,
        checkpoint_dir=checkpoints,
        fingerprint=fingerprint,
        seed=seed,
        label=label,
        callbacks=list(callbacks),
        sampler_factory=lambda batch, s: ModalityLengthGroupedSampler.for_dataset(dataset, batch, seed=s),
        deepspeed=deepspeed,
    )


def align(
    name: str,
    preset: PresetConfig,
    recipe: TrainRecipe,
    *,
    backbones: Path | None,
    assembled: Path,
    checkpoints: Path,
    out: Path,
    seed: int,
    callbacks=(),
    sample_cache_mb: float = 0,
    deepspeed: str | None = None,
) -> dict[str, Any]:
    """Stage 1: the projector learns to map image features into the frozen LLM ("plain" template).
    ``sample_cache_mb``: ``SupervisedDataset``'s ``cache_mb`` (speed only; the same training);
    ``deepspeed``: the DeepSpeed config to train under (impkit.train.launch.deepspeed_config)."""
    stage = resolve_stage(recipe.stage1, read_machine(), where=f"align {name}")
    torch.manual_seed(seed)
    model, tokenizer = starting_model(preset, backbones, seed=seed, name=name)
    prepare_stage1(model)
    data = _dataset(
        assembled / "pretrain.jsonl",
        assembled / "images",
        tokenizer,
        "plain",
        preset,
        stage.max_length,
        sample_cache_mb,
    )
    fp = _fingerprint(name, preset, stage, seed, data.records_path.stat().st_size)
    result = _train(
        model,
        tokenizer,
        data,
        stage,
        checkpoints=checkpoints,
        fingerprint=fp,
        seed=seed,
        label=f"align {name}",
        callbacks=callbacks,
        deepspeed=deepspeed,
    )
    meta = {
        "preset": name,
        "stage": "align",
        "model": describe(preset),
        "parameters": count_parameters(model),
        "train": _result_summary(result, stage),
    }
    with gathered_weights(model):  # every process enters: under ZeRO-3 they gather the shards together
        if is_main_process():  # data-parallel processes hold the same weights; the first writes them
            write_release(merged(model), tokenizer, preset, out, _release_record(meta))
    return meta


def tune(
    name: str,
    preset: PresetConfig,
    recipe: TrainRecipe,
    *,
    aligned: Path,
    assembled: Path,
    checkpoints: Path,
    out: Path,
    adapter_out: Path,
    seed: int,
    callbacks=(),
    sample_cache_mb: float = 0,
    deepspeed: str | None = None,
) -> dict[str, Any]:
    """Stage 2: LoRA (or full) instruction tuning with the family's chat template; merged release.
    ``sample_cache_mb`` and ``deepspeed`` as for ``align``."""
    stage = resolve_stage(recipe.stage2, read_machine(), where=f"tune {name}")
    torch.manual_seed(seed)
    model, tokenizer = Release.open(aligned).load()
    model = prepare_stage2(model, preset.family, recipe.lora)
    data = _dataset(
        assembled / "finetune.jsonl",
        assembled / "images",
        tokenizer,
        preset.template,
        preset,
        stage.max_length,
        sample_cache_mb,
    )
    fp = _fingerprint(name, preset, stage, recipe.lora, seed, data.records_path.stat().st_size)
    result = _train(
        model,
        tokenizer,
        data,
        stage,
        checkpoints=checkpoints,
        fingerprint=fp,
        seed=seed,
        label=f"tune {name}",
        callbacks=callbacks,
        deepspeed=deepspeed,
    )
    counts = count_parameters(model)
    meta = {
        "preset": name,
        "stage": "tune",
        "model": describe(preset),
        "parameters": counts,
        "lora": recipe.lora.__dict__,
        "train": _result_summary(result, stage),
    }
    with gathered_weights(model):  # every process enters: under ZeRO-3 they gather the shards together
        if is_main_process():  # data-parallel processes hold the same weights; the first writes them
            _write_tuned(model, tokenizer, preset, recipe, out, adapter_out, _release_record(meta))
    return meta


def _write_tuned(model, tokenizer, preset: PresetConfig, recipe: TrainRecipe, out: Path, adapter_out: Path, record):
    if recipe.lora.enabled:
        model.save_pretrained(adapter_out)  # the adapter on its own, before merging
    else:  # full fine-tuning has no adapter; the folder still says so (it is a declared output)
        adapter_out.mkdir(parents=True, exist_ok=True)
        (adapter_out / "README.md").write_text(
            "Trained with full fine-tuning (train.recipes.*.lora.enabled: false): no adapter.\n"
        )
    write_release(merged(model), tokenizer, preset, out, record)


def _release_record(meta: dict[str, Any]) -> dict[str, Any]:
    """What the saved folder's ``impkit.json`` keeps of a stage's record: what describes the weights.
    How long the run took and whether it was restarted go to the stage report only, so a restart
    that trains nothing (DVC reruns a stage when any dependency changes) writes the same release
    and the evaluation and export stages after it have nothing to redo."""
    run = meta["train"]
    return {**meta, "train": {"steps": run["steps"], "train_loss": run["train_loss"], "precision": run["precision"]}}


def _result_summary(result: StageResult, stage: StageTraining) -> dict[str, Any]:
    return {
        "precision": stage.precision,
        "steps": result.steps,
        "train_loss": round(result.train_loss, 4),
        "seconds": round(result.seconds, 1),
        "samples_per_second": round(result.samples_per_second, 2),
        "resumed_from": result.resumed_from,
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
    }
