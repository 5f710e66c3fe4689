"""MMBench / MMBench-CN (dev): circular accuracy, overall and per category.

The sheet is the official TSV (``index, question, hint, A, B, C, D, answer, category, l2-category,
split[, image]``). Its circular copies of a question have the options rotated and the index
``original + k·1,000,000``; a question counts as right only if every copy of it is answered right
(MMBench's CircularEval). ``vanilla_accuracy`` is the plain accuracy on the original rows.

The option letter is read from the answer without an LLM judge, as VLMEvalKit's exact matching
(``can_infer``) does, by these rules in order:
1. an answer containing "Failed to obtain answer via API" is never read as a letter (rule 3 still
   applies); one containing one of VLMEvalKit's refusal phrases ("Cannot determine the answer", ...)
   is the refusal option Z, which no row's answer is;
2. the answer is split into tokens at whitespace after ``.()[],:;!*#{}`` became spaces; if exactly
   one of the row's option letters stands alone as a token (upper case only), that letter ("B",
   "B.", "(B)", "B. a red car", "The correct choice is B."). A letter glued to other text is no token
   ("选项D", "答案是B。" read no letter); a lone "Z" among no option letter is the refusal Z;
3. ``answer is X`` (or ``答案是X`` / ``答案为X``) names exactly one option letter, in either case:
   "the answer is b" -> B;
4. exactly one option's text (case-insensitive) is contained in the answer.
Anything else is unresolved and counted wrong (``unresolved``): MMBench's own evaluator would ask
a GPT judge to map it, which cannot be done offline. As in the reference, a sentence-initial article
"A" is a token like any other ("A dog." reads as option A when A is an option and no other letter
stands alone). Named deviation (off by default): ``last_five_tokens`` looks for the lone letter of
rule 2 only among the last five tokens, which keeps that article out of long answers.

Predictions: the MMBench submission sheet (the TSV's rows with an added ``prediction`` column) as
.xlsx (needs openpyxl), .tsv or .csv, or JSON Lines ``{question_id, text}`` with the row's ``index``
as ``question_id``. Each circular copy needs its own row/index; an empty prediction cell is missing.

Official file: the TSV (``index, question, hint, A-D, answer, category, ...`` and a base64 ``image``
column, or the twins' ``image_path``), one prompt per row. An ``image_path`` column names files
under the images folder; otherwise the base64 ``image`` column is decoded (a cell holding another
row's index reuses that row's image), each distinct image once, named by the first row that carries
it. A hint reading "nan" or "none" counts as no hint (LLaVA's reading of the sheet).

Answers go to the scorer as JSON Lines and to MMBench's evaluation server as the submission sheet:
the benchmark's own TSV rows (without the base64 images) with a ``prediction`` column, as an .xlsx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import zipfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
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
from impkit.eval.benchmarks.official import Images, absolute, integer_id, one_source
from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    existing,
    index_predictions,
    percent,
    read_records,
    read_table,
    reject_unused,
    require_columns,
    result,
)
from impkit.io import atomic_path

CIRCULAR_STRIDE = 1_000_000
OPTION_COLUMNS = "ABCDEFGHI"  # MMBench uses A-D; a sheet may carry more option columns
LAST_TOKENS = 5
_TOKEN_BREAKS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})  # VLMEvalKit's can_infer_option
_ANSWER_IS = re.compile(r"(?:(?i:answer is)|答案是|答案为)\s*[:：]?\s*[(（]?([A-Za-z])(?![A-Za-z0-9])")
API_FAILURE = "Failed to obtain answer via API"
REFUSALS = (  # VLMEvalKit reads these as the refusal option Z
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
REFUSED = "Z"
OPTIONS = {"last_five_tokens": "read a lone option letter only among the last five tokens of the answer"}
REQUIRED_COLUMNS = ("index", "question", "A", "B", "answer", "category")


def extract_option(answer: str, options: dict[str, str], *, last_five_tokens: bool = False) -> str | None:
    """The option letter ``answer`` names by the rules above, ``REFUSED`` (Z) for a refusal, or None."""
    if API_FAILURE not in answer:
        if any(phrase in answer for phrase in REFUSALS):
            return REFUSED
        tokens = answer.translate(_TOKEN_BREAKS).split()
        window = tokens[-LAST_TOKENS:] if last_five_tokens else tokens
        letters = {token for token in window if token in options}
        if len(letters) == 1:
            return letters.pop()
        if not letters and REFUSED in tokens and REFUSED not in options:
            return REFUSED
        letters = {letter.upper() for letter in _ANSWER_IS.findall(answer)} & options.keys()
        if len(letters) == 1:
            return letters.pop()
    lowered = answer.lower()
    contained = [letter for letter, text in options.items() if text.strip() and text.strip().lower() in lowered]
    return contained[0] if len(contained) == 1 else None


def _load_rows(annotations: PathLike | None) -> dict[int, dict[str, Any]]:
    path = existing(annotations, "MMBench sheet")
    rows = read_table(path, "MMBench sheet")
    if not rows:
        raise ScoringError(f"{path}: the MMBench sheet has no rows")
    if "answer" not in rows[0]:
        raise ScoringError(
            f"{path}: the sheet has no 'answer' column; MMBench test is scored only by the official server"
        )
    require_columns(rows, REQUIRED_COLUMNS, path, "the MMBench sheet")
    by_index: dict[int, dict[str, Any]] = {}
    for number, row in enumerate(rows, start=2):
        try:
            index = int(float(row["index"]))
        except ValueError:
            raise ScoringError(f"{path}: row {number} has index {row['index']!r}; expected an integer") from None
        options = {c: row[c] for c in OPTION_COLUMNS if row.get(c, "").strip()}
        gold = row["answer"].strip()
        if gold not in options:
            raise ScoringError(
                f"{path}: row {number} (index {index}) has answer {gold!r}, not one of its options {sorted(options)}"
            )
        if index in by_index:
            raise ScoringError(f"{path}: index {index} appears twice")
        by_index[index] = {
            "options": options,
            "answer": gold,
            "category": row["category"],
            "l2": row.get("l2-category", ""),
        }
    return by_index


def _load_predictions(predictions: PathLike, known: list[str]) -> dict[str, str]:
    path = existing(predictions, "MMBench predictions")
    what = "MMBench predictions"
    if path.suffix.lower() in (".json", ".jsonl"):
        return index_predictions(read_records(path, what), "question_id", "text", known, path, what)
    rows = read_table(path, what)
    require_columns(rows, ("index", "prediction"), path, what)
    records = [{"index": row["index"], "prediction": row["prediction"]} for row in rows if row["prediction"].strip()]
    return index_predictions(records, "index", "prediction", known, path, what)


def _score_sheet(
    benchmark: str, annotations: PathLike | None, predictions: PathLike, last_five_tokens: bool = False
) -> dict[str, Any]:
    rows = _load_rows(annotations)
    preds = _load_predictions(predictions, [str(i) for i in rows])
    row_right: dict[int, bool] = {}
    unresolved = missing = 0
    for index, row in rows.items():
        text = preds.get(str(index))
        if text is None:
            missing += 1
            row_right[index] = False
            continue
        letter = extract_option(text, row["options"], last_five_tokens=last_five_tokens)
        unresolved += letter is None
        row_right[index] = letter == row["answer"]

    groups: dict[int, list[int]] = defaultdict(list)
    for index in rows:
        groups[index % CIRCULAR_STRIDE].append(index)
    orphans = [base for base in groups if base not in rows]
    if orphans:
        raise ScoringError(f"{annotations}: circular copies of index {orphans[0]} without the original row")
    right = {base: all(row_right[i] for i in copies) for base, copies in groups.items()}
    by_category: dict[str, list[bool]] = defaultdict(list)
    by_l2: dict[str, list[bool]] = defaultdict(list)
    for base, ok in right.items():
        by_category[rows[base]["category"]].append(ok)
        if rows[base]["l2"]:
            by_l2[rows[base]["l2"]].append(ok)
    originals = [row_right[base] for base in groups]
    return result(
        benchmark,
        "circular_accuracy",
        percent(sum(right.values()), len(right)),
        len(right),
        vanilla_accuracy=percent(sum(originals), len(originals)),
        per_category={c: percent(sum(v), len(v)) for c, v in sorted(by_category.items())},
        per_l2_category={c: percent(sum(v), len(v)) for c, v in sorted(by_l2.items())},
        rows=len(rows),
        unresolved=unresolved,
        missing=missing,
    )


def score_mmbench(
    annotations: PathLike | None,
    predictions: PathLike,
    questions: PathLike | None = None,
    *,
    last_five_tokens: bool = False,
) -> dict[str, Any]:
    """``annotations``: the MMBench dev TSV; ``predictions``: submission sheet or ``{question_id, text}`` lines."""
    reject_unused(questions, "questions", "mmbench")
    return _score_sheet("mmbench", annotations, predictions, last_five_tokens)


def score_mmbench_cn(
    annotations: PathLike | None,
    predictions: PathLike,
    questions: PathLike | None = None,
    *,
    last_five_tokens: bool = False,
) -> dict[str, Any]:
    """As ``score_mmbench``, for the MMBench-CN dev TSV."""
    reject_unused(questions, "questions", "mmbench_cn")
    return _score_sheet("mmbench_cn", annotations, predictions, last_five_tokens)


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "mmbench"
IMAGE_PATTERNS = ("{image_path}",)
PATTERN_FIELDS = ("image_path", "index")
PREDICTIONS = "answers.jsonl: {question_id (= index), text}"

SHEET = "submission.xlsx"
DROPPED = ("image", "image_path")  # megabytes of base64 (or a local path) the server does not need
# An .xlsx is a zip whose entries and document properties carry the time of writing; fixed here, the
# same answers give the same bytes, and DVC does not rerun what depends on an unchanged evaluation.
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FIXED_DOC_TIME = "1980-01-01T00:00:00Z"
_DOC_TIME = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")


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
) -> list[Prompt]:
    """The sheet's rows; base64 images are decoded into ``image_dir`` as ``<index>.png``."""
    if language not in prompts.LANGUAGES:
        raise ValueError(f"unknown MMBench language {language!r}")
    benchmark = NAME if language == "en" else f"{NAME}_cn"
    path = existing(sheet, "MMBench sheet")
    table = read_table(path, "MMBench sheet")
    if not table:
        raise ScoringError(f"{path}: the MMBench sheet has no rows")
    require_columns(table, ("index", "question", "A", "B"), path, "the MMBench sheet")
    header = set(table[0])
    if not {"image", "image_path"} & header:
        raise ScoringError(f"{path}: the MMBench sheet lacks an 'image' (base64) or 'image_path' column")
    by_path = "image_path" in header
    resolve = Images(benchmark, IMAGE_PATTERNS, images if by_path else None, image_pattern, path)
    parsed = []  # (id, prompt, category, gold, image cell, row number)
    for number, row in enumerate(table, start=2):
        qid = integer_id(row["index"], path, f"row {number}")
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
            Prompt(qid, resolve(image_path=cell, index=int(qid)) if cell else None, prompt, gold, kind)
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
                image = str(absolute(image_dir) / written[digest])
            rows.append(Prompt(qid, image, prompt, gold, kind))
    return rows


