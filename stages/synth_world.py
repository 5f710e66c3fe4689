"""DVC stage `world`: generate the synthetic world (images + LLaVA-format sources + held-out split)."""

from __future__ import annotations

import logging
from pathlib import Path

from impkit.config import WorldConfig, load_section
from impkit.data.synth import generate_world
from impkit.io import atomic_path
from impkit.stage import run_stage

OUT = Path("data/world")


def main() -> None:
    cfg = load_section(WorldConfig, "world")
    with atomic_path(OUT) as tmp:
        summary = generate_world(cfg, tmp)
    logging.getLogger("impkit").info(
        "synthetic world written to %s: %d records, %d training images, %d held-out images, %d corpus lines",
        OUT,
        summary.total_records,
        summary.total_images,
        sum(summary.heldout_images.values()),
        summary.lm_corpus_lines,
    )


if __name__ == "__main__":
    run_stage(main)
