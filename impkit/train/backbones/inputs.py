"""The backbone recipes' inputs, read from the synthetic world: image-caption pairs, scene records
and the language-model corpus. Each recipe also takes them in memory (tests, ablations), so the
``as_*`` helpers accept either a path or the items themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


def require_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} (generate the synthetic world first)")
    return path


def read_vision_pairs(path: PathLike) -> list[tuple[str, str]]:
    """``backbone/vision_pairs.jsonl`` -> [(image path relative to the image root, caption)]."""
    path = require_file(path, "image-caption pairs file")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                pairs.append((str(rec["image"]), str(rec["caption"])))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: expected a JSON object with 'image' and 'caption' ({exc})") from None
    return pairs


def read_scenes(path: PathLike) -> list[dict[str, Any]]:
    """``scenes.jsonl`` -> one ground-truth record per image."""
    path = require_file(path, "scenes file")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_corpus(path: PathLike) -> list[str]:
    """``backbone/lm_corpus.txt`` -> its non-empty lines."""
    path = require_file(path, "language-model corpus")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def as_pairs(pairs: Sequence[tuple[str, str]] | PathLike) -> list[tuple[str, str]]:
    if isinstance(pairs, (str, os.PathLike)):
        return read_vision_pairs(pairs)
    return [(str(image), str(caption)) for image, caption in pairs]


def as_scenes(scenes: Sequence[dict[str, Any]] | PathLike) -> list[dict[str, Any]]:
    if isinstance(scenes, (str, os.PathLike)):
        return read_scenes(scenes)
    return list(scenes)


def as_texts(texts: Sequence[str] | PathLike) -> list[str]:
    if isinstance(texts, (str, os.PathLike)):
        return read_corpus(texts)
    return [t for t in texts if t.strip()]
