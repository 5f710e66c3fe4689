"""The vision tower's pretraining: SigLIP's recipe at toy scale.

A ``SiglipModel`` (vision tower with its attention-pooling head, a small text tower) trained with the
sigmoid pairwise loss that ``SiglipModel(return_loss=True)`` computes, on the world's image-caption
pairs (``backbone/vision_pairs.jsonl``). Only the vision tower is kept, without the head, as a
``SiglipVisionModel`` that LLaVA's vision tower loads key for key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, SiglipConfig, SiglipModel, SiglipTextConfig, SiglipVisionConfig

from impkit.config import ConfigError
from impkit.train.backbones.inputs import PathLike, as_pairs
from impkit.train.backbones.loop import run_summary
from impkit.train.backbones.vision import (
    TowerImages,
    save_vision_tower,
    tower_config,
    tower_images,
    tower_record,
    train_tower,
)

# SiglipTextModel pools the *last position* whatever it holds (no use of the attention mask), so
# captions are padded to one fixed length as SigLIP trains them: the pooled slot is always position
# TEXT_MAX_LENGTH - 1. The attention mask is still passed, so that slot reads only caption tokens
# (padding is masked out as keys) and a caption's embedding does not depend on how much padding
# follows it. Captions of the world are at most ~25 BPE tokens; longer ones are truncated.
TEXT_MAX_LENGTH = 32
# Held-back pairs for the before-vs-after evaluation (never trained on).
EVAL_PAIRS = 256
RETRIEVAL_BATCH = 128  # image -> text retrieval among this many captions (chance: 1/128)
# The sigmoid loss's temperature and bias at the start (Zhai et al. 2023, §3.2): t' = log 10 as in
# SigLIP; b = -log(batch size) instead of SigLIP's -10 (which is -log of its 32k batch), i.e. the
# prior that one caption in B matches. With b = -10 and a batch of 32 the cheapest way down is to
# make every embedding alike (cos ~ 0.7 everywhere) and training stalls at the bias-only loss.
SIGLIP_LOGIT_SCALE = math.log(10.0)


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


def _held_back_top1(
    model: SiglipModel,
    images: TowerImages,
    ids: torch.Tensor,
    mask: torch.Tensor,
    captions: Sequence[str],
    size: int,
) -> float | None:
    """Image -> text top-1 of the held-back pairs with their images at ``size`` (None: none held back)."""
    if not images.n_eval:
        return None
    rows = images.eval_idx
    held_back = [captions[i] for i in rows.tolist()]
    return _retrieval_top1(model, images.pixels(size, rows), ids[rows], mask[rows], held_back, images.interpolate(size))


def _siglip_model(
    tokenizer: PreTrainedTokenizerBase,
    vision_config: SiglipVisionConfig,
    text_arch: dict[str, Any],
    *,
    text_max_length: int,
    batch_size: int,
    seed: int,
) -> SiglipModel:
    """The two towers, seeded, with the loss's temperature and bias at their starting values."""
    text_kwargs = {
        "vocab_size": len(tokenizer),
        "max_position_embeddings": text_max_length,
        "projection_size": int(vision_config.hidden_size),
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
    return model


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
    vision_config = tower_config(vision_arch, steps=steps, batch_size=batch_size, lr=lr, precision=precision)
    if int(text_arch.get("max_position_embeddings", text_max_length)) < text_max_length:
        raise ConfigError(f"text tower max_position_embeddings < text_max_length ({text_max_length})")
    pairs = as_pairs(pairs)
    if not pairs:
        raise ValueError("no image-caption pairs to pretrain on")
    images = tower_images(
        [p for p, _ in pairs],
        image_root,
        vision_arch=vision_arch,
        also_sizes=also_sizes,
        max_eval=eval_pairs,
        seed=seed,
        aspect=aspect,
        show=progress,
    )
    captions = [c for _, c in pairs]
    ids, mask = _tokenize_captions(tokenizer, captions, text_max_length)
    model = _siglip_model(
        tokenizer, vision_config, text_arch, text_max_length=text_max_length, batch_size=batch_size, seed=seed
    )

    top1_before = _held_back_top1(model, images, ids, mask, captions, images.sizes[0])

    def loss(rows: torch.Tensor, pixels: torch.Tensor, interpolate: bool) -> torch.Tensor:
        out = model(
            input_ids=ids[rows],
            attention_mask=mask[rows],
            pixel_values=pixels,
            return_loss=True,
            interpolate_pos_encoding=interpolate,
        )
        return out.loss

    losses, wall = train_tower(
        loss,
        model,
        images,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        desc="pretrain vision tower (sigmoid loss)",
        progress=progress,
        precision=precision,
    )
    top1_after = {size: _held_back_top1(model, images, ids, mask, captions, size) for size in images.sizes}
    n_params = save_vision_tower(model.vision_model, vision_arch, out_dir)
    n_train = len(images.train_idx)
    return {
        **tower_record(images, steps=steps, batch_size=batch_size, lr=lr, precision=precision),
        "train_pairs": n_train,
        "epochs": round(steps * batch_size / n_train, 3),
        **run_summary(losses, wall, steps * batch_size, "samples_per_s"),
        "eval_pairs": images.n_eval,
        "retrieval_top1_before": top1_before,
        "retrieval_top1_after": top1_after[images.sizes[0]],
        "retrieval_top1_after_by_size": top1_after,
        "loss_bias_only": sigmoid_loss_floor(batch_size),
        "logit_scale": float(model.logit_scale.detach().exp()),
        "logit_bias": float(model.logit_bias.detach()),
        "vision_params": n_params,
    }
