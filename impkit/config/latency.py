"""The `latency` section: the devices and the protocol's runs and lengths (paper Table 4), and the
paper-size profiles (random weights with the real Imp shapes, ``impkit.export.paper_size``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from impkit.config.export import QUANT_LEVELS
from impkit.config.loading import AtLeastOne, ConfigError


@dataclass(frozen=True)
class DeviceProfile:
    """Where and how to measure: ``runner`` is a key of ``impkit.latency.RUNNERS`` (checked by
    ``impkit.latency.check_devices``, which knows the runners); ``threads`` None = every core. A user
    writes these entries, so ``threads`` and ``options`` may be left out (every core, no options)."""

    name: str
    runner: str
    threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a latency device needs a non-empty name")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"latency device '{self.name}': threads must be at least 1, got {self.threads}")

    def resolved_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runner": self.runner,
            "threads": self.resolved_threads(),
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class PaperProfile:
    """One paper-size model: a preset of ``model.presets`` with, optionally, its vision input at
    another size (Imp-3B@196 is imp-3b at 196 px: 14 x 14 = 196 visual tokens), and Table 4's sizes
    for it where the paper gives them (GB per level, for the report's ratio)."""

    preset: str
    image_size: AtLeastOne | None = None  # None: the preset's own
    table4_gb: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [level for level in self.table4_gb if level not in QUANT_LEVELS]
        if unknown:
            raise ConfigError(f"table4_gb: unknown level(s) {unknown}; known: {list(QUANT_LEVELS)}")


@dataclass(frozen=True)
class PaperSizeSettings:
    """Random-weight GGUF pairs with the real Imp shapes: which (the stage latency-paper@<profile>
    runs once per entry of ``profiles``), at which levels, where and from which seed."""

    profiles: Mapping[str, PaperProfile]  # name -> profile; the name names the folder and the report
    levels: tuple[str, ...]  # LLM levels written and measured; the mmproj stays F16
    dir: str  # one folder per profile, reused while its record matches
    seed: int

    def __post_init__(self) -> None:
        bad = [level for level in self.levels if level not in QUANT_LEVELS]
        if bad or not self.levels:
            raise ConfigError(
                f"latency.paper.levels: need at least one of {list(QUANT_LEVELS)}, got {list(self.levels)}"
            )

    def profile(self, name: str) -> PaperProfile:
        if name not in self.profiles:
            raise ConfigError(f"unknown paper-size profile '{name}'; known: {sorted(self.profiles)}")
        return self.profiles[name]


@dataclass(frozen=True)
class LatencyConfig:
    devices: tuple[DeviceProfile, ...]
    runs: int  # timed runs per (device, model); the report gives their median, min and max
    warmup: int  # runs before those, not counted
    prompt_tokens: int  # text tokens after the image (Table 4: 41)
    gen_tokens: int  # generated tokens, never stopping early (Table 4: 64)
    levels: tuple[str, ...] | None  # a release's GGUF levels to measure; null: every level exported
    paper: PaperSizeSettings

    def __post_init__(self) -> None:
        if not self.devices:
            raise ConfigError("latency.devices lists no device")
        names = [d.name for d in self.devices]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"latency.devices: device name(s) {repeated} used more than once")
        if self.runs < 1:
            raise ConfigError(f"latency.runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise ConfigError(f"latency.warmup must be 0 or more, got {self.warmup}")
        if self.prompt_tokens < 1 or self.gen_tokens < 1:
            raise ConfigError(
                f"latency.prompt_tokens and latency.gen_tokens must be at least 1, got "
                f"{self.prompt_tokens} and {self.gen_tokens}"
            )
        if self.levels is not None:
            bad = [level for level in self.levels if level not in QUANT_LEVELS]
            if bad or not self.levels:
                raise ConfigError(
                    f"latency.levels: unknown level(s) {bad or '[]'}; known: {list(QUANT_LEVELS)} "
                    "(or null for every exported level)"
                )
