"""The `train` section (recipes and what `dvc repro` trains) and the `backbones` section (pretraining
of the offline analogs' backbones)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from impkit.config.loading import AtLeastOne, ConfigError, Count, NonNegative, Probability, Rate, Share, from_dict


@dataclass(frozen=True)
class StageTraining:
    """One training stage's hyper-parameters (paper Table 1 and imp-recipe.md for the real sizes)."""

    learning_rate: Rate  # stage 1: the projector's; stage 2: LoRA's (or the LLM's when full)
    projector_lr: Rate | None  # stage 2 trains the projector at its own rate (Imp: 2e-5); None: same
    lr_scheduler: str  # transformers scheduler name, "cosine" in the paper
    warmup_ratio: Share
    weight_decay: NonNegative
    global_batch_size: AtLeastOne  # per-device batch x devices x gradient accumulation
    per_device_batch_size: AtLeastOne
    epochs: Rate
    max_length: AtLeastOne
    checkpoint_steps: AtLeastOne  # a killed run resumes from the last of these, losing at most this many steps
    gradient_checkpointing: bool
    precision: str  # auto | fp32 | bf16 | fp16 (auto: chosen by the hardware, impkit.hardware)
    logging_steps: AtLeastOne
    # Run the prompt prefix a batch shares (the template's system prompt) once per batch instead of
    # once per row: the same loss and gradients for less work (impkit.model.shared_prefix). LoRA
    # dropout then draws one mask for the prefix of all rows. Not with gradient checkpointing, which
    # recomputes layers that extend the prefix's cache.
    share_prefix: bool
    # Speed-ups of the step that keep its computation (impkit.train.step_speedups, measured by
    # `benchmarks/train_throughput.py --levers`): the attention kernel (null: the model's default,
    # SDPA; "eager": transformers' own), frozen Linear weights cast to bf16 once instead of at every
    # call (bf16 only), LoRA dropout drawn from packed random words.
    attention: str | None
    bf16_frozen_weights: bool
    packed_dropout: bool

    def __post_init__(self) -> None:
        if self.share_prefix and self.gradient_checkpointing:
            raise ConfigError("share_prefix cannot be combined with gradient_checkpointing")
        if self.attention not in (None, "sdpa", "eager"):
            raise ConfigError(f"attention must be null, sdpa or eager, got '{self.attention}'")
        if self.bf16_frozen_weights and self.precision not in ("bf16", "auto"):
            raise ConfigError(f"bf16_frozen_weights needs precision bf16 (or auto), not {self.precision}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got '{self.precision}'")
        if self.global_batch_size % self.per_device_batch_size:
            raise ConfigError(
                f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size}"
            )


@dataclass(frozen=True)
class LoraTraining:
    enabled: bool  # False: full fine-tuning of the LLM (Table 1's alternative)
    r: AtLeastOne
    alpha: AtLeastOne
    dropout: Probability


@dataclass(frozen=True)
class DeepSpeedConfigs:
    """The DeepSpeed config file each stage trains under on GPUs (Imp: ZeRO-2 in stage 1, ZeRO-3 in
    stage 2); null trains with plain DDP. Ignored without a GPU (impkit.train.launch)."""

    stage1: str | None
    stage2: str | None


@dataclass(frozen=True)
class TrainRecipe:
    stage1: StageTraining
    stage2: StageTraining
    lora: LoraTraining
    deepspeed: DeepSpeedConfigs | None  # null: no DeepSpeed in either stage


@dataclass(frozen=True)
class TrainSettings:
    """The `train` section apart from its recipes: what `dvc repro` trains and how it is checked."""

    presets: list[str]  # the presets the pipeline trains (the foreach of dvc.yaml's align/tune stages)
    seed: int
    # held-out questions for the with-image / blank / shuffled check after stage 2; None: every one
    heldout_questions: int | None
    eval_batch_size: int
    recipes: Mapping[str, Any]  # name -> TrainRecipe mapping, typed when a preset picks one
    # Data-parallel training processes of one thread each on a machine without a GPU
    # (impkit.train.launch); 1 trains in one process on every core's threads.
    cpu_processes: int
    # How `dvc repro` starts training (impkit.train.launch). auto: one process per visible GPU through
    # torchrun (the recipe's global batch kept by gradient accumulation), or without a GPU the
    # cpu_processes above; none: train in the stage's own process (for a run under your own launcher,
    # which impkit.train.launch also detects).
    launcher: str
    # Training samples (token ids, prepared images) kept in memory per process, in MiB: epochs after
    # the first skip the tokenizer and the image decoding (impkit.train.dataset). Speed only.
    sample_cache_mb: float

    def __post_init__(self) -> None:
        if (self.heldout_questions is not None and self.heldout_questions < 1) or self.eval_batch_size < 1:
            raise ConfigError("train.heldout_questions and train.eval_batch_size must be at least 1")
        if self.sample_cache_mb < 0:
            raise ConfigError(f"train.sample_cache_mb must be at least 0, got {self.sample_cache_mb}")
        if self.cpu_processes < 1:
            raise ConfigError(f"train.cpu_processes must be at least 1, got {self.cpu_processes}")
        if self.launcher not in ("auto", "none"):
            raise ConfigError(f"train.launcher must be auto or none, got '{self.launcher}'")

    def recipe(self, name: str) -> TrainRecipe:
        if name not in self.recipes:
            raise ConfigError(f"unknown training recipe '{name}'; known: {sorted(self.recipes)}")
        return from_dict(TrainRecipe, self.recipes[name], f"train.recipes.{name}")


@dataclass(frozen=True)
class VisionPretraining:
    encoder: str  # contrastive (SigLIP's sigmoid loss) | classification | random: Table 1's encoder ablation
    steps: Count
    batch_size: AtLeastOne
    lr: Rate
    text_arch: Mapping[str, Any]  # the contrastive text tower (SiglipTextConfig keys); discarded afterwards
    precision: str  # auto | fp32 | bf16 (autocast; auto: chosen by the hardware, impkit.hardware)
    # Train the shared tower at every image size of the presets it serves, in turn (False: at the
    # largest only, and the lower-resolution twins meet resized position embeddings untrained).
    multi_resolution: bool

    def __post_init__(self) -> None:
        _check_backbone_precision(self.precision)
        if self.encoder not in ("contrastive", "classification", "random"):
            raise ConfigError(
                f"backbones.vision.encoder must be contrastive, classification or random, got '{self.encoder}'"
            )


@dataclass(frozen=True)
class LMPretraining:
    steps: Count
    batch_size: AtLeastOne
    seq_len: AtLeastOne
    lr: Rate
    precision: str  # auto | fp32 | bf16 (autocast; auto: chosen by the hardware, impkit.hardware)

    def __post_init__(self) -> None:
        _check_backbone_precision(self.precision)


def _check_backbone_precision(precision: str) -> None:
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"backbones precision must be auto, fp32 or bf16, got '{precision}'")


@dataclass(frozen=True)
class BackbonesConfig:
    """Pretraining of the offline analogs' backbones from the synthetic world."""

    seed: int
    vocab_size: AtLeastOne  # BPE merges target; embedding rows are padded to a multiple of 256
    vision: VisionPretraining
    llm: LMPretraining
