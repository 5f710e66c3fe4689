"""DVC stage `latency@<preset>`: the paper's Table 4 protocol (41 prompt tokens after the image, 64
generated tokens, model loading excluded) on a trained release, on every device of
`params.yaml: latency.devices`.

    python -m stages.latency nano-3b      # each level in models/gguf/nano-3b (llama.cpp)
                                          # and releases/nano-3b (PyTorch fp32)

Writes reports/latency/<preset>.json: protocol, host CPU (model, ggml-relevant flags), library
versions, `metrics` (device/level -> T_VE, S_prompt, S_gen, T_total by equation (1), wall time:
medians) and every run. The paper-size models are `stages.latency_paper`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from impkit.stage import openmp_wait_policy, run_stage

openmp_wait_policy("ACTIVE")  # before torch and llama.cpp load OpenMP: spinning threads, 24x faster here

from impkit.config import LatencyConfig, load_section
from impkit.io import write_json
from impkit.latency import check_devices
from impkit.latency.report import measure_release

log = logging.getLogger("impkit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset", help="a trained preset: releases/<preset> and models/gguf/<preset>")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--out", default=None, help="report path (default: reports/latency/<preset>.json)")
    args = parser.parse_args()
    cfg = load_section(LatencyConfig, "latency", path=args.params)
    check_devices(cfg.devices)
    report = measure_release(
        args.preset, cfg, gguf_dir=Path("models/gguf") / args.preset, release_dir=Path("releases") / args.preset
    )
    out = Path(args.out or f"reports/latency/{args.preset}.json")
    write_json(out, report)
    log.info("wrote %s", out)


if __name__ == "__main__":
    run_stage(main)
