"""The registry folder: release records that accumulate, the current release per preset, promotions.

Layout (``registry/`` in the workspace; plain files, so it works without committing anything and a
team shares it through git like ``dvc.lock``)::

    registry/<preset>/<id>.json        one record per release (impkit.registry.record)
    registry/<preset>/<id>.md          its model card
    registry/<preset>/<id>.data.csv.gz its training data, record by record (impkit.registry.data_profile)
    registry/promotions.jsonl          who promoted what to which stage, when (append-only)

A rebuild never erases a record: a release id already present keeps its record (its creation time
and first measurements); a new id adds one. The current release of a preset is its newest record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from impkit.errors import ImpkitError
from impkit.io import atomic_open, dumps_line, write_json

PROMOTIONS = "promotions.jsonl"
STAGES = ("dev", "staging", "prod")


class RegistryError(ImpkitError):
    """An unknown or ambiguous release id, a bad stage, or an unreadable record."""


@dataclass(frozen=True)
class Registry:
    root: Path = Path("registry")

    def record_path(self, record: dict[str, Any]) -> Path:
        return self.root / record["preset"] / f"{record['id']}.json"

    def data_profile_path(self, record: dict[str, Any]) -> Path:
        return self.record_path(record).with_suffix(".data.csv.gz")

    def add(self, record: dict[str, Any], card: str | None = None, training_data: Path | None = None) -> bool:
        """Keep ``record`` (with its model card and the profile of its ``training_data`` JSONL); False
        when its id is already registered."""
        path = self.record_path(record)
        profile = self.data_profile_path(record)
        if training_data is not None and not profile.is_file():  # a record kept from before profiles were
            from impkit.registry.data_profile import write_profile

            write_profile(training_data, profile)
        if path.is_file():
            return False
        if card is not None:
            with atomic_open(path.with_suffix(".md"), "w", encoding="utf-8") as f:
                f.write(card)
        write_json(path, record)
        return True

    def records(self, preset: str | None = None) -> list[dict[str, Any]]:
        """Every record (of ``preset``), oldest first."""
        found = []
        for path in sorted(self.root.glob(f"{preset or '*'}/*.json")):
            try:
                found.append(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise RegistryError(f"{path} is not valid JSON ({exc})") from None
        return sorted(found, key=lambda r: (r["created"], r["id"]))

    def get(self, release_id: str) -> dict[str, Any]:
        """The record whose id is ``release_id`` or starts with it (unambiguously)."""
        matches = [r for r in self.records() if r["id"] == release_id] or [
            r for r in self.records() if r["id"].startswith(release_id)
        ]
        if not matches:
            known = ", ".join(r["id"] for r in self.records()) or "none yet (run dvc repro)"
            raise RegistryError(f"no release '{release_id}' in {self.root}; registered: {known}")
        if len(matches) > 1:
            raise RegistryError(
                f"'{release_id}' matches {len(matches)} releases: {', '.join(r['id'] for r in matches)}"
            )
        return matches[0]

    def current(self) -> dict[str, str]:
        """The newest release id of each preset."""
        newest: dict[str, str] = {}
        for record in self.records():
            newest[record["preset"]] = record["id"]
        return newest

    def promotions(self) -> Iterator[dict[str, Any]]:
        path = self.root / PROMOTIONS
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    yield json.loads(line)

    def stages(self) -> dict[str, list[str]]:
        """Release id -> the stages it holds now (a stage holds one release per preset: the last one
        promoted to it)."""
        holder: dict[tuple[str, str], str] = {}
        for event in self.promotions():
            holder[(event["preset"], event["stage"])] = event["id"]
        held: dict[str, list[str]] = {}
        for (_, stage), release_id in sorted(holder.items()):
            held.setdefault(release_id, []).append(stage)
        return held

    def promote(self, release_id: str, stage: str, *, by: str | None = None) -> dict[str, Any]:
        if stage not in STAGES:
            raise RegistryError(f"unknown stage '{stage}'; stages: {', '.join(STAGES)}")
        record = self.get(release_id)
        event = {
            "id": record["id"],
            "preset": record["preset"],
            "stage": stage,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": by,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / PROMOTIONS).open("a", encoding="utf-8") as f:
            f.write(dumps_line(event) + "\n")
        return event
