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

from impkit.eval.runners import BLANK_GREY, Question, TorchRunner
from impkit.model.image_processing import SIGLIP_MEAN, SIGLIP_STD
from impkit.release import Release

__all__ = [
    "BLANK_GREY",
    "SHORT_ANSWER",
    "accuracy",
    "answer_questions",
    "check_release",
    "load_questions",
    "normalise",
    "shuffled_images",
]

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."  # LLaVA-1.5's suffix


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


def answer_questions(
    model,
    tokenizer,
    *,
    template: str,
    image_size: int,
    image_aspect: str,
    n_image_tokens: int,
    questions: list[dict[str, Any]],
    image_root: Path,
    blank: bool,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    image_mean=SIGLIP_MEAN,
    image_std=SIGLIP_STD,
    desc: str = "answer",
) -> list[str]:
    """Greedy short answers (normalised as ``accuracy`` compares them) from the project's one
    generation loop, ``TorchRunner``: batched with left padding, answers in input order."""
    runner = TorchRunner(
        model,
        tokenizer,
        template=template,
        image_size=image_size,
        image_aspect=image_aspect,
        n_image_tokens=n_image_tokens,
        image_root=image_root,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        image_mean=image_mean,
        image_std=image_std,
        desc=desc,
    )
    asked = [
        Question(id=str(q.get("id", i)), image=q["image"], prompt=q["question"] + SHORT_ANSWER)
        for i, q in enumerate(questions)
    ]
    return [normalise(a) for a in runner.answer(asked, blank_images=blank)]


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


def check_release(folder: Path, world: Path, *, limit: int | None, batch_size: int) -> dict[str, Any]:
    """Held-out exact-match accuracy of a release folder with the image, a blank image and another
    question's image (``world``: the synthetic world's folder, whose ``heldout/`` holds the questions).
    Template, input size, aspect, image tokens and normalisation come from the release, as for the
    benchmark evaluation."""
    release = Release.open(folder)
    model, tokenizer = release.load()
    mean, std = release.normalisation()
    questions = load_questions(world / "heldout" / "questions.jsonl", limit)
    common = dict(
        template=release.template,
        image_size=release.image_size,
        image_aspect=release.image_aspect,
        n_image_tokens=release.image_tokens,
        image_root=world / "heldout" / "images",
        batch_size=batch_size,
        image_mean=mean,
        image_std=std,
    )
    runs = {
        "with_image": (questions, False),
        "blank_image": (questions, True),
        "shuffled_image": (shuffled_images(questions), False),
    }
    return {
        name: accuracy(
            questions,
            answer_questions(model, tokenizer, questions=asked, blank=blank, desc=f"held-out ({name})", **common),
        )
        for name, (asked, blank) in runs.items()
    }
