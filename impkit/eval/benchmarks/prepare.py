"""``impkit prepare``: a benchmark's official files read into the layout the synthetic twins use
(``impkit.eval.twins``), so ``impkit evaluate --twins DIR`` asks a release the real questions with
the very same machinery.

Written per benchmark under ``out_dir``::

    twins.json                        the manifest, merged: benchmarks can be prepared one by one
    <benchmark>/prompts.jsonl         {id, image, prompt, type, benchmark}; image is an absolute path
    <benchmark>/gold.jsonl            {id, answer}, only when every question has an answer
    mme/ground_truth/<subtask>.txt    the eval tool's lines, which the prediction writer fills
    mmbench[_cn]/images/<index>.png   the sheet's base64 images, each distinct image decoded once

Each benchmark's reader (its module's ``read``) returns rows with the prompt ids, prompt texts
(``impkit.eval.prompts``) and question types its twin uses, so a twin's own official files read back
into the twin's prompts. A split without answers (VQAv2 test-dev questions, VizWiz test, GQA test,
MMBench test) gets no gold file and ``annotations: null`` in the manifest: evaluation writes the
answers in the upload format and leaves them unscored.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from impkit.eval.benchmarks import get
from impkit.eval.benchmarks.base import ReadRequest
from impkit.eval.benchmarks.official import EXAMPLES, absolute, check_images
from impkit.eval.scoring.inputs import PathLike, ScoringError, read_json
from impkit.eval.twins.common import MANIFEST
from impkit.io import atomic_open, atomic_path, dumps_line, write_json


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"seed": None, "sizes": None, "source": "official files", "benchmarks": {}}
    manifest = read_json(path, "benchmarks manifest", dict)
    if not isinstance(manifest.get("benchmarks"), dict):
        raise ScoringError(f"{path}: the manifest has no 'benchmarks' object")
    return manifest


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(dumps_line(row) for row in rows)


def prepare(
    benchmark: str,
    out_dir: PathLike,
    *,
    annotations: PathLike | None = None,
    questions: PathLike | None = None,
    images: PathLike | None,
    image_pattern: str | None = None,
) -> dict[str, Any]:
    """Read a benchmark's official file(s) and write it in the twins' layout under ``out_dir``
    (see the module docstring); return its manifest entry.

    ``annotations``: the official file the scorer reads (VQAv2 annotations, GQA questions, VizWiz
    and TextVQA files, ScienceQA problems.json, the POPE folder, the MME folder, the MMBench sheet,
    mm-vet.json); a split without answers may be given as ``questions`` instead. ``questions``:
    VQAv2's questions file (required) and ScienceQA's pid_splits.json (default: next to
    problems.json). ``images``: the folder image paths are relative to (unused by MMBench sheets
    with base64 images)."""
    bench = get(benchmark)
    root = absolute(out_dir)
    folder = root / benchmark
    outputs = [
        folder / "prompts.jsonl",
        folder / "gold.jsonl",
        folder / "ground_truth",
        folder / "images",
        root / MANIFEST,
    ]
    for given in (annotations, questions):
        if given is not None and any(absolute(given) == o or o in absolute(given).parents for o in outputs):
            raise ScoringError(f"{given}: an input may not be one of the files prepare writes under {folder}")
    image_dir = folder / "images"
    request = ReadRequest(
        None if annotations is None else Path(annotations),
        None if questions is None else Path(questions),
        None if images is None else Path(images),
        image_pattern,
        image_dir,
    )
    official = bench.read(request)
    rows, source = official.rows, official.source
    if not rows:
        raise ScoringError(f"{source}: no questions")
    duplicates = [qid for qid, n in Counter(row.id for row in rows).items() if n > 1]
    if duplicates:
        raise ScoringError(f"{source}: question id(s) appear more than once: {duplicates[:EXAMPLES]}")
    check_images(rows, source, images if images is not None else image_dir)

    with_gold = all(row.gold is not None for row in rows)
    folder.mkdir(parents=True, exist_ok=True)
    _write_lines(folder / "prompts.jsonl", [row.line(benchmark) for row in rows])
    if with_gold:
        _write_lines(folder / "gold.jsonl", [{"id": row.id, "answer": row.gold} for row in rows])
    else:
        (folder / "gold.jsonl").unlink(missing_ok=True)
    if official.ground_truth is not None:
        with atomic_path(folder / "ground_truth") as gt:
            gt.mkdir()
            for name, content in official.ground_truth.items():
                (gt / name).write_text(content, "utf-8")
        annotations_entry: str | None = f"{benchmark}/ground_truth"
    else:
        answers = official.answers
        annotations_entry = str(answers) if with_gold and answers is not None else None
    entry = {
        "annotations": annotations_entry,
        "questions": official.questions,
        "prompts": f"{benchmark}/prompts.jsonl",
        "gold": f"{benchmark}/gold.jsonl" if with_gold else None,
        "predictions": bench.predictions,
        "n_prompts": len(rows),
        "source": "official",
        "official": str(source),
        "images": None if images is None else str(absolute(images)),
        "image_pattern": image_pattern,
        "text_only": sum(row.image is None for row in rows),
    }
    manifest = _read_manifest(root / MANIFEST)
    manifest["benchmarks"][benchmark] = entry
    write_json(root / MANIFEST, manifest)
    return entry
