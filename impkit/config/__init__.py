"""Typed, frozen views of the ``params.yaml`` sections, one module per area, with errors that name the key.

``params.yaml`` is the one source of values. The classes here declare types, ranges (``Bound`` and
the ``Annotated`` aliases) and the relations between keys, not values: a key that params.yaml
carries has no default in code, so a missing key is an error naming it, never a silent second value.
The one exception is an entry a user writes into a list or mapping (a data source, a mixture entry,
a match or exclude rule, a model backbone, a latency device, a paper-size profile, MM-Vet's judge):
the keys such an entry may leave out keep a default beside the field, and that default means none,
empty or off (the judge's request settings aside, which params.yaml leaves out with the judge).

Every class is imported from this package (``from impkit.config import EvalConfig``); a stage
loads its section with ``load_section(EvalConfig, "eval")``. Modules:

* ``loading``: ``load_params``, ``load_section``, ``from_dict``, ``ConfigError``, ``Bound``;
* ``world``, ``data``, ``model``, ``train`` (with ``backbones``), ``eval`` (with ``parity`` and
  ``eval_gguf``), ``export``, ``latency``, ``release``, ``flows``, ``imports``, ``chat``: the sections of
  those names.
"""

from impkit.config.chat import IMAGE_FORMATS, ChatConfig, ChatLimits
from impkit.config.data import (
    IMAGE_STORE_MODES,
    DataConfig,
    DedupConfig,
    ExcludeRule,
    MatchSpec,
    Mixture,
    MixtureEntry,
    QualityConfig,
    SourceConfig,
)
from impkit.config.eval import MAX_JUDGE_TEMPERATURE, EvalConfig, GGUFEvalConfig, JudgeConfig, ParityConfig, TwinSizes
from impkit.config.export import QUANT_LEVELS, ExportConfig
from impkit.config.flows import FlowsConfig, ReleaseFlowParameters, RetrainGate, Schedule
from impkit.config.imports import ImportedCheckpoint, ImportsConfig
from impkit.config.latency import DeviceProfile, LatencyConfig, PaperProfile, PaperSizeSettings
from impkit.config.loading import (
    AtLeastOne,
    Bound,
    ConfigError,
    Count,
    NonNegative,
    Probability,
    Rate,
    Share,
    from_dict,
    load_params,
    load_section,
    section,
)
from impkit.config.model import BackboneSpec, PresetConfig
from impkit.config.release import RecommendConfig, ReleaseConfig
from impkit.config.train import (
    BackbonesConfig,
    LMPretraining,
    LoraTraining,
    StageTraining,
    TrainRecipe,
    TrainSettings,
    VisionPretraining,
)
from impkit.config.world import WorldConfig, WorldSizes

__all__ = [
    "ChatConfig",
    "ChatLimits",
    "IMAGE_FORMATS",
    "FlowsConfig",
    "ImportedCheckpoint",
    "ImportsConfig",
    "ReleaseFlowParameters",
    "RetrainGate",
    "Schedule",
    "RecommendConfig",
    "ReleaseConfig",
    "IMAGE_STORE_MODES",
    "MAX_JUDGE_TEMPERATURE",
    "QUANT_LEVELS",
    "AtLeastOne",
    "BackboneSpec",
    "BackbonesConfig",
    "Bound",
    "ConfigError",
    "Count",
    "DataConfig",
    "DedupConfig",
    "DeviceProfile",
    "EvalConfig",
    "ExcludeRule",
    "ExportConfig",
    "GGUFEvalConfig",
    "JudgeConfig",
    "LMPretraining",
    "LatencyConfig",
    "LoraTraining",
    "MatchSpec",
    "Mixture",
    "MixtureEntry",
    "NonNegative",
    "PaperProfile",
    "PaperSizeSettings",
    "ParityConfig",
    "PresetConfig",
    "Probability",
    "QualityConfig",
    "Rate",
    "Share",
    "SourceConfig",
    "StageTraining",
    "TrainRecipe",
    "TrainSettings",
    "TwinSizes",
    "VisionPretraining",
    "WorldConfig",
    "WorldSizes",
    "from_dict",
    "load_params",
    "load_section",
    "section",
]
