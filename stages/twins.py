"""DVC stage `twins`: every benchmark's synthetic twin, in its official file formats, from the
world's held-out split (impkit.eval.twins).

python -m stages.twins
"""

from __future__ import annotations

import logging
from pathlib import Path

from impkit.config import from_dict, load_params, section
from impkit.eval.twins import EvalConfig
from impkit.eval.twins.generate import generate_twins
from impkit.stage import run_stage

HELDOUT, TWINS = Path("data/world/heldout"), Path("data/twins")


def main() -> None:
    cfg = from_dict(EvalConfig, section(load_params(), "eval"), "eval")
    manifest = generate_twins(HELDOUT, TWINS, seed=cfg.seed, sizes=cfg.twins)
    counts = {name: entry["n_prompts"] for name, entry in manifest["benchmarks"].items()}
    logging.getLogger("impkit").info(
        "%d prompts over %d benchmarks in %s: %s",
        sum(counts.values()),
        len(counts),
        TWINS,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )


if __name__ == "__main__":
    run_stage(main)
