"""The model stage 1 starts from: a preset's pretrained parts put together with a fresh projector.

Offline presets: the shared BPE tokenizer wrapped with the family's special tokens and chat
template, the pretrained SigLIP-style tower and the family's pretrained causal LM, all built by the
`backbones` stage. Real presets: the tokenizer, SigLIP and LLM from their hub id or local folder at
the pinned revision, with the template's answer end (Phi-2's ``</s>``) and ``<image>`` added as real
tokens with the ids Imp's released checkpoints give them. Phi-2's head bias is kept
(``LlavaWithHeadBias``), so the assembled model's text logits are the LLM's own.
In both cases the projector starts random and is what stage 1 trains.
"""

from __future__ import annotations

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
    """A real preset's source that cannot be loaded (no such folder, no hub access, no such revision),
    or whose weights do not fit the preset (missing tensors, other shapes)."""


def _load(loader, preset_name: str, part: str, source: str, revision: str | None):
    """``loader.from_pretrained(source, revision=...)``, failing in one line that names the preset's key."""
    try:
        return loader.from_pretrained(source, revision=revision)
    except (OSError, ValueError, RuntimeError) as exc:  # transformers: OSError for a missing folder / repo /
        # weights file, ValueError for a bad id, RuntimeError for weights of other shapes
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        at = f" at revision {revision}" if revision else ""
        raise WeightsNotFound(
            f"preset {preset_name}: model.presets.{preset_name}.{part}.source '{source}'{at} cannot be "
            f"loaded: {reason} (give a local folder in the published layout, or a hub id where the hub "
            "can be reached)"
        ) from None


def _load_weights(module: torch.nn.Module, weights: dict, preset_name: str, part: str, source: str) -> None:
    """``module.load_state_dict(weights)``: any missing tensor or other shape is one line naming them."""
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    shapes = [
        f"{k} {tuple(weights[k].shape)} (the preset's arch gives {tuple(own[k].shape)})"
        for k in own
        if k in weights and weights[k].shape != own[k].shape
    ]
    if missing or shapes:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} tensors: {', '.join(missing[:4])}{' ...' * (len(missing) > 4)}")
        if shapes:
            problems.append(f"other shapes: {', '.join(shapes[:3])}{' ...' * (len(shapes) > 3)}")
        what = "; ".join(problems)
        raise WeightsNotFound(f"preset {preset_name}: the {part} weights of '{source}' do not fit: {what}")
    module.load_state_dict(weights, strict=False)


def add_imp_tokens(tok: PreTrainedTokenizerBase, template: str) -> PreTrainedTokenizerBase:
    """The tokens Imp adds to a real LLM's tokenizer, in Imp's order: the template's answer end where
    the vocabulary lacks it (Phi-2's ``</s>`` -> id 50295), then ``<image>`` as a real token (50296 on
    Phi-2, 151646 on Qwen1.5, 32011 on Phi-3-mini). Both are special: never split, never merged."""
    end = get_template(template).answer_end.strip()
    new = [t for t in (end, IMAGE_TOKEN) if t and t not in tok.get_vocab()]
    if new:
        tok.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok


def _real_tokenizer(preset: PresetConfig, name: str) -> PreTrainedTokenizerBase:
    tok = _load(AutoTokenizer, name, "llm", preset.llm.source, preset.llm.revision)
    add_imp_tokens(tok, preset.template)
    tok.chat_template = jinja_chat_template(get_template(preset.template))
    return tok


def _head_bias(llm: torch.nn.Module) -> torch.Tensor | None:
    """The LLM's head bias worth keeping: Phi-2's. The offline phi2 analogs are trained with theirs held
    at zero (``train.backbones.lm``): dropping an all-zero bias loses nothing and keeps their
    releases stock ``llava`` checkpoints."""
    bias = getattr(llm.get_output_embeddings(), "bias", None)
    if bias is None or not bool(bias.detach().abs().max() > 0):
        return None
    return bias.detach()


def starting_model(preset: PresetConfig, backbones: Path | None = None, seed: int = 0, name: str = "?"):
    """(model, tokenizer) with pretrained vision tower and LLM and a fresh projector. ``name``: the
    preset's name in params.yaml, for error messages."""
    if preset.offline:
        if backbones is None:
            raise ValueError("offline presets need the backbones folder")
        check_backbones(backbones, preset.family)
        tokenizer = offline_tokenizer(preset, backbones)
        vision = SiglipVisionModel.from_pretrained(backbones / VISION_DIR)
        llm = AutoModelForCausalLM.from_pretrained(llm_dir(backbones, preset.family))
    else:
        tokenizer = _real_tokenizer(preset, name)
        vision = _load(SiglipVisionModel, name, "vision", preset.vision.source, preset.vision.revision)
        llm = _load(AutoModelForCausalLM, name, "llm", preset.llm.source, preset.llm.revision)
        if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
            llm.resize_token_embeddings(len(tokenizer))
    vocab = llm.get_input_embeddings().num_embeddings
    bias = _head_bias(llm)
    config = llava_config(
        preset,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vocab_size=vocab,
        special_ids=special_ids(tokenizer),
        head_bias=bias is not None,
    )
    model = build_model(config, seed=seed)
    weights = vision.state_dict()
    key = "embeddings.position_embedding.weight"
    target = model.model.vision_tower.state_dict()[key]
    if key in weights and weights[key].shape != target.shape:
        weights[key] = resize_position_embeddings(weights[key], target.shape[0])
    source_of = {"vision": preset.vision.source or "backbones", "llm": preset.llm.source or "backbones"}
    _load_weights(model.model.vision_tower, weights, name, "vision", source_of["vision"])
    _load_weights(model.model.language_model, llm.model.state_dict(), name, "llm", source_of["llm"])
    head = {k: v for k, v in llm.lm_head.state_dict().items() if k != "bias" or bias is not None}
    _load_weights(model.lm_head, head, name, "llm", source_of["llm"])
    del vision, llm
    return model, tokenizer


def resize_position_embeddings(weight: torch.Tensor, n_positions: int) -> torch.Tensor:
    """Bicubic resize of a square grid of position embeddings (how Imp-3B@196 reuses SigLIP@384:
    27x27 -> 14x14; here the shared 64 px tower -> the 48 px twin, 4x4 -> 3x3)."""
    old, new = round(weight.shape[0] ** 0.5), round(n_positions**0.5)
    grid = weight.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(new * new, -1).contiguous()
