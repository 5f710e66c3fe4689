"""Pretraining the frozen backbones of the offline analogs from the synthetic world.

Imp starts from pretrained SigLIP and pretrained LLMs and keeps both frozen in stage 1; the nano
analogs have no such checkpoints, so they are pretrained here, briefly, on the world's backbone
corpus (``backbone/vision_pairs.jsonl``, ``backbone/lm_corpus.txt``) and ``scenes.jsonl``:

* :func:`pretrain_vision_tower`: SigLIP's recipe at toy scale. A ``SiglipModel`` (vision tower with
  its attention-pooling head, a small text tower) trained with the sigmoid pairwise loss that
  ``SiglipModel(return_loss=True)`` computes. Only the vision tower is kept, without the head, as
  a ``SiglipVisionModel`` that LLaVA's vision tower loads key for key.
* :func:`pretrain_classifier_vision_tower`: the ablation arm "classification-pretrained": the same
  tower (with head) and a linear classifier trained with cross-entropy on labels read from
  ``scenes.jsonl`` (see :func:`scene_label`).
* :func:`random_vision_tower`: the ablation arm "no pretraining": a randomly initialised tower.
* :func:`pretrain_causal_lm`: next-token prediction on packed blocks of the corpus for one family's
  causal LM, built from its transformers config (no custom modeling code).

All of them are deterministic for a seed (weights from ``torch.manual_seed``, batch order from a
seeded ``torch.Generator``) on a given machine and thread count, which the caller sets. Every
output directory is written atomically: a killed run never leaves a half-saved checkpoint.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    AutoModelForCausalLM,
    PreTrainedTokenizerBase,
    SiglipConfig,
    SiglipModel,
    SiglipTextConfig,
    SiglipVisionConfig,
    SiglipVisionModel,
    get_cosine_schedule_with_warmup,
)

from impkit.config import ConfigError
from impkit.data.synth.scene import COLOURS, SHAPES
from impkit.io import atomic_path
from impkit.model.image_processing import ImageProcessor
from impkit.model.presets import family_config_class
from impkit.progress import progress as progress_bar

PathLike = str | os.PathLike

# SiglipTextModel pools the *last position* whatever it holds (no use of the attention mask), so
# captions are padded to one fixed length as SigLIP trains them: the pooled slot is always position
# TEXT_MAX_LENGTH - 1. The attention mask is still passed, so that slot reads only caption tokens
# (padding is masked out as keys) and a caption's embedding does not depend on how much padding
# follows it. Captions of the world are at most ~25 BPE tokens; longer ones are truncated.
TEXT_MAX_LENGTH = 32
# Held-back pairs / images / lines for the before-vs-after evaluations (never trained on).
EVAL_PAIRS = 256
RETRIEVAL_BATCH = 128  # image -> text retrieval among this many captions (chance: 1/128)
EVAL_IMAGES = 256
EVAL_LINES = 400
# The sigmoid loss's temperature and bias at the start (Zhai et al. 2023, §3.2): t' = log 10 as in
# SigLIP; b = -log(batch size) instead of SigLIP's -10 (which is -log of its 32k batch), i.e. the
# prior that one caption in B matches. With b = -10 and a batch of 32 the cheapest way down is to
# make every embedding alike (cos ~ 0.7 everywhere) and training stalls at the bias-only loss.
SIGLIP_LOGIT_SCALE = math.log(10.0)
# Labels for the classification arm. Scenes: "<colour> <shape>" of the main object, i.e. the first
# large object in reading order (row, then column), or the first object if all are small. Text
# images: "text". Charts: "bar chart" / "line chart".
CLASS_LABELS: tuple[str, ...] = (
    *(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES),
    "text",
    "bar chart",
    "line chart",
)


# --------------------------------------------------------------------------- reading inputs
def _require_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} (generate the synthetic world first)")
    return path


def read_vision_pairs(path: PathLike) -> list[tuple[str, str]]:
    """``backbone/vision_pairs.jsonl`` -> [(image path relative to the image root, caption)]."""
    path = _require_file(path, "image-caption pairs file")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                pairs.append((str(rec["image"]), str(rec["caption"])))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: expected a JSON object with 'image' and 'caption' ({exc})") from None
    return pairs


def read_scenes(path: PathLike) -> list[dict[str, Any]]:
    """``scenes.jsonl`` -> one ground-truth record per image."""
    path = _require_file(path, "scenes file")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_corpus(path: PathLike) -> list[str]:
    """``backbone/lm_corpus.txt`` -> its non-empty lines."""
    path = _require_file(path, "language-model corpus")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _as_pairs(pairs: Sequence[tuple[str, str]] | PathLike) -> list[tuple[str, str]]:
    if isinstance(pairs, (str, os.PathLike)):
        return read_vision_pairs(pairs)
    return [(str(image), str(caption)) for image, caption in pairs]


def _as_scenes(scenes: Sequence[dict[str, Any]] | PathLike) -> list[dict[str, Any]]:
    if isinstance(scenes, (str, os.PathLike)):
        return read_scenes(scenes)
    return list(scenes)


def _as_texts(texts: Sequence[str] | PathLike) -> list[str]:
    if isinstance(texts, (str, os.PathLike)):
        return read_corpus(texts)
    return [t for t in texts if t.strip()]


def _load_images(paths: Sequence[str], image_root: PathLike, processor: ImageProcessor, desc: str, show: bool):
    """Decode and square every image once: uint8 [N, size, size, 3] (normalised per batch)."""
    root = Path(image_root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    out = np.empty((len(paths), processor.size, processor.size, 3), dtype=np.uint8)
    for i, rel in enumerate(progress_bar(paths, desc=desc, unit="img", disable=_disabled(show))):
        file = root / rel
        try:
            with Image.open(file) as im:
                out[i] = np.asarray(processor.prepare(im), dtype=np.uint8)
        except FileNotFoundError:
            raise FileNotFoundError(f"image not found: {file} (listed as '{rel}')") from None
    return torch.from_numpy(out)


def _normalise(images_u8: torch.Tensor, processor: ImageProcessor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W], exactly as ``ImageProcessor.__call__`` does."""
    x = images_u8.to(torch.float32) / 255.0
    mean = torch.tensor(processor.mean, dtype=torch.float32)
    std = torch.tensor(processor.std, dtype=torch.float32)
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


