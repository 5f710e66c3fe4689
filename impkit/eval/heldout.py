"""A quick learning check on the synthetic world's held-out questions: exact-match accuracy of
greedy short answers with the real image, with a blank one, and with another question's image.

The blank image says how much the answers lean on the image being there at all; the shuffled image
(same questions, images rotated among them) is the stricter test of grounding: a model that reads
the image loses accuracy when it sees the wrong one, a model answering from priors does not.

The ten benchmark twins and their official scorers are a separate stage; this check answers the
training stage's own question: did stage 2 teach the model to use the image?
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from impkit.data.templates import get_template, render_prompt
from impkit.model.image_processing import ImageProcessor
from impkit.model.tokenizer import IMAGE_TOKEN
from impkit.progress import progress

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."  # LLaVA-1.5's suffix
BLANK_GREY = (127, 127, 127)


def load_questions(path: Path, limit: int | None) -> list[dict[str, Any]]:
    questions = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return questions[:limit] if limit else questions


def shuffled_images(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same questions, each paired with the image of a question about a different image
    (images rotated by half the list: deterministic, and never the question's own image)."""
    images = sorted({q["image"] for q in questions})
    if len(images) < 2:
        raise ValueError("the shuffled-image check needs questions about at least two images")
    shift = {image: images[(i + len(images) // 2) % len(images)] for i, image in enumerate(images)}
    return [{**q, "image": shift[q["image"]]} for q in questions]


def normalise(answer: str) -> str:
    return answer.strip().lower().rstrip(".").strip()


@torch.no_grad()
def answer_questions(model, tokenizer, *, template: str, image_size: int, image_aspect: str, n_image_tokens: int,
                     questions: list[dict[str, Any]], image_root: Path, blank: bool, batch_size: int = 16,
                     max_new_tokens: int = 8, desc: str = "answer") -> list[str]:  # fmt: skip
    """Greedy answers, batched with left padding (the attention mask keeps pads out)."""
    tmpl = get_template(template)
    processor = ImageProcessor(size=image_size, aspect=image_aspect)
    image_ids = IMAGE_TOKEN * n_image_tokens
    tokenizer.padding_side = "left"
    model.eval()
    answers: list[str] = []
    bar = progress(total=len(questions), desc=desc, unit="q")
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        prompts = [render_prompt(tmpl, q["question"] + SHORT_ANSWER, has_image=True).replace(IMAGE_TOKEN, image_ids)
                   for q in batch]  # fmt: skip
        images = [Image.new("RGB", (image_size, image_size), BLANK_GREY) if blank
                  else Image.open(image_root / q["image"]) for q in batch]  # fmt: skip
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, pixel_values=processor(images), max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        for row in out[:, enc["input_ids"].shape[1] :]:
            text = tokenizer.decode(row, skip_special_tokens=False)
            for stop in (*tmpl.stop, tokenizer.eos_token, tokenizer.pad_token):
                if stop:
                    text = text.split(stop)[0]
            answers.append(normalise(text))
        bar.update(len(batch))
    bar.close()
    tokenizer.padding_side = "right"
    return answers


def accuracy(questions: list[dict[str, Any]], answers: list[str]) -> dict[str, Any]:
    right = Counter()
    total = Counter()
    for q, a in zip(questions, answers, strict=True):
        total[q["type"]] += 1
        right[q["type"]] += int(normalise(a) == normalise(q["answer"]))
    return {
        "accuracy": round(sum(right.values()) / max(sum(total.values()), 1), 4),
        "n": sum(total.values()),
        "by_type": {t: round(right[t] / total[t], 4) for t in sorted(total)},
    }
