"""Shared fixtures: telemetry off, quiet progress, the OpenMP wait policy, and tiny LLaVA-format sources on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from impkit.stage import openmp_wait_policy

for _key, _value in {
    "DVC_NO_ANALYTICS": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "IMPKIT_PROGRESS": "0",
}.items():
    os.environ.setdefault(_key, _value)

# Before any test loads torch (OpenMP reads the policy once): the tests train and evaluate small
# models on a shared machine, as the PASSIVE stages do; the latency tests measure, not compare.
openmp_wait_policy("PASSIVE")


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
        },
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
    # split on "\n" only, as JSON Lines does: str.splitlines would also split at U+2028 or U+0085,
    # which JSON leaves unescaped inside strings
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").split("\n") if line.strip()]


# A tiny phi2-family preset and corpus for tests that need a real (random) LLaVA model.
TINY = {
    "family": "phi2",
    "template": "phi2",
    "image_aspect": "pad",
    "offline": True,
    "train": "nano",
    "vision": {
        "arch": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        }
    },
    "llm": {
        "arch": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 512,
            "partial_rotary_factor": 0.5,
        }
    },
}
CORPUS = [
    "a red circle",
    "two blue squares",
    "the word lamp",
    "what colour is the shape",
    "how many objects",
    "answer the question using a single word or phrase",
    "a chat between a curious user and an assistant",
]


@pytest.fixture(scope="session")
def tiny():
    """A tiny random phi2-family LLaVA model, its tokenizer and preset (images 32 px, 16 tokens)."""
    import torch

    from impkit.config import PresetConfig, from_dict
    from impkit.model.presets import build_model, llava_config
    from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer, train_bpe

    preset = from_dict(PresetConfig, TINY)
    tok = family_tokenizer(train_bpe(CORPUS * 10, 300), "phi2")
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    config = llava_config(
        preset, image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN), vocab_size=len(tok), special_ids=ids
    )
    # Wider random weights than training's init (0.02): the untrained model's answers then depend on
    # the prompt and the image instead of collapsing to one string, so tests comparing answers can fail.
    for cfg in (config, config.text_config, config.vision_config):
        cfg.initializer_range = 0.2
    model = build_model(config, seed=0).eval()
    # Readable answers: raw bytes that decode to U+FFFD would make different answers look alike.
    unreadable = [i for i in range(len(tok)) if not (tok.decode([i]).isascii() and tok.decode([i]).isprintable())]
    with torch.no_grad():
        model.lm_head.weight[unreadable] = 0
    return preset, tok, model


# Benchmark twins small enough for tests, from a small held-out world (shared by the evaluation and
# runner tests; generating them takes a few seconds, so once per session).
TWIN_SIZES = dict(vqav2=30, gqa=30, vizwiz=20, textvqa=15, sqa=20, pope_images=4, mme_images=1, mmbench=8, mmvet=6)
HELDOUT_SIZES = {"heldout_scenes": 30, "heldout_charts": 10, "heldout_text": 10}


@pytest.fixture(scope="session")
def eval_world(tmp_path_factory) -> Path:
    """A held-out world with nothing else (the twins' source): its folder."""
    import dataclasses

    from impkit.config import WorldConfig, WorldSizes
    from impkit.data.synth import generate_world

    sizes = WorldSizes(**{f.name: 0 for f in dataclasses.fields(WorldSizes)} | HELDOUT_SIZES)
    root = tmp_path_factory.mktemp("world")
    generate_world(WorldConfig(seed=5, heldout_seed=6, image_size=64, sizes=sizes), root, progress=False)
    return root / "heldout"


@pytest.fixture(scope="session")
def eval_twins(eval_world, tmp_path_factory) -> Path:
    """Every built-in benchmark's twin of ``eval_world`` at ``TWIN_SIZES``."""
    from impkit.config import TwinSizes
    from impkit.eval.twins.generate import generate_twins

    out = tmp_path_factory.mktemp("twins") / "twins"
    generate_twins(eval_world, out, seed=1, sizes=TwinSizes(**TWIN_SIZES))
    return out
