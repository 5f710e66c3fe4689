"""Which parameters train in each stage (paper §2 and Table 1; imp-recipe.md).

Stage 1: the projector only; vision tower and LLM frozen. Stage 2: LoRA on every Linear of the LLM
(lm_head included) with the projector still training, or the whole LLM and projector for full
fine-tuning. The vision tower stays frozen in both stages.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from impkit.config import LoraTraining
from impkit.model.presets import LORA_TARGETS

PARTS = ("vision_tower", "multi_modal_projector", "language_model", "lm_head")


def part_of(name: str) -> str:
    """The model part a parameter belongs to (LoRA weights report as 'lora')."""
    if "lora_" in name:
        return "lora"
    for part in PARTS:
        if f"{part}." in name or name.startswith(part):
            return "llm" if part in ("language_model", "lm_head") else part.replace("multi_modal_", "")
    return "other"


def count_parameters(model: torch.nn.Module) -> dict[str, dict[str, int]]:
    """{part: {"trainable": n, "frozen": n}} for vision_tower, projector, llm, lora."""
    counts: dict[str, dict[str, int]] = {}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if id(param) in seen:  # tied weights count once
            continue
        seen.add(id(param))
        bucket = counts.setdefault(part_of(name), {"trainable": 0, "frozen": 0})
        bucket["trainable" if param.requires_grad else "frozen"] += param.numel()
    return counts


def prepare_stage1(model: torch.nn.Module) -> torch.nn.Module:
    model.requires_grad_(False)
    model.model.multi_modal_projector.requires_grad_(True)
    return model


def lora_target_pattern(family: str) -> str:
    """Every LLM Linear of the family plus lm_head, and nothing in the vision tower (SigLIP has its
    own q_proj/fc1/fc2, which a bare name list would also catch)."""
    names = [n for n in LORA_TARGETS[family] if n != "lm_head"]
    return rf"(.*\.language_model\..*\.({'|'.join(map(re.escape, names))})|lm_head)"


def prepare_stage2(model: torch.nn.Module, family: str, lora: LoraTraining) -> torch.nn.Module:
    """LoRA (a PeftModel whose projector trains too) or full fine-tuning of LLM + projector."""
    model.requires_grad_(False)
    if not lora.enabled:
        model.model.language_model.requires_grad_(True)
        model.lm_head.requires_grad_(True)
        model.model.multi_modal_projector.requires_grad_(True)
        return model
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias="none",
        target_modules=lora_target_pattern(family),
        modules_to_save=["multi_modal_projector"],  # the projector keeps training in stage 2
    )
    return get_peft_model(model, config)


@contextlib.contextmanager
def gathered_weights(model: torch.nn.Module) -> Iterator[None]:
    """Inside: every weight of ``model`` whole in every training process. ZeRO-3 leaves each process
    holding only its shard after training (an empty tensor per weight), so merging LoRA and saving
    the release must happen in here, entered by every process (it gathers collectively). Without
    ZeRO-3 partitioned weights it does nothing."""
    params = list(model.parameters())
    if not any(hasattr(p, "ds_id") for p in params):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        yield


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """Fold LoRA into the weights for release (Imp releases merged checkpoints)."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model
