"""DVC stage `assemble`: build data/assembled/{pretrain,finetune}.jsonl behind the quality gate."""

from __future__ import annotations

from pathlib import Path

from impkit.config import DataConfig, load_params, load_section, section
from impkit.data.assemble import AssemblyPaths, assemble, manifest_metrics
from impkit.io import write_json
from impkit.stage import run_stage

PATHS = AssemblyPaths(
    out_dir=Path("data/assembled"),
    quarantine_dir=Path("data/quarantine"),
    image_cache=Path("data/cache/image_checks.sqlite"),
    docs_dir=Path("reports/data_quality"),
)
METRICS = Path("reports/data_metrics.json")


def main() -> None:
    params = load_params()
    raw = section(params, "data")  # the recipe as written, recorded beside the data it made
    cfg = load_section(DataConfig, "data", params)
    manifest = assemble(cfg, PATHS, recipe=raw)
    write_json(METRICS, manifest_metrics(manifest))


if __name__ == "__main__":
    run_stage(main)
