"""VizWiz-VQA (val, offline): soft accuracy, overall and per answer type.

As in VizWiz's official evaluation code, only the prediction goes through the normaliser; the human
answers are compared as they are in the annotations (only newlines/tabs become spaces and the ends
are stripped, as the VQA tool does to both sides). VizWiz answers are already lowercase and mostly
normalised, so this rarely matters, but a human "3." is not the same as a normalised "3" here.
"""

from __future__ import annotations

from typing import Any

from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    field,
    id_key,
    index_predictions,
    read_json,
    read_records,
    reject_unused,
)
from impkit.eval.scoring.vqa import soft_accuracy_result


def _raw(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def score_vizwiz(
    annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None
) -> dict[str, Any]:
    """``annotations``: ``[{image, answers: [{answer, answer_confidence}...], answer_type}]``;
    ``predictions``: ``[{image, answer}]`` (the image file name is the question id)."""
    reject_unused(questions, "questions", "vizwiz")
    records = read_json(annotations, "VizWiz annotations", list)
    by_image: dict[str, dict[str, Any]] = {}
    for i, record in enumerate(records):
        where = f"annotation {i}"
        image = id_key(field(record, "image", annotations, where), annotations, where)
        answers = record.get("answers") if isinstance(record, dict) else None
        if not isinstance(answers, list) or not answers:
            raise ScoringError(
                f"{annotations}: {where} ({image}) has no human answers; VizWiz test is scored only on the EvalAI server"
            )
        by_image[image] = record
    if not by_image:
        raise ScoringError(f"{annotations}: no questions to score")

    preds = index_predictions(
        read_records(predictions, "VizWiz results"), "image", "answer", by_image, predictions, "VizWiz results"
    )
    rows = (
        (
            image,
            [
                _raw(str(field(a, "answer", annotations, f"annotation {image}, answers[{j}]")))
                for j, a in enumerate(record["answers"])
            ],
            str(record.get("answer_type", "unknown")),
        )
        for image, record in by_image.items()
    )
    return soft_accuracy_result("vizwiz", rows, preds)
