"""ScienceQA-IMG: accuracy over the test problems that have an image (2,017 of 4,241).

The option letter is read from the answer with LLaVA-1.5's ScienceQA rules, in order:
1. the whole answer is a bare option letter ("B");
2. the answer starts with a letter, a period and a space ("B. the moon"; a bare "B." matches none
   of these rules, as in the reference);
3. the pattern ``The answer is X.`` occurs exactly once. As in the reference, the final ``.`` of
   that pattern matches any character, so "The answer is B," counts and "The answer is B" at the
   very end of the text does not.
Anything else is a failed answer (scored wrong, counted in ``failed``), as is a letter beyond the
problem's number of choices.

Predictions are LLaVA's answers file: JSON Lines (or a JSON list) of ``{question_id, text}`` with the
ScienceQA problem id as ``question_id``. As in LLaVA's ``eval_science_qa.py``, which walks the test
split and looks each problem up among the answers, answers for ids outside the test split (LLaVA's
official answers file carries val ids too) are ignored; they are counted in ``ignored``. Two answers
for one id are still an error (the reference would silently keep the last).

A test problem with an image but no answer is left out of the accuracy, as in the reference (which
tells image problems by the ``<image>`` tag of the answer's prompt, and gives a missing answer the
prompt "Unknown"); it is reported in ``missing``. Named deviation (off by default):
``missing_as_wrong`` counts such a problem as a wrong answer instead, as every other scorer here does.

Official files: ``problems.json`` ``{pid: {question, choices, answer, hint, image, category,
split}}`` and ``pid_splits.json`` (default: next to problems.json). Every ``test`` problem is asked,
in ``pid_splits.json``'s order (LLaVA's ScienceQA-IMG evaluation), text-only problems included:
they are asked without an image and the scorer leaves them out.
"""

from __future__ import annotations

import re
from pathlib import Path
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
from impkit.eval.benchmarks.official import Images, absolute, text
from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    existing,
    field,
    index_predictions,
    percent,
    read_json,
    read_records,
    result,
)

OPTION_LETTERS = "ABCDE"  # ScienceQA problems have at most five choices
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def extract_letter(text: str) -> str | None:
    """The option letter an answer names by the three rules above, or None when it names none."""
    if len(text) == 1 and text in OPTION_LETTERS:
        return text
    if len(text) >= 3 and text[0] in OPTION_LETTERS and text[1:3] == ". ":
        return text[0]
    found = _ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else None


OPTIONS = {"missing_as_wrong": "count an image problem without an answer as wrong (the reference leaves it out)"}


def score_sqa(
    annotations: PathLike | None,
    predictions: PathLike,
    questions: PathLike | None = None,
    *,
    missing_as_wrong: bool = False,
) -> dict[str, Any]:
    """``annotations``: ``problems.json``; ``questions``: ``pid_splits.json`` (default: the one next
    to problems.json); ``predictions``: ``{question_id, text}`` records."""
    problems = read_json(annotations, "ScienceQA problems", dict)
    if questions is None:
        questions = Path(existing(annotations, "ScienceQA problems")).with_name("pid_splits.json")
    splits = read_json(questions, "ScienceQA pid_splits", dict)
    test = field(splits, "test", questions, "pid_splits")
    if not isinstance(test, list):
        raise ScoringError(f"{questions}: 'test' must be a list of problem ids")
    test = [str(pid) for pid in test]
    unknown = [pid for pid in test if pid not in problems]
    if unknown:
        raise ScoringError(f"{questions}: {len(unknown)} test id(s) are not in {annotations} (e.g. {unknown[0]})")
    image_items = [pid for pid in test if field(problems[pid], "image", annotations, f"problem {pid}")]
    if not image_items:
        raise ScoringError(f"{annotations}: no test problem has an image")

    given = read_records(predictions, "ScienceQA answers")
    preds = index_predictions(given, "question_id", "text", test, predictions, "ScienceQA answers", ignore_unknown=True)
    ignored = len(preds) - len(preds.keys() & set(test))
    correct = failed = missing = 0
    for pid in image_items:
        problem = problems[pid]
        choices = field(problem, "choices", annotations, f"problem {pid}")
        gold = field(problem, "answer", annotations, f"problem {pid}")
        if pid not in preds:
            missing += 1
            continue
        letter = extract_letter(preds[pid])
        index = OPTION_LETTERS.find(letter) if letter else -1
        if not 0 <= index < len(choices):
            failed += 1
            continue
        correct += index == gold
    scored = len(image_items) if missing_as_wrong else len(image_items) - missing
    return result(
        "sqa",
        "img_accuracy",
        percent(correct, scored),
        scored,
        failed=failed,
        missing=missing,
        ignored=ignored,
    )


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "sqa"
IMAGE_PATTERNS = ("{pid}/image.png",)


