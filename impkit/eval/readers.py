"""Readers for the benchmarks' official files: they turn the real annotation files into the layout
the synthetic twins use (``impkit.eval.twins``), so ``impkit evaluate --twins DIR`` asks a release
the real questions with the very same machinery.

``prepare`` writes, per benchmark, under ``out_dir``::

    twins.json                        the manifest, merged: benchmarks can be prepared one by one
    <benchmark>/prompts.jsonl         {id, image, prompt, type, benchmark}; image is an absolute path
    <benchmark>/gold.jsonl            {id, answer}, only when every question has an answer
    mme/ground_truth/<subtask>.txt    the eval tool's lines, which write_predictions fills
    mmbench[_cn]/images/<index>.png   the sheet's base64 images, each distinct image decoded once

Each reader returns ``PromptRow``s with the prompt ids, prompt texts (``impkit.eval.prompts``) and
question types the twins use, so the twins' own official files read back into the twins' prompts.

Images are found with a format pattern per benchmark, relative to the images folder
(``DEFAULT_IMAGE_PATTERNS``: each benchmark's official file naming); ``image_pattern`` replaces it,
with the fields listed in ``PATTERN_FIELDS``. Every referenced image must exist, so a wrong folder
or pattern fails here rather than halfway through an evaluation.

Choices where the official files leave room:

- gold answers: VQAv2 ``multiple_choice_answer``; VizWiz the most common human answer as written
  (its scorer compares the human answers without normalising them); TextVQA the most common human
  answer after the VQA normaliser (its scorer normalises both sides), in its most common spelling;
  ties go to the answer met first in the file. A split without answers (VQAv2 test-dev questions,
  VizWiz test, GQA test, MMBench test) gets no gold file and ``annotations: null`` in the manifest:
  evaluation writes the answers in the upload format and leaves them unscored.
- VQAv2 images: ``COCO_<split>_<image_id:012d>.jpg`` with the split from the questions file's
  ``data_subtype`` (test-dev questions use the ``test2015`` images).
- ScienceQA: the ``test`` split of ``pid_splits.json`` in its order (LLaVA's ScienceQA-IMG
  evaluation), text-only problems included (asked without an image; the scorer scores the others).
- MME: the eval tool's ``<subtask>.txt`` lines (``image<TAB>question<TAB>answer``, a fourth
  prediction column is dropped) or the release folder itself (``<subtask>/`` holding the question
  files ``<image stem>.txt`` of ``question<TAB>answer`` lines, next to the images or in
  ``questions_answers_YN/`` beside ``images/``). All ten perception subtasks are required, as the
  scorer requires them.
- MMBench: every row is one prompt (the sheet's circular copies carry index + k·1,000,000); an
  ``image_path`` column (the twins') names files under the images folder, otherwise the base64
  ``image`` column is decoded (a cell holding another row's index reuses that row's image); a hint
  reading "nan" or "none" counts as no hint (LLaVA's reading of the sheet).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from impkit.eval import prompts
from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    existing,
    field,
    id_key,
    read_json,
    read_jsonl,
    read_table,
    require_columns,
)
from impkit.eval.scoring.mme import COGNITION, PERCEPTION
from impkit.eval.scoring.pope import SPLITS
from impkit.eval.scoring.vqa import normalize_answer
from impkit.eval.twins import BENCHMARKS, MANIFEST, PREDICTIONS
from impkit.eval.twins.short_answer import vqa_question_type
from impkit.io import atomic_open, atomic_path, dumps_line, write_json

__all__ = [
    "DEFAULT_IMAGE_PATTERNS",
    "MmeLine",
    "PATTERN_FIELDS",
    "READERS",
    "PromptRow",
    "check_images",
    "prepare",
    "read_gqa",
    "read_mmbench",
    "read_mmbench_cn",
    "read_mme",
    "read_mme_lines",
    "read_mmvet",
    "read_pope",
    "read_sqa",
    "read_textvqa",
    "read_vizwiz",
    "read_vqav2",
]

# Where each benchmark's images are, relative to the images folder (tried in order; MME keeps
# five subtasks' images in an images/ subfolder).
DEFAULT_IMAGE_PATTERNS: dict[str, tuple[str, ...]] = {
    "vqav2": ("COCO_{split}_{image_id:012d}.jpg",),
    "gqa": ("{imageId}.jpg",),
    "vizwiz": ("{image}",),
    "textvqa": ("{image_id}.jpg",),
    "sqa": ("{pid}/image.png",),
    "pope": ("{image}",),
    "mme": ("{subtask}/{image}", "{subtask}/images/{image}"),
    "mmbench": ("{image_path}",),
    "mmbench_cn": ("{image_path}",),
    "mmvet": ("{imagename}",),
}
# The fields an image pattern may use, per benchmark.
PATTERN_FIELDS: dict[str, tuple[str, ...]] = {
    "vqav2": ("split", "image_id", "question_id"),
    "gqa": ("imageId", "qid"),
    "vizwiz": ("image",),
    "textvqa": ("image_id", "question_id"),
    "sqa": ("pid", "image", "split"),
    "pope": ("image", "split", "question_id"),
    "mme": ("subtask", "image"),
    "mmbench": ("image_path", "index"),
    "mmbench_cn": ("image_path", "index"),
    "mmvet": ("imagename", "id"),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
MME_SUBTASKS = PERCEPTION + COGNITION
MME_QA_FOLDER, MME_IMAGE_FOLDER = "questions_answers_YN", "images"
_EXAMPLES = 3  # how many missing images an error names


@dataclass(frozen=True)
class PromptRow:
    """One question as the twins' ``prompts.jsonl`` holds it, with its gold answer (None when the
    file has none). ``image`` is an absolute path, or None for a text-only question."""

    id: str
    image: str | None
    prompt: str
    type: str
    gold: str | None

    def line(self, benchmark: str) -> dict[str, Any]:
        return {"id": self.id, "image": self.image, "prompt": self.prompt, "type": self.type, "benchmark": benchmark}


# --------------------------------------------------------------------------- shared helpers
def _file(path: PathLike | None, what: str, *, folder: bool = False) -> Path:
    """``path`` as a Path, or a one-line error naming what is missing (as the scorers say it)."""
    return existing(path, what, folder=folder)


def _absolute(path: PathLike) -> Path:
    return Path(os.path.abspath(path))


class _Images:
    """Image paths from a benchmark's pattern(s), relative to the images folder."""

    def __init__(self, benchmark: str, images: PathLike | None, pattern: str | None, source: Path, hint: str = ""):
        self.benchmark, self.source, self.hint = benchmark, source, hint
        self.patterns = (pattern,) if pattern else DEFAULT_IMAGE_PATTERNS[benchmark]
        self.folder = None if images is None else _absolute(_file(images, "images folder", folder=True))

    def _format(self, pattern: str, fields: Mapping[str, Any]) -> str:
        try:
            return pattern.format_map(fields)
        except KeyError as exc:
            raise ScoringError(
                f"{self.source}: image pattern {pattern!r} uses {{{exc.args[0]}}}, which these {self.benchmark} "
                f"rows do not have (fields: {sorted(fields)}){self.hint}"
            ) from None
        except (ValueError, IndexError, TypeError, AttributeError) as exc:
            raise ScoringError(
                f"{self.source}: image pattern {pattern!r} does not fit {dict(fields)} ({exc})"
            ) from None

    def __call__(self, **fields: Any) -> str:
        if self.folder is None:
            raise ScoringError(f"{self.source}: {self.benchmark} questions name images: give the images folder")
        candidates = [self.folder / self._format(pattern, fields) for pattern in self.patterns]
        if len(candidates) > 1:
            for candidate in candidates:
                if candidate.is_file():
                    return str(candidate)
        return str(candidates[0])