def reader(language: str):
    """The ``impkit prepare`` reader of the sheet in one language (MMBench-CN reads it in Chinese)."""
    name = NAME if language == "en" else f"{NAME}_cn"

    def read(request: ReadRequest) -> Official:
        source = absolute(one_source(name, request.annotations, request.questions))
        rows = read_mmbench(
            source, request.images, image_pattern=request.image_pattern, image_dir=request.image_dir, language=language
        )
        return Official(rows, source, source)

    return read


def twin(language: str):
    """The twin in one language; MMBench-CN translates MMBench, so both ask the same drawn questions."""

    def build(ctx: TwinContext) -> TwinFiles:
        from impkit.eval.twins import choice

        items = ctx.once(NAME, lambda: choice.mmbench_items(ctx.heldout, ctx.rng(NAME), ctx.sizes.mmbench))
        return choice.mmbench(items, language)

    return build


def answers_writer(name: str):
    """JSON Lines ``{question_id (= index), text}``; the scorer reads any other suffix as a submission
    sheet, so another name is refused."""
    write_jsonl = records_writer("question_id", "text", ids=int, lines=True)

    def write(given: Sequence[tuple[str, str]], out: Path, twin_dir: Path) -> None:
        if out.suffix not in (".json", ".jsonl"):
            raise ValueError(f"{name} answers are JSON Lines: name the file .jsonl (got {out})")
        write_jsonl(given, out, twin_dir)

    return write


