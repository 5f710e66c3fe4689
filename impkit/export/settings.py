"""The `export` section of params.yaml: which GGUF levels each release is written at."""

from __future__ import annotations

from dataclasses import dataclass

from impkit.config import ConfigError
from impkit.release import QUANT_LEVELS


@dataclass(frozen=True)
class ExportConfig:
    levels: tuple[str, ...]  # LLM files, one per level (F16 is also the quantizer's input)
    mmproj_level: str = "F16"  # the vision file: F16 by default, as llama.cpp deployments ship it
    threads: int | None = None  # quantizer threads; None: every core

    def __post_init__(self) -> None:
        unknown = [level for level in (*self.levels, self.mmproj_level) if level not in QUANT_LEVELS]
        if unknown:
            raise ConfigError(f"export: unknown quantization level(s) {unknown}; known: {list(QUANT_LEVELS)}")
        if not self.levels:
            raise ConfigError("export.levels lists no level")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"export.threads must be at least 1, got {self.threads}")