def read_sqa(
    problems: PathLike, images: PathLike | None, *, pid_splits: PathLike | None = None, image_pattern: str | None = None
) -> list[Prompt]:
    path = existing(problems, "ScienceQA problems.json")
    splits_path = existing(
        path.with_name("pid_splits.json") if pid_splits is None else pid_splits, "ScienceQA pid_splits"
    )
    data = read_json(path, "ScienceQA problems", dict)
    test = field(read_json(splits_path, "ScienceQA pid_splits", dict), "test", splits_path, "pid_splits")
    if not isinstance(test, list):
        raise ScoringError(f"{splits_path}: 'test' must be a list of problem ids")
    resolve = Images(NAME, IMAGE_PATTERNS, images, image_pattern, path)
    rows = []
    for pid in map(str, test):
        if pid not in data:
            raise ScoringError(f"{splits_path}: test problem {pid} is not in {path}")
        problem, where = data[pid], f"problem {pid}"
        question = text(field(problem, "question", path, where), path, where, "question")
        choices = field(problem, "choices", path, where)
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(prompts.OPTION_LETTERS):
            raise ScoringError(f"{path}: {where} must have 2 to {len(prompts.OPTION_LETTERS)} 'choices'")
        answer = problem.get("answer")
        if answer is not None and (isinstance(answer, bool) or not isinstance(answer, int) or answer >= len(choices)):
            raise ScoringError(f"{path}: {where} has answer {answer!r}; expected the index of one of its choices")
        image_name = problem.get("image")
        image = resolve(pid=pid, image=image_name, split=problem.get("split", "test")) if image_name else None
        prompt = prompts.scienceqa(question, [str(c) for c in choices], str(problem.get("hint") or ""))
        gold = None if answer is None else prompts.OPTION_LETTERS[answer]
        rows.append(Prompt(pid, image, prompt, gold, str(problem.get("category") or "")))
    return rows


def _read(request: ReadRequest) -> Official:
    if request.annotations is None:
        raise ScoringError("sqa: give problems.json as the annotations (and pid_splits.json as the questions)")
    splits = request.annotations.with_name("pid_splits.json") if request.questions is None else request.questions
    rows = read_sqa(request.annotations, request.images, pid_splits=splits, image_pattern=request.image_pattern)
    source = absolute(request.annotations)
    return Official(rows, source, source, questions=str(absolute(Path(splits))))


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import choice

    return choice.sqa(ctx.heldout, ctx.rng(NAME), ctx.sizes.sqa)


BENCHMARK = Benchmark(
    name=NAME,
    label="SQA-IMG",
    paper_column=3,
    score=score_sqa,
    score_inputs=ScoreInputs(
        "problems.json", "pid_splits.json (default: next to problems.json)", "JSONL {question_id, text}"
    ),
    prompt=prompts.scienceqa,
    read=_read,
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("pid", "image", "split"),
    build_twin=_twin,
    predictions="answers.jsonl: {question_id, text}",
    write_predictions=records_writer("question_id", "text", lines=True),
    options=OPTIONS,
)
