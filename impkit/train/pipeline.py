"""The training stages as typed functions: backbones (offline presets), stage-1 alignment, stage-2
tuning. ``stages/*.py`` are thin wrappers that read params and call these.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import torch

from impkit.config import BackbonesConfig, PresetConfig, StageTraining, TrainRecipe
from impkit.data.templates import TEMPLATES
from impkit.hardware import read_machine, resolve_precision
from impkit.io import write_json
from impkit.model.image_processing import ImageProcessor
from impkit.model.presets import describe, num_image_tokens
from impkit.model.tokenizer import IMAGE_TOKEN, all_special_tokens, family_tokenizer, train_bpe
from impkit.release import Release, write_release
from impkit.train import backbones as bb
from impkit.train.dataset import DataCollator, ModalityLengthGroupedSampler, SupervisedDataset
from impkit.train.launch import is_main_process
from impkit.train.layout import TOKENIZER_FILE, VISION_DIR, llm_dir
from impkit.train.parts import count_parameters, merged, prepare_stage1, prepare_stage2
from impkit.train.side_by_side import Job, run_side_by_side
from impkit.train.starting_model import starting_model
from impkit.train.trainer import StageResult, fit_stage, resolve_stage

log = logging.getLogger(__name__)


def _template_texts() -> list[str]:
    """The fixed text of every chat template (system prompt, role markers), special tokens left out
    (they are whole tokens already). Without it the nano BPE, trained on the world's words, spelled
    the phi2 template's system prompt and user opening in 74 tokens, more than half of a short-answer
    sample and twice what Phi-2's or Qwen's tokenizers use; with it, 32 (qwen2 36, phi3 34)."""
    specials = re.compile("|".join(re.escape(token) for token in all_special_tokens()))
    texts = []
    for template in TEMPLATES.values():
        for text in (template.system_block(), template.user_prefix, template.user_suffix, template.assistant_prefix):
            texts.extend(piece for piece in specials.split(text) if piece.strip())  # as the tokenizer splits it
    return texts


def _texts_for_tokenizer(world: Path, assembled: Path) -> list[str]:
    """Everything the models will read: the LM corpus, the chat templates' fixed text and every turn
    of the assembled mixtures."""
    texts = bb.read_corpus(world / "backbone" / "lm_corpus.txt") + _template_texts()
    for name in ("pretrain.jsonl", "finetune.jsonl"):
        with open(assembled / name, encoding="utf-8") as f:
            for line in f:
                texts.extend(turn["value"].replace(IMAGE_TOKEN, "") for turn in json.loads(line)["conversations"])
    return texts


def _round_up(n: int, multiple: int = 256) -> int:
    """Embedding rows padded to a multiple of 256, so GGUF K-quants apply to embeddings too."""
    return math.ceil(n / multiple) * multiple


def _folder_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def describe_sources(presets: dict[str, PresetConfig]) -> dict[str, Any]:
    """What the real presets load: a local folder's content hash, or the hub id and pinned revision
    (upstream Phi-2 changes once broke Imp: an unpinned hub source is reported as such)."""
    described: dict[str, Any] = {}
    for name, preset in presets.items():
        for part, spec in (("vision", preset.vision), ("llm", preset.llm)):
            if spec.source is None:
                continue
            if Path(spec.source).is_dir():
                entry = {"local": spec.source, "sha256": _folder_sha256(Path(spec.source))}
            else:
                entry = {"hub": spec.source, "revision": spec.revision or "UNPINNED"}
                if spec.revision is None:
                    log.warning("%s %s: hub source %s has no pinned revision", name, part, spec.source)
            described[f"{name}.{part}"] = entry
    return described


def build_backbones(
    cfg: BackbonesConfig,
    presets: dict[str, PresetConfig],
    world: Path,
    assembled: Path,
    out: Path,
    *,
    processes: int = 1,
) -> dict[str, Any]:
    """Tokenizer, one shared vision tower, one causal LM per family of the offline presets; for the
    real presets, a record of the sources they load.

    The tower and the LMs train independently: with ``processes`` > 1 they train side by side, one
    process of one thread each (``impkit.train.side_by_side``); with 1, one after another here."""
    out.mkdir(parents=True, exist_ok=True)
    offline = {name: p for name, p in presets.items() if p.offline}
    real = describe_sources({name: p for name, p in presets.items() if not p.offline})
    if not offline:
        report = {"real_sources": real}
        write_json(out / "backbones.json", report)
        return report
    visions = {
        json.dumps({k: v for k, v in p.vision.arch.items() if k != "image_size"}, sort_keys=True)
        for p in offline.values()
    }
    if len(visions) > 1:
        raise ValueError("offline presets must share one vision tower (they may differ only in image_size)")
    report: dict[str, Any] = {"real_sources": real}
    start = time.perf_counter()
    base = train_bpe(_texts_for_tokenizer(world, assembled), cfg.vocab_size)
    base.save(str(out / TOKENIZER_FILE))
    report["tokenizer"] = {"vocab": base.get_vocab_size(), "seconds": round(time.perf_counter() - start, 1)}
    log.info("tokenizer: %d tokens", base.get_vocab_size())

    # The tower is saved at the largest resolution; lower-resolution twins resize its position
    # embeddings when they load it (as Imp-3B@196 does with SigLIP@384). With multi_resolution it
    # has also trained at their sizes with the positions resized the same way.
    first = max(offline.values(), key=lambda p: p.vision.arch["image_size"])
    vision_arch = dict(first.vision.arch)
    also_sizes = sorted({p.vision.arch["image_size"] for p in offline.values()}) if cfg.vision.multi_resolution else []
    any_tok = family_tokenizer(base, first.family)
    v = cfg.vision
    # the parts train on the CPU (autocast "cpu"), whatever else the machine has
    machine = read_machine()
    precision = {
        "vision": resolve_precision(
            v.precision, machine, where="backbones vision tower", allowed=("fp32", "bf16"), on_gpu=False
        ),
        "llm": resolve_precision(
            cfg.llm.precision, machine, where="backbones LMs", allowed=("fp32", "bf16"), on_gpu=False
        ),
    }
    report["precision"] = precision
    # the jobs in the order the workers take them: the tower first, the longest (`wall_s` in backbones.json)
    jobs: list[Job] = []
    if v.encoder == "contrastive":
        jobs.append(
            (
                "vision",
                bb.pretrain_vision_tower,
                dict(
                    pairs=world / "backbone" / "vision_pairs.jsonl",
                    image_root=world / "images",
                    tokenizer=any_tok,
                    vision_arch=vision_arch,
                    text_arch=dict(v.text_arch),
                    steps=v.steps,
                    batch_size=v.batch_size,
                    lr=v.lr,
                    seed=cfg.seed,
                    out_dir=out / VISION_DIR,
                    precision=precision["vision"],
                    also_sizes=also_sizes,
                ),
            )
        )
    elif v.encoder == "classification":
        jobs.append(
            (
                "vision",
                bb.pretrain_classifier_vision_tower,
                dict(
                    scenes=world / "scenes.jsonl",
                    image_root=world / "images",
                    vision_arch=vision_arch,
                    steps=v.steps,
                    batch_size=v.batch_size,
                    lr=v.lr,
                    seed=cfg.seed,
                    out_dir=out / VISION_DIR,
                    precision=precision["vision"],
                    also_sizes=also_sizes,
                ),
            )
        )
    else:
        jobs.append(
            ("vision", bb.random_vision_tower, dict(vision_arch=vision_arch, seed=cfg.seed, out_dir=out / VISION_DIR))
        )
    for family in sorted({p.family for p in offline.values()}):
        preset = next(p for p in offline.values() if p.family == family)
        tok = family_tokenizer(base, family)
        arch = {**preset.llm.arch, "vocab_size": _round_up(len(tok))}
        jobs.append(
            (
                f"llm-{family}",
                bb.pretrain_causal_lm,
                dict(
                    family=family,
                    arch=arch,
                    tokenizer=tok,
                    texts=world / "backbone" / "lm_corpus.txt",
                    steps=cfg.llm.steps,
                    batch_size=cfg.llm.batch_size,
                    seq_len=cfg.llm.seq_len,
                    lr=cfg.llm.lr,
                    seed=cfg.seed,
                    out_dir=llm_dir(out, family),
                    precision=precision["llm"],
                ),
            )
        )
    report.update(run_side_by_side(jobs, processes))
    report["vision"]["encoder"] = v.encoder
    report["processes"] = min(processes, len(jobs))
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_json(out / "backbones.json", report)
    return report


def _fingerprint(*parts: Any) -> dict[str, str]:
    return {"inputs": hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()}


def _dataset(
    records: Path, image_root: Path, tokenizer, template: str, preset: PresetConfig, max_length: int, cache_mb: float
):
    n_tokens = num_image_tokens(preset)
    return SupervisedDataset(
        records,
        image_root,
        tokenizer,
        template,
        image_processor=ImageProcessor(size=preset.vision.arch["image_size"], aspect=preset.image_aspect),
        num_image_tokens=n_tokens,
        max_length=max_length,
        image_length_words=n_tokens,
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
) -> dict[str, Any]:
    """Stage 1: the projector learns to map image features into the frozen LLM ("plain" template).
    ``sample_cache_mb``: ``SupervisedDataset``'s ``cache_mb`` (speed only; the same training)."""
    stage = resolve_stage(recipe.stage1, read_machine(), where=f"align {name}")
    torch.manual_seed(seed)
    model, tokenizer = starting_model(preset, backbones, seed=seed)
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
    )
    meta = {
        "preset": name,
        "stage": "align",
        "model": describe(preset),
        "parameters": count_parameters(model),
        "train": _result_summary(result, stage),
    }
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
) -> dict[str, Any]:
    """Stage 2: LoRA (or full) instruction tuning with the family's chat template; merged release.
    ``sample_cache_mb`` as for ``align``."""
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
    if not is_main_process():  # data-parallel processes hold the same weights; the first writes them
        return meta
    if recipe.lora.enabled:
        model.save_pretrained(adapter_out)  # the adapter on its own, before merging
    else:  # full fine-tuning has no adapter; the folder still says so (it is a declared output)
        adapter_out.mkdir(parents=True, exist_ok=True)
        (adapter_out / "README.md").write_text(
            "Trained with full fine-tuning (train.recipes.*.lora.enabled: false): no adapter.\n"
        )
    write_release(merged(model), tokenizer, preset, out, _release_record(meta))
    return meta


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
