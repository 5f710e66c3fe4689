"""The `export` section: which GGUF levels each release is written at, and the level names
themselves (every section that names a level checks it against ``QUANT_LEVELS``)."""

from __future__ import annotations

from dataclasses import dataclass

from impkit.config.loading import ConfigError

# GGUF quantization levels a release is exported at: level name -> llama_ftype (llama.h's
# LLAMA_FTYPE_MOSTLY_*). Exact keys; an unknown name fails with the list.
QUANT_LEVELS: dict[str, int] = {"F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15, "Q6_K": 18}


@dataclass(frozen=True)
class ExportConfig:
    levels: tuple[str, ...]  # LLM files, one per level (F16 is also the quantizer's input)
    mmproj_level: str  # the vision file: F16 in params.yaml, as llama.cpp deployments ship it
    threads: int | None  # quantizer threads; null: every core

    def __post_init__(self) -> None:
        unknown = [level for level in (*self.levels, self.mmproj_level) if level not in QUANT_LEVELS]
        if unknown:
            raise ConfigError(f"export: unknown quantization level(s) {unknown}; known: {list(QUANT_LEVELS)}")
        if not self.levels:
            raise ConfigError("export.levels lists no level")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"export.threads must be at least 1, got {self.threads}")