def _images_by_size(
    paths: Sequence[str], image_root: PathLike, sizes: Sequence[int], aspect: str, show: bool
) -> dict[int, tuple[ImageProcessor, torch.Tensor]]:
    """Every image decoded once per training resolution, with the processor that squares it."""
    out = {}
    for size in sizes:
        processor = ImageProcessor(size=size, aspect=aspect)
        out[size] = (processor, _load_images(paths, image_root, processor, f"load images ({size} px)", show))
    return out


def _training_sizes(vision_arch: dict[str, Any], also_sizes: Sequence[int]) -> list[int]:
    """The tower's own image size first, then the lower ones it also trains at (each once)."""
    own = int(vision_arch["image_size"])
    patch = int(vision_arch["patch_size"])
    extra = sorted({int(s) for s in also_sizes} - {own}, reverse=True)
    for size in extra:
        if size > own or size % patch:
            raise ConfigError(
                f"the vision tower trains at {own} px and may also train at lower multiples of its "
                f"{patch} px patch, not at {size} px"
            )
    return [own, *extra]


def _in_turn(sizes: Sequence[int], batches: Iterator[torch.Tensor]) -> Iterator[tuple[int, torch.Tensor]]:
    """Each step's batch with the resolution it is seen at: the sizes in turn, step by step."""
    return zip(itertools.cycle(sizes), batches)


