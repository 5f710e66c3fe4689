"""The MMBench submission sheet: the benchmark's own TSV rows (without the base64 images) with a
``prediction`` column, as an .xlsx, the form MMBench's evaluation server takes. Written beside the
answer file for MMBench and MMBench-CN; ``impkit score mmbench`` reads it back too."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

from impkit.eval.scoring.inputs import read_table
from impkit.io import atomic_path

SHEET = "submission.xlsx"
DROPPED = ("image", "image_path")  # megabytes of base64 (or a local path) the server does not need
# An .xlsx is a zip whose entries and document properties carry the time of writing; fixed here, the
# same answers give the same bytes, and DVC does not rerun what depends on an unchanged evaluation.
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FIXED_DOC_TIME = "1980-01-01T00:00:00Z"
_DOC_TIME = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")


def _without_timestamps(path: Path) -> None:
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                data = _DOC_TIME.sub(rb"\g<1>" + FIXED_DOC_TIME.encode() + rb"\g<2>", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            target.writestr(fixed, data)


def write_mmbench_sheet(sheet: Path, answers: Mapping[str, str], out: Path) -> Path:
    """``sheet``: the TSV the questions came from; ``answers``: index -> answer text."""
    import pandas as pd

    rows = read_table(sheet, "MMBench sheet")
    kept = [
        {k: v for k, v in row.items() if k not in DROPPED} | {"prediction": answers.get(row["index"], "")}
        for row in rows
    ]
    with atomic_path(Path(out)) as tmp:
        pd.DataFrame(kept).to_excel(tmp, index=False, engine="openpyxl")
        _without_timestamps(tmp)
    return Path(out)
