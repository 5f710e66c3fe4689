"""Typed, frozen views of ``params.yaml`` sections, with clear errors on bad input.

``params.yaml`` is the one source of defaults: these dataclasses declare *types*, not values, so a
missing key is an error that names the key instead of a silent second default in code.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml

from impkit.errors import ImpkitError


class ConfigError(ImpkitError, ValueError):
    """A params.yaml section is missing, misspelt or of the wrong type."""


@dataclass(frozen=True)
class Bound:
    """The range a number must lie in (``Annotated[int, Bound(1)]``); ``from_dict`` checks it and the
    error names the key: ``world.sizes.captions: must be >= 0, got -5``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is outside
    high_open: bool = False

    def check(self, value: float, where: str) -> None:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        if not (above and below):
            raise ConfigError(f"{where}: must be {self}, got {value!r}")

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


Count = Annotated[int, Bound(0)]  # sizes and counts; 0 builds none
AtLeastOne = Annotated[int, Bound(1)]  # steps, batch sizes, lengths, LoRA rank
Rate = Annotated[float, Bound(0, low_open=True)]  # learning rates, epochs
NonNegative = Annotated[float, Bound(0)]  # weight decay, sizes in MiB
Share = Annotated[float, Bound(0, 1)]  # fractions of a whole
Probability = Annotated[float, Bound(0, 1, high_open=True)]  # dropout: 1 would drop everything


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameters file not found (run from the repository root)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def section(params: Mapping[str, Any], name: str) -> Any:
    if name not in params:
        raise ConfigError(f"params.yaml has no section '{name}' (sections: {sorted(params)})")
    return params[name]


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Annotated:
        value = _check_type(value, args[0], where)
        for bound in (meta for meta in hint.__metadata__ if isinstance(meta, Bound)):
            bound.check(value, where)
        return value
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        if value is None and len(arms) < len(args):
            return None
        if len(arms) == 1:  # Optional[X]: report X's own error, which names the bad key
            return _check_type(value, arms[0], where)
        for arm in arms:
            try:
                return _check_type(value, arm, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} matches none of {hint}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return types.MappingProxyType(
            {_check_type(k, kt, where): _check_type(v, vt, f"{where}.{k}") for k, v in value.items()}
        )
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, where: str | None = None) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown or missing keys raise ``ConfigError``."""
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _check_type(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key '{name}'")
    return cls(**kwargs)


# --------------------------------------------------------------------------- world (synthetic data)
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


# --------------------------------------------------------------------------- data sources and recipe
@dataclass(frozen=True)
class SourceConfig:
    """A LLaVA-format source: a JSON list or JSONL file plus the root its image paths are relative to."""

    path: str
    image_root: str | None = None  # None: a text-only source (records must not carry "image")
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatchSpec:
    """Selects records. All given fields must match (AND); ``tags`` matches if any tag is on the source."""

    tags: tuple[str, ...] = ()
    id: str | None = None  # regular expression searched in the record id
    image: str | None = None  # regular expression searched in the image path
    text_only: bool | None = None  # True: records without an image; False: records with one

    def __post_init__(self) -> None:
        if not (self.tags or self.id or self.image or self.text_only is not None):
            raise ConfigError("a match rule needs at least one of: tags, id, image, text_only")


@dataclass(frozen=True)
class ExcludeRule:
    match: MatchSpec
    why: str = ""
    enabled: bool = True  # a switch so ablations run as `dvc exp run -S data.exclude.<rule>.enabled=false`


@dataclass(frozen=True)
class MixtureEntry:
    source: str
    include: MatchSpec | None = None  # keep only matching records of this source
    sample: AtLeastOne | None = None  # seeded random subset of this many records (paper: 300K of ALLaVA's 708K)


@dataclass(frozen=True)
class Mixture:
    entries: tuple[MixtureEntry, ...]
    exclude: tuple[str, ...] = ()  # names of rules in ``data.exclude`` applied to this mixture


@dataclass(frozen=True)
class DedupConfig:
    by_id: bool  # drop repeated ids within one source (ids are only meaningful inside their dataset)
    by_content: bool  # drop repeated image+conversation pairs across the whole mixture


@dataclass(frozen=True)
class QualityConfig:
    min_image_side: AtLeastOne
    max_prompt_chars: AtLeastOne
    max_answer_chars: AtLeastOne
    max_quarantine_share: Share  # the stage fails above this share of quarantined records
    share_tolerance: Share  # allowed |kept share - planned share| per source, absolute


@dataclass(frozen=True)
class DataConfig:
    sources: Mapping[str, SourceConfig]
    mixtures: Mapping[str, Mixture]
    exclude: Mapping[str, ExcludeRule]
    dedup: DedupConfig
    quality: QualityConfig
    sample_seed: int
    image_store: str  # copy | hardlink | symlink
    chunk_records: int  # records validated per Great Expectations batch (bounds memory)
    workers: int  # processes for image checks

    def __post_init__(self) -> None:
        if self.image_store not in IMAGE_STORE_MODES:
            raise ConfigError(f"data.image_store: '{self.image_store}' unknown; choose one of {IMAGE_STORE_MODES}")
        for mix_name, mix in self.mixtures.items():
            for entry in mix.entries:
                if entry.source not in self.sources:
                    raise ConfigError(
                        f"data.mixtures.{mix_name}: unknown source '{entry.source}'; "
                        f"known sources: {sorted(self.sources)}"
                    )
            for rule in mix.exclude:
                if rule not in self.exclude:
                    raise ConfigError(
                        f"data.mixtures.{mix_name}.exclude: unknown rule '{rule}'; known rules: {sorted(self.exclude)}"
                    )
        if self.chunk_records < 1 or self.workers < 1:
            raise ConfigError("data.chunk_records and data.workers must be at least 1")


IMAGE_STORE_MODES = ("copy", "hardlink", "symlink")


# --------------------------------------------------------------------------- model presets
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


# --------------------------------------------------------------------------- training
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
    share_prefix: bool = False
    # Speed-ups of the step that keep its computation (impkit.train.step_speedups, measured by
    # `benchmarks/train_throughput.py --levers`): the attention kernel (null: the model's default,
    # SDPA; "eager": transformers' own), frozen Linear weights cast to bf16 once instead of at every
    # call (bf16 only), LoRA dropout drawn from packed random words.
    attention: str | None = None
    bf16_frozen_weights: bool = False
    packed_dropout: bool = False

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
class TrainRecipe:
    stage1: StageTraining
    stage2: StageTraining
    lora: LoraTraining


@dataclass(frozen=True)
class TrainSettings:
    """The `train` section apart from its recipes: what `dvc repro` trains and how it is checked."""

    presets: list[str]  # the presets the pipeline trains (the foreach of dvc.yaml's align/tune stages)
    seed: int
    heldout_questions: int  # held-out questions for the with-image / blank / shuffled check after stage 2
    eval_batch_size: int
    recipes: Mapping[str, Any]  # name -> TrainRecipe mapping, typed when a preset picks one
    # Data-parallel training processes of one thread each on a machine without a GPU
    # (impkit.train.launch); 1 trains in one process on every core's threads.
    cpu_processes: int = 1
    # Training samples (token ids, prepared images) kept in memory per process, in MiB: epochs after
    # the first skip the tokenizer and the image decoding (impkit.train.dataset). Speed only.
    sample_cache_mb: float = 0

    def __post_init__(self) -> None:
        if self.heldout_questions < 1 or self.eval_batch_size < 1:
            raise ConfigError("train.heldout_questions and train.eval_batch_size must be at least 1")
        if self.sample_cache_mb < 0:
            raise ConfigError(f"train.sample_cache_mb must be at least 0, got {self.sample_cache_mb}")
        if self.cpu_processes < 1:
            raise ConfigError(f"train.cpu_processes must be at least 1, got {self.cpu_processes}")

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
    multi_resolution: bool = False

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
