"""DVC stage `evaluate@<preset>`: the release on the ten benchmark twins, beside its blind and
majority baselines (impkit.eval.evaluate).

python -m stages.evaluate nano-3b
accelerate launch --multi_gpu --num_processes 2 -m stages.evaluate nano-3b   # data-parallel, same results
"""

from __future__ import annotations

import argparse
from pathlib import Path

from impkit.stage import openmp_wait_policy, run_stage

openmp_wait_policy("PASSIVE")  # before torch loads OpenMP: small kernels on a shared machine

from impkit.config import EvalConfig, load_section
from impkit.eval.evaluate import evaluate_release

TWINS, IMAGES = Path("data/twins"), Path("data/world/heldout/images")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    args = parser.parse_args()
    cfg = load_section(EvalConfig, "eval")
    evaluate_release(Path(f"releases/{args.preset}"), TWINS, IMAGES, Path(f"reports/eval/{args.preset}"), cfg)


if __name__ == "__main__":
    run_stage(main)
