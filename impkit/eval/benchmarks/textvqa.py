"""TextVQA (val): soft accuracy with the normaliser on the prediction and on all ten human answers,
as LLaVA-1.5's TextVQA evaluator (MMF's) does.

The number is comparable with papers only if the prompts carried the ``Reference OCR token:`` line
(LLaVA-1.5's convention); scoring cannot tell, so the runner has to.

Official file: ``{"data": [{question_id, image_id, question, answers: [10], ocr_tokens}]}``. The
prompt carries the reference OCR tokens (LLaVA-1.5), so ``ocr_tokens`` is required. The gold answer
is the most common human answer after the VQA normaliser (the scorer normalises both sides), in its
most common spelling; ties go to the answer met first. The question type is VQAv2's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impkit.eval import prompts
from impkit.eval.benchmarks.base import (
    Benchmark,
    Prompt,
    ScoreInputs,
    TwinContext,
    records_writer,
)
from impkit.eval.benchmarks.official import (
    Images,
    integer_id,
    most_common,
    one_file_reader,
    records,
    text,
)
from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    existing,
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


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "textvqa"
IMAGE_PATTERNS = ("{image_id}.jpg",)


def read_textvqa(annotations: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[Prompt]:
    from impkit.eval.twins.short_answer import vqa_question_type  # the twins' taxonomy, VQAv2's

    path = existing(annotations, "TextVQA file")
    resolve = Images(NAME, IMAGE_PATTERNS, images, image_pattern, path)
    rows = []
    for i, record in enumerate(records(read_json(path, "TextVQA questions", dict), "data", path)):
        where = f"data[{i}]"
        qid = integer_id(id_key(field(record, "question_id", path, where), path, where), path, where)
        question = text(field(record, "question", path, where), path, where, "question")
        image_id = field(record, "image_id", path, where)
        tokens = field(record, "ocr_tokens", path, where)
        if not isinstance(tokens, list):
            raise ScoringError(f"{path}: {where} has 'ocr_tokens' that is not a list")
        answers = record.get("answers") or []
        if not isinstance(answers, list):
            raise ScoringError(f"{path}: {where} has 'answers' that is not a list")
        gold = most_common([str(a) for a in answers], normalize_answer)
        prompt = prompts.textvqa(question, [str(t) for t in tokens])
        image = resolve(image_id=image_id, question_id=int(qid))
        rows.append(Prompt(qid, image, prompt, gold, vqa_question_type(question)))
    return rows


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import short_answer

    return short_answer.textvqa(ctx.heldout, ctx.rng(NAME), ctx.sizes.textvqa)


BENCHMARK = Benchmark(
    name=NAME,
    label="TextVQA",
    paper_column=4,
    score=score_textvqa,
    score_inputs=ScoreInputs("TextVQA_0.5.1_val.json", "-", "[{question_id, answer}]"),
    prompt=prompts.textvqa,
    read=one_file_reader(NAME, read_textvqa),
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("image_id", "question_id"),
    build_twin=_twin,
    predictions="results.json: [{question_id, answer}]",
    write_predictions=records_writer("question_id", "answer", ids=int),
)
