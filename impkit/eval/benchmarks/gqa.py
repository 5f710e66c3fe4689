"""GQA (testdev-balanced): exact-match accuracy over the balanced questions.

The prediction has its trailing periods stripped and is lowercased, as LLaVA-1.5's GQA converter
does (``rstrip('.')`` then ``lower()``) before the official GQA ``eval.py`` compares it with the gold
answer as an exact string ("Yes." -> "yes"). Leaving the period on is one of the known reasons GQA
numbers fail to reproduce. Whitespace is not stripped, as in the references: "Yes. ", " yes" and
"yes\n" are wrong answers. Named deviation (off by default): ``strip_whitespace`` strips surrounding
whitespace before the period is removed.

Predictions: the converted file ``[{questionId, prediction}]`` or LLaVA's own answers file (JSON
Lines ``{question_id, text}``); the converter's rule is applied to either (it changes nothing twice). Only questions with
``isBalanced`` count, as in the official script; predictions for the others are accepted and ignored.

Official file: ``{qid: {imageId, question, answer, isBalanced, types: {detailed}}}`` (test files
have no answers); the question type is GQA's detailed type.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from impkit.eval import prompts
from impkit.eval.benchmarks.base import (
    Benchmark,
    Prompt,
    ScoreInputs,
    TwinContext,
    records_writer,
)
from impkit.eval.benchmarks.official import Images, one_file_reader, text
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

OPTIONS = {"strip_whitespace": "strip surrounding whitespace before removing the final periods (the references do not)"}


def clean_prediction(prediction: str, strip_whitespace: bool = False) -> str:
    """LLaVA's converter: trailing periods removed, then lowercased; no whitespace stripping."""
    if strip_whitespace:
        prediction = prediction.strip()
    return prediction.rstrip(".").lower()


def score_gqa(
    annotations: PathLike | None,
    predictions: PathLike,
    questions: PathLike | None = None,
    *,
    strip_whitespace: bool = False,
) -> dict[str, Any]:
    """``annotations``: ``{qid: {answer, isBalanced, types: {structural}, ...}}``;
    ``predictions``: ``[{questionId, prediction}]`` or LLaVA's ``{question_id, text}`` lines."""
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

    given = read_records(predictions, "GQA predictions")
    llava = bool(given) and "questionId" not in given[0] and "question_id" in given[0]
    preds = index_predictions(
        given,
        "question_id" if llava else "questionId",
        "text" if llava else "prediction",
        map(str, data),
        predictions,
        "GQA predictions",
    )
    correct, missing = 0, 0
    by_structural: dict[str, list[int]] = defaultdict(list)
    for qid, record in balanced.items():
        if qid in preds:
            hit = int(clean_prediction(preds[qid], strip_whitespace) == str(record["answer"]))
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


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "gqa"
IMAGE_PATTERNS = ("{imageId}.jpg",)


def read_gqa(questions: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[Prompt]:
    path = existing(questions, "GQA questions file")
    resolve = Images(NAME, IMAGE_PATTERNS, images, image_pattern, path)
    rows = []
    for qid, record in read_json(path, "GQA questions", dict).items():
        where = f"question {qid}"
        image_id = field(record, "imageId", path, where)
        question = text(field(record, "question", path, where), path, where, "question")
        types = record.get("types")
        kind = str(types.get("detailed", "")) if isinstance(types, dict) else ""
        gold = None if record.get("answer") is None else str(record["answer"])
        rows.append(Prompt(str(qid), resolve(imageId=image_id, qid=qid), prompts.short_answer(question), gold, kind))
    return rows


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import short_answer

    return short_answer.gqa(ctx.heldout, ctx.rng(NAME), ctx.sizes.gqa)


BENCHMARK = Benchmark(
    name=NAME,
    label="GQA",
    paper_column=1,
    score=score_gqa,
    score_inputs=ScoreInputs(
        "testdev_balanced_questions.json", "-", "[{questionId, prediction}] or LLaVA's answers.jsonl"
    ),
    prompt=prompts.short_answer,
    read=one_file_reader(NAME, read_gqa),
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("imageId", "qid"),
    build_twin=_twin,
    predictions="predictions.json: [{questionId, prediction}]",
    write_predictions=records_writer("questionId", "prediction"),
    options=OPTIONS,
)
