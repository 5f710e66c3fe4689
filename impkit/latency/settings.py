"""The `latency` section of params.yaml: devices, runs, the protocol's lengths, the paper-size models."""

from __future__ import annotations

from dataclasses import dataclass, field

from impkit.config import ConfigError
from impkit.export.paper_size import PAPER_PROFILES
from impkit.latency.protocol import PAPER_GEN_TOKENS, PAPER_PROMPT_TOKENS, Protocol
from impkit.latency.runners import DeviceProfile, runner_class
from impkit.release import QUANT_LEVELS


@dataclass(frozen=True)
class PaperSizeSettings:
    """Random-weight GGUF pairs with the real Imp shapes (``impkit.export.paper_size``)."""

    profiles: tuple[str, ...] = ("imp-3b-196",)  # what `stages.latency` measures by default
    levels: tuple[str, ...] = ("Q4_K_M",)  # LLM levels written and measured; the mmproj stays F16
    dir: str = "models/paper-size"  # one folder per profile, reused while its record matches
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [p for p in self.profiles if p not in PAPER_PROFILES]
        if unknown:
            raise ConfigError(f"latency.paper.profiles: unknown profile(s) {unknown}; known: {list(PAPER_PROFILES)}")
        bad = [level for level in self.levels if level not in QUANT_LEVELS]
        if bad or not self.levels:
            raise ConfigError(
                f"latency.paper.levels: need at least one of {list(QUANT_LEVELS)}, got {list(self.levels)}"
            )


@dataclass(frozen=True)
class LatencyConfig:
    devices: tuple[DeviceProfile, ...]
    runs: int  # timed runs per (device, model); the report gives their median, min and max
    warmup: int  # runs before those, not counted
    prompt_tokens: int = PAPER_PROMPT_TOKENS  # text tokens after the image (Table 4: 41)
    gen_tokens: int = PAPER_GEN_TOKENS  # generated tokens, never stopping early (Table 4: 64)
    levels: tuple[str, ...] | None = None  # a release's GGUF levels to measure; None: every level exported
    paper: PaperSizeSettings = field(default_factory=PaperSizeSettings)

    def __post_init__(self) -> None:
        if not self.devices:
            raise ConfigError("latency.devices lists no device")
        names = [d.name for d in self.devices]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"latency.devices: device name(s) {repeated} used more than once")
        for device in self.devices:
            runner_class(device.runner)(device)  # unknown kinds and options fail here, named
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

    @property
    def protocol(self) -> Protocol:
        return Protocol(
            prompt_tokens=self.prompt_tokens, gen_tokens=self.gen_tokens, runs=self.runs, warmup=self.warmup
        )
