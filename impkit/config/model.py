"""The `model` section: presets (the Imp family and the offline analogs) and their backbones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from impkit.config.loading import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: where its weights come from and the architecture keys of its HF config.

    ``arch`` holds the keyword arguments of the family's transformers config class (e.g.
    ``Qwen2Config``), so a preset builds its model at full size, at reduced depth for tests, or
    from scratch for the offline analogs, with one code path.
    """

    arch: Mapping[str, Any]
    source: str | None = None  # hub id or local directory with real weights; None: trained by impkit
    revision: str | None = None  # pinned hub revision (upstream Phi-2 changes once broke Imp)


@dataclass(frozen=True)
class PresetConfig:
    family: str  # LLM family: phi2 | qwen2 | phi3 | llama (dispatch key, never a name substring)
    template: str  # chat template: phi2 | qwen2 | phi3 (see impkit/data/templates.py)
    image_aspect: str  # pad | square (Imp pads to a square with the mean colour)
    vision: BackboneSpec  # SigLIP vision tower (SiglipVisionConfig keys)
    llm: BackboneSpec
    offline: bool  # True: a tiny analog whose backbones impkit pretrains from the synthetic world
    train: str  # name of the training recipe in params.yaml `train.recipes` (real | nano)

    def __post_init__(self) -> None:
        if self.image_aspect not in ("pad", "square"):
            raise ConfigError(f"image_aspect must be 'pad' or 'square', got '{self.image_aspect}'")
