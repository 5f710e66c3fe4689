"""DVC stage `latency-paper@<profile>`: the paper's Table 4 protocol on a paper-size model, random
weights with the exact shapes of a real Imp model (`params.yaml: latency.paper.profiles`), written
to `latency.paper.dir` and reused while it matches.

    python -m stages.latency_paper imp-3b-196

Writes reports/latency/<profile>.json: what `stages.latency` writes for a release, and the file
sizes beside Table 4's.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from impkit.stage import openmp_wait_policy, run_stage

openmp_wait_policy("ACTIVE")  # before torch and llama.cpp load OpenMP: spinning threads, 24x faster here

from impkit.config import LatencyConfig, load_params, load_section, section
from impkit.export import ExportError
from impkit.export.paper_size import existing_paper_size, write_paper_size
from impkit.io import write_json
from impkit.latency import check_devices
from impkit.latency.report import measure_paper_size

log = logging.getLogger("impkit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="a paper-size profile: a key of latency.paper.profiles")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--out", default=None, help="report path (default: reports/latency/<profile>.json)")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = load_section(LatencyConfig, "latency", params)
    check_devices(cfg.devices)
    profile = cfg.paper.profile(args.profile)
    presets = section(section(params, "model"), "presets")
    folder = Path(cfg.paper.dir) / args.profile
    kwargs = {"presets": presets, "levels": cfg.paper.levels, "seed": cfg.paper.seed}
    record = existing_paper_size(args.profile, profile, folder, **kwargs)
    if record is None:
        try:
            record = write_paper_size(args.profile, profile, folder, **kwargs)
        except ExportError as exc:
            log.error("%s", exc)
            sys.exit(1)
    else:
        log.info("reusing the paper-size pair in %s", folder)
    report = measure_paper_size(args.profile, cfg, folder, record)
    out = Path(args.out or f"reports/latency/{args.profile}.json")
    write_json(out, report)
    log.info("wrote %s", out)


if __name__ == "__main__":
    run_stage(main)
