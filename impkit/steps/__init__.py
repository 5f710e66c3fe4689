"""The build's steps, one module per DVC stage.

Each step parses its arguments, loads its section of ``params.yaml``, calls one library function and
writes its declared outputs at the paths ``impkit.paths`` gives. ``python -m stages.<stage>`` (what
``dvc.yaml`` runs) and ``impkit <step>`` run the same step with the same defaults and outputs.

A step module has ``NAME`` (the ``impkit`` subcommand), ``HELP``, ``add_arguments(parser)`` and
``main(args)``. The library is imported inside ``main``: ``impkit --help`` lists every step without
loading PyTorch.
"""

from __future__ import annotations

import argparse

# in the order of the pipeline
STEPS = (
    "world",
    "assemble",
    "backbones",
    "train",
    "imports",
    "twins",
    "evaluate",
    "export",
    "parity",
    "evaluate_gguf",
    "latency",
    "latency_paper",
    "headline",
    "release",
    "dashboards",
)


def add_params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")


def add_preset_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", help="a preset of params.yaml's model.presets (its release is releases/<preset>)")
