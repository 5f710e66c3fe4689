"""How each release's training data drifted from the previous release's of the same preset: an
Evidently data-drift report over the record profiles the registry keeps (source, image or not,
turns, question and answer lengths), one HTML page per release (dashboards/drift/<id>.html), linked
from the release dashboard."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from impkit.io import atomic_path
from impkit.registry import Registry

NUMERICAL = ["turns", "question_chars", "answer_chars"]
CATEGORICAL = ["source", "has_image"]


def drift_pairs(records: Sequence[Mapping[str, Any]], registry: Registry) -> list[tuple[Mapping, Mapping]]:
    """(previous, release) per release whose preset had an earlier release, both with a data profile."""
    by_preset: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r["created"], r["id"])):
        if registry.data_profile_path(record).is_file():
            by_preset[record["preset"]].append(record)
    return [(earlier[i - 1], earlier[i]) for earlier in by_preset.values() for i in range(1, len(earlier))]


def write_drift_reports(records: Sequence[Mapping[str, Any]], registry: Registry, folder: Path) -> list[str]:
    """Write one report per release with a predecessor into ``folder`` (replaced whole); returns the
    release ids that have one."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=CATEGORICAL)
    written = []
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        for previous, release in drift_pairs(records, registry):
            current = pd.read_csv(registry.data_profile_path(release), dtype={"source": str})
            reference = pd.read_csv(registry.data_profile_path(previous), dtype={"source": str})
            snapshot = Report([DataDriftPreset()]).run(
                Dataset.from_pandas(current, data_definition=definition),
                Dataset.from_pandas(reference, data_definition=definition),
                name=f"{release['id']} against {previous['id']}",
            )
            snapshot.save_html(str(tmp / f"{release['id']}.html"))
            written.append(release["id"])
    return written
