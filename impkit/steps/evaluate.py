"""Step `evaluate`: a release answers the ten benchmark twins with PyTorch (with the blank-image and
majority baselines beside it); predictions in the official result formats, the scores, details and
the paper's Table 3 layout in reports/eval/<preset>."""

from __future__ import annotations

import argparse

from impkit import paths
from impkit.steps import add_params_argument, add_preset_argument

NAME = "evaluate-release"
HELP = "evaluate a release on the twins with PyTorch, as the evaluate stage does (reports/eval/<preset>)"
OMP_WAIT_POLICY = "PASSIVE"  # sleeping OpenMP threads: small torch kernels, shared cores (impkit.stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    from impkit.config import EvalConfig, load_section
    from impkit.eval.evaluate import evaluate_release

    cfg = load_section(EvalConfig, "eval", path=args.params)
    evaluate_release(paths.release(args.preset), paths.TWINS, paths.HELDOUT_IMAGES, paths.eval_dir(args.preset), cfg)
