"""DVC stage `evaluate-gguf@<preset>`: every exported quantization level of a release, answered by
llama.cpp and scored on the benchmark twins with the PyTorch run's scorers, then compared with it
(impkit.eval.gguf_levels): headlines per level, answer agreement with PyTorch, the cost of each
quantization against F16.

python -m stages.evaluate_gguf nano-3b
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from impkit.stage import openmp_wait_policy, run_stage

openmp_wait_policy("PASSIVE")  # before torch loads OpenMP: small kernels on a shared machine

from impkit.config import EvalConfig, ExportConfig, GGUFEvalConfig, ParityConfig, load_params, load_section
from impkit.eval.gguf_levels import compare_levels, evaluate_levels
from impkit.io import write_json

TWINS, IMAGES = Path("data/twins"), Path("data/world/heldout/images")
log = logging.getLogger("impkit")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    preset = parser.parse_args().preset
    params = load_params()
    cfg = load_section(EvalConfig, "eval", params)
    export = load_section(ExportConfig, "export", params)
    parity = load_section(ParityConfig, "parity", params)
    run_cfg = load_section(GGUFEvalConfig, "eval_gguf", params)
    release, gguf_dir, torch_dir = (
        Path(f"releases/{preset}"),
        Path(f"models/gguf/{preset}"),
        Path(f"reports/eval/{preset}"),
    )
    out_root = Path(f"reports/eval-gguf/{preset}")
    details = evaluate_levels(release, gguf_dir, export.levels, TWINS, IMAGES, out_root, cfg, run_cfg)
    torch_details = json.loads((torch_dir / "details.json").read_text(encoding="utf-8"))
    summary = compare_levels(torch_details, torch_dir, details, out_root)
    write_json(Path(f"reports/eval-gguf/{preset}.json"), summary)
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


if __name__ == "__main__":
    run_stage(main)
