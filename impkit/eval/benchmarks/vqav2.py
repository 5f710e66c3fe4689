"""VQAv2 (val, offline): soft accuracy, overall and per answer type, as the EvalAI server computes it
from what LLaVA-1.5 submits.

test-dev is scored only by the EvalAI server; this scores the val annotations the same way:
1. LLaVA's submission converter passes each raw prediction through MMF's EvalAI answer processor
   (``evalai_answer`` in vqa.py, ``'s`` -> `` 's`` included);
2. the official VQA tool (``vqaEval.py``) then replaces newlines/tabs and strips both sides; **only
   when the ten human answers disagree** does it normalise the human answers and the prediction
   (``official_answer``). When all ten are the same string it compares the prediction with that
   string as written: a human "Yes" is then matched by no processed prediction;
3. leave-one-out ``min(1, matches / 3)``, averaged per question.
The period rule removes at most 32 periods per answer, as the references do.

Named deviations (off by default; keyword arguments of ``score_vqav2``, ``--option`` of
``impkit score``): ``normalise_unanimous`` normalises the human answers (and the prediction) even
when all ten agree; ``all_periods`` removes every period.

Predictions: the EvalAI results file ``[{question_id, answer}]`` or LLaVA's own answers file
(JSON Lines ``{question_id, text}``).

Official files: the questions JSON ``{"data_subtype", "questions": [{question_id, image_id,
question}]}`` and, for val, the annotations JSON ``{"annotations": [{question_id,
multiple_choice_answer, question_type, answers}]}``. The gold answer is ``multiple_choice_answer``;
test-dev has no annotations and is answered for the EvalAI upload, unscored. Images are
``COCO_<split>_<image_id:012d>.jpg`` with the split from the questions file's ``data_subtype``
(test-dev questions use the ``test2015`` images).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from impkit.eval import prompts
from impkit.eval.benchmarks.base import (
    Benchmark,
    Official,
    Prompt,
    ReadRequest,
    ScoreInputs,
    TwinContext,
    records_writer,
)
from impkit.eval.benchmarks.official import Images, absolute, integer_id, records, text
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
)
from impkit.eval.scoring.vqa import evalai_answer, official_answer, soft_accuracy, soft_accuracy_result

OPTIONS = {
    "normalise_unanimous": "normalise the human answers even when all ten agree (the official tool does not)",
    "all_periods": "remove every period (the references remove at most 32 per answer)",
}


def _human_answers(record: dict[str, Any], path: PathLike, where: str) -> list[str]:
    answers = field(record, "answers", path, where)
    if not isinstance(answers, list) or not answers:
        raise ScoringError(f"{path}: {where} must have a non-empty 'answers' list")
    raw = [field(a, "answer", path, f"{where}, answers[{i}]") for i, a in enumerate(answers)]
    return [str(a).replace("\n", " ").replace("\t", " ").strip() for a in raw]


def vqav2_accuracy(
    prediction: str, answers: list[str], *, normalise_unanimous: bool = False, all_periods: bool = False
) -> float:
    """One question's accuracy by the steps of the module docstring (``answers`` as read: stripped)."""
    given = evalai_answer(prediction, all_periods).replace("\n", " ").replace("\t", " ").strip()
    if normalise_unanimous or len(set(answers)) > 1:
        answers = [official_answer(a, all_periods) for a in answers]
        given = official_answer(given, all_periods)
    return soft_accuracy(given, answers)


