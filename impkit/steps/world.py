"""Step `world`: the synthetic world (sources in LLaVA's formats, images, a held-out split, an LM
corpus) from params.yaml's `world` section, written atomically to data/world."""

from __future__ import annotations

import argparse
import logging

from impkit import paths
from impkit.steps import add_params_argument

NAME = "world"
HELP = "generate the synthetic world (data/world)"
OMP_WAIT_POLICY = None  # never loads torch or llama.cpp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_argument(parser)
    parser.add_argument("--out", default=str(paths.WORLD), help=f"where the world goes (default {paths.WORLD})")


def main(args: argparse.Namespace) -> None:
    from impkit.config import WorldConfig, load_section
    from impkit.data.synth import generate_world
    from impkit.io import atomic_path

    cfg = load_section(WorldConfig, "world", path=args.params)
    with atomic_path(args.out) as tmp:
        summary = generate_world(cfg, tmp)
    logging.getLogger("impkit").info(
        "synthetic world written to %s: %d records, %d training images, %d held-out images, %d corpus lines",
        args.out,
        summary.total_records,
        summary.total_images,
        sum(summary.heldout_images.values()),
        summary.lm_corpus_lines,
    )
