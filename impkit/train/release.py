"""Saving a release checkpoint: merged weights + tokenizer + processor, loadable with no remote code.

``LlavaForConditionalGeneration.from_pretrained(dir)`` and ``AutoProcessor.from_pretrained(dir)``
load it as they load any LLaVA checkpoint — the opposite of the remote-code friction users report
with Imp and Bunny (``model of type imp to instantiate a model of type llava``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import LlavaProcessor, PreTrainedTokenizerBase
from transformers.models.siglip import SiglipImageProcessorPil

from impkit.config import PresetConfig
from impkit.io import atomic_path
from impkit.model.presets import num_image_tokens
from impkit.model.tokenizer import IMAGE_TOKEN
from impkit.train.parts import merged

RELEASE_META = "impkit.json"
PROCESSOR_CONFIG = "processor_config.json"


class ReleaseError(ValueError):
    """A release folder that does not say what its readers need (the message names the file and keys)."""


def read_release_meta(folder: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A release folder's ``impkit.json`` (template, image aspect, family, preset, training facts),
    with a clear error when the folder is no release or the record lacks a ``required`` key."""
    path = Path(folder) / RELEASE_META
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a release folder")
    meta = json.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in required if key not in meta]
    if missing:
        raise ReleaseError(f"{path} lacks {missing}")
    return meta


def processor_for(preset: PresetConfig, tokenizer: PreTrainedTokenizerBase) -> LlavaProcessor:
    """A stock LlavaProcessor: expands <image> to one token per patch and normalises as SigLIP.

    It resizes straight to the square input; impkit's own ``ImageProcessor`` also implements Imp's
    "pad" mode, which ``impkit.json`` records (pad the image to a square first for identical input).
    """
    size = preset.vision.arch["image_size"]
    image_processor = SiglipImageProcessorPil(
        size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=preset.vision.arch["patch_size"],
        vision_feature_select_strategy="full",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=0,
        chat_template=tokenizer.chat_template,
    )


def save_release(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    preset: PresetConfig,
    out_dir: Path,
    meta: dict[str, Any],
) -> Path:
    """Merge LoRA (if any) and write the release folder atomically."""
    final = merged(model)
    # Generation stops at the template's answer end marker (e.g. Phi-2's "</s>", ChatML's
    # "<|im_end|>"), not only at the tokenizer's eos, as chat front ends expect.
    from impkit.data.templates import get_template

    stops = [
        tokenizer.convert_tokens_to_ids(t) for t in get_template(preset.template).stop if t in tokenizer.get_vocab()
    ]
    final.generation_config.eos_token_id = sorted({tokenizer.eos_token_id, *stops} - {None})
    final.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_path(out_dir) as tmp:
        final.save_pretrained(tmp)
        processor_for(preset, tokenizer).save_pretrained(tmp)
        record = {"image_aspect": preset.image_aspect, "template": preset.template, "family": preset.family,
                  "image_tokens": num_image_tokens(preset), **meta}  # fmt: skip
        (tmp / RELEASE_META).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return out_dir
