"""Presets -> ``LlavaConfig`` / ``LlavaForConditionalGeneration`` with no remote code.

The Imp architecture (paper §2, imp-recipe.md): SigLIP vision tower, features of the penultimate
layer for every patch (no CLS token, no pooling head), a 2-layer GELU MLP projector, and the
family's causal LM. Saved releases load with ``LlavaForConditionalGeneration.from_pretrained``, or,
where the LLM's head has a bias (Phi-2), with ``AutoModelForImageTextToText`` once impkit is imported
(``impkit.model.head_bias``).
"""

from __future__ import annotations

from typing import Any

from transformers import (
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Phi3Config,
    PhiConfig,
    PretrainedConfig,
    Qwen2Config,
    SiglipVisionConfig,
)

from impkit.config import ConfigError, PresetConfig
from impkit.model.head_bias import config_class, model_class

# family -> transformers config class. Exact keys: an unknown family is an error listing these.
LLM_FAMILIES: dict[str, type[PretrainedConfig]] = {
    "phi2": PhiConfig,
    "qwen2": Qwen2Config,
    "phi3": Phi3Config,
    "llama": LlamaConfig,
}

# LoRA targets per family: every Linear of the LLM, lm_head included (Imp's LoRA recipe, Table 1).
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "phi2": ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2", "lm_head"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"),
}


def family_config_class(family: str) -> type[PretrainedConfig]:
    try:
        return LLM_FAMILIES[family]
    except KeyError:
        raise ConfigError(f"unknown LLM family '{family}'; known families: {sorted(LLM_FAMILIES)}") from None


def vision_config(preset: PresetConfig, num_layers: int | None = None) -> SiglipVisionConfig:
    arch = dict(preset.vision.arch)
    if num_layers is not None:
        arch["num_hidden_layers"] = num_layers
    # The attention-pooling head of SigLIP is never used by LLaVA-style models: do not build it.
    arch.setdefault("vision_use_head", False)
    return SiglipVisionConfig(**arch)


def text_config(
    preset: PresetConfig,
    vocab_size: int | None = None,
    num_layers: int | None = None,
    special_ids: dict[str, int | None] | None = None,
) -> PretrainedConfig:
    """The family's config; ``special_ids`` (bos/eos/pad_token_id) come from the tokenizer in use,
    never from a family's defaults (Phi-3's default pad id 32000 does not exist in other vocabularies)."""
    arch = dict(preset.llm.arch)
    arch.update(special_ids or {})
    if vocab_size is not None:
        arch["vocab_size"] = vocab_size
    if num_layers is not None:
        arch["num_hidden_layers"] = num_layers
    return family_config_class(preset.family)(**arch)


def num_image_tokens(preset: PresetConfig) -> int:
    """Visual tokens per image: every patch (SigLIP has no CLS token), e.g. 27² = 729 at 384 px.

    The patch convolution has stride = patch size, so 384 px / 14 gives 27 patches a side (the last
    6 pixels are never seen), exactly as SigLIP-SO400M runs.
    """
    return (preset.vision.arch["image_size"] // preset.vision.arch["patch_size"]) ** 2


def llava_config(
    preset: PresetConfig,
    *,
    image_token_id: int,
    vocab_size: int | None = None,
    special_ids: dict[str, int | None] | None = None,
    vision_layers: int | None = None,
    llm_layers: int | None = None,
    head_bias: bool = False,
) -> LlavaConfig:
    """The Imp-shaped ``LlavaConfig``; ``*_layers`` reduce depth (tests build real shapes this way).
    ``head_bias``: the LLM's head has a bias to keep (Phi-2): the config of ``LlavaWithHeadBias``."""
    text = text_config(preset, vocab_size, llm_layers, special_ids)
    if image_token_id >= text.vocab_size:
        raise ConfigError(f"image token id {image_token_id} is outside the vocabulary ({text.vocab_size})")
    return config_class(head_bias)(
        vision_config=vision_config(preset, vision_layers),
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=num_image_tokens(preset),
        vision_feature_layer=-2,  # penultimate layer (26 of SO400M's 27 run), as LLaVA-1.5 and Imp
        vision_feature_select_strategy="full",  # keep every patch: SigLIP has no CLS token to drop
        projector_hidden_act="gelu",  # mlp2x_gelu: Linear -> GELU -> Linear
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(text.tie_word_embeddings),
    )


def build_model(config: LlavaConfig, seed: int = 0) -> LlavaForConditionalGeneration:
    """A randomly initialised model (backbone weights are loaded or trained separately)."""
    import torch

    torch.manual_seed(seed)
    return model_class(config)(config)


def describe(preset: PresetConfig) -> dict[str, Any]:
    """Headline shape facts, for logs and release records."""
    v, t = preset.vision.arch, preset.llm.arch
    return {
        "family": preset.family,
        "vision": f"SigLIP {v['hidden_size']}d x{v['num_hidden_layers']} @{v['image_size']}px/{v['patch_size']}",
        "image_tokens": num_image_tokens(preset),
        "llm": f"{preset.family} {t['hidden_size']}d x{t['num_hidden_layers']}",
    }