def _without_timestamps(path: Path) -> None:
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                data = _DOC_TIME.sub(rb"\g<1>" + FIXED_DOC_TIME.encode() + rb"\g<2>", data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            target.writestr(fixed, data)


def write_mmbench_sheet(sheet: Path, answers: Mapping[str, str], out: Path) -> Path:
    """``sheet``: the TSV the questions came from; ``answers``: index -> answer text."""
    import pandas as pd

    rows = read_table(sheet, "MMBench sheet")
    kept = [
        {k: v for k, v in row.items() if k not in DROPPED} | {"prediction": answers.get(row["index"], "")}
        for row in rows
    ]
    with atomic_path(Path(out)) as tmp:
        pd.DataFrame(kept).to_excel(tmp, index=False, engine="openpyxl")
        _without_timestamps(tmp)
    return Path(out)


def write_submission(sheet: Path, answers: Mapping[str, str], folder: Path) -> Path:
    """The server's upload form, ``submission.xlsx``, in the folder of the answers."""
    return write_mmbench_sheet(sheet, answers, Path(folder) / SHEET)


BENCHMARK = Benchmark(
    name=NAME,
    label="MMB",
    paper_column=7,
    score=score_mmbench,
    score_inputs=ScoreInputs("dev TSV", "-", "submission sheet (.xlsx/.tsv/.csv) or JSONL {question_id, text}"),
    prompt=prompts.mmbench,
    read=reader("en"),
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=PATTERN_FIELDS,
    build_twin=twin("en"),
    predictions=PREDICTIONS,
    write_predictions=answers_writer(NAME),
    options=OPTIONS,
    submission=write_submission,
)
