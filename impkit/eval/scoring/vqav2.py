"""VQAv2 (val, offline): soft accuracy with the normaliser on both sides, overall and per answer type.

test-dev is scored only by the EvalAI server; this scores the val annotations the same way the
official VQA tool does (see vqa.py for the one deliberate difference: always normalising).
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
)
from impkit.eval.scoring.vqa import normalize_answer, soft_accuracy_result


def _human_answers(record: dict[str, Any], path: PathLike, where: str) -> list[str]:
    answers = field(record, "answers", path, where)
    if not isinstance(answers, list) or not answers:
        raise ScoringError(f"{path}: {where} must have a non-empty 'answers' list")
    return [normalize_answer(str(field(a, "answer", path, f"{where}, answers[{i}]"))) for i, a in enumerate(answers)]


def score_vqav2(
    annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None
) -> dict[str, Any]:
    """``annotations``: ``{"annotations": [{question_id, answers: [{answer}...], answer_type}]}``;
    ``questions`` (optional): ``{"questions": [{question_id}...]}``, restricting the scored set;
    ``predictions``: ``[{question_id, answer}]``."""
    data = read_json(annotations, "VQAv2 annotations", dict)
    records = field(data, "annotations", annotations, "the annotations file")
    if not isinstance(records, list):
        raise ScoringError(f"{annotations}: 'annotations' must be a list")
    by_id = {}
    for i, record in enumerate(records):
        by_id[id_key(field(record, "question_id", annotations, f"annotation {i}"), annotations, f"annotation {i}")] = (
            record
        )
    if questions is not None:
        qdata = read_json(questions, "VQAv2 questions", dict)
        qlist = field(qdata, "questions", questions, "the questions file")
        if not isinstance(qlist, list):
            raise ScoringError(f"{questions}: 'questions' must be a list")
        ids = [
            id_key(field(q, "question_id", questions, f"question {i}"), questions, f"question {i}")
            for i, q in enumerate(qlist)
        ]
        orphans = [qid for qid in ids if qid not in by_id]
        if orphans:
            raise ScoringError(
                f"{questions}: {len(orphans)} question(s) have no annotation in {annotations} (e.g. {orphans[0]})"
            )
    else:
        ids = list(by_id)
    if not ids:
        raise ScoringError(f"{annotations}: no questions to score")

    preds = index_predictions(
        read_records(predictions, "VQAv2 results"), "question_id", "answer", ids, predictions, "VQAv2 results"
    )
    rows = (
        (
            qid,
            _human_answers(by_id[qid], annotations, f"annotation for question {qid}"),
            str(by_id[qid].get("answer_type", "unknown")),
        )
        for qid in ids
    )
    return soft_accuracy_result("vqav2", rows, preds)
