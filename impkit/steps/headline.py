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


def report_paths(preset: str) -> dict:
    return {
        "train": paths.train_report(preset),
        "eval": paths.eval_dir(preset) / "metrics.json",
        "eval_gguf": paths.eval_gguf_summary(preset),
        "export": paths.export_report(preset),
        "parity": paths.parity_report(preset),
        "latency": paths.latency_report(preset),
    }


def main(args: argparse.Namespace) -> None:
    from impkit.headline import headline
    from impkit.io import write_json

    reports = {key: json.loads(path.read_text()) for key, path in report_paths(args.preset).items()}
    figures = headline(reports, names={key: str(path) for key, path in report_paths(args.preset).items()})
    out = paths.headline(args.preset)
    write_json(out, figures)
    logging.getLogger("impkit").info(
        "%s: held-out %.1f %% with its image (lead %+.1f), %d benchmark headlines -> %s",
        args.preset,
        figures["heldout"]["with_image"],
        figures["heldout"]["lead"],
        len(figures["benchmarks"]),
        out,
    )
