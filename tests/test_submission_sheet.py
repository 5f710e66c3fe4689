"""The MMBench submission sheet is the same bytes for the same answers, whenever it is written (DVC then
sees an unchanged evaluation), and reads back as the answers."""

from __future__ import annotations

import time
import zipfile

import pandas as pd

from impkit.eval.benchmarks.mmbench import FIXED_ZIP_TIME, write_mmbench_sheet


def test_the_sheet_does_not_depend_on_the_time_of_writing(tmp_path):
    sheet = tmp_path / "mmbench.tsv"
    sheet.write_text(
        "index\tquestion\tA\tB\tanswer\timage\n0\tWhich colour?\tred\tblue\tA\tiVBOR\n"
        "1\tWhich shape?\tcircle\tsquare\tB\tiVBOR\n"
    )
    first = write_mmbench_sheet(sheet, {"0": "A", "1": "A"}, tmp_path / "a.xlsx").read_bytes()
    time.sleep(1.1)  # the document properties have whole seconds, the zip entries two
    second = write_mmbench_sheet(sheet, {"0": "A", "1": "A"}, tmp_path / "b.xlsx").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "a.xlsx") as archive:
        assert {info.date_time for info in archive.infolist()} == {FIXED_ZIP_TIME}
    rows = pd.read_excel(tmp_path / "a.xlsx").to_dict("records")
    assert [(r["index"], r["prediction"]) for r in rows] == [(0, "A"), (1, "A")] and "image" not in rows[0]
    other = write_mmbench_sheet(sheet, {"0": "B", "1": "A"}, tmp_path / "c.xlsx").read_bytes()
    assert other != first
