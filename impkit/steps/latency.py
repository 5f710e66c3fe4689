"""Step `latency`: the paper's Table 4 protocol (41 prompt tokens after the image, 64 generated
tokens, model loading excluded) on a trained release, on every device of params.yaml's
`latency.devices`: each level in models/gguf/<preset> (llama.cpp) and releases/<preset> (PyTorch).

Writes reports/latency/<preset>.json: protocol, host CPU (model, ggml-relevant flags), library
versions, `metrics` (device/level -> T_VE, S_prompt, S_gen, T_total by equation (1), wall time:
medians) and every run. The paper-size models are the step `latency-paper`."""

from __future__ import annotations

import argparse
import logging

from impkit import paths
from impkit.steps import add_params_argument, add_preset_argument

NAME = "latency"
HELP = "the paper's Table 4 latency protocol on a release's GGUF levels and PyTorch (reports/latency/<preset>.json)"
OMP_WAIT_POLICY = "ACTIVE"  # spinning OpenMP threads: llama.cpp waits for its threads after every op (impkit.stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    from impkit.config import LatencyConfig, load_section
    from impkit.io import write_json
    from impkit.latency import check_devices
    from impkit.latency.report import measure_release

    cfg = load_section(LatencyConfig, "latency", path=args.params)
    check_devices(cfg.devices)
    report = measure_release(args.preset, cfg, gguf_dir=paths.gguf(args.preset), release_dir=paths.release(args.preset))
    out = paths.latency_report(args.preset)
    write_json(out, report)
    logging.getLogger("impkit").info("wrote %s", out)
