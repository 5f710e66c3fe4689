"""Step `evaluate-gguf`: every exported GGUF level answers the ten twins through llama.cpp, scored by
the same scorers and compared with the PyTorch run (headline deltas, answer agreement); files per
level in reports/eval-gguf/<preset>/, the summary in reports/eval-gguf/<preset>.json."""

from __future__ import annotations

import argparse
import json
import logging

from impkit import paths
from impkit.steps import add_params_argument, add_preset_argument

NAME = "evaluate-gguf"
HELP = "evaluate every GGUF level on the twins and compare with PyTorch (reports/eval-gguf/<preset>)"
OMP_WAIT_POLICY = "PASSIVE"  # sleeping OpenMP threads: small torch kernels, shared cores (impkit.stage)
log = logging.getLogger("impkit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    from impkit.config import EvalConfig, ExportConfig, GGUFEvalConfig, ParityConfig, load_params, load_section
    from impkit.eval.gguf_levels import compare_levels, evaluate_levels
    from impkit.io import write_json

    preset = args.preset
    params = load_params(args.params)
    cfg = load_section(EvalConfig, "eval", params)
    export = load_section(ExportConfig, "export", params)
    parity = load_section(ParityConfig, "parity", params)
    run_cfg = load_section(GGUFEvalConfig, "eval_gguf", params)
    torch_dir, out_root = paths.eval_dir(preset), paths.eval_gguf_dir(preset)
    details = evaluate_levels(
        paths.release(preset),
        paths.gguf(preset),
        export.levels,
        paths.TWINS,
        paths.HELDOUT_IMAGES,
        out_root,
        cfg,
        run_cfg,
    )
    torch_details = json.loads((torch_dir / "details.json").read_text(encoding="utf-8"))
    summary = compare_levels(torch_details, torch_dir, details, out_root)
    write_json(paths.eval_gguf_summary(preset), summary)
    for level, entry in summary["levels"].items():
        log.info(
            "%s %s: answers equal to PyTorch's on %.1f%% of the questions",
            preset,
            level,
            100 * entry["answer_agreement"]["all"],
        )
    f16 = summary["levels"].get("F16")
    if f16 and f16["answer_agreement"]["all"] < parity.min_answer_agreement:
        log.warning(
            "%s: F16 answers agree with PyTorch on only %.1f%% of the questions (expected >= %.0f%%)",
            preset,
            100 * f16["answer_agreement"]["all"],
            100 * parity.min_answer_agreement,
        )
