"""DVC stage `export@<preset>`: the release as GGUF files for llama.cpp (LLM at every level of
`params.yaml: export.levels`, the vision mmproj at `export.mmproj_level`) and their sizes.

python -m stages.export nano-3b
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from impkit.stage import openmp_wait_policy, run_stage

openmp_wait_policy("PASSIVE")  # before torch loads OpenMP: small kernels on a shared machine

from impkit.config import ExportConfig, load_section
from impkit.export import ExportError, export_and_quantize
from impkit.io import write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    args = parser.parse_args()
    cfg = load_section(ExportConfig, "export")
    try:
        record = export_and_quantize(
            Path(f"releases/{args.preset}"),
            Path(f"models/gguf/{args.preset}"),
            levels=cfg.levels,
            mmproj_level=cfg.mmproj_level,
            threads=cfg.threads,
        )
    except ExportError as exc:  # an unmapped tensor, an unsupported family: the message says which
        logging.getLogger("impkit").error("%s", exc)
        sys.exit(1)
    sizes = {"bytes": record["sizes"], "tensor_types": {lv: r["tensor_types"] for lv, r in record["llm"].items()}}
    write_json(Path(f"reports/export/{args.preset}.json"), sizes)


if __name__ == "__main__":
    run_stage(main)
