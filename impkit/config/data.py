"""The `data` section: LLaVA-format sources, the mixtures (paper Table 2 as data), exclusion rules,
deduplication and the quality gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from impkit.config.loading import AtLeastOne, ConfigError, Share


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
