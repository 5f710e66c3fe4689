"""VizWiz-VQA (val, offline): soft accuracy, overall and per answer type.

As in VizWiz's official evaluation code, only the prediction goes through the normaliser; the human
answers are compared as they are in the annotations (only newlines/tabs become spaces and the ends
are stripped, as the VQA tool does to both sides). VizWiz answers are already lowercase and mostly
normalised, so this rarely matters, but a human "3." is not the same as a normalised "3" here.
The prediction's normaliser removes at most 32 periods, as the reference's does (see vqa.py).

Official file: ``[{image, question, answers: [{answer}], answer_type}]`` (test: no answers). The
gold answer is the most common human answer as written (the scorer compares the human answers
without normalising them); ties go to the answer met first. Prompt ids are the image names, as
VizWiz keys its results by image.
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
from impkit.eval.benchmarks.official import Images, most_common, one_file_reader, text
from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    answer_field,
    answer_text,
    existing,
    field,
    id_key,
    index_predictions,
    read_json,
    read_records,
    reject_unused,
)
from impkit.eval.scoring.vqa import evalai_answer, soft_accuracy_result


def _raw(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def score_vizwiz(
    annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None
) -> dict[str, Any]:
    """``annotations``: ``[{image, answers: [{answer, answer_confidence}...], answer_type}]``;
    ``predictions``: ``[{image, answer}]`` (the image file name is the question id), or LLaVA's own
    answers file (``{question_id, text}`` lines) with its question file as ``questions``
    (``{question_id, image}`` lines): each answer then goes to its question's image through the EvalAI
    answer processor, as LLaVA's ``convert_vizwiz_for_submission.py`` submits it."""
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

    given = read_records(predictions, "VizWiz results")
    if answer_field(given, "answer") == "text":
        given = _llava_answers_by_image(given, predictions, questions)
    else:
        reject_unused(questions, "questions", "vizwiz (results keyed by image)")
    preds = index_predictions(given, "image", "answer", by_image, predictions, "VizWiz results")
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


def _llava_answers_by_image(
    answers: list[dict[str, Any]], predictions: PathLike, questions: PathLike | None
) -> list[dict[str, str]]:
    """LLaVA's answers (``{question_id, text}``) as VizWiz results ``{image, answer}``."""
    if questions is None:
        raise ScoringError(
            f"{predictions}: LLaVA's answers name questions by question_id; give its question file "
            "(--questions llava_test.jsonl) to find each question's image"
        )
    image_of = {}
    for i, question in enumerate(read_records(questions, "LLaVA VizWiz questions")):
        where = f"question {i + 1}"
        image_of[id_key(field(question, "question_id", questions, where), questions, where)] = id_key(
            field(question, "image", questions, where), questions, where
        )
    results = []
    for i, answer in enumerate(answers):
        where = f"answer {i + 1}"
        qid = id_key(field(answer, "question_id", predictions, where), predictions, where)
        if qid not in image_of:
            raise ScoringError(f"{predictions}: {where} answers question {qid}, which {questions} does not have")
        text = answer_text(field(answer, "text", predictions, where), predictions, where)
        results.append({"image": image_of[qid], "answer": evalai_answer(text)})
    return results


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "vizwiz"
IMAGE_PATTERNS = ("{image}",)


def _answer(answer: Any) -> str:
    return str(answer).replace("\n", " ").replace("\t", " ").strip()  # as the scorer reads them


def read_vizwiz(annotations: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[Prompt]:
    path = existing(annotations, "VizWiz file")
    resolve = Images(NAME, IMAGE_PATTERNS, images, image_pattern, path)
    rows = []
    for i, record in enumerate(read_json(path, "VizWiz questions", list)):
        where = f"record {i}"
        image = id_key(field(record, "image", path, where), path, where)
        question = text(field(record, "question", path, where), path, where, "question")
        answers = record.get("answers") or []
        if not isinstance(answers, list):
            raise ScoringError(f"{path}: {where} has 'answers' that is not a list")
        given = [_answer(field(a, "answer", path, f"{where}, answers[{j}]")) for j, a in enumerate(answers)]
        kind = str(record.get("answer_type") or "")
        rows.append(Prompt(image, resolve(image=image), prompts.vizwiz(question), most_common(given), kind))
    return rows


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import short_answer

    return short_answer.vizwiz(ctx.heldout, ctx.rng(NAME), ctx.sizes.vizwiz)


BENCHMARK = Benchmark(
    name=NAME,
    label="VizWiz",
    paper_column=2,
    score=score_vizwiz,
    score_inputs=ScoreInputs(
        "val.json",
        "LLaVA's llava_test.jsonl, only with LLaVA's answers",
        "[{image, answer}] or LLaVA's answers.jsonl",
    ),
    prompt=prompts.vizwiz,
    read=one_file_reader(NAME, read_vizwiz),
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("image",),
    build_twin=_twin,
    predictions="results.json: [{image, answer}]",
    write_predictions=records_writer("image", "answer"),
)