def check_images(rows: list[PromptRow], source: PathLike, images: PathLike | None) -> None:
    """Every image the rows name must be a file; else one error with the count and a few examples."""
    named = list(dict.fromkeys(row.image for row in rows if row.image))
    missing = [path for path in named if not os.path.isfile(path)]
    if missing:
        shown = ", ".join(missing[:_EXAMPLES]) + (", ..." if len(missing) > _EXAMPLES else "")
        raise ScoringError(
            f"{source}: {len(missing)} of {len(named)} images are missing under {images} ({shown}); "
            "check the images folder and the image pattern"
        )


def _text(value: Any, path: Path, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise ScoringError(f"{path}: {where} has a {type(value).__name__} '{key}', expected text")
    return value


def _most_common(answers: list[str], key: Callable[[str], str] = lambda a: a) -> str | None:
    """The answer whose ``key`` is the most common (ties: met first), in its most common spelling."""
    if not answers:
        return None
    counts = Counter(key(a) for a in answers)
    top = max(counts.values())
    winner = next(key(a) for a in answers if counts[key(a)] == top)
    spellings = Counter(a for a in answers if key(a) == winner)
    best = max(spellings.values())
    return next(a for a in answers if key(a) == winner and spellings[a] == best)


def _integer_id(qid: str, path: Path, where: str) -> str:
    """Ids the result files write as integers (VQAv2, TextVQA, POPE, MMBench)."""
    try:
        return str(int(float(qid)))
    except ValueError:
        raise ScoringError(f"{path}: {where} has id {qid!r}; expected an integer") from None


def _records(data: Any, key: str, path: Path) -> list[Any]:
    records = field(data, key, path, "the file")
    if not isinstance(records, list):
        raise ScoringError(f"{path}: '{key}' must be a list")
    return records


# --------------------------------------------------------------------------- short answers
def _vqav2_split(subtype: Any) -> str | None:
    if not isinstance(subtype, str) or not subtype:
        return None
    return "test" + subtype[len("test-dev") :] if subtype.startswith("test-dev") else subtype


def read_vqav2(
    questions: PathLike,
    images: PathLike | None,
    *,
    annotations: PathLike | None = None,
    image_pattern: str | None = None,
) -> list[PromptRow]:
    """``{"data_subtype", "questions": [{question_id, image_id, question}]}``; with the annotations
    file ``{"annotations": [{question_id, multiple_choice_answer, question_type}]}`` the rows carry
    the gold answer and question type (without it: no gold, type "")."""
    qpath = _file(questions, "VQAv2 questions file")
    qdata = read_json(qpath, "VQAv2 questions", dict)
    split = _vqav2_split(qdata.get("data_subtype"))
    hint = "" if split else "; the questions file has no 'data_subtype' to take {split} from"
    resolve = _Images("vqav2", images, image_pattern, qpath, hint)
    by_id: dict[str, Any] | None = None
    if annotations is not None:
        apath = _file(annotations, "VQAv2 annotations file")
        by_id = {}
        for i, record in enumerate(_records(read_json(apath, "VQAv2 annotations", dict), "annotations", apath)):
            where = f"annotation {i}"
            by_id[id_key(field(record, "question_id", apath, where), apath, where)] = record
    rows = []
    for i, record in enumerate(_records(qdata, "questions", qpath)):
        where = f"question {i}"
        qid = _integer_id(id_key(field(record, "question_id", qpath, where), qpath, where), qpath, where)
        question = _text(field(record, "question", qpath, where), qpath, where, "question")
        image_id = field(record, "image_id", qpath, where)
        fields = {"image_id": image_id, "question_id": int(qid)} | ({"split": split} if split else {})
        gold, kind = None, ""
        if by_id is not None:
            if qid not in by_id:
                raise ScoringError(f"{annotations}: no annotation for question {qid} of {qpath}")
            note = by_id[qid]
            gold = str(field(note, "multiple_choice_answer", annotations, f"annotation for question {qid}"))
            kind = str(note.get("question_type", ""))
        rows.append(PromptRow(qid, resolve(**fields), prompts.short_answer(question), kind, gold))
    return rows


def read_gqa(questions: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[PromptRow]:
    """``{qid: {imageId, question, answer, types: {detailed}}}`` (test files have no answers)."""
    path = _file(questions, "GQA questions file")
    resolve = _Images("gqa", images, image_pattern, path)
    rows = []
    for qid, record in read_json(path, "GQA questions", dict).items():
        where = f"question {qid}"
        image_id = field(record, "imageId", path, where)
        question = _text(field(record, "question", path, where), path, where, "question")
        types = record.get("types")
        kind = str(types.get("detailed", "")) if isinstance(types, dict) else ""
        gold = None if record.get("answer") is None else str(record["answer"])
        rows.append(PromptRow(str(qid), resolve(imageId=image_id, qid=qid), prompts.short_answer(question), kind, gold))
    return rows


def _vizwiz_answer(answer: Any) -> str:
    return str(answer).replace("\n", " ").replace("\t", " ").strip()  # as the scorer reads them


def read_vizwiz(annotations: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[PromptRow]:
    """``[{image, question, answers: [{answer}], answer_type}]`` (test: no answers)."""
    path = _file(annotations, "VizWiz file")
    resolve = _Images("vizwiz", images, image_pattern, path)
    rows = []
    for i, record in enumerate(read_json(path, "VizWiz questions", list)):
        where = f"record {i}"
        image = id_key(field(record, "image", path, where), path, where)
        question = _text(field(record, "question", path, where), path, where, "question")
        answers = record.get("answers") or []
        if not isinstance(answers, list):
            raise ScoringError(f"{path}: {where} has 'answers' that is not a list")
        given = [_vizwiz_answer(field(a, "answer", path, f"{where}, answers[{j}]")) for j, a in enumerate(answers)]
        kind = str(record.get("answer_type") or "")
        rows.append(PromptRow(image, resolve(image=image), prompts.vizwiz(question), kind, _most_common(given)))
    return rows


def read_textvqa(
    annotations: PathLike, images: PathLike | None, *, image_pattern: str | None = None
) -> list[PromptRow]:
    """``{"data": [{question_id, image_id, question, answers: [10], ocr_tokens}]}``; the prompt
    carries the reference OCR tokens (LLaVA-1.5), so ``ocr_tokens`` is required."""
    path = _file(annotations, "TextVQA file")
    resolve = _Images("textvqa", images, image_pattern, path)
    rows = []
    for i, record in enumerate(_records(read_json(path, "TextVQA questions", dict), "data", path)):
        where = f"data[{i}]"
        qid = _integer_id(id_key(field(record, "question_id", path, where), path, where), path, where)
        question = _text(field(record, "question", path, where), path, where, "question")
        image_id = field(record, "image_id", path, where)
        tokens = field(record, "ocr_tokens", path, where)
        if not isinstance(tokens, list):
            raise ScoringError(f"{path}: {where} has 'ocr_tokens' that is not a list")
        answers = record.get("answers") or []
        if not isinstance(answers, list):
            raise ScoringError(f"{path}: {where} has 'answers' that is not a list")
        gold = _most_common([str(a) for a in answers], normalize_answer)
        prompt = prompts.textvqa(question, [str(t) for t in tokens])
        image = resolve(image_id=image_id, question_id=int(qid))
        rows.append(PromptRow(qid, image, prompt, vqa_question_type(question), gold))
    return rows


# --------------------------------------------------------------------------- multiple choice
def read_sqa(
    problems: PathLike, images: PathLike | None, *, pid_splits: PathLike | None = None, image_pattern: str | None = None
) -> list[PromptRow]:
    """The ``test`` problems of ``pid_splits.json`` (default: next to ``problems.json``), in its
    order; problems without an ``image`` are text-only (image None)."""
    path = _file(problems, "ScienceQA problems.json")
    splits_path = _file(path.with_name("pid_splits.json") if pid_splits is None else pid_splits, "ScienceQA pid_splits")
    data = read_json(path, "ScienceQA problems", dict)
    test = field(read_json(splits_path, "ScienceQA pid_splits", dict), "test", splits_path, "pid_splits")
    if not isinstance(test, list):
        raise ScoringError(f"{splits_path}: 'test' must be a list of problem ids")
    resolve = _Images("sqa", images, image_pattern, path)
    rows = []
    for pid in map(str, test):
        if pid not in data:
            raise ScoringError(f"{splits_path}: test problem {pid} is not in {path}")
        problem, where = data[pid], f"problem {pid}"
        question = _text(field(problem, "question", path, where), path, where, "question")
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


def _hint(value: str) -> str:
    return "" if value.strip().lower() in ("", "nan", "none") else value


def _decode_image(cell: str, path: Path, number: int) -> bytes:
    try:
        return base64.b64decode(cell, validate=False)
    except (binascii.Error, ValueError):
        raise ScoringError(f"{path}: row {number} has an 'image' cell that is not base64") from None


def _write_png(data: bytes, target: Path, path: Path, number: int) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "PNG":
                target.write_bytes(data)
                return
            image.load()
            converted = image if image.mode in ("1", "L", "LA", "I", "P", "RGB", "RGBA") else image.convert("RGB")
            converted.save(target, format="PNG")
    except (UnidentifiedImageError, OSError) as exc:
        raise ScoringError(f"{path}: row {number}'s base64 image cannot be read ({exc})") from None


def read_mmbench(
    sheet: PathLike,
    images: PathLike | None,
    *,
    image_pattern: str | None = None,
    image_dir: PathLike | None = None,
    language: str = "en",
) -> list[PromptRow]:
    """The MMBench TSV (``index, question, hint, A-D, answer, category, ...`` and ``image`` base64
    or ``image_path``), one prompt per row. Base64 images are decoded into ``image_dir`` as
    ``<index>.png``, each distinct image once, named by the first row that carries it."""
    if language not in prompts.LANGUAGES:
        raise ValueError(f"unknown MMBench language {language!r}")
    benchmark = "mmbench" if language == "en" else "mmbench_cn"
    path = _file(sheet, "MMBench sheet")
    table = read_table(path, "MMBench sheet")
    if not table:
        raise ScoringError(f"{path}: the MMBench sheet has no rows")
    require_columns(table, ("index", "question", "A", "B"), path, "the MMBench sheet")
    header = set(table[0])
    if not {"image", "image_path"} & header:
        raise ScoringError(f"{path}: the MMBench sheet lacks an 'image' (base64) or 'image_path' column")
    by_path = "image_path" in header
    resolve = _Images(benchmark, images if by_path else None, image_pattern, path)
    parsed = []  # (id, prompt, category, gold, image cell, row number)
    for number, row in enumerate(table, start=2):
        qid = _integer_id(row["index"], path, f"row {number}")
        options = [row[c] for c in prompts.OPTION_LETTERS if row.get(c, "").strip()]
        gold = row.get("answer", "").strip() or None
        if gold is not None and gold not in prompts.OPTION_LETTERS[: len(options)]:
            raise ScoringError(f"{path}: row {number} (index {qid}) has answer {gold!r}, not one of its options")
        prompt = prompts.mmbench(row["question"], options, _hint(row.get("hint", "")), language)
        cell = row["image_path"] if by_path else row["image"]
        parsed.append((qid, prompt, row.get("category", ""), gold, cell.strip(), number))
    if len({qid for qid, *_ in parsed}) != len(parsed):
        raise ScoringError(f"{path}: an index appears twice in the MMBench sheet")
    if by_path:
        return [
            PromptRow(qid, resolve(image_path=cell, index=int(qid)) if cell else None, prompt, kind, gold)
            for qid, prompt, kind, gold, cell, _ in parsed
        ]
    if image_dir is None:
        raise ScoringError(f"{path}: the sheet's base64 images need a folder to be decoded into")
    cells = {qid: cell for qid, _, _, _, cell, _ in parsed}
    rows, written = [], {}  # digest of the image -> its file
    with atomic_path(Path(image_dir)) as folder:
        folder.mkdir()
        for qid, prompt, kind, gold, cell, number in parsed:
            if cell and len(cell) <= 16 and cell.isdigit() and cell in cells and cells[cell] != cell:
                cell = cells[cell]  # a reference to another row's image
            image = None
            if cell:
                digest = hashlib.sha256(cell.encode()).hexdigest()
                if digest not in written:
                    _write_png(_decode_image(cell, path, number), folder / f"{qid}.png", path, number)
                    written[digest] = f"{qid}.png"
                image = str(_absolute(image_dir) / written[digest])
            rows.append(PromptRow(qid, image, prompt, kind, gold))
    return rows


def read_mmbench_cn(
    sheet: PathLike, images: PathLike | None, *, image_pattern: str | None = None, image_dir: PathLike | None = None
) -> list[PromptRow]:
    """``read_mmbench`` with the Chinese instruction (MMBench-CN)."""
    return read_mmbench(sheet, images, image_pattern=image_pattern, image_dir=image_dir, language="cn")


# --------------------------------------------------------------------------- yes/no
def read_pope(folder: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[PromptRow]:
    """The three JSON Lines files ``coco_pope_{adversarial,popular,random}.json`` of ``{question_id,
    image, text, label}`` in ``folder``; ids ``<split>/<question_id>``, type the split."""
    from impkit.eval.scoring.pope import _split_files  # the scorer's own way of finding the three files

    root = _file(folder, "POPE questions folder", folder=True)
    files = _split_files(root, "POPE question")
    rows = []
    for split in SPLITS:
        path = files[split]
        resolve = _Images("pope", images, image_pattern, path)
        seen = set()
        for i, record in enumerate(read_jsonl(path, "POPE questions"), start=1):
            where = f"line {i}"
            qid = _integer_id(id_key(field(record, "question_id", path, where), path, where), path, where)
            if qid in seen:
                raise ScoringError(f"{path}: question_id {qid} appears twice")
            seen.add(qid)
            image = id_key(field(record, "image", path, where), path, where)
            text = _text(field(record, "text", path, where), path, where, "text")
            label = record.get("label")
            gold = None if label is None else str(label).strip().lower()
            if gold not in (None, "yes", "no"):
                raise ScoringError(f"{path}: {where} has label {label!r}; expected yes or no")
            image_path = resolve(image=image, split=split, question_id=int(qid))
            rows.append(PromptRow(f"{split}/{qid}", image_path, prompts.short_answer(text), split, gold))
    return rows


@dataclass(frozen=True)
class MmeLine:
    """One line of the eval tool's ``<subtask>.txt``: the image's name there, question, answer."""

    image: str
    question: str
    answer: str
    source: str  # file and line, for errors

    def text(self) -> str:
        return f"{self.image}\t{self.question}\t{self.answer}"


def _mme_answer(value: str, where: str) -> str:
    answer = value.strip()
    if answer.lower() not in ("yes", "no"):
        raise ScoringError(f"{where} has ground truth {answer!r}; expected Yes or No")
    return answer


def _utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _mme_eval_tool(files: dict[str, Path]) -> dict[str, list[MmeLine]]:
    out = {}
    for subtask, path in files.items():
        lines = []
        for number, line in enumerate(_utf8(path).splitlines(), start=1):
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split("\t")
            where = f"{path}: line {number}"
            if len(cells) not in (3, 4):
                raise ScoringError(f"{where} has {len(cells)} tab-separated columns; expected image, question, answer")
            lines.append(MmeLine(cells[0], cells[1], _mme_answer(cells[2], where), where))
        out[subtask] = lines
    return out


def _mme_release(root: Path, subtasks: list[str]) -> dict[str, list[MmeLine]]:
    out: dict[str, list[MmeLine]] = {}
    for subtask in subtasks:
        folder = root / subtask
        qa_dir = folder / MME_QA_FOLDER if (folder / MME_QA_FOLDER).is_dir() else folder
        image_dir = folder / MME_IMAGE_FOLDER if (folder / MME_IMAGE_FOLDER).is_dir() else folder
        names = {p.stem: p.name for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        lines, orphans = [], []
        for path in sorted(qa_dir.glob("*.txt")):
            if path.stem not in names:
                orphans.append(path.name)
                continue
            for number, line in enumerate(_utf8(path).splitlines(), start=1):
                if not line.strip():
                    continue
                cells = line.strip().split("\t")
                where = f"{path}: line {number}"
                if len(cells) != 2:
                    raise ScoringError(f"{where} has {len(cells)} tab-separated columns; expected question, answer")
                lines.append(MmeLine(names[path.stem], cells[0], _mme_answer(cells[1], where), where))
        if orphans:
            raise ScoringError(
                f"{qa_dir}: {len(orphans)} question file(s) have no image of the same name in {image_dir} "
                f"(e.g. {orphans[0]})"
            )
        out[subtask] = lines
    return out


def read_mme_lines(folder: PathLike) -> dict[str, list[MmeLine]]:
    """Subtask -> its ground-truth lines, from the eval tool's folder of ``<subtask>.txt`` or from
    the MME release folder of ``<subtask>/`` folders (see the module docstring)."""
    root = _file(folder, "MME folder", folder=True)
    txt = {p.stem: p for p in sorted(root.glob("*.txt"))}
    dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name in MME_SUBTASKS)
    if set(txt) & set(MME_SUBTASKS):
        unknown = sorted(set(txt) - set(MME_SUBTASKS))
        if unknown:
            raise ScoringError(f"{root}: unknown MME subtask file(s) {unknown}; known: {list(MME_SUBTASKS)}")
        found = _mme_eval_tool({name: txt[name] for name in MME_SUBTASKS if name in txt})
    elif dirs:
        found = _mme_release(root, [name for name in MME_SUBTASKS if name in dirs])
    else:
        raise ScoringError(
            f"{root}: neither the eval tool's <subtask>.txt files nor the release's <subtask>/ folders "
            f"(subtasks: {list(MME_SUBTASKS)})"
        )
    absent = [name for name in PERCEPTION if not found.get(name)]
    if absent:
        raise ScoringError(f"{root}: no questions for the MME perception subtask(s) {absent}; the score needs all ten")
    return {name: lines for name, lines in found.items() if lines}


def _mme_rows(
    lines: dict[str, list[MmeLine]], images: PathLike | None, image_pattern: str | None, root: Path
) -> list[PromptRow]:
    resolve = _Images("mme", images, image_pattern, root)
    rows = []
    for subtask, subtask_lines in lines.items():
        for number, line in enumerate(subtask_lines):
            try:
                prompt = prompts.mme(line.question)
            except ValueError:
                raise ScoringError(f"{line.source}: the question does not end with {prompts.MME_YES_NO!r}") from None
            image = resolve(subtask=subtask, image=line.image)
            rows.append(PromptRow(f"{subtask}/{number}", image, prompt, subtask, line.answer))
    return rows


def read_mme(folder: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[PromptRow]:
    """MME's questions; ids ``<subtask>/<line number>`` in the ground-truth lines
    (``read_mme_lines``), which ``prepare`` writes as ``mme/ground_truth/<subtask>.txt``."""
    return _mme_rows(read_mme_lines(folder), images, image_pattern, Path(folder))


# --------------------------------------------------------------------------- open-ended
def read_mmvet(annotations: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[PromptRow]:
    """``{"v1_0": {imagename, capability: [...], question, answer}}``; type the capabilities
    joined with "+"."""
    path = _file(annotations, "MM-Vet file")
    resolve = _Images("mmvet", images, image_pattern, path)
    rows = []
    for qid, item in read_json(path, "MM-Vet questions", dict).items():
        where = f"question {qid}"
        question = _text(field(item, "question", path, where), path, where, "question")
        image = resolve(imagename=field(item, "imagename", path, where), id=qid)
        capability = item.get("capability") or []
        kind = "+".join(map(str, capability)) if isinstance(capability, list) else str(capability)
        gold = None if item.get("answer") is None else str(item["answer"])
        rows.append(PromptRow(str(qid), image, prompts.mmvet(question), kind, gold))
    return rows


READERS: dict[str, Callable[..., list[PromptRow]]] = {
    "vqav2": read_vqav2,
    "gqa": read_gqa,
    "vizwiz": read_vizwiz,
    "textvqa": read_textvqa,
    "sqa": read_sqa,
    "pope": read_pope,
    "mme": read_mme,
    "mmbench": read_mmbench,
    "mmbench_cn": read_mmbench_cn,
    "mmvet": read_mmvet,
}
assert tuple(READERS) == BENCHMARKS, "one reader per benchmark"


# --------------------------------------------------------------------------- prepare
def _one_source(benchmark: str, annotations: PathLike | None, questions: PathLike | None) -> Path:
    """The single official file (or folder) of a benchmark that has one: given as the annotations,
    or, for a split without answers, as the questions."""
    if annotations is not None and questions is not None and _absolute(annotations) != _absolute(questions):
        raise ScoringError(f"{benchmark} reads one official file: give it as the annotations (got two paths)")
    given = annotations if annotations is not None else questions
    if given is None:
        raise ScoringError(f"{benchmark}: give the official file (annotations)")
    return Path(given)


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
    if benchmark not in READERS:
        raise ScoringError(f"unknown benchmark {benchmark!r}; known: {list(BENCHMARKS)}")
    root = _absolute(out_dir)
    folder = root / benchmark
    outputs = [
        folder / "prompts.jsonl",
        folder / "gold.jsonl",
        folder / "ground_truth",
        folder / "images",
        root / MANIFEST,
    ]
    for given in (annotations, questions):
        if given is not None and any(_absolute(given) == o or o in _absolute(given).parents for o in outputs):
            raise ScoringError(f"{given}: an input may not be one of the files prepare writes under {folder}")
    image_dir = folder / "images"
    inputs: dict[str, Any] = {}
    lines: dict[str, list[MmeLine]] = {}
    if benchmark == "vqav2":
        if questions is None:
            raise ScoringError("vqav2: give the questions file (and the annotations file, if the split has answers)")
        rows = read_vqav2(questions, images, annotations=annotations, image_pattern=image_pattern)
        source, inputs = _absolute(questions), {"questions": str(_absolute(questions))}
        answers_file = None if annotations is None else _absolute(annotations)
    elif benchmark == "sqa":
        if annotations is None:
            raise ScoringError("sqa: give problems.json as the annotations (and pid_splits.json as the questions)")
        splits = Path(annotations).with_name("pid_splits.json") if questions is None else Path(questions)
        rows = read_sqa(annotations, images, pid_splits=splits, image_pattern=image_pattern)
        source = answers_file = _absolute(annotations)
        inputs = {"questions": str(_absolute(splits))}
    else:
        if benchmark == "mme" and questions is not None:
            raise ScoringError(f"mme does not use a questions file (got {questions})")
        source = answers_file = _absolute(_one_source(benchmark, annotations, questions))
        if benchmark in ("mmbench", "mmbench_cn"):
            rows = READERS[benchmark](source, images, image_pattern=image_pattern, image_dir=image_dir)
        elif benchmark == "mme":
            lines = read_mme_lines(source)
            rows = _mme_rows(lines, images, image_pattern, source)
        else:
            rows = READERS[benchmark](source, images, image_pattern=image_pattern)
    if not rows:
        raise ScoringError(f"{source}: no questions")
    duplicates = [qid for qid, n in Counter(row.id for row in rows).items() if n > 1]
    if duplicates:
        raise ScoringError(f"{source}: question id(s) appear more than once: {duplicates[:_EXAMPLES]}")
    check_images(rows, source, images if images is not None else image_dir)

    with_gold = all(row.gold is not None for row in rows)
    folder.mkdir(parents=True, exist_ok=True)
    _write_lines(folder / "prompts.jsonl", [row.line(benchmark) for row in rows])
    if with_gold:
        _write_lines(folder / "gold.jsonl", [{"id": row.id, "answer": row.gold} for row in rows])
    else:
        (folder / "gold.jsonl").unlink(missing_ok=True)
    if benchmark == "mme":
        with atomic_path(folder / "ground_truth") as gt:
            gt.mkdir()
            for subtask, subtask_lines in lines.items():
                (gt / f"{subtask}.txt").write_text("".join(line.text() + "\n" for line in subtask_lines), "utf-8")
        annotations_entry: str | None = f"{benchmark}/ground_truth"
    else:
        annotations_entry = str(answers_file) if with_gold and answers_file is not None else None
    entry = {
        "annotations": annotations_entry,
        "questions": inputs.get("questions") if benchmark in ("vqav2", "sqa") else None,
        "prompts": f"{benchmark}/prompts.jsonl",
        "gold": f"{benchmark}/gold.jsonl" if with_gold else None,
        "predictions": PREDICTIONS[benchmark],
        "n_prompts": len(rows),
        "source": "official",
        "official": str(source),
        "images": None if images is None else str(_absolute(images)),
        "image_pattern": image_pattern,
        "text_only": sum(row.image is None for row in rows),
    }
    manifest = _read_manifest(root / MANIFEST)
    manifest["benchmarks"][benchmark] = entry
    write_json(root / MANIFEST, manifest)
    return entry
