"""ScienceQA-IMG: multiple-choice science problems, scored with LLaVA-1.5's letter rules over the
test problems that have an image.

Official files: ``problems.json`` ``{pid: {question, choices, answer, hint, image, category,
split}}`` and ``pid_splits.json`` (default: next to problems.json). Every ``test`` problem is asked,
in ``pid_splits.json``'s order (LLaVA's ScienceQA-IMG evaluation), text-only problems included:
they are asked without an image and the scorer leaves them out.
"""

from __future__ import annotations

from pathlib import Path
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
from impkit.eval.benchmarks.official import Images, absolute, text
from impkit.eval.scoring.inputs import PathLike, ScoringError, existing, field, read_json
from impkit.eval.scoring.scienceqa import score_sqa

if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "sqa"
IMAGE_PATTERNS = ("{pid}/image.png",)


def read_sqa(
    problems: PathLike, images: PathLike | None, *, pid_splits: PathLike | None = None, image_pattern: str | None = None
) -> list[PromptRow]:
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
        rows.append(PromptRow(pid, image, prompt, str(problem.get("category") or ""), gold))
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
)