# --------------------------------------------------------------------------- training helpers
def _disabled(show: bool) -> bool | None:
    return True if not show else None  # None: progress_bar's default (IMPKIT_PROGRESS)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _batches(n_items: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled batches of indices; each epoch a fresh permutation, the tail dropped."""
    if n_items < batch_size:
        raise ValueError(f"only {n_items} training items for a batch of {batch_size}; lower batch_size")
    while True:
        order = torch.randperm(n_items, generator=generator)
        for start in range(0, n_items - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def _split_eval(n: int, n_eval: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return order[n_eval:], order[:n_eval]


def _optimiser(model: torch.nn.Module, lr: float, weight_decay: float, steps: int, warmup: float):
    """AdamW (no decay on biases, norm weights and scalars) + linear warmup and cosine decay."""
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    sched = get_cosine_schedule_with_warmup(opt, max(1, round(warmup * steps)), steps)
    return opt, sched


def _train_loop(
    step_fn: Callable[[Any], torch.Tensor],
    model: torch.nn.Module,
    batches: Iterator[Any],
    *,
    steps: int,
    lr: float,
    weight_decay: float,
    warmup: float,
    clip: float,
    desc: str,
    unit: str,
    units_per_step: int,
    show: bool,
    precision: str,
) -> tuple[list[float], float]:
    """Run ``steps`` optimiser steps; returns the per-step losses and the wall time of the loop."""
    autocast = _autocast(precision)
    opt, sched = _optimiser(model, lr, weight_decay, steps, warmup)
    model.train()
    losses: list[float] = []
    bar = progress_bar(total=steps * units_per_step, desc=desc, unit=unit, unit_scale=True, disable=_disabled(show))
    start = time.perf_counter()
    for step in range(steps):
        with autocast():
            loss = step_fn(next(batches))
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(f"{desc}: loss became {loss.item()} at step {step + 1}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.update(units_per_step)
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", refresh=False)
    wall = time.perf_counter() - start
    bar.close()
    model.eval()
    return losses, wall


def _autocast(precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """fp32, or bf16 autocast (weights and optimiser stay fp32; a large win on CPUs with AMX/AVX512-BF16)."""
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "bf16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    raise ConfigError(f"precision must be 'fp32' or 'bf16', got '{precision}'")


def _loss_summary(losses: list[float], points: int = 20) -> dict[str, Any]:
    """First/last loss (means of the first/last 10 steps) and a coarse curve [[step, mean loss]]."""
    window = max(1, math.ceil(len(losses) / points))
    curve = [
        [min(i + window, len(losses)), round(float(np.mean(losses[i : i + window])), 4)]
        for i in range(0, len(losses), window)
    ]
    return {
        "loss_first": float(np.mean(losses[:10])),
        "loss_last": float(np.mean(losses[-10:])),
        "loss_step1": losses[0],
        "loss_curve": curve,
    }


def _save_vision_tower(trained: SiglipVisionModel, vision_arch: dict[str, Any], out_dir: PathLike) -> int:
    """Save the tower without its pooling head as a plain ``SiglipVisionModel``; returns its size."""
    config = SiglipVisionConfig(**{**vision_arch, "vision_use_head": False})
    tower = SiglipVisionModel(config)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("head.")}
    tower.load_state_dict(state, strict=True)
    with atomic_path(out_dir) as tmp:
        tower.save_pretrained(tmp)
    return sum(p.numel() for p in tower.parameters())


def _vision_arch(vision_arch: dict[str, Any], *, head: bool) -> dict[str, Any]:
    for key in ("hidden_size", "image_size", "patch_size"):
        if key not in vision_arch:
            raise ConfigError(f"vision arch lacks '{key}'")
    return {**vision_arch, "vision_use_head": head}


# --------------------------------------------------------------------------- contrastive (SigLIP)
def _tokenize_captions(
    tokenizer: PreTrainedTokenizerBase, captions: Sequence[str], max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if tokenizer.pad_token_id is None:
        raise ValueError("the caption tokenizer has no pad token; SigLIP pads captions to a fixed length")
    enc = tokenizer(
        list(captions),
        padding="max_length",
        truncation=True,
        max_length=max_length,
        add_special_tokens=False,
        return_tensors="pt",
    )
    return enc["input_ids"], enc["attention_mask"]


def sigmoid_loss_floor(batch_size: int) -> float:
    """The sigmoid loss a model reaches by learning only the bias (one positive among ``batch_size``).

    With every logit equal, the best constant gives sigmoid = 1/B, so the per-image loss is the
    binary entropy of 1/B times B. A loss below this means the embeddings match images to captions.
    """
    p = 1.0 / batch_size
    return -math.log(p) - (batch_size - 1) * math.log(1.0 - p)


@torch.no_grad()
def _retrieval_top1(
    model: SiglipModel,
    pixels: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    captions: Sequence[str],
    interpolate: bool = False,
) -> float:
    """Image -> text top-1 among the captions of its batch of ``RETRIEVAL_BATCH`` held-back pairs,
    averaged over the batches; a caption identical to the true one counts as a hit."""
    model.eval()
    hits = []
    for start in range(0, len(captions), RETRIEVAL_BATCH):
        end = start + RETRIEVAL_BATCH
        out = model(
            input_ids=ids[start:end],
            attention_mask=mask[start:end],
            pixel_values=pixels[start:end],
            interpolate_pos_encoding=interpolate,
        )
        best = out.logits_per_image.argmax(dim=-1).tolist()
        caps = captions[start:end]
        hits += [caps[j] == caps[i] for i, j in enumerate(best)]
    return float(np.mean(hits))


def pretrain_vision_tower(
    pairs: Sequence[tuple[str, str]] | PathLike,
    image_root: PathLike,
    tokenizer: PreTrainedTokenizerBase,
    *,
    vision_arch: dict[str, Any],
    text_arch: dict[str, Any],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    out_dir: PathLike,
    progress: bool = True,
    weight_decay: float = 1e-4,
    warmup: float = 0.1,
    text_max_length: int = TEXT_MAX_LENGTH,
    eval_pairs: int = EVAL_PAIRS,
    aspect: str = "pad",
    precision: str = "fp32",
    also_sizes: Sequence[int] = (),
) -> dict[str, Any]:
    """SigLIP-style contrastive pretraining; saves the vision tower (no head) to ``out_dir``.

    ``pairs``: (image path relative to ``image_root``, caption) pairs, or the path of
    ``vision_pairs.jsonl``. ``text_arch``: keyword arguments of ``SiglipTextConfig`` for the text
    tower used only during pretraining (``vocab_size`` defaults to ``len(tokenizer)``). Up to
    ``eval_pairs`` pairs (at most a tenth) are held back to measure image->text top-1 retrieval
    before and after training (after: at every training size).

    ``also_sizes``: lower image sizes the tower also trains at, in turn with its own, step by step,
    its position embeddings resized bicubically on the fly exactly as a lower-resolution preset
    resizes them when it loads the tower (:func:`impkit.train.starting_model.resize_position_embeddings`).
    """
    _check_positive(steps=steps, batch_size=batch_size, lr=lr)
    _autocast(precision)
    vision_config = SiglipVisionConfig(**_vision_arch(vision_arch, head=True))
    if int(text_arch.get("max_position_embeddings", text_max_length)) < text_max_length:
        raise ConfigError(f"text tower max_position_embeddings < text_max_length ({text_max_length})")
    pairs = _as_pairs(pairs)
    if not pairs:
        raise ValueError("no image-caption pairs to pretrain on")
    sizes = _training_sizes(vision_arch, also_sizes)
    generator = torch.Generator().manual_seed(seed)
    n_eval = min(eval_pairs, len(pairs) // 10)
    train_idx, eval_idx = _split_eval(len(pairs), n_eval, generator)

    at_size = _images_by_size([p for p, _ in pairs], image_root, sizes, aspect, progress)
    captions = [c for _, c in pairs]
    ids, mask = _tokenize_captions(tokenizer, captions, text_max_length)

    text_kwargs = {
        "vocab_size": len(tokenizer),
        "max_position_embeddings": text_max_length,
        "projection_size": int(vision_arch["hidden_size"]),
        **text_arch,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if text_kwargs["vocab_size"] < len(tokenizer):
        raise ConfigError(f"text tower vocab_size {text_kwargs['vocab_size']} < tokenizer size {len(tokenizer)}")
    config = SiglipConfig(
        text_config=SiglipTextConfig(**text_kwargs).to_dict(),
        vision_config=vision_config.to_dict(),
    )
    torch.manual_seed(seed)
    model = SiglipModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(SIGLIP_LOGIT_SCALE)
        model.logit_bias.fill_(-math.log(batch_size))

    eval_caps = [captions[i] for i in eval_idx.tolist()]

    def top1(size: int) -> float | None:
        processor, images = at_size[size]
        pixels = _normalise(images[eval_idx], processor)
        interpolate = size != sizes[0]
        return _retrieval_top1(model, pixels, ids[eval_idx], mask[eval_idx], eval_caps, interpolate) if n_eval else None

    top1_before = top1(sizes[0])

    def step(sized_batch: tuple[int, torch.Tensor]) -> torch.Tensor:
        size, batch = sized_batch
        rows = train_idx[batch]
        processor, images = at_size[size]
        out = model(
            input_ids=ids[rows],
            attention_mask=mask[rows],
            pixel_values=_normalise(images[rows], processor),
            return_loss=True,
            interpolate_pos_encoding=size != sizes[0],
        )
        return out.loss

    losses, wall = _train_loop(
        step,
        model,
        _in_turn(sizes, _batches(len(train_idx), batch_size, generator)),
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        clip=1.0,
        desc="pretrain vision tower (sigmoid loss)",
        unit="img",
        units_per_step=batch_size,
        show=progress,
        precision=precision,
    )
    top1_after = {size: top1(size) for size in sizes}
    n_params = _save_vision_tower(model.vision_model, vision_arch, out_dir)
    return {
        "steps": steps,
        "image_sizes": sizes,
        "batch_size": batch_size,
        "lr": lr,
        "precision": precision,
        "train_pairs": len(train_idx),
        "epochs": round(steps * batch_size / len(train_idx), 3),
        **_loss_summary(losses),
        "samples_per_s": steps * batch_size / wall,
        "wall_s": wall,
        "eval_pairs": n_eval,
        "retrieval_top1_before": top1_before,
        "retrieval_top1_after": top1_after[sizes[0]],
        "retrieval_top1_after_by_size": top1_after,
        "loss_bias_only": sigmoid_loss_floor(batch_size),
        "logit_scale": float(model.logit_scale.detach().exp()),
        "logit_bias": float(model.logit_bias.detach()),
        "vision_params": n_params,
    }


# --------------------------------------------------------------------------- classification arm
def scene_label(record: dict[str, Any]) -> str:
    """The class of one ``scenes.jsonl`` record (one of :data:`CLASS_LABELS`)."""
    kind = record.get("kind")
    if kind == "text":
        return "text"
    if kind == "chart":
        if record.get("chart_type") not in ("bar", "line"):
            raise ValueError(f"chart {record.get('image')}: unknown chart type {record.get('chart_type')!r}")
        return f"{record['chart_type']} chart"
    if kind == "scene":
        objects = sorted(record["objects"], key=lambda o: tuple(o["cell"]))
        if not objects:
            raise ValueError(f"scene {record.get('image')} has no objects")
        main = next((o for o in objects if o["size"] == "large"), objects[0])
        label = f"{main['colour']} {main['shape']}"
        if label not in CLASS_LABELS:
            raise ValueError(f"scene {record.get('image')}: '{label}' is not a colour and shape of the world")
        return label
    raise ValueError(f"unknown image kind {kind!r} in {record.get('image')}")


@torch.no_grad()
def _accuracy(
    tower: SiglipVisionModel,
    classifier: torch.nn.Module,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    interpolate: bool = False,
):
    tower.eval()
    logits = classifier(tower(pixel_values=pixels, interpolate_pos_encoding=interpolate).pooler_output)
    return float((logits.argmax(-1) == labels).float().mean())


class _Classifier(torch.nn.Module):
    def __init__(self, tower: SiglipVisionModel, n_classes: int) -> None:
        super().__init__()
        self.tower = tower
        self.classifier = torch.nn.Linear(tower.config.hidden_size, n_classes)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        features = self.tower(pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        return self.classifier(features.pooler_output)


def pretrain_classifier_vision_tower(
    scenes: Sequence[dict[str, Any]] | PathLike,
    image_root: PathLike,
    *,
    vision_arch: dict[str, Any],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    out_dir: PathLike,
    progress: bool = True,
    weight_decay: float = 1e-4,
    warmup: float = 0.1,
    eval_images: int = EVAL_IMAGES,
    aspect: str = "pad",
    precision: str = "fp32",
    also_sizes: Sequence[int] = (),
) -> dict[str, Any]:
    """Classification-pretrained tower: ``SiglipVisionModel`` (with head) + a linear classifier
    trained with cross-entropy over :data:`CLASS_LABELS`; saves the tower (no head) to ``out_dir``.

    ``scenes``: ``scenes.jsonl`` records (or its path); images under ``image_root``. Up to
    ``eval_images`` images (at most a tenth) are held back for accuracy before/after (after: at
    every training size). ``also_sizes`` as in :func:`pretrain_vision_tower`.
    """
    _check_positive(steps=steps, batch_size=batch_size, lr=lr)
    _autocast(precision)
    vision_config = SiglipVisionConfig(**_vision_arch(vision_arch, head=True))
    scenes = _as_scenes(scenes)
    if not scenes:
        raise ValueError("no scene records to pretrain on")
    index = {label: i for i, label in enumerate(CLASS_LABELS)}
    labels = torch.tensor([index[scene_label(r)] for r in scenes])
    sizes = _training_sizes(vision_arch, also_sizes)
    generator = torch.Generator().manual_seed(seed)
    n_eval = min(eval_images, len(scenes) // 10)
    train_idx, eval_idx = _split_eval(len(scenes), n_eval, generator)
    at_size = _images_by_size([r["image"] for r in scenes], image_root, sizes, aspect, progress)

    torch.manual_seed(seed)
    model = _Classifier(SiglipVisionModel(vision_config), len(index))

    def accuracy(size: int) -> float | None:
        processor, images = at_size[size]
        pixels = _normalise(images[eval_idx], processor)
        return _accuracy(model.tower, model.classifier, pixels, labels[eval_idx], size != sizes[0]) if n_eval else None

    acc_before = accuracy(sizes[0])

    def step(sized_batch: tuple[int, torch.Tensor]) -> torch.Tensor:
        size, batch = sized_batch
        rows = train_idx[batch]
        processor, images = at_size[size]
        logits = model(_normalise(images[rows], processor), interpolate_pos_encoding=size != sizes[0])
        return F.cross_entropy(logits, labels[rows])

    losses, wall = _train_loop(
        step,
        model,
        _in_turn(sizes, _batches(len(train_idx), batch_size, generator)),
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        clip=1.0,
        desc="pretrain vision tower (classification)",
        unit="img",
        units_per_step=batch_size,
        show=progress,
        precision=precision,
    )
    acc_after = {size: accuracy(size) for size in sizes}
    n_params = _save_vision_tower(model.tower, vision_arch, out_dir)
    counts = torch.bincount(labels[train_idx], minlength=len(index))
    return {
        "steps": steps,
        "image_sizes": sizes,
        "batch_size": batch_size,
        "lr": lr,
        "precision": precision,
        "train_images": len(train_idx),
        "epochs": round(steps * batch_size / len(train_idx), 3),
        "classes": len(index),
        "majority_share": float(counts.max() / counts.sum()),
        **_loss_summary(losses),
        "samples_per_s": steps * batch_size / wall,
        "wall_s": wall,
        "eval_images": n_eval,
        "accuracy_before": acc_before,
        "accuracy_after": acc_after[sizes[0]],
        "accuracy_after_by_size": acc_after,
        "vision_params": n_params,
    }


def random_vision_tower(vision_arch: dict[str, Any], seed: int, out_dir: PathLike) -> dict[str, Any]:
    """A randomly initialised ``SiglipVisionModel`` (no head), saved to ``out_dir``."""
    torch.manual_seed(seed)
    tower = SiglipVisionModel(SiglipVisionConfig(**_vision_arch(vision_arch, head=False)))
    with atomic_path(out_dir) as tmp:
        tower.save_pretrained(tmp)
    return {"seed": seed, "vision_params": sum(p.numel() for p in tower.parameters())}


# --------------------------------------------------------------------------- causal LM
def _documents(tokenizer: PreTrainedTokenizerBase, lines: Sequence[str]) -> list[list[int]]:
    """Each line as ``[bos] tokens eos``: bos only where the family has one distinct from eos."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token to separate documents")
    bos = tokenizer.bos_token_id
    prefix = [bos] if bos is not None and bos != eos else []
    ids = tokenizer(list(lines), add_special_tokens=False)["input_ids"]
    return [[*prefix, *t, eos] for t in ids]


def _pack(documents: Sequence[list[int]], seq_len: int) -> torch.Tensor:
    """Concatenate the documents and cut them into [n_blocks, seq_len] (the tail is dropped)."""
    flat = np.fromiter((t for doc in documents for t in doc), dtype=np.int64)
    n_blocks = len(flat) // seq_len
    return torch.from_numpy(flat[: n_blocks * seq_len].reshape(n_blocks, seq_len).copy())


@torch.no_grad()
def _perplexity(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, lines: Sequence[str], seq_len: int):
    """Perplexity of held-out lines, each scored on its own as training saw it: after the eos that
    ends the previous document (and the bos, for families that have one), scoring the line's
    tokens and its closing eos. Every family is scored on the same tokens."""
    model.eval()
    eos = tokenizer.eos_token_id
    docs = [[eos, *d][:seq_len] for d in _documents(tokenizer, lines)]
    n_context = 2 if tokenizer.bos_token_id not in (None, eos) else 1  # eos [bos]: given, not scored
    docs = sorted((d for d in docs if len(d) > n_context), key=len)
    total, count = 0.0, 0
    for start in range(0, len(docs), 32):
        chunk = docs[start : start + 32]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, d in enumerate(chunk):
            ids[i, : len(d)] = torch.tensor(d)
            mask[i, : len(d)] = 1
        scored = mask.clone()
        scored[:, :n_context] = 0
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = ids[:, 1:].masked_fill(scored[:, 1:] == 0, -100)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum").item()
        count += int(scored.sum())
    return math.exp(total / count) if count else float("nan")


def pretrain_causal_lm(
    family: str,
    arch: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str] | PathLike,
    *,
    steps: int,
    batch_size: int,
    seq_len: int,
    lr: float,
    seed: int,
    out_dir: PathLike,
    progress: bool = True,
    weight_decay: float = 0.1,
    warmup: float = 0.05,
    eval_lines: int = EVAL_LINES,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Next-token pretraining of ``family``'s causal LM; saves model and tokenizer to ``out_dir``.

    ``arch``: keyword arguments of the family's transformers config; ``arch["vocab_size"]`` is used
    as given and must cover the tokenizer. bos/eos/pad ids come from the tokenizer. ``texts``: the
    corpus lines (or the path of ``lm_corpus.txt``); up to ``eval_lines`` distinct lines (at most a
    tenth) are held back, every copy of them, for perplexity before/after; the rest, in corpus
    order, are packed into ``seq_len``-token blocks (see :func:`_documents`) and shuffled per epoch.
    """
    _check_positive(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr)
    _autocast(precision)
    config_class = family_config_class(family)
    if "vocab_size" not in arch:
        raise ConfigError("the LLM arch must give vocab_size (at least the tokenizer's size)")
    if arch["vocab_size"] < len(tokenizer):
        raise ConfigError(
            f"LLM vocab_size {arch['vocab_size']} is smaller than the tokenizer ({len(tokenizer)} tokens)"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token")
    texts = _as_texts(texts)
    if not texts:
        raise ValueError("the language-model corpus is empty")

    generator = torch.Generator().manual_seed(seed)
    # Hold back distinct lines, and train on no copy of them: the corpus repeats short sentences.
    distinct = list(dict.fromkeys(texts))
    n_eval = min(eval_lines, len(distinct) // 10)
    _, eval_idx = _split_eval(len(distinct), n_eval, generator)
    held_back = {distinct[i] for i in eval_idx.tolist()}
    train_docs = _documents(tokenizer, [t for t in texts if t not in held_back])
    held_out = [distinct[i] for i in eval_idx.tolist()]
    blocks = _pack(train_docs, seq_len)
    if len(blocks) < batch_size:
        raise ValueError(
            f"the corpus gives {len(blocks)} blocks of {seq_len} tokens, fewer than a batch ({batch_size})"
        )

    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = config_class(**{**arch, **special})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    head_bias = getattr(model.get_output_embeddings(), "bias", None)
    if head_bias is not None:
        # Phi-2's lm_head has a bias that LlavaForConditionalGeneration's lm_head lacks: hold it at
        # zero so moving the LM into the multimodal model loses nothing.
        with torch.no_grad():
            head_bias.zero_()
        head_bias.requires_grad_(False)
    ppl_before = _perplexity(model, tokenizer, held_out, seq_len) if n_eval else None

    def step(batch: torch.Tensor) -> torch.Tensor:
        ids = blocks[batch]
        return model(input_ids=ids, labels=ids).loss

    losses, wall = _train_loop(
        step,
        model,
        _batches(len(blocks), batch_size, generator),
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        clip=1.0,
        desc=f"pretrain {family} LM",
        unit="tok",
        units_per_step=batch_size * seq_len,
        show=progress,
        precision=precision,
    )
    ppl_after = _perplexity(model, tokenizer, held_out, seq_len) if n_eval else None
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {
        "family": family,
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lr": lr,
        "precision": precision,
        "train_tokens": int(blocks.numel()),
        "epochs": round(steps * batch_size / len(blocks), 3),
        **_loss_summary(losses),
        "tokens_per_s": steps * batch_size * seq_len / wall,
        "wall_s": wall,
        "eval_lines": n_eval,
        "train_lines": len(train_docs),
        "perplexity_before": ppl_before,
        "perplexity_after": ppl_after,
        "params": sum(p.numel() for p in model.parameters()),
    }
