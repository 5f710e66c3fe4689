"""MMBench / MMBench-CN (dev): circular accuracy, overall and per category.

The sheet is the official TSV (``index, question, hint, A, B, C, D, answer, category, l2-category,
split[, image]``). Its circular copies of a question have the options rotated and the index
``original + k·1,000,000``; a question counts as right only if every copy of it is answered right
(MMBench's CircularEval). ``vanilla_accuracy`` is the plain accuracy on the original rows.

The option letter is read from the answer without an LLM judge, by these rules in order:
1. exactly one option letter stands alone (as a whole token) among the last five tokens of the
   answer: "B", "B.", "(B)", "B. a red car", "The correct choice is B." Tokens are runs of ASCII
   letters and digits, so "答案是B。" yields "B"; only letters that are options of the row count,
   and only in upper case (a lone "a" is an article);
2. ``answer is X`` (or the Chinese ``答案是X`` / ``答案为X``) names exactly one option letter;
3. exactly one option's text (case-insensitive) is contained in the answer.
Anything else is unresolved and counted wrong (``unresolved``): MMBench's own evaluator would ask
a GPT judge to map it, which cannot be done offline. The window of five tokens is this module's
choice; it keeps a sentence-initial article "A" of a long answer from reading as option A.

Predictions: the MMBench submission sheet (the TSV's rows with an added ``prediction`` column) as
.xlsx (needs openpyxl), .tsv or .csv, or JSON Lines ``{question_id, text}`` with the row's ``index``
as ``question_id``. Each circular copy needs its own row/index; an empty prediction cell is missing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

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

CIRCULAR_STRIDE = 1_000_000
OPTION_COLUMNS = "ABCDEFGHI"  # MMBench uses A-D; a sheet may carry more option columns
LAST_TOKENS = 5
_TOKEN = re.compile(r"[A-Za-z0-9]+")
_ANSWER_IS = re.compile(r"(?:(?i:answer is)|答案是|答案为)\s*[:：]?\s*[(（]?([A-Z])(?![A-Za-z0-9])")
REQUIRED_COLUMNS = ("index", "question", "A", "B", "answer", "category")


def extract_option(answer: str, options: dict[str, str]) -> str | None:
    """The option letter ``answer`` names by the three rules above, or None."""
    tokens = _TOKEN.findall(answer)
    letters = {token for token in tokens[-LAST_TOKENS:] if token in options}
    if len(letters) == 1:
        return letters.pop()
    letters = {letter for letter in _ANSWER_IS.findall(answer) if letter in options}
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


def _score_sheet(benchmark: str, annotations: PathLike | None, predictions: PathLike) -> dict[str, Any]:
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
        letter = extract_option(text, row["options"])
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
    annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None
) -> dict[str, Any]:
    """``annotations``: the MMBench dev TSV; ``predictions``: submission sheet or ``{question_id, text}`` lines."""
    reject_unused(questions, "questions", "mmbench")
    return _score_sheet("mmbench", annotations, predictions)


def score_mmbench_cn(
    annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None
) -> dict[str, Any]:
    """As ``score_mmbench``, for the MMBench-CN dev TSV."""
    reject_unused(questions, "questions", "mmbench_cn")
    return _score_sheet("mmbench_cn", annotations, predictions)
