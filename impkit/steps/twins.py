"""Step `twins`: the ten benchmarks' synthetic twins, in their official file formats, from the
world's held-out split (impkit.eval.twins), written to data/twins."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from impkit import paths
from impkit.steps import add_params_argument

NAME = "twins"
HELP = "write the ten benchmarks' synthetic twins in their official formats (data/twins)"
OMP_WAIT_POLICY = None  # never loads torch or llama.cpp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_argument(parser)
    parser.add_argument(
        "--heldout", default=str(paths.HELDOUT), help=f"the world's held-out split (default {paths.HELDOUT})"
    )
    parser.add_argument("--out", default=str(paths.TWINS), help=f"where the twins go (default {paths.TWINS})")


def main(args: argparse.Namespace) -> None:
    from impkit.config import EvalConfig, load_section
    from impkit.eval.twins.generate import generate_twins

    cfg = load_section(EvalConfig, "eval", path=args.params)
    out = Path(args.out)
    manifest = generate_twins(Path(args.heldout), out, seed=cfg.seed, sizes=cfg.twins)
    counts = {name: entry["n_prompts"] for name, entry in manifest["benchmarks"].items()}
    logging.getLogger("impkit").info(
        "%d prompts over %d benchmarks in %s: %s",
        sum(counts.values()),
        len(counts),
        out,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )
