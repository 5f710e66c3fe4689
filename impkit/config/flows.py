"""The `flows` section: the Prefect deployment's schedule and default parameters, and the gate a
retrain must pass to become a release (flows/)."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from impkit.config.loading import ConfigError, NonNegative


@dataclass(frozen=True)
class Schedule:
    cron: str  # five fields: minute hour day-of-month month day-of-week
    timezone: str  # an IANA name, e.g. UTC or Europe/Berlin

    def __post_init__(self) -> None:
        if len(self.cron.split()) != 5:
            raise ConfigError(f"flows.schedule.cron: five fields (minute hour day month weekday), got {self.cron!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"flows.schedule.timezone: unknown time zone {self.timezone!r}") from None


@dataclass(frozen=True)
class ReleaseFlowParameters:
    targets: tuple[str, ...]
    wait_if_running: bool


@dataclass(frozen=True)
class RetrainGate:
    max_drop_points: NonNegative  # 0-100 scale (impkit.registry.recommend's points)


@dataclass(frozen=True)
class FlowsConfig:
    schedule: Schedule
    release: ReleaseFlowParameters
    retrain: RetrainGate
