"""TextVQA (val): soft accuracy with MMF's EvalAI answer processor (``evalai_answer`` in vqa.py) on
the prediction and on all ten human answers, as LLaVA-1.5's TextVQA evaluator (MMF's m4c
``TextVQAAccuracyEvaluator``) does, its ``'s`` -> `` 's`` rule included ("man's" -> "man 's"), and
removing at most 32 periods per answer as it does. Named deviation (off by default):
``all_periods`` removes every period.

Predictions: ``[{question_id, answer}]`` or LLaVA's own answers file (JSON Lines ``{question_id, text}``).

The number is comparable with papers only if the prompts carried the ``Reference OCR token:`` line
(LLaVA-1.5's convention); scoring cannot tell, so the runner has to.

Official file: ``{"data": [{question_id, image_id, question, answers: [10], ocr_tokens}]}``. The
prompt carries the reference OCR tokens (LLaVA-1.5), so ``ocr_tokens`` is required. The gold answer
is the most common human answer after the EvalAI answer processor (the scorer processes both sides), in its
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
    answer_field,
    existing,
    field,
    id_key,
    index_predictions,
    read_json,
    read_records,
    reject_unused,
)
from impkit.eval.scoring.vqa import evalai_answer, soft_accuracy, soft_accuracy_result

OPTIONS = {"all_periods": "remove every period (the m4c evaluator removes at most 32 per answer)"}


def score_textvqa(
    annotations: PathLike | None,
    predictions: PathLike,
    questions: PathLike | None = None,
    *,
    all_periods: bool = False,
) -> dict[str, Any]:
    """``annotations``: ``{"data": [{question_id, answers: [10 strings], ...}]}``;
    ``predictions``: ``[{question_id, answer}]`` or LLaVA's ``{question_id, text}`` lines."""
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
        answers_by_id[qid] = [evalai_answer(a, all_periods) for a in answers]

    given = read_records(predictions, "TextVQA results")
    preds = index_predictions(
        given,
        "question_id",
        answer_field(given, "answer"),
        answers_by_id,
        predictions,
        "TextVQA results",
    )
    rows = ((qid, ans, None) for qid, ans in answers_by_id.items())
    return soft_accuracy_result("textvqa", rows, preds, lambda p, a: soft_accuracy(evalai_answer(p, all_periods), a))


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
        gold = most_common([str(a) for a in answers], evalai_answer)  # grouped as the scorer compares them
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
    score_inputs=ScoreInputs("TextVQA_0.5.1_val.json", "-", "[{question_id, answer}] or LLaVA's answers.jsonl"),
    prompt=prompts.textvqa,
    read=one_file_reader(NAME, read_textvqa),
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("image_id", "question_id"),
    build_twin=_twin,
    predictions="results.json: [{question_id, answer}]",
    write_predictions=records_writer("question_id", "answer", ids=int),
    options=OPTIONS,
)
