"""TextVQA (val): soft accuracy with the normaliser on the prediction and on all ten human answers,
as LLaVA-1.5's TextVQA evaluator (MMF's) does.

The number is comparable with papers only if the prompts carried the ``Reference OCR token:`` line
(LLaVA-1.5's convention); scoring cannot tell, so the runner has to.
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
from impkit.eval.scoring.vqa import normalize_answer, soft_accuracy_result


def score_textvqa(
    annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None
) -> dict[str, Any]:
    """``annotations``: ``{"data": [{question_id, answers: [10 strings], ...}]}``;
    ``predictions``: ``[{question_id, answer}]``."""
    reject_unused(questions, "questions", "textvqa")
    data = read_json(annotations, "TextVQA annotations", dict)
    records = field(data, "data", annotations, "the annotations file")
    if not isinstance(records, list) or not records:
        raise ScoringError(f"{annotations}: 'data' must be a non-empty list")
    answers_by_id: dict[str, list[str]] = {}
    for i, record in enumerate(records):
        where = f"data[{i}]"
        qid = id_key(field(record, "question_id", annotations, where), annotations, where)
        answers = field(record, "answers", annotations, where)
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise ScoringError(f"{annotations}: {where} must have 'answers' as a non-empty list of strings")
        answers_by_id[qid] = [normalize_answer(a) for a in answers]

    preds = index_predictions(
        read_records(predictions, "TextVQA results"),
        "question_id",
        "answer",
        answers_by_id,
        predictions,
        "TextVQA results",
    )
    return soft_accuracy_result("textvqa", ((qid, ans, None) for qid, ans in answers_by_id.items()), preds)
