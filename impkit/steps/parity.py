"""Step `parity`: the exported F16 GGUF against the PyTorch release, logit by logit, through
llama.cpp's multimodal path, on prompts with images from the benchmark twins. Writes
reports/parity/<preset>.json and fails when parity breaks (thresholds: params.yaml's `parity`)."""

from __future__ import annotations

import argparse
import logging
import sys

from impkit import paths
from impkit.steps import add_params_argument, add_preset_argument

NAME = "parity"
HELP = "compare the F16 GGUF with the PyTorch release logit by logit (reports/parity/<preset>.json)"
OMP_WAIT_POLICY = "PASSIVE"  # sleeping OpenMP threads: small torch kernels, shared cores (impkit.stage)
log = logging.getLogger("impkit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    from impkit.config import ParityConfig, load_section
    from impkit.eval import benchmarks
    from impkit.eval.parity import check, logit_parity, pick_prompts
    from impkit.eval.runners import LlamaCppRunner, TorchRunner
    from impkit.eval.twins import read_prompts
    from impkit.io import write_json

    cfg = load_section(ParityConfig, "parity", path=args.params)
    release, gguf_dir, out = paths.release(args.preset), paths.gguf(args.preset), paths.parity_report(args.preset)
    twins = paths.TWINS
    rows = {b: read_prompts(twins / b) for b in benchmarks.names() if (twins / b / "prompts.jsonl").is_file()}
    questions = pick_prompts(rows, cfg.prompts)
    torch_runner = TorchRunner.from_release(release, image_root=paths.HELDOUT_IMAGES, device="cpu")
    gguf_runner = LlamaCppRunner.from_export(
        gguf_dir, cfg.level, release, image_root=paths.HELDOUT_IMAGES, logits_all=True, n_ctx=1024
    )
    try:
        report = logit_parity(torch_runner, gguf_runner, questions)
    finally:
        gguf_runner.close()
    problems = check(report, cfg)
    report = {
        "level": cfg.level,
        "passed": not problems,
        "problems": problems,
        "thresholds": {"min_top1": cfg.min_top1, "max_rel_error": cfg.max_rel_error},
        **report,
    }
    write_json(out, report)
    log.info(
        "%s %s: top-1 agreement %.2f%% over %d positions of %d prompts, max relative logit error %.2e",
        args.preset,
        cfg.level,
        100 * report["top1_agreement"],
        report["positions"],
        report["prompts"],
        report["max_rel_error"],
    )
    if problems:
        log.error(
            "%s: PARITY BROKEN between %s and %s: %s (per-prompt figures in %s)",
            args.preset,
            release,
            gguf_dir,
            "; ".join(problems),
            out,
        )
        sys.exit(1)
