"""A release's training data, described per record (source, image or not, turns, question and answer
lengths) and kept beside the release record (registry/<preset>/<id>.data.csv.gz, tens of kB), so a
later build can show how its data drifted from this one's (impkit.dashboards.drift) even after the
assembled files are rebuilt."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from impkit.io import atomic_open

COLUMNS = ("source", "has_image", "turns", "question_chars", "answer_chars")


def record_profile(record: dict[str, Any]) -> dict[str, Any]:
    turns = record.get("conversations") or []
    asked = [t.get("value", "") for t in turns if t.get("from") == "human"]
    answered = [t.get("value", "") for t in turns if t.get("from") == "gpt"]
    return {
        "source": record.get("source", ""),
        "has_image": int("image" in record),
        "turns": len(turns),
        "question_chars": sum(len(a) for a in asked),
        "answer_chars": sum(len(a) for a in answered),
    }


def profiles(jsonl: Path) -> Iterator[dict[str, Any]]:
    with jsonl.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield record_profile(json.loads(line))


def write_profile(jsonl: Path, out: Path) -> int:
    """Describe every record of ``jsonl`` into a gzipped CSV at ``out``; returns the record count.
    Written with a fixed gzip time, so the same data gives the same bytes."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in profiles(jsonl):
        writer.writerow(row)
        count += 1
    with atomic_open(out, "wb") as f:
        f.write(gzip.compress(text.getvalue().encode("utf-8"), mtime=0))
    return count
