"""The `world` section: the synthetic world's seeds, image size and family sizes."""

from __future__ import annotations

from dataclasses import dataclass

from impkit.config.loading import ConfigError, Count


@dataclass(frozen=True)
class WorldSizes:
    """How many records of each synthetic family to generate (docs/data.md, "The synthetic world")."""

    captions: Count  # stage-1 image–caption pairs (LLaVA-Pretrain-558K analog)
    vqa: Count  # short-answer VQA: colour, shape, count, position/relations, size
    existence: Count  # yes/no object existence (POPE-style)
    multiple_choice: Count  # lettered options
    text_reading: Count  # questions about words rendered in the image
    textcaps: Count  # captions of the text images, sharing images with text_reading
    charts: Count  # bar and line charts with questions (DVQA/ChartQA analog)
    conversations: Count  # multi-turn conversations about one image
    detailed: Count  # GPT-4V-like long descriptions (ShareGPT-4V / LAION-GPT-V analog)
    allava: Count  # GPT-4V-like instruction conversations (ALLaVA analog; recipes subsample it)
    text_only: Count  # text-only instruction records (no image)
    lm_corpus: Count  # sentences for pretraining the tiny language models
    vision_pairs: Count  # image–caption pairs for the tiny SigLIP-style encoder
    heldout_scenes: Count  # held-out scene images for the benchmark twins
    heldout_charts: Count  # held-out chart images
    heldout_text: Count  # held-out text images


@dataclass(frozen=True)
class WorldConfig:
    seed: int  # training families derive their seeds from this
    heldout_seed: int  # held-out split: a disjoint seed stream (checked to differ from ``seed``)
    image_size: int  # rendered images are square, this many pixels
    sizes: WorldSizes

    def __post_init__(self) -> None:
        if self.seed == self.heldout_seed:
            raise ConfigError("world.heldout_seed must differ from world.seed (held-out data is disjoint)")
        if self.image_size < 32:
            raise ConfigError(f"world.image_size must be at least 32 pixels, got {self.image_size}")
