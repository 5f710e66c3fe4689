"""Phi-2's biased LM head inside the LLaVA model, without remote code.

Phi-2 (and every Imp-3B) computes its logits with ``lm_head = Linear(d, vocab, bias=True)``;
``LlavaForConditionalGeneration`` builds its head without a bias, so loading Phi-2 into it shifts
every logit by that bias (top-1 agreement with Phi-2 falls to chance). ``LlavaWithHeadBias`` is
the stock class with one change, a biased head; its config is ``LlavaConfig`` under its own
``model_type`` so that ``AutoConfig`` / ``AutoModelForImageTextToText`` pick the right class once
this module is imported (``import impkit.model`` registers it). A release without a head bias
(every offline analog, Qwen1.5, Phi-3) stays a plain ``llava`` checkpoint.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

HEAD_BIAS_MODEL_TYPE = "llava_head_bias"


class LlavaHeadBiasConfig(LlavaConfig):
    """``LlavaConfig`` of a model whose LM head has a bias (Phi-2's)."""

    model_type = HEAD_BIAS_MODEL_TYPE


class LlavaWithHeadBias(LlavaForConditionalGeneration):
    """``LlavaForConditionalGeneration`` with ``lm_head.bias``: forward, loss, generate, PEFT and
    ``save_pretrained`` are the stock class's; only the head's shape differs."""

    config_class = LlavaHeadBiasConfig

    def __init__(self, config: LlavaHeadBiasConfig):
        super().__init__(config)
        text = config.text_config
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=True)
        nn.init.zeros_(self.lm_head.bias)
        self.post_init()


AutoConfig.register(HEAD_BIAS_MODEL_TYPE, LlavaHeadBiasConfig, exist_ok=True)
AutoModelForImageTextToText.register(LlavaHeadBiasConfig, LlavaWithHeadBias, exist_ok=True)


def config_class(head_bias: bool) -> type[LlavaConfig]:
    return LlavaHeadBiasConfig if head_bias else LlavaConfig


def model_class(config: LlavaConfig | dict[str, Any]) -> type[LlavaForConditionalGeneration]:
    """The class a config (object or ``config.json`` dict) was saved from."""
    model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
    return LlavaWithHeadBias if model_type == HEAD_BIAS_MODEL_TYPE else LlavaForConditionalGeneration
