"""The build's time budget, measured by the build: every DVC stage records its wall time, the machine
it ran on and the precision it used in ``reports/timings.json`` (a DVC metric; ``impkit timings``
prints the table).

Each stage's entry is replaced when the stage runs again, so after a build from an empty workspace
the file holds that build; after a partial rebuild, the stages that were up to date keep the times
of the run that made them (their ``finished`` times tell). Stages know their name from DVC
(``DVC_STAGE``); commands run by hand record nothing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from impkit.paths import TIMINGS

log = logging.getLogger(__name__)

STAGE_ENV = "DVC_STAGE"  # set by `dvc repro` for the command of each stage (foreach items included)
# Set by impkit.train.launch for the data-parallel processes it starts: their launcher records the stage.
LAUNCHED_ENV = "IMPKIT_LAUNCHED"
# Stages before evaluation: the part of the build the training budget used to count
TRAINING_STAGES = ("world", "assemble", "backbones", "align", "tune")

_noted: dict[str, Any] = {}


def note(**fields: Any) -> None:
    """Add fields (e.g. ``precision="fp32"``) to the entry this process's stage will record."""
    _noted.update(fields)


def process_start_time() -> float:
    """When this process started (seconds since the epoch): imports count toward a stage's time."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22 of proc(5), counted after the command name
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds")


def timings_path() -> Path:
    return Path(os.environ.get("DVC_ROOT", ".")) / TIMINGS


def record_stage(started: float, *, finished: float | None = None, ok: bool = True) -> dict[str, Any] | None:
    """Write this process's stage into the timings file (under a lock: stages may run side by side).
    Returns the entry, or None when no DVC stage runs this process or its launcher records it."""
    stage = os.environ.get(STAGE_ENV)
    if not stage or os.environ.get(LAUNCHED_ENV):
        return None
    from filelock import FileLock

    from impkit.hardware import read_machine
    from impkit.io import write_json

    finished = time.time() if finished is None else finished
    entry = {
        "wall_s": round(finished - started, 1),
        "ok": ok,
        "precision": _noted.get("precision"),
        "started": _iso(started),
        "finished": _iso(finished),
        "machine": read_machine().describe(),
        **{k: v for k, v in _noted.items() if k != "precision"},
    }
    path = timings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        data = read_timings(path)
        data.setdefault("stages", {})[stage] = entry
        write_json(path, data)
    log.info("%s took %s (recorded in %s)", stage, _minutes(entry["wall_s"]), TIMINGS)
    return entry


def read_timings(path: Path | None = None) -> dict[str, Any]:
    path = path or timings_path()
    if not path.is_file():
        return {"stages": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON; starting it afresh", path)
        return {"stages": {}}
    return data if isinstance(data.get("stages"), dict) else {"stages": {}}


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _is_training(stage: str) -> bool:
    return stage.split("@", 1)[0] in TRAINING_STAGES


def _machine_line(machine: dict[str, Any]) -> str:
    flags = " ".join(machine.get("flags", [])) or "no listed flags"
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    cap = f", ONEDNN_MAX_CPU_ISA={machine['onednn_max_cpu_isa']}" if machine.get("onednn_max_cpu_isa") else ""
    return f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores ({flags}){gpu}{cap}"


def _span(stages: list[tuple[str, dict[str, Any]]]) -> float | None:
    try:
        starts = [datetime.fromisoformat(e["started"]) for _, e in stages]
        ends = [datetime.fromisoformat(e["finished"]) for _, e in stages]
    except (KeyError, ValueError):
        return None
    return (max(ends) - min(starts)).total_seconds()


def table(data: dict[str, Any]) -> str:
    """The stage table (Markdown), in the order the stages finished, with the totals and machines."""
    stages = sorted(data.get("stages", {}).items(), key=lambda item: item[1].get("finished", ""))
    if not stages:
        return "no stage has recorded a time yet (run `dvc repro`)"
    lines = ["| stage | wall time | precision | finished (UTC) |", "|---|---|---|---|"]
    for name, entry in stages:
        flag = "" if entry.get("ok", True) else " (failed)"
        lines.append(
            f"| {name}{flag} | {_minutes(entry['wall_s'])} | {entry.get('precision') or '-'} | "
            f"{entry.get('finished', '?').replace('+00:00', '')} |"
        )
    training = sum(e["wall_s"] for n, e in stages if _is_training(n))
    total = sum(e["wall_s"] for _, e in stages)
    lines.append(f"| **through training** (world to tune) | **{_minutes(training)}** | | |")
    lines.append(f"| **whole build** (sum of the stages) | **{_minutes(total)}** | | |")
    span = _span(stages)
    if span is not None:  # DVC's own work between stages (hashing, the lock file) is in this one
        lines.append(f"| first start to last finish (with DVC's work between stages) | {_minutes(span)} | | |")
    machines = {_machine_line(e.get("machine", {})) for _, e in stages}
    lines.append("")
    lines.extend(f"Machine: {m}" for m in sorted(machines))
    if len(machines) > 1:
        lines.append("(the stages ran on more than one machine: the totals mix them)")
    return "\n".join(lines)
