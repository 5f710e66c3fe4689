"""GQA testdev-balanced: short answers about scene graphs, exact match after LLaVA-1.5's converter.

Official file: ``{qid: {imageId, question, answer, isBalanced, types: {detailed}}}`` (test files
have no answers); the question type is GQA's detailed type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from impkit.eval import prompts
from impkit.eval.benchmarks.base import (
    Benchmark,
    Official,
    PromptRow,
    ReadRequest,
    ScoreInputs,
    TwinContext,
    records_writer,
)
from impkit.eval.benchmarks.official import Images, absolute, one_source, text
from impkit.eval.scoring.gqa import score_gqa
from impkit.eval.scoring.inputs import PathLike, existing, field, read_json

if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "gqa"
IMAGE_PATTERNS = ("{imageId}.jpg",)


def read_gqa(questions: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[PromptRow]:
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
        rows.append(PromptRow(str(qid), resolve(imageId=image_id, qid=qid), prompts.short_answer(question), kind, gold))
    return rows


def _read(request: ReadRequest) -> Official:
    source = absolute(one_source(NAME, request.annotations, request.questions))
    return Official(read_gqa(source, request.images, image_pattern=request.image_pattern), source, source)


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import short_answer

    return short_answer.gqa(ctx.heldout, ctx.rng(NAME), ctx.sizes.gqa)


BENCHMARK = Benchmark(
    name=NAME,
    label="GQA",
    score=score_gqa,
    score_inputs=ScoreInputs("testdev_balanced_questions.json", "-", "[{questionId, prediction}]"),
    prompt=prompts.short_answer,
    read=_read,
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("imageId", "qid"),
    build_twin=_twin,
    predictions="predictions.json: [{questionId, prediction}]",
    write_predictions=records_writer("questionId", "prediction"),
)
