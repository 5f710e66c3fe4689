"""Step `headline`: the release's headline figures in reports/headline/<preset>.json, the one metrics
file per release that `dvc metrics show` prints (impkit.headline)."""

from __future__ import annotations

import argparse
import json
import logging

from impkit import paths
from impkit.steps import add_preset_argument

NAME = "headline"
HELP = "the release's headline figures from its reports (reports/headline/<preset>.json)"
OMP_WAIT_POLICY = None  # never loads torch or llama.cpp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    add_imported_argument(parser)


def add_imported_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--imported",
        action="store_true",
        help="a release written by `impkit import` (a published checkpoint): no training report",
    )


def report_paths(preset: str, imported: bool = False) -> dict:
    """The reports a release's headline and record are made of (an imported one has no train report)."""
    return {
        **({} if imported else {"train": paths.train_report(preset)}),
        "eval": paths.eval_dir(preset) / "metrics.json",
        "eval_gguf": paths.eval_gguf_summary(preset),
        "export": paths.export_report(preset),
        "parity": paths.parity_report(preset),
        "latency": paths.latency_report(preset),
    }


def main(args: argparse.Namespace) -> None:
    from impkit.headline import headline
    from impkit.io import write_json

    files = report_paths(args.preset, args.imported)
    reports = {key: json.loads(path.read_text()) for key, path in files.items()}
    figures = headline(reports, names={key: str(path) for key, path in files.items()})
    out = paths.headline(args.preset)
    write_json(out, figures)
    heldout = figures["heldout"]
    logging.getLogger("impkit").info(
        "%s: %s, %d benchmark headlines -> %s",
        args.preset,
        f"held-out {heldout['with_image']:.1f} % with its image (lead {heldout['lead']:+.1f})"
        if heldout
        else "imported (no held-out check)",
        len(figures["benchmarks"]),
        out,
    )
