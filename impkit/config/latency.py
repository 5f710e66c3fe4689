"""The `latency` section: the devices and the protocol's runs and lengths (paper Table 4), and the
paper-size profiles (random weights with the real Imp shapes, ``impkit.export.paper_size``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from impkit.config.export import QUANT_LEVELS
from impkit.config.loading import AtLeastOne, ConfigError
from impkit.paper import TABLE4, table4_sizes_gb


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
    another size (Imp-3B@196 is imp-3b at 196 px: 14 x 14 = 196 visual tokens), and the paper's
    name for it where its Table 4 reports the model (``impkit.paper.TABLE4``: sizes to compare)."""

    preset: str
    image_size: AtLeastOne | None = None  # None: the preset's own
    paper: str | None = None  # e.g. "Imp-3B@196"; None: the paper gives no sizes for it

    def __post_init__(self) -> None:
        if self.paper is not None and self.paper not in TABLE4:
            raise ConfigError(f"paper: '{self.paper}' is not in the paper's Table 4; known: {sorted(TABLE4)}")

    @property
    def table4_gb(self) -> dict[str, float]:
        """The paper's file sizes (GB) per GGUF level, where Table 4 gives them."""
        return table4_sizes_gb(self.paper) if self.paper else {}


@dataclass(frozen=True)
class PaperSizeSettings:
    """Random-weight GGUF pairs with the real Imp shapes: which (the stage latency-paper@<profile>
        runs once per entry of ``profiles``), at which levels and from which seed; each profile's folder is
    ``impkit.paths.paper_size(name)``, reused while its record matches."""

    profiles: Mapping[str, PaperProfile]  # name -> profile; the name names the folder and the report
    levels: tuple[str, ...]  # LLM levels written and measured; the mmproj stays F16
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
