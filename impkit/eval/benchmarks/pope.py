"""POPE: yes/no questions about objects that are or are not in COCO images, in three splits whose
negatives are drawn at random, among popular objects, and among co-occurring ones; the headline is
the mean F1 of the three.

Official files: ``coco_pope_{adversarial,popular,random}.json``, JSON Lines of ``{question_id,
image, text, label}``. Prompt ids are ``<split>/<question_id>``; the question type is the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from impkit.eval import prompts
from impkit.eval.benchmarks.base import Benchmark, Official, PromptRow, ReadRequest, ScoreInputs, TwinContext
from impkit.eval.benchmarks.official import Images, absolute, integer_id, one_source, text
from impkit.eval.scoring.inputs import PathLike, ScoringError, existing, field, id_key, read_jsonl
from impkit.eval.scoring.pope import SPLITS, score_pope, split_files
from impkit.io import atomic_path

if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "pope"
IMAGE_PATTERNS = ("{image}",)


def read_pope(folder: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[PromptRow]:
    root = existing(folder, "POPE questions folder", folder=True)
    files = split_files(root, "POPE question")  # the scorer's own way of finding the three files
    rows = []
    for split in SPLITS:
        path = files[split]
        resolve = Images(NAME, IMAGE_PATTERNS, images, image_pattern, path)
        seen = set()
        for i, record in enumerate(read_jsonl(path, "POPE questions"), start=1):
            where = f"line {i}"
            qid = integer_id(id_key(field(record, "question_id", path, where), path, where), path, where)
            if qid in seen:
                raise ScoringError(f"{path}: question_id {qid} appears twice")
            seen.add(qid)
            image = id_key(field(record, "image", path, where), path, where)
            question = text(field(record, "text", path, where), path, where, "text")
            label = record.get("label")
            gold = None if label is None else str(label).strip().lower()
            if gold not in (None, "yes", "no"):
                raise ScoringError(f"{path}: {where} has label {label!r}; expected yes or no")
            image_path = resolve(image=image, split=split, question_id=int(qid))
            rows.append(PromptRow(f"{split}/{qid}", image_path, prompts.short_answer(question), split, gold))
    return rows


def _read(request: ReadRequest) -> Official:
    source = absolute(one_source(NAME, request.annotations, request.questions))
    return Official(read_pope(source, request.images, image_pattern=request.image_pattern), source, source)


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import yes_no

    return yes_no.pope(ctx.heldout, ctx.rng(NAME), ctx.sizes.pope_images)


def write_answers(given: Sequence[tuple[str, str]], out: Path, twin_dir: Path) -> None:
    """A folder with one answers file per split, ``<split>.jsonl`` of ``{question_id, text}``."""
    from impkit.eval.twins.common import Jsonl, dump

    with atomic_path(out) as folder:
        folder.mkdir()
        for split in SPLITS:
            rows = [
                {"question_id": int(qid.split("/", 1)[1]), "text": answer}
                for qid, answer in given
                if qid.split("/", 1)[0] == split
            ]
            dump(folder / f"{split}.jsonl", Jsonl(rows))


BENCHMARK = Benchmark(
    name=NAME,
    label="POPE",
    score=score_pope,
    score_inputs=ScoreInputs(
        "folder of the 3 split question files (or one JSONL with category)",
        "-",
        "answers JSONL, or a folder with one per split",
    ),
    prompt=prompts.short_answer,
    read=_read,
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("image", "split", "question_id"),
    build_twin=_twin,
    predictions="answers/ folder: <split>.jsonl of {question_id, text}",
    write_predictions=write_answers,
)
