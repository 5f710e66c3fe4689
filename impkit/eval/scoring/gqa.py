"""GQA (testdev-balanced): exact-match accuracy over the balanced questions.

The prediction is lowercased and its trailing periods stripped, as LLaVA-1.5's GQA converter does
before the official GQA ``eval.py`` compares it with the gold answer ("Yes." -> "yes"). Leaving the
period on is one of the known reasons GQA numbers fail to reproduce. Only questions with
``isBalanced`` count, as in the official script; predictions for the others are accepted and ignored.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    field,
    index_predictions,
    percent,
    read_json,
    read_records,
    reject_unused,
    result,
)


def clean_prediction(prediction: str) -> str:
    # strip() first: runners strip generations, and a trailing newline would hide the period
    return prediction.strip().rstrip(".").lower()


def score_gqa(annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None) -> dict[str, Any]:
    """``annotations``: ``{qid: {answer, isBalanced, types: {structural}, ...}}``;
    ``predictions``: ``[{questionId, prediction}]``."""
    reject_unused(questions, "questions", "gqa")
    data = read_json(annotations, "GQA questions", dict)
    balanced: dict[str, dict[str, Any]] = {}
    for qid, record in data.items():
        where = f"question {qid}"
        field(record, "answer", annotations, where)
        if field(record, "isBalanced", annotations, where):
            balanced[str(qid)] = record
    if not balanced:
        raise ScoringError(f"{annotations}: no balanced questions (isBalanced) to score")

    preds = index_predictions(
        read_records(predictions, "GQA predictions"),
        "questionId",
        "prediction",
        map(str, data),
        predictions,
        "GQA predictions",
    )
    correct, missing = 0, 0
    by_structural: dict[str, list[int]] = defaultdict(list)
    for qid, record in balanced.items():
        if qid in preds:
            hit = int(clean_prediction(preds[qid]) == str(record["answer"]))
        else:
            hit, missing = 0, missing + 1
        correct += hit
        types = record.get("types")
        by_structural[str(types.get("structural", "unknown")) if isinstance(types, dict) else "unknown"].append(hit)
    return result(
        "gqa",
        "accuracy",
        percent(correct, len(balanced)),
        len(balanced),
        per_structural_type={t: percent(sum(v), len(v)) for t, v in sorted(by_structural.items())},
        missing=missing,
    )
