"""MM-Vet: open-ended questions graded by an LLM judge (MM-Vet's numbers come from GPT-4), so it is
asked and scored only with a judge configured and never given a number without one.

Official file: ``mm-vet.json`` ``{"v1_0": {imagename, capability: [...], question, answer}}``; the
question type is the capabilities joined with "+". Questions are asked as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    write_value,
)
from impkit.eval.benchmarks.official import Images, absolute, one_source, text
from impkit.eval.scoring.inputs import PathLike, existing, field, read_json
from impkit.eval.scoring.mmvet import score_mmvet

if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "mmvet"
IMAGE_PATTERNS = ("{imagename}",)


def read_mmvet(annotations: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[PromptRow]:
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
        rows.append(PromptRow(str(qid), image, prompts.mmvet(question), kind, gold))
    return rows


def _read(request: ReadRequest) -> Official:
    source = absolute(one_source(NAME, request.annotations, request.questions))
    return Official(read_mmvet(source, request.images, image_pattern=request.image_pattern), source, source)


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import open_ended

    return open_ended.mmvet(ctx.heldout, ctx.rng(NAME), ctx.sizes.mmvet)


def write_results(given: Sequence[tuple[str, str]], out: Path, twin_dir: Path) -> None:
    """LLaVA-1.5's MM-Vet file: one JSON object of question id -> answer."""
    write_value(out, dict(given))


BENCHMARK = Benchmark(
    name=NAME,
    label="MM-Vet",
    score=score_mmvet,
    score_inputs=ScoreInputs(
        "mm-vet.json", "-", '{"v1_0": answer, ...}; a number only with --judge-endpoint/--judge-model'
    ),
    prompt=prompts.mmvet,
    read=_read,
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("imagename", "id"),
    build_twin=_twin,
    predictions='results.json: {"v1_0": answer, ...}',
    write_predictions=write_results,
    judged=True,
)
