"""Step `latency-paper`: the paper's Table 4 protocol on a paper-size model, random weights with the
exact shapes of a real Imp model (params.yaml's `latency.paper.profiles`), written to
models/paper-size/<profile> and reused while it matches. Writes reports/latency/<profile>.json: what
the `latency` step writes for a release, and the file sizes beside Table 4's."""

from __future__ import annotations

import argparse
import logging

from impkit import paths
from impkit.steps import add_params_argument

NAME = "latency-paper"
HELP = "latency of a random-weight model with a real Imp model's shapes (reports/latency/<profile>.json)"
OMP_WAIT_POLICY = "ACTIVE"  # spinning OpenMP threads: llama.cpp waits for its threads after every op (impkit.stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", help="a paper-size profile: a key of latency.paper.profiles")
    add_params_argument(parser)


def main(args: argparse.Namespace) -> None:
    from impkit.config import LatencyConfig, load_params, load_section, section
    from impkit.export.paper_size import existing_paper_size, write_paper_size
    from impkit.io import write_json
    from impkit.latency import check_devices
    from impkit.latency.report import measure_paper_size

    log = logging.getLogger("impkit")
    params = load_params(args.params)
    cfg = load_section(LatencyConfig, "latency", params)
    check_devices(cfg.devices)
    profile = cfg.paper.profile(args.profile)
    presets = section(section(params, "model"), "presets")
    folder = paths.paper_size(args.profile)
    kwargs = {"presets": presets, "levels": cfg.paper.levels, "seed": cfg.paper.seed}
    record = existing_paper_size(args.profile, profile, folder, **kwargs)
    if record is None:
        record = write_paper_size(args.profile, profile, folder, **kwargs)
    else:
        log.info("reusing the paper-size pair in %s", folder)
    report = measure_paper_size(args.profile, cfg, folder, record)
    out = paths.latency_report(args.profile)
    write_json(out, report)
    log.info("wrote %s", out)
