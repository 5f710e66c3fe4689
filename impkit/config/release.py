"""The `release` section: how a build becomes a release (impkit.registry)."""

from __future__ import annotations

from dataclasses import dataclass

from impkit.config.loading import NonNegative


@dataclass(frozen=True)
class RecommendConfig:
    # a GGUF level ships only if every benchmark headline is within this many points (0-100 scale)
    # of F16's; impkit.registry.recommend
    tolerance_points: NonNegative


@dataclass(frozen=True)
class ReleaseConfig:
    recommend: RecommendConfig
