"""The release folder: the one contract between training and everything after it.

Training writes a release with :func:`write_release`; evaluation, export, latency (and anything that
serves, lists or imports releases) read it through :class:`Release` and never through file names of
their own. A release folder is a stock transformers LLaVA checkpoint plus one record::

    config.json  model.safetensors  generation_config.json   LlavaForConditionalGeneration
    tokenizer.json  tokenizer_config.json  chat_template.jinja  the tokenizer with <image> and the template
    processor_config.json                                     LlavaProcessor (LlavaImageProcessorPil)
    impkit.json                                               preset, family, template, image aspect and
                                                              tokens, the training summary

``LlavaForConditionalGeneration.from_pretrained(dir)`` and ``AutoProcessor.from_pretrained(dir)`` load it
with no remote code (a release whose LM head has a bias, Phi-2's, is a ``llava_head_bias`` checkpoint
that ``AutoModelForImageTextToText`` loads once impkit is imported, see ``impkit.model.head_bias``) (the friction users report with Imp's and Bunny's ``model of type imp``), and the
processor prepares images exactly as impkit trains on them: padded to a square with the mean colour
where the preset says ``image_aspect: pad`` (LLaVA-1.5's ``expand2square``), then resized.

A release exported for llama.cpp is a second folder (the export stage's) holding ``llm-<LEVEL>.gguf``
per quantization level and one ``mmproj-<LEVEL>.gguf``; :func:`gguf_levels` and :func:`mmproj_file`
find them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerBase
from transformers.models.llava import LlavaImageProcessorPil

from impkit.config import QUANT_LEVELS, PresetConfig
from impkit.data.templates import get_template
from impkit.errors import ImpkitError
from impkit.io import atomic_path
from impkit.model.head_bias import model_class
from impkit.model.image_processing import SIGLIP_MEAN, SIGLIP_STD, ImageProcessor
from impkit.model.presets import num_image_tokens
from impkit.model.tokenizer import IMAGE_TOKEN

RELEASE_META = "impkit.json"
PROCESSOR_CONFIG = "processor_config.json"
MODEL_CONFIG = "config.json"
# What every release records (write_release always writes them); readers may ask for more.
REQUIRED_META = ("template", "image_aspect", "family")


class ReleaseError(ImpkitError, ValueError):
    """A release folder that does not say what its readers need (the message names the file and keys)."""


class ReleaseNotFound(ReleaseError, FileNotFoundError):
    """A folder that is no release (or an export folder without its GGUF files)."""


def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ReleaseNotFound(f"{path} not found: {folder} is not a release folder")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReleaseError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ReleaseError(f"{path} holds a JSON {type(record).__name__}, not an object")
    return record


@dataclass(frozen=True)
class Release:
    """A release folder, its record (``impkit.json``) and its model config (``config.json``), read and
    checked when opened; the weights load on :meth:`load`."""

    folder: Path
    meta: dict[str, Any]
    config: dict[str, Any]

    @classmethod
    def open(cls, folder: str | Path, required: tuple[str, ...] = ()) -> Release:
        """The release in ``folder``; a clear error when it is none, lacks a record key
        (``REQUIRED_META`` plus ``required``) or disagrees with itself about its image tokens."""
        folder = Path(folder)
        meta = _read_json(folder / RELEASE_META, folder)
        missing = [key for key in dict.fromkeys((*REQUIRED_META, *required)) if key not in meta]
        if missing:
            raise ReleaseError(f"{folder / RELEASE_META} lacks {missing}")
        config = _read_json(folder / MODEL_CONFIG, folder)
        vision = config.get("vision_config") or {}
        if not isinstance(vision.get("image_size"), int) or not isinstance(vision.get("patch_size"), int):
            raise ReleaseError(f"{folder / MODEL_CONFIG} lacks vision_config.image_size / patch_size")
        release = cls(folder, meta, config)
        if "image_tokens" in meta and meta["image_tokens"] != release.image_tokens:
            raise ReleaseError(
                f"{folder / RELEASE_META} says {meta['image_tokens']} image tokens, the vision config "
                f"gives ({release.image_size} // {release.patch_size})² = {release.image_tokens}"
            )
        return release

    # -- what the record says ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.meta.get("preset") or self.folder.name)

    @property
    def template(self) -> str:
        return self.meta["template"]

    @property
    def image_aspect(self) -> str:
        return self.meta["image_aspect"]

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def image_size(self) -> int:
        return int(self.config["vision_config"]["image_size"])

    @property
    def patch_size(self) -> int:
        return int(self.config["vision_config"]["patch_size"])

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2  # SigLIP: every patch, no CLS token

    # -- images -------------------------------------------------------------------------------------

    def normalisation(self, *, required: bool = False) -> tuple[list[float], list[float]]:
        """(mean, std) of ``processor_config.json``; SigLIP's 0.5 / 0.5 where the folder has no processor
        config, unless ``required`` (the GGUF export writes them into the mmproj and must not guess)."""
        path = self.folder / PROCESSOR_CONFIG
        if not path.is_file():
            if required:
                raise ReleaseNotFound(f"{path} not found: {self.folder} is not a release folder")
            return list(SIGLIP_MEAN), list(SIGLIP_STD)
        proc = _read_json(path, self.folder)
        proc = proc.get("image_processor", proc)
        size = proc.get("size") or {}
        if size and {size.get("height"), size.get("width")} != {self.image_size}:
            raise ReleaseError(f"{path} resizes to {size}, the vision tower takes {self.image_size} px")
        if required and ("image_mean" not in proc or "image_std" not in proc):
            raise ReleaseError(f"{path} lacks image_mean / image_std")
        return list(proc.get("image_mean", SIGLIP_MEAN)), list(proc.get("image_std", SIGLIP_STD))

    def image_processor(self) -> ImageProcessor:
        """impkit's image preparation for this release (size, aspect and normalisation it records)."""
        mean, std = self.normalisation()
        return ImageProcessor(size=self.image_size, aspect=self.image_aspect, mean=tuple(mean), std=tuple(std))

    # -- weights ------------------------------------------------------------------------------------

    def load(self, dtype: torch.dtype | str = torch.float32, *, strict: bool = False):
        """(model, tokenizer) as transformers loads them. ``strict``: a checkpoint tensor the model class
        does not know (it would be dropped) or a missing one (it would be random) is an error, named."""
        cls = model_class(self.config)  # LlavaWithHeadBias where the LM head has a bias (Phi-2)
        model, info = cls.from_pretrained(self.folder, dtype=dtype, output_loading_info=True)
        problems = {kind: sorted(info.get(f"{kind}_keys") or []) for kind in ("unexpected", "missing", "mismatched")}
        if strict and any(problems.values()):
            raise ReleaseError(
                f"{self.folder}: the checkpoint does not match {cls.__name__} "
                + "; ".join(f"{kind}: {', '.join(map(str, keys))}" for kind, keys in problems.items() if keys)
            )
        return model, AutoTokenizer.from_pretrained(self.folder)


