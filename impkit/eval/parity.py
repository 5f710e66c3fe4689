"""Parity of an exported GGUF with the PyTorch release it came from, through llama.cpp's own
multimodal path (mtmd), on prompts with images.

For each prompt both backends read the same token ids and the same pixels (the runners' own prompt
building and image preparation); the logits of every text position are compared (positions inside
the image chunk carry no logits in llama.cpp). Two figures per file:

* **top-1 agreement**: the share of positions where both pick the same next token;
* **relative error**: max |llama.cpp - torch| / max |torch| over those positions.

At F16 the only differences are float16 weights and llama.cpp's kernels (the export tests measure
1e-3..4e-3), so a conversion bug — a wrong name, a missing GELU flag, a rope dimension — shows as a
collapse of both figures; the thresholds in ``params.yaml: parity`` make the stage fail loudly then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from impkit.config import ParityConfig
from impkit.eval.runners.base import Question, question_image
from impkit.llamacpp import GGUFRunError

log = logging.getLogger(__name__)


def pick_prompts(rows_by_benchmark: dict[str, list[dict[str, Any]]], n: int) -> list[Question]:
    """``n`` questions with images, taken in turn from each benchmark (first questions first), so
    every prompt layout (short answers, options, hints, OCR tokens, Chinese) is covered."""
    pools = [
        [Question.from_prompt_line(r) for r in rows if r.get("image")] for _, rows in sorted(rows_by_benchmark.items())
    ]
    picked: list[Question] = []
    depth = 0
    while len(picked) < n and any(depth < len(pool) for pool in pools):
        picked.extend(pool[depth] for pool in pools if depth < len(pool))
        depth += 1
    return picked[:n]


def logit_parity(torch_runner: Any, gguf_runner: Any, questions: Sequence[Question]) -> dict[str, Any]:
    """Compare the logits of ``torch_runner`` (a ``TorchRunner``) and ``gguf_runner`` (a
    ``LlamaCppRunner`` whose session keeps every position's logits) on ``questions``."""
    model, tokenizer = torch_runner.model, torch_runner.tokenizer
    image_token = torch_runner.image_token_id
    session = gguf_runner.session
    rows, agree, total, worst = [], 0, 0, 0.0
    model.eval()
    for question in questions:
        image = question_image(question, torch_runner.image_root, torch_runner.image_size) if question.image else None
        ids = tokenizer(torch_runner.prompt_text(question), add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            pixels = torch_runner.processor([image]) if image is not None else None
            ref = model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits[0].float().numpy()
        prepared = gguf_runner.processor.prepare(image) if image is not None else None
        n = session.eval_prompt(gguf_runner.prompt_text(question), prepared)
        if n != len(ids):
            raise GGUFRunError(
                f"question {question.id}: llama.cpp reads {n} positions, PyTorch {len(ids)}: "
                "the prompt or the image token count differs between the two"
            )
        ours = np.array(session.llama.scores[:n], dtype=np.float32)
        text = np.array(ids) != image_token
        same = ours[text].argmax(-1) == ref[text].argmax(-1)
        rel = float(np.abs(ours[text] - ref[text]).max() / np.abs(ref[text]).max())
        rows.append(
            {
                "id": question.id,
                "positions": int(text.sum()),
                "top1_agreement": round(float(same.mean()), 4),
                "rel_error": round(rel, 6),
            }
        )
        agree, total, worst = agree + int(same.sum()), total + int(text.sum()), max(worst, rel)
    return {
        "prompts": len(rows),
        "positions": total,
        "top1_agreement": round(agree / max(total, 1), 4),
        "max_rel_error": round(worst, 6),
        "per_prompt": rows,
    }


def check(report: dict[str, Any], cfg: ParityConfig) -> list[str]:
    """What breaks parity in ``report`` (empty when it holds)."""
    problems = []
    if report["top1_agreement"] < cfg.min_top1:
        problems.append(f"top-1 agreement {report['top1_agreement']:.2%} < {cfg.min_top1:.2%}")
    if report["max_rel_error"] > cfg.max_rel_error:
        problems.append(f"max relative logit error {report['max_rel_error']:.2e} > {cfg.max_rel_error:.2e}")
    return problems
