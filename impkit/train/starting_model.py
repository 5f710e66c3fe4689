"""The model stage 1 starts from: a preset's pretrained parts put together with a fresh projector.

Offline presets: the shared BPE tokenizer wrapped with the family's special tokens and chat
template, the pretrained SigLIP-style tower and the family's pretrained causal LM, all built by the
`backbones` stage. Real presets: the tokenizer, SigLIP and LLM from their hub id or local folder at
the pinned revision, with ``<image>`` added as a real token (as Imp's released checkpoints do).
In both cases the projector starts random and is what stage 1 trains.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, SiglipVisionModel

from impkit.config import PresetConfig
from impkit.data.templates import get_template, jinja_chat_template
from impkit.errors import ImpkitError
from impkit.model.presets import build_model, llava_config
from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer
from impkit.train.layout import TOKENIZER_FILE, VISION_DIR, check_backbones, llm_dir

log = logging.getLogger(__name__)


def special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int | None]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def offline_tokenizer(preset: PresetConfig, backbones: Path) -> PreTrainedTokenizerBase:
    base = Tokenizer.from_file(str(backbones / TOKENIZER_FILE))
    return family_tokenizer(base, preset.family, chat_template=jinja_chat_template(get_template(preset.template)))


class WeightsNotFound(ImpkitError):
    """A real preset's source that cannot be loaded (no such folder, no hub access, no such revision)."""


def _load(loader, part: str, source: str, revision: str | None):
    """``loader.from_pretrained(source, revision=...)``, failing in one line that names the preset's key."""
    try:
        return loader.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as exc:  # transformers: OSError for a missing folder / repo, ValueError for a bad id
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        at = f" at revision {revision}" if revision else ""
        raise WeightsNotFound(
            f"the preset's {part}.source '{source}'{at} cannot be loaded: {reason} (give a local "
            "folder in the published layout, or a hub id where the hub can be reached)"
        ) from None


def _real_tokenizer(preset: PresetConfig) -> PreTrainedTokenizerBase:
    tok = _load(AutoTokenizer, "llm", preset.llm.source, preset.llm.revision)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]}, replace_additional_special_tokens=False)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    tok.chat_template = jinja_chat_template(get_template(preset.template))
    return tok


def starting_model(preset: PresetConfig, backbones: Path | None = None, seed: int = 0):
    """(model, tokenizer) with pretrained vision tower and LLM and a fresh projector."""
    if preset.offline:
        if backbones is None:
            raise ValueError("offline presets need the backbones folder")
        check_backbones(backbones, preset.family)
        tokenizer = offline_tokenizer(preset, backbones)
        vision = SiglipVisionModel.from_pretrained(backbones / VISION_DIR)
        llm = AutoModelForCausalLM.from_pretrained(llm_dir(backbones, preset.family))
    else:
        tokenizer = _real_tokenizer(preset)
        vision = _load(SiglipVisionModel, "vision", preset.vision.source, preset.vision.revision)
        llm = _load(AutoModelForCausalLM, "llm", preset.llm.source, preset.llm.revision)
        if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
            llm.resize_token_embeddings(len(tokenizer))
    vocab = llm.get_input_embeddings().num_embeddings
    config = llava_config(
        preset,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vocab_size=vocab,
        special_ids=special_ids(tokenizer),
    )
    model = build_model(config, seed=seed)
    weights = vision.state_dict()
    key = "embeddings.position_embedding.weight"
    target = model.model.vision_tower.state_dict()[key]
    if weights[key].shape != target.shape:
        weights[key] = resize_position_embeddings(weights[key], target.shape[0])
    result = model.model.vision_tower.load_state_dict(weights, strict=False)
    if result.missing_keys:
        raise ValueError(f"vision tower weights missing: {result.missing_keys[:5]}")
    model.model.language_model.load_state_dict(llm.model.state_dict())
    head = llm.lm_head.state_dict()
    bias = head.pop("bias", None)
    if bias is not None and bool(bias.abs().max() > 0):
        # LlavaForConditionalGeneration's lm_head has no bias; Phi-2's has one. The offline phi2
        # analogs train with it fixed at zero (lossless); a real Phi-2 loses it: say so loudly.
        log.warning(
            "the LLM's lm_head bias (max |b| = %.4g) has no place in LlavaForConditionalGeneration and is dropped",
            float(bias.abs().max()),
        )
    model.lm_head.load_state_dict(head)
    del vision, llm
    return model, tokenizer


def resize_position_embeddings(weight: torch.Tensor, n_positions: int) -> torch.Tensor:
    """Bicubic resize of a square grid of position embeddings (how Imp-3B@196 reuses SigLIP@384:
    27x27 -> 14x14; here the shared 64 px tower -> the 48 px twin, 4x4 -> 3x3)."""
    old, new = round(weight.shape[0] ** 0.5), round(n_positions**0.5)
    grid = weight.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(new * new, -1).contiguous()
