"""Where the `backbones` stage puts the offline presets' parts, and the check that they are there.

Light on purpose (no torch, no transformers): the training launcher checks its inputs with it before it
starts any process, so a missing part is one line naming the file, not a traceback from each process.
"""

from __future__ import annotations

from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"
VISION_DIR = "vision"


def llm_dir(backbones: Path, family: str) -> Path:
    return Path(backbones) / f"llm-{family}"


def check_backbones(backbones: Path, family: str) -> None:
    """FileNotFoundError naming the first part of ``backbones`` an offline ``family`` preset lacks."""
    backbones = Path(backbones)
    for part in (
        backbones / TOKENIZER_FILE,
        backbones / VISION_DIR / "config.json",
        llm_dir(backbones, family) / "config.json",
    ):
        if not part.is_file():
            raise FileNotFoundError(
                f"{part} not found: the offline presets are built from the backbones stage's "
                "output (dvc repro backbones)"
            )
