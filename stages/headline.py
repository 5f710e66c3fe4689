"""DVC stage `headline@<preset>`: the release's headline figures in `reports/headline/<preset>.json`,
the one metrics file per release that `dvc metrics show` prints (impkit.headline).

python -m stages.headline nano-3b
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from impkit.headline import headline
from impkit.io import write_json
from impkit.stage import run_stage

log = logging.getLogger("impkit")


def report_paths(preset: str) -> dict[str, Path]:
    return {
        "train": Path(f"reports/train/{preset}.json"),
        "eval": Path(f"reports/eval/{preset}/metrics.json"),
        "eval_gguf": Path(f"reports/eval-gguf/{preset}.json"),
        "export": Path(f"reports/export/{preset}.json"),
        "parity": Path(f"reports/parity/{preset}.json"),
        "latency": Path(f"reports/latency/{preset}.json"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    args = parser.parse_args()
    paths = report_paths(args.preset)
    reports = {key: json.loads(path.read_text()) for key, path in paths.items()}
    figures = headline(reports, names={key: str(path) for key, path in paths.items()})
    out = Path(f"reports/headline/{args.preset}.json")
    write_json(out, figures)
    log.info(
        "%s: held-out %.1f %% with its image (lead %+.1f), %d benchmark headlines -> %s",
        args.preset,
        figures["heldout"]["with_image"],
        figures["heldout"]["lead"],
        len(figures["benchmarks"]),
        out,
    )


if __name__ == "__main__":
    run_stage(main)
