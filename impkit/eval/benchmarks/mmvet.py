"""MM-Vet (218 open-ended questions): needs an LLM judge, so it is never given a number without one.

MM-Vet's official score is a GPT-4 grader's 0-1 mark per answer, averaged and ×100, overall and per
capability (rec, ocr, know, gen, spat, math). No rule-based stand-in reproduces it, so without a
judge the result says ``scored: false`` and carries no value. With one, ``judge(question, gold
answer, prediction)`` must return a mark in [0, 1]; it is called once per answered question, and an
unanswered question scores 0 (counted in ``missing``).

Predictions: LLaVA-1.5's MM-Vet file, a JSON object ``{"v1_0": "answer", ...}``, or records
``{question_id, text}`` as a JSON list or JSON Lines.

Official file: ``mm-vet.json`` ``{"v1_0": {imagename, capability: [...], question, answer}}``; the
question type is the capabilities joined with "+". Questions are asked as they are.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impkit.eval import prompts
from impkit.eval.benchmarks.base import (
    Benchmark,
    Prompt,
    ScoreInputs,
    TwinContext,
    write_value,
)
from impkit.eval.benchmarks.official import Images, one_file_reader, text
from impkit.eval.judge import Judge
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


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "mmvet"
IMAGE_PATTERNS = ("{imagename}",)


def read_mmvet(annotations: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[Prompt]:
    path = existing(annotations, "MM-Vet file")
    resolve = Images(NAME, IMAGE_PATTERNS, images, image_pattern, path)
    rows = []
    for qid, item in read_json(path, "MM-Vet questions", dict).items():
        where = f"question {qid}"
        question = text(field(item, "question", path, where), path, where, "question")
        image = resolve(imagename=field(item, "imagename", path, where), id=qid)
        capability = item.get("capability") or []
        kind = "+".join(map(str, capability)) if isinstance(capability, list) else str(capability)
        gold = None if item.get("answer") is None else str(item["answer"])
        rows.append(Prompt(str(qid), image, prompts.mmvet(question), gold, kind))
    return rows


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import open_ended

    return open_ended.mmvet(ctx.heldout, ctx.rng(NAME), ctx.sizes.mmvet)


def write_results(given: Sequence[tuple[str, str]], out: Path, twin_dir: Path) -> None:
    """LLaVA-1.5's MM-Vet file: one JSON object of question id -> answer."""
    write_value(out, dict(given))


BENCHMARK = Benchmark(
    name=NAME,
    label="MM-Vet",
    paper_column=9,
    score=score_mmvet,
    score_inputs=ScoreInputs(
        "mm-vet.json",
        "-",
        '{"v1_0": answer, ...}; a number only with --judge-endpoint/--judge-model',
        note="no number without an LLM judge: give --judge-endpoint and --judge-model "
        "(an OpenAI-compatible server, e.g. a local llama.cpp one).",
    ),
    prompt=prompts.mmvet,
    read=one_file_reader(NAME, read_mmvet),
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("imagename", "id"),
    build_twin=_twin,
    predictions='results.json: {"v1_0": answer, ...}',
    write_predictions=write_results,
    judged=True,
)
