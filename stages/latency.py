"""DVC stage `latency@<target>`: the paper's Table 4 protocol (41 prompt tokens after the image, 64
generated tokens, model loading excluded) on every device of `params.yaml: latency.devices`.

    python -m stages.latency nano-3b      # a release: each level in models/gguf/nano-3b (llama.cpp)
                                          # and releases/nano-3b (PyTorch fp32)
    python -m stages.latency imp-3b-196   # a paper-size profile: random weights with Imp-3B@196's exact
                                          # shapes, written to latency.paper.dir (reused while it matches)

Writes reports/latency/<target>.json: protocol, host CPU (model, ggml-relevant flags), library
versions, `metrics` (device/level -> T_VE, S_prompt, S_gen, T_total by equation (1), wall time:
medians) and every run; for a paper-size profile also the file sizes beside Table 4's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from impkit.config import from_dict, load_params, section
from impkit.export import ExportError
from impkit.export.paper_size import PAPER_PROFILES, existing_paper_size, write_paper_size
from impkit.io import write_json
from impkit.latency.report import measure_paper_size, measure_release
from impkit.latency.settings import LatencyConfig
from impkit.stage import run_stage

log = logging.getLogger("impkit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help=f"a trained preset (releases/<target>) or a paper-size profile {PAPER_PROFILES}")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--out", default=None, help="report path (default: reports/latency/<target>.json)")
    args = parser.parse_args()
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "ACTIVE":
        log.warning(
            "OMP_WAIT_POLICY is %r, not ACTIVE: sleeping OpenMP threads make small models many "
            "times slower (dvc.yaml runs this stage with ACTIVE)",
            os.environ.get("OMP_WAIT_POLICY"),
        )
    params = load_params(args.params)
    cfg = from_dict(LatencyConfig, section(params, "latency"), "latency")
    if args.target in PAPER_PROFILES:
        presets = section(section(params, "model"), "presets")
        folder = Path(cfg.paper.dir) / args.target
        record = existing_paper_size(args.target, folder, presets=presets, levels=cfg.paper.levels, seed=cfg.paper.seed)
        if record is None:
            try:
                record = write_paper_size(
                    args.target, folder, presets=presets, levels=cfg.paper.levels, seed=cfg.paper.seed
                )
            except ExportError as exc:
                log.error("%s", exc)
                sys.exit(1)
        else:
            log.info("reusing the paper-size pair in %s", folder)
        report = measure_paper_size(args.target, cfg, folder, record)
    else:
        report = measure_release(
            args.target, cfg, gguf_dir=Path("models/gguf") / args.target, release_dir=Path("releases") / args.target
        )
    out = Path(args.out or f"reports/latency/{args.target}.json")
    write_json(out, report)
    log.info("wrote %s", out)


if __name__ == "__main__":
    run_stage(main)
