"""Progress bars with rate and ETA for long work (tqdm), quiet when IMPKIT_PROGRESS=0."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("IMPKIT_PROGRESS", "1") != "0"


def progress(iterable: Iterable[T] | None = None, **kwargs) -> tqdm:
    """A tqdm bar on stderr that refreshes at most every 2 s (readable in DVC and CI logs)."""
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", not enabled())
    return tqdm(iterable, **kwargs)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # GX and friends log a lot at INFO; keep the stage log about the stage.
    for noisy in ("great_expectations", "urllib3", "asyncio", "filelock", "PIL", "torch.distributed.elastic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
