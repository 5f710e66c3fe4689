"""Shared fixtures: telemetry off, quiet progress, and tiny LLaVA-format sources on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

for _key, _value in {
    "DVC_NO_ANALYTICS": "1", "ITERATIVE_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "IMPKIT_PROGRESS": "0",
}.items():  # fmt: skip
    os.environ.setdefault(_key, _value)


def rgb_image(path: Path, size: tuple[int, int] = (64, 64), colour=(200, 30, 30)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def qa(question: str = "What colour is it?", answer: str = "red", image: bool = True) -> list[dict[str, str]]:
    prompt = f"<image>\n{question}" if image else question
    return [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]


def write_jsonl(path: Path, records: list[Any], raw_lines: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
        for line in raw_lines:
            f.write(line + "\n")
    return path


def data_params(sources: dict[str, dict], mixtures: dict[str, dict], **overrides: Any) -> dict[str, Any]:
    """A complete ``data`` section (as params.yaml would hold it) for tests."""
    params = {
        "sources": sources,
        "mixtures": mixtures,
        "exclude": {},
        "dedup": {"by_id": True, "by_content": True},
        "quality": {
            "min_image_side": 32,
            "max_prompt_chars": 200,
            "max_answer_chars": 200,
            "max_quarantine_share": 1.0,
            "share_tolerance": 1.0,
        },  # fmt: skip
        "sample_seed": 7,
        "image_store": "copy",
        "chunk_records": 1000,
        "workers": 1,
    }
    params.update(overrides)
    return params


@pytest.fixture
def paths(tmp_path):
    from impkit.data.assemble import AssemblyPaths

    return AssemblyPaths(
        out_dir=tmp_path / "out" / "assembled",
        quarantine_dir=tmp_path / "out" / "quarantine",
        image_cache=tmp_path / "out" / "cache" / "images.sqlite",
        docs_dir=tmp_path / "out" / "docs",
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