def score_vqav2(
    annotations: PathLike | None,
    predictions: PathLike,
    questions: PathLike | None = None,
    *,
    normalise_unanimous: bool = False,
    all_periods: bool = False,
) -> dict[str, Any]:
    """``annotations``: ``{"annotations": [{question_id, answers: [{answer}...], answer_type}]}``;
    ``questions`` (optional): ``{"questions": [{question_id}...]}``, restricting the scored set;
    ``predictions``: ``[{question_id, answer}]`` or LLaVA's ``{question_id, text}`` lines."""
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

    given = read_records(predictions, "VQAv2 results")
    preds = index_predictions(given, "question_id", answer_field(given, "answer"), ids, predictions, "VQAv2 results")
    rows = (
        (
            qid,
            _human_answers(by_id[qid], annotations, f"annotation for question {qid}"),
            str(by_id[qid].get("answer_type", "unknown")),
        )
        for qid in ids
    )
    options = {"normalise_unanimous": normalise_unanimous, "all_periods": all_periods}
    return soft_accuracy_result("vqav2", rows, preds, lambda p, a: vqav2_accuracy(p, a, **options))


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "vqav2"
IMAGE_PATTERNS = ("COCO_{split}_{image_id:012d}.jpg",)


def _split(subtype: Any) -> str | None:
    if not isinstance(subtype, str) or not subtype:
        return None
    return "test" + subtype[len("test-dev") :] if subtype.startswith("test-dev") else subtype


def read_vqav2(
    questions: PathLike,
    images: PathLike | None,
    *,
    annotations: PathLike | None = None,
    image_pattern: str | None = None,
) -> list[Prompt]:
    """The questions file's rows; with the annotations file they carry the gold answer and question
    type (without it: no gold, type "")."""
    qpath = existing(questions, "VQAv2 questions file")
    qdata = read_json(qpath, "VQAv2 questions", dict)
    split = _split(qdata.get("data_subtype"))
    hint = "" if split else "; the questions file has no 'data_subtype' to take {split} from"
    resolve = Images(NAME, IMAGE_PATTERNS, images, image_pattern, qpath, hint)
    by_id: dict[str, Any] | None = None
    if annotations is not None:
        apath = existing(annotations, "VQAv2 annotations file")
        by_id = {}
        for i, record in enumerate(records(read_json(apath, "VQAv2 annotations", dict), "annotations", apath)):
            where = f"annotation {i}"
            by_id[id_key(field(record, "question_id", apath, where), apath, where)] = record
    rows = []
    for i, record in enumerate(records(qdata, "questions", qpath)):
        where = f"question {i}"
        qid = integer_id(id_key(field(record, "question_id", qpath, where), qpath, where), qpath, where)
        question = text(field(record, "question", qpath, where), qpath, where, "question")
        image_id = field(record, "image_id", qpath, where)
        fields = {"image_id": image_id, "question_id": int(qid)} | ({"split": split} if split else {})
        gold, kind = None, ""
        if by_id is not None:
            if qid not in by_id:
                raise ScoringError(f"{annotations}: no annotation for question {qid} of {qpath}")
            note = by_id[qid]
            gold = str(field(note, "multiple_choice_answer", annotations, f"annotation for question {qid}"))
            kind = str(note.get("question_type", ""))
        rows.append(Prompt(qid, resolve(**fields), prompts.short_answer(question), gold, kind))
    return rows


def _read(request: ReadRequest) -> Official:
    if request.questions is None:
        raise ScoringError("vqav2: give the questions file (and the annotations file, if the split has answers)")
    rows = read_vqav2(
        request.questions, request.images, annotations=request.annotations, image_pattern=request.image_pattern
    )
    answers = None if request.annotations is None else absolute(request.annotations)
    return Official(rows, absolute(request.questions), answers, questions=str(absolute(request.questions)))


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import short_answer

    return short_answer.vqav2(ctx.heldout, ctx.rng(NAME), ctx.sizes.vqav2)


BENCHMARK = Benchmark(
    name=NAME,
    label="VQAv2",
    paper_column=0,
    score=score_vqav2,
    score_inputs=ScoreInputs(
        "val annotations JSON",
        "val questions JSON (optional: restricts the set)",
        "[{question_id, answer}] or LLaVA's answers.jsonl",
    ),
    prompt=prompts.short_answer,
    read=_read,
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("split", "image_id", "question_id"),
    build_twin=_twin,
    predictions="results.json: [{question_id, answer}]",
    write_predictions=records_writer("question_id", "answer", ids=int),
    options=OPTIONS,
)
