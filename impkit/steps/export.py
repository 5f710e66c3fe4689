"""Step `export`: a release to GGUF (the LLM at every level of params.yaml's `export.levels`, one
mmproj) in models/gguf/<preset>, the files' sizes and tensor types in reports/export/<preset>.json."""

from __future__ import annotations

import argparse

from impkit import paths
from impkit.steps import add_params_argument, add_preset_argument

NAME = "export"
HELP = "export a release to GGUF and quantize it (models/gguf/<preset>)"
OMP_WAIT_POLICY = "PASSIVE"  # sleeping OpenMP threads: small torch kernels, shared cores (impkit.stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    from impkit.config import ExportConfig, load_section
    from impkit.export import export_and_quantize
    from impkit.io import write_json

    cfg = load_section(ExportConfig, "export", path=args.params)
    record = export_and_quantize(
        paths.release(args.preset),
        paths.gguf(args.preset),
        levels=cfg.levels,
        mmproj_level=cfg.mmproj_level,
        threads=cfg.threads,
    )
    sizes = {"bytes": record["sizes"], "tensor_types": {lv: r["tensor_types"] for lv, r in record["llm"].items()}}
    write_json(paths.export_report(args.preset), sizes)
