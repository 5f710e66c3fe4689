"""What every runner shares: the question record, the interface, and answer post-processing."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

# The "blind" baseline's image: mid-grey, i.e. (close to) zero after SigLIP's 0.5/0.5 normalisation,
# so the image tokens carry as little as an image can while the prompt stays exactly the same.
BLANK_GREY = (127, 127, 127)


@dataclass(frozen=True)
class Question:
    """One question to answer.

    ``image`` is a path (relative to the runner's image root, or absolute), or None for a text-only
    question; ``prompt`` is the text after ``<image>\\n`` (``impkit.eval.prompts`` builds it), to
    which the runner adds the chat template.
    """

    id: str
    image: str | None
    prompt: str

    @classmethod
    def from_prompt_line(cls, row: Mapping[str, Any]) -> Question:
        """A twin's ``prompts.jsonl`` line ``{id, image, prompt, benchmark}``."""
        return cls(id=str(row["id"]), image=row.get("image") or None, prompt=row["prompt"])


def question_image(question: Question, image_root: Path | None, size: int, *, blank: bool = False) -> Image.Image:
    """The question's image as RGB (its path taken under ``image_root`` unless absolute), or the
    blind baseline's mid-grey square of the model's input ``size``. Every runner loads images here,
    so backends differ only in what they do with the pixels."""
    if blank:
        return Image.new("RGB", (size, size), BLANK_GREY)
    path = Path(question.image)
    if image_root is not None and not path.is_absolute():
        path = Path(image_root) / path
    with Image.open(path) as image:
        return image.convert("RGB")


def questions_from_prompts(rows: Iterable[Mapping[str, Any]]) -> list[Question]:
    return [Question.from_prompt_line(row) for row in rows]


def clean_answer(text: str, stops: Iterable[str]) -> str:
    """The answer in a decoded generation: everything before the earliest stop string (the
    template's answer end marker, eos, pad), stripped.

    A batch keeps generating pad tokens for rows that finished early and a backend may run past a
    multi-token stop string, so cutting at the text level is what makes every backend and every
    batch size give the same answer string.
    """
    cut = len(text)
    for stop in stops:
        if stop:
            at = text.find(stop)
            if at != -1:
                cut = min(cut, at)
    return text[:cut].strip()


class Runner(abc.ABC):
    """A model behind the question-answering interface the evaluation code uses.

    Generation is greedy (LLaVA-1.5's and Imp's evaluation setting); answers come back in the order
    of the questions given, whatever order the backend works in.
    """

    name: str = "runner"

    @abc.abstractmethod
    def answer(self, questions: Sequence[Question], *, blank_images: bool = False) -> list[str]:
        """Answers to ``questions`` in input order. ``blank_images=True`` replaces every image with
        a mid-grey one (the blind baseline: how much the answers lean on seeing the image)."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What produced the answers, for reports (backend, model, template, image handling, ...)."""
