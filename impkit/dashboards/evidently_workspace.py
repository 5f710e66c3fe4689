"""The Evidently workspace of the releases (dashboards/evidently, generated, not committed): one
project per model family, one run per release carrying its figures with the release's time as the
run's timestamp and its preset, content id and GGUF levels as tags, and a dashboard per project:

- Benchmarks: each benchmark's headline over releases, per preset, for PyTorch and each GGUF level;
- Size: the GGUF files' size per level;
- Latency: S_gen and T_total per device profile and level;
- Data: the mixtures' kept and quarantined records, the quality gate, and the kept share per source.

`evidently ui --workspace dashboards/evidently` serves it (`make ui` starts it). Evidently's panels
are time series; the trade-offs between accuracy, size and latency are on the static page
(impkit.dashboards.static). The workspace is rebuilt whole, into a new folder swapped in at the
end, so a rebuild never duplicates a run or a panel (adding panels to an existing Evidently tab
inserts them twice) and project ids stay the same (derived from the family's name).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from impkit.headline import headline_value
from impkit.io import atomic_path

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "impkit/evidently")


def project_id(family: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, family)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def release_columns(record: Mapping[str, Any]) -> dict[str, float]:
    """The figures of one release as named numbers (one column each in its run)."""
    columns: dict[str, float | None] = {}
    benchmarks = record.get("benchmarks") or {}
    for name, result in (benchmarks.get("torch") or {}).items():
        columns[f"{name}.torch"] = _number(headline_value(result))
    for level, headlines in (benchmarks.get("gguf") or {}).items():
        for name, value in (headlines or {}).items():
            columns[f"{name}.{level}"] = _number(value)
    for level, files in (record.get("sizes") or {}).items():
        columns[f"size_mb.{level}"] = files["total"] / 1e6
    for name, figures in (record.get("latency") or {}).items():
        for key in ("s_gen_tps", "t_total_s"):
            if key in figures:
                columns[f"{key}.{name}"] = _number(figures[key]["median"])
    heldout = (record.get("headline") or {}).get("heldout") or {}
    columns["heldout.with_image"] = _number(heldout.get("with_image"))
    columns["heldout.lead"] = _number(heldout.get("lead"))
    for mixture, data in (record.get("data") or {}).items():
        columns[f"data.{mixture}.kept"] = _number(data.get("kept"))
        columns[f"data.{mixture}.quarantined"] = _number(data.get("quarantined"))
        columns[f"data.{mixture}.gate_passed"] = 1.0 if data.get("gate") == "passed" else 0.0
        for source, share in (data.get("kept_share") or {}).items():
            columns[f"data.{mixture}.share.{source}"] = _number(share)
    return {k: v for k, v in columns.items() if v is not None}


def _snapshot(record: Mapping[str, Any]):
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    columns = release_columns(record)
    frame = pd.DataFrame([columns])
    dataset = Dataset.from_pandas(frame, data_definition=DataDefinition(numerical_columns=list(columns)))
    levels = sorted((record.get("benchmarks") or {}).get("gguf") or {})
    return Report([MeanValue(column=c) for c in columns]).run(
        dataset,
        timestamp=datetime.fromisoformat(record["created"]).replace(tzinfo=None),
        tags=[record["preset"], record["id"], *levels],
        name=record["id"],
    )


def _panels(family_records: Sequence[Mapping[str, Any]]):
    """(tab title, [panel]) for the family's dashboard: one line per preset and column."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    by_column: dict[str, set[str]] = defaultdict(set)
    for record in family_records:
        for column in release_columns(record):
            by_column[column].add(record["preset"])

    def lines(columns: Iterable[str], legend) -> list:
        return [
            PanelMetric(legend=legend(preset, c), tags=[preset], metric="MeanValue", metric_labels={"column": c})
            for c in sorted(columns)
            for preset in sorted(by_column[c])
        ]

    benchmark_names = sorted(
        {
            c.split(".")[0]
            for c in by_column
            if not c.startswith(("size_mb.", "s_gen_tps.", "t_total_s.", "heldout.", "data."))
        }
    )
    tabs = {
        "Benchmarks": [
            line_plot_panel(
                f"{name}: headline",
                lines([c for c in by_column if c.split(".")[0] == name], lambda p, c: f"{p} {c.split('.', 1)[1]}"),
                description="PyTorch and each GGUF level, per preset",
            )
            for name in benchmark_names
        ]
        + [
            line_plot_panel(
                "held-out check",
                lines([c for c in by_column if c.startswith("heldout.")], lambda p, c: f"{p} {c.split('.', 1)[1]}"),
            )
        ],
        "Size": [
            line_plot_panel(
                "GGUF size (MB)",
                lines([c for c in by_column if c.startswith("size_mb.")], lambda p, c: f"{p} {c.split('.', 1)[1]}"),
            )
        ],
        "Latency": [
            line_plot_panel(
                title, lines([c for c in by_column if c.startswith(prefix)], lambda p, c: f"{p} {c.split('.', 1)[1]}")
            )
            for prefix, title in (("s_gen_tps.", "S_gen (tokens/s)"), ("t_total_s.", "T_total (s)"))
        ],
        "Data": [
            line_plot_panel(
                f"{mixture}: records and gate",
                lines(
                    [c for c in by_column if c.startswith(f"data.{mixture}.") and ".share." not in c],
                    lambda p, c: f"{p} {c.rsplit('.', 1)[1]}",
                ),
                description="kept, quarantined, and the quality gate (1 passed, 0 failed)",
            )
            for mixture in sorted({c.split(".")[1] for c in by_column if c.startswith("data.")})
        ]
        + [
            line_plot_panel(
                f"{mixture}: kept share per source",
                lines(
                    [c for c in by_column if c.startswith(f"data.{mixture}.share.")],
                    lambda p, c: f"{p} {c.rsplit('.', 1)[1]}",
                ),
            )
            for mixture in sorted({c.split(".")[1] for c in by_column if c.startswith("data.")})
        ],
    }
    return tabs


def build_workspace(records: Sequence[Mapping[str, Any]], folder: Path) -> dict[str, int]:
    """Write the workspace of ``records`` to ``folder`` (replacing what was there); returns the number
    of runs per family."""
    from evidently.sdk.models import DashboardModel, DashboardTabModel, ProjectModel
    from evidently.ui.workspace import Workspace

    families: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r["created"], r["id"])):
        families[record.get("family") or "unknown"].append(record)
    with atomic_path(folder) as tmp:
        workspace = Workspace.create(str(tmp))
        for family, family_records in sorted(families.items()):
            pid = project_id(family)
            workspace.add_project(
                ProjectModel(id=pid, name=f"impkit {family}", description=f"every release of the {family} presets")
            )
            for record in family_records:
                workspace.add_run(pid, _snapshot(record), name=record["id"])
            tabs, panels = [], []
            for title, tab_panels in _panels(family_records).items():
                for index, panel in enumerate(tab_panels):
                    panel.id = uuid.uuid5(pid, f"{title}/{index}")
                    panels.append(panel)
                tabs.append(
                    DashboardTabModel(id=uuid.uuid5(pid, title), title=title, panels=[p.id for p in tab_panels])
                )
            workspace.save_dashboard(pid, DashboardModel(tabs=tabs, panels=panels))
    return {family: len(rs) for family, rs in families.items()}
