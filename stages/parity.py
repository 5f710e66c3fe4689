"""DVC stage `parity@<preset>`: the exported F16 GGUF against the PyTorch release, logit by logit,
through llama.cpp's multimodal path, on prompts with images from the benchmark twins. Writes
`reports/parity/<preset>.json` and fails when parity breaks (thresholds: `params.yaml: parity`).

python -m stages.parity nano-3b
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from impkit.config import from_dict, load_params, section
from impkit.eval import benchmarks
from impkit.eval.parity import ParityConfig, check, logit_parity, pick_prompts
from impkit.eval.runners import LlamaCppRunner, TorchRunner
from impkit.eval.twins import read_prompts
from impkit.io import write_json
from impkit.stage import run_stage

TWINS, IMAGES = Path("data/twins"), Path("data/world/heldout/images")
log = logging.getLogger("impkit")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    args = parser.parse_args()
    cfg = from_dict(ParityConfig, section(load_params(), "parity"), "parity")
    release, gguf_dir = Path(f"releases/{args.preset}"), Path(f"models/gguf/{args.preset}")
    rows = {b: read_prompts(TWINS / b) for b in benchmarks.names() if (TWINS / b / "prompts.jsonl").is_file()}
    questions = pick_prompts(rows, cfg.prompts)
    torch_runner = TorchRunner.from_release(release, image_root=IMAGES, device="cpu")
    gguf_runner = LlamaCppRunner.from_export(
        gguf_dir, cfg.level, release, image_root=IMAGES, logits_all=True, n_ctx=1024
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
    write_json(Path(f"reports/parity/{args.preset}.json"), report)
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
            "%s: PARITY BROKEN between %s and %s: %s (per-prompt figures in reports/parity/%s.json)",
            args.preset,
            release,
            gguf_dir,
            "; ".join(problems),
            args.preset,
        )
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
