"""Step `assemble`: the training mixtures of params.yaml's `data` section through the quality gates;
kept records to data/assembled, refused ones to data/quarantine with their reasons, the Data Docs to
reports/data_quality, the record counts to reports/data_metrics.json and the run's timings to
reports/assemble_timings.json (outside the manifest, which depends on the inputs only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from impkit import paths
from impkit.steps import add_params_argument

NAME = "assemble"
HELP = "assemble the training data through the quality gates (data/assembled, data/quarantine)"
OMP_WAIT_POLICY = None  # never loads torch or llama.cpp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_argument(parser)
    parser.add_argument(
        "--out",
        help="a scratch folder for assembled/, quarantine/, cache/, data_quality/, data_metrics.json and "
        "assemble_timings.json, "
        "to try a data recipe without touching the pipeline's outputs (default: the stage's places)",
    )


def main(args: argparse.Namespace) -> None:
    from impkit.config import DataConfig, load_params, load_section, section
    from impkit.data.assemble import AssemblyPaths, assemble, manifest_metrics
    from impkit.io import write_json

    params = load_params(args.params)
    raw = section(params, "data")  # the recipe as written, recorded beside the data it made
    cfg = load_section(DataConfig, "data", params)
    if args.out:
        out = Path(args.out)
        layout = AssemblyPaths(
            out / "assembled",
            out / "quarantine",
            out / "cache" / "image_checks.sqlite",
            out / "data_quality",
            out / "assemble_timings.json",
        )
        metrics = out / "data_metrics.json"
    else:
        layout = AssemblyPaths(
            paths.ASSEMBLED, paths.QUARANTINE, paths.IMAGE_CHECK_CACHE, paths.DATA_QUALITY, paths.ASSEMBLE_TIMINGS
        )
        metrics = paths.DATA_METRICS
    manifest = assemble(cfg, layout, recipe=raw)
    write_json(metrics, manifest_metrics(manifest))