# -- writing ----------------------------------------------------------------------------------------


def processor_for(preset: PresetConfig, tokenizer: PreTrainedTokenizerBase) -> LlavaProcessor:
    """A stock LlavaProcessor that prepares images as impkit does (``ImageProcessor``): pad to a square
    with the mean colour when the preset's aspect is "pad", resize bicubically to the tower's input,
    normalise as SigLIP; ``<image>`` expands to one token per patch."""
    size = preset.vision.arch["image_size"]
    image_processor = LlavaImageProcessorPil(
        size={"height": size, "width": size},
        do_center_crop=False,
        do_pad=preset.image_aspect == "pad",
        image_mean=list(SIGLIP_MEAN),
        image_std=list(SIGLIP_STD),
        resample=3,
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


def write_release(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    preset: PresetConfig,
    out_dir: str | Path,
    meta: dict[str, Any],
) -> Release:
    """Write a plain (LoRA already merged) model as a release folder, atomically."""
    # Generation stops at the template's answer end marker (e.g. Phi-2's "</s>", ChatML's
    # "<|im_end|>"), not only at the tokenizer's eos, as chat front ends expect.
    stops = [
        tokenizer.convert_tokens_to_ids(t) for t in get_template(preset.template).stop if t in tokenizer.get_vocab()
    ]
    model.generation_config.eos_token_id = sorted({tokenizer.eos_token_id, *stops} - {None})
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor_for(preset, tokenizer).save_pretrained(tmp)
        record = {
            "image_aspect": preset.image_aspect,
            "template": preset.template,
            "family": preset.family,
            "image_tokens": num_image_tokens(preset),
            **meta,
        }
        (tmp / RELEASE_META).write_text(json.dumps(record, indent=2, default=str) + "\n")
        release = Release.open(tmp)  # a folder that disagrees with itself is never put in place
    return replace(release, folder=out_dir)


# -- the exported GGUF files ------------------------------------------------------------------------


def check_level(level: str) -> str:
    if level not in QUANT_LEVELS:
        raise ReleaseError(f"unknown quantization level {level!r}; known levels: {', '.join(QUANT_LEVELS)}")
    return level


def llm_filename(level: str = "F16") -> str:
    return f"llm-{check_level(level)}.gguf"


def mmproj_filename(level: str = "F16") -> str:
    return f"mmproj-{check_level(level)}.gguf"


_LLM_FILE = re.compile(r"llm-(.+)\.gguf")


def gguf_levels(folder: str | Path) -> dict[str, Path]:
    """``llm-<LEVEL>.gguf`` files of an export folder, level -> path, in ``QUANT_LEVELS`` order."""
    found = {}
    for path in Path(folder).glob("llm-*.gguf"):
        match = _LLM_FILE.fullmatch(path.name)
        if match and match.group(1) in QUANT_LEVELS:
            found[match.group(1)] = path
    return {level: found[level] for level in QUANT_LEVELS if level in found}


def mmproj_file(folder: str | Path) -> Path:
    """The export folder's vision file (``mmproj-F16.gguf`` preferred when several levels exist)."""
    files = {p.name.removeprefix("mmproj-").removesuffix(".gguf"): p for p in Path(folder).glob("mmproj-*.gguf")}
    for level in ("F16", *QUANT_LEVELS):
        if level in files:
            return files[level]
    raise ReleaseNotFound(f"no mmproj-<LEVEL>.gguf in {folder} (run the export stage first)")
