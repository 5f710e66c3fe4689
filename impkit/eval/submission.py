"""The MMBench submission sheet: the benchmark's own TSV rows (without the base64 images) with a
``prediction`` column, as an .xlsx, the form MMBench's evaluation server takes. Written beside the
answer file for MMBench and MMBench-CN; ``impkit score mmbench`` reads it back too."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from impkit.eval.scoring.inputs import read_table
from impkit.io import atomic_path

SHEET = "submission.xlsx"
DROPPED = ("image", "image_path")  # megabytes of base64 (or a local path) the server does not need


def write_mmbench_sheet(sheet: Path, answers: Mapping[str, str], out: Path) -> Path:
    """``sheet``: the TSV the questions came from; ``answers``: index -> answer text."""
    import pandas as pd

    rows = read_table(sheet, "MMBench sheet")
    kept = [{k: v for k, v in row.items() if k not in DROPPED} | {"prediction": answers.get(row["index"], "")}
            for row in rows]  # fmt: skip
    with atomic_path(Path(out)) as tmp:
        pd.DataFrame(kept).to_excel(tmp, index=False, engine="openpyxl")
    return Path(out)
