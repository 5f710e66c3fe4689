"""Progress never goes silent: away from a terminal, long work writes a log line with its rate and
ETA at least every IMPKIT_PROGRESS_SECONDS, and the build's stages record their times."""

from __future__ import annotations

import json
import logging
import time

import pytest

from impkit import progress as progress_module
from impkit import timings
from impkit.progress import LogProgress, bars, progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_come_at_the_interval_with_rate_and_eta(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="impkit.progress"):
        bar = LogProgress(total=100, desc="pretrain phi2 LM", unit="step", every=20, clock=clock)
        for _ in range(100):
            clock.now += 1.0  # one step a second: 100 s of work
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    # a line every 20 s (steps 20, 40, 60, 80, 100) and one when the work ended
    assert len(lines) == 6, lines
    assert lines[0] == "pretrain phi2 LM: 20/100 step (20 %), 1 step/s, ETA 1 min 20 s, 20 s so far"
    assert lines[-1] == "pretrain phi2 LM: done, 100 step in 1 min 40 s"


def test_short_pieces_of_work_in_a_row_cannot_add_up_to_a_silence(caplog, monkeypatch):
    """Loading images for 15 s, then training: the first training line comes 20 s after the process's
    last line, not 20 s into the training."""
    clock = Clock()
    monkeypatch.setattr(progress_module, "_PROCESS_LAST_LINE", progress_module._LastLine(clock))
    with caplog.at_level(logging.INFO, logger="impkit.progress"):
        for _ in LogProgress(range(15), desc="load images", unit="img", every=20):
            clock.now += 1.0
        training = LogProgress(total=30, desc="train", unit="step", every=20)
        for step in range(30):
            clock.now += 1.0
            training.update(1)
            if step == 4:
                assert [r.getMessage()[:15] for r in caplog.records] == ["train: 5/30 ste"]
        training.close()
    assert len(caplog.records) == 3  # at 20 s, at 40 s, and the end of the 30 s of training


def test_short_work_stays_quiet_and_unknown_totals_still_report_a_rate(caplog):
    clock = Clock()
    with caplog.at_level(logging.INFO, logger="impkit.progress"):
        with LogProgress(range(3), desc="quick", every=20, clock=clock) as bar:
            assert list(bar) == [0, 1, 2]
        endless = LogProgress(desc="scan", unit="rec", unit_scale=True, every=5, clock=clock)
        clock.now += 10
        endless.update(25_000)
        endless.set_postfix(loss="1.234")
        clock.now += 10
        endless.update(25_000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "scan: 25.0k rec, 2500 rec/s, 10 s so far",
        "scan: 50.0k rec, 2500 rec/s, 20 s so far [loss 1.234]",
    ]


def test_away_from_a_terminal_progress_is_log_lines(monkeypatch):
    monkeypatch.setenv("IMPKIT_PROGRESS", "1")
    assert not bars()  # pytest's captured stderr is not a terminal
    assert isinstance(progress(total=3, desc="x"), LogProgress)
    monkeypatch.setenv("IMPKIT_PROGRESS", "0")  # no bars, but the lines stay
    assert isinstance(progress(total=3, desc="x"), LogProgress)
    assert not isinstance(progress(total=3, desc="x", disable=True), LogProgress)


# --------------------------------------------------------------------------- timings.json
def test_each_dvc_stage_records_its_time_machine_and_precision(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv(timings.LAUNCHED_ENV, raising=False)
    monkeypatch.delenv(timings.STAGE_ENV, raising=False)
    assert timings.record_stage(0.0) is None  # run by hand: nothing recorded
    assert not (tmp_path / "reports").exists()

    for stage, seconds, precision in (
        ("world", 12.0, None),
        ("tune@nano-3b", 330.0, "fp32"),
        ("evaluate@nano-3b", 95.0, None),
    ):
        monkeypatch.setenv(timings.STAGE_ENV, stage)
        monkeypatch.setattr(timings, "_noted", {"precision": precision} if precision else {})
        entry = timings.record_stage(1_000_000.0, finished=1_000_000.0 + seconds)
        assert entry["wall_s"] == seconds and entry["machine"]["cores"] >= 1
    monkeypatch.setenv(timings.LAUNCHED_ENV, "1")  # a process started by a stage's launcher
    assert timings.record_stage(0.0) is None

    data = json.loads((tmp_path / "reports" / "timings.json").read_text())
    assert list(data["stages"]) == ["world", "tune@nano-3b", "evaluate@nano-3b"]
    assert data["stages"]["tune@nano-3b"]["precision"] == "fp32"
    assert {"cpu", "flags", "cores", "native_bf16"} <= set(data["stages"]["world"]["machine"])
    text = timings.table(data)
    assert "| tune@nano-3b | 5 min 30 s | fp32 |" in text
    assert "| **through training** (world to tune) | **5 min 42 s** |" in text
    assert "| **whole build** (sum of the stages) | **7 min 17 s** |" in text
    assert "| first start to last finish (with DVC's work between stages) | 5 min 30 s |" in text  # one start


def test_a_stage_run_again_replaces_its_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv(timings.LAUNCHED_ENV, raising=False)
    monkeypatch.setenv(timings.STAGE_ENV, "backbones")
    timings.record_stage(0.0, finished=300.0)
    timings.record_stage(1000.0, finished=1100.0)
    stages = timings.read_timings()["stages"]
    assert list(stages) == ["backbones"] and stages["backbones"]["wall_s"] == 100.0


@pytest.mark.parametrize("content", ["not json", '{"stages": []}'])
def test_a_damaged_timings_file_is_started_afresh(tmp_path, content):
    path = tmp_path / "timings.json"
    path.write_text(content)
    assert timings.read_timings(path) == {"stages": {}}


def test_work_that_reports_nothing_is_followed_by_the_size_of_its_output(tmp_path, caplog, monkeypatch):
    """llama.cpp's quantizer says nothing while it runs: its growing output file says how far it is."""
    monkeypatch.setenv("IMPKIT_PROGRESS_SECONDS", "0")
    out = tmp_path / "llm-Q4_K_M.gguf"
    with caplog.at_level(logging.INFO, logger="impkit.progress"):
        with progress_module.watch_file(out, total=4000, desc="quantize", poll=0.01), open(out, "wb") as f:
            for _ in range(4):
                f.write(b"x" * 1000)
                f.flush()
                time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("quantize: ") and "B (" in line and "ETA" in line for line in lines), lines
    assert lines[-1] == "quantize: done, 4.0k B in 0 s"
