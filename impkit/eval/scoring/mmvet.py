"""MM-Vet (218 open-ended questions): needs an LLM judge, so it is never given a number without one.

MM-Vet's official score is a GPT-4 grader's 0-1 mark per answer, averaged and ×100, overall and per
capability (rec, ocr, know, gen, spat, math). No rule-based stand-in reproduces it, so without a
judge the result says ``scored: false`` and carries no value. With one, ``judge(question, gold
answer, prediction)`` must return a mark in [0, 1]; it is called once per answered question, and an
unanswered question scores 0 (counted in ``missing``).

Predictions: LLaVA-1.5's MM-Vet file, a JSON object ``{"v1_0": "answer", ...}``, or records
``{question_id, text}`` as a JSON list or JSON Lines.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    existing,
    field,
    index_predictions,
    percent,
    read_json,
    read_records,
    reject_unused,
    result,
)

Judge = Callable[[str, str, str], float]
NOT_SCORED = "not scored: no judge"


def _load_predictions(predictions: PathLike, known: list[str]) -> dict[str, str]:
    path = existing(predictions, "MM-Vet predictions")
    what = "MM-Vet predictions"
    try:
        whole = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        whole = None  # JSON Lines, or broken: read_records says which
    if isinstance(whole, dict) and not {"question_id", "text"} <= set(whole):
        records = [{"question_id": qid, "text": text} for qid, text in whole.items()]
    else:
        records = read_records(path, what)
    return index_predictions(records, "question_id", "text", known, path, what)


def score_mmvet(
    annotations: PathLike | None,
    predictions: PathLike,
    questions: PathLike | None = None,
    judge: Judge | None = None,
) -> dict[str, Any]:
    """``annotations``: ``{"v1_0": {imagename, capability: [...], question, answer}, ...}``."""
    reject_unused(questions, "questions", "mmvet")
    items = read_json(annotations, "MM-Vet annotations", dict)
    if not items:
        raise ScoringError(f"{annotations}: no MM-Vet questions")
    for qid, item in items.items():
        for key in ("question", "answer", "capability"):
            field(item, key, annotations, f"question {qid}")
    preds = _load_predictions(predictions, list(items))
    missing = sum(qid not in preds for qid in items)
    if judge is None:
        return result("mmvet", "judge_mean", None, len(items), scored=False, reason=NOT_SCORED, missing=missing)

    marks: dict[str, float] = {}
    for qid, item in items.items():
        if qid not in preds:
            marks[qid] = 0.0
            continue
        mark = judge(str(item["question"]), str(item["answer"]), preds[qid])
        if isinstance(mark, bool) or not isinstance(mark, int | float) or math.isnan(mark) or not 0 <= mark <= 1:
            raise ScoringError(f"the judge returned {mark!r} for MM-Vet question {qid}; expected a number in [0, 1]")
        marks[qid] = float(mark)
    by_capability: dict[str, list[float]] = defaultdict(list)
    for qid, item in items.items():
        capabilities = item["capability"] if isinstance(item["capability"], list) else [item["capability"]]
        for capability in capabilities:
            by_capability[str(capability)].append(marks[qid])
    return result(
        "mmvet",
        "judge_mean",
        percent(sum(marks.values()), len(marks)),
        len(items),
        scored=True,
        per_capability={c: percent(sum(v), len(v)) for c, v in sorted(by_capability.items())},
        missing=missing,
    )
