"""The trade-off table `dvc plots` draws (dvc.yaml's top-level `plots`): one row per current release
and GGUF level with its size, its T_total per device profile and each benchmark's headline, so that
`dvc plots show` draws accuracy against size and latency and `dvc plots diff` compares experiments."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


def tradeoff_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        sizes = record.get("sizes") or {}
        latency = record.get("latency") or {}
        for level, headlines in sorted((record["benchmarks"].get("gguf") or {}).items()):
            row: dict[str, Any] = {"release": record["id"], "preset": record["preset"], "level": level}
            if level in sizes:
                row["size_mb"] = round(sizes[level]["total"] / 1e6, 3)
            for name, figures in sorted(latency.items()):
                profile, _, measured = name.partition("/")
                if measured == level and "t_total_s" in figures:
                    # one plain field per device profile: Vega field names take no dashes
                    row["t_total_s_" + re.sub(r"\W", "_", profile)] = figures["t_total_s"]["median"]
            row.update({b: v for b, v in sorted((headlines or {}).items()) if isinstance(v, int | float)})
            rows.append(row)
    return rows
