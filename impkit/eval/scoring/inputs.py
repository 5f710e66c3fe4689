"""Reading the official annotation files and model predictions, with one-line errors.

Every problem with an input file is reported as a ``ScoringError`` (a ``ValueError``) or a
``FileNotFoundError`` whose message names the file and what is wrong with it, never as a traceback
from deep inside ``json`` or ``csv``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from impkit.errors import ImpkitError

PathLike = str | os.PathLike


class ScoringError(ImpkitError, ValueError):
    """An annotation or prediction file cannot be scored as it is (wrong format, unknown ids, ...)."""


def existing(path: PathLike | None, what: str, *, folder: bool | None = False) -> Path:
    """``path`` as a Path, or a clear error when it was not given or does not exist.
    ``folder``: True = must be a folder, False = must be a file, None = either."""
    if path is None:
        raise ScoringError(f"{what} is required")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if folder and not path.is_dir():
        raise ScoringError(f"{path}: {what} must be a folder")
    if folder is False and path.is_dir():
        raise ScoringError(f"{path}: {what} must be a file, not a folder")
    return path


def _text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte-order mark from spreadsheet tools
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def read_json(path: PathLike | None, what: str, expect: type | tuple[type, ...] | None = None) -> Any:
    """Parse a whole-file JSON document; ``expect`` checks the top-level type."""
    path = existing(path, what)
    try:
        data = json.loads(_text(path, what))
    except json.JSONDecodeError as exc:
        raise ScoringError(
            f"{path}: {what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if expect is not None and not isinstance(data, expect):
        names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
        kind = {"dict": "a JSON object", "list": "a JSON list", "dict or list": "a JSON object or list"}.get(
            names, names
        )
        raise ScoringError(f"{path}: {what} must hold {kind}, found {type(data).__name__}")
    return data


def read_jsonl(path: PathLike | None, what: str) -> list[Any]:
    """One JSON value per non-empty line (JSON Lines)."""
    path = existing(path, what)
    records = []
    for number, line in enumerate(_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ScoringError(
                f"{path}: line {number} of {what} is not valid JSON ({exc.msg}); "
                "expected a JSON list or JSON Lines (one object per line)"
            ) from None
    return records


def read_records(path: PathLike | None, what: str) -> list[dict[str, Any]]:
    """A list of objects from a JSON list or a JSON Lines file (the two forms result files take)."""
    path = existing(path, what)
    text = _text(path, what)
    records = read_json(path, what, list) if text.lstrip().startswith("[") else read_jsonl(path, what)
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ScoringError(f"{path}: record {position} of {what} is a {type(record).__name__}, expected an object")
    return records


def read_table(path: PathLike | None, what: str) -> list[dict[str, str]]:
    """Rows of a TSV/CSV (or, with openpyxl installed, XLSX) sheet as dicts of strings.

    The csv module (not pandas) reads the delimited forms so every cell stays the text it is:
    pandas would turn an option reading "None" or "NA" into a missing value.
    """
    path = existing(path, what)
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xls"):
        return _read_excel(path, what)
    if suffix not in (".tsv", ".csv", ".txt"):
        raise ScoringError(f"{path}: {what} must be a .tsv, .csv or .xlsx sheet")
    csv.field_size_limit(sys.maxsize)  # MMBench sheets carry base64 images of several hundred KB per cell
    text = _text(path, what)
    try:
        reader = csv.DictReader(text.splitlines(keepends=True), delimiter="\t" if suffix != ".csv" else ",")
        rows = [dict(row) for row in reader]
    except csv.Error as exc:
        raise ScoringError(f"{path}: {what} is not a readable sheet ({exc})") from None
    if not reader.fieldnames:
        raise ScoringError(f"{path}: {what} is empty (no header row)")
    for number, row in enumerate(rows, start=2):
        if None in row:
            raise ScoringError(f"{path}: row {number} of {what} has more cells than the header")
    return [{k: ("" if v is None else v) for k, v in row.items()} for row in rows]


def _read_excel(path: Path, what: str) -> list[dict[str, str]]:
    try:
        import openpyxl  # noqa: F401  (pandas needs it for .xlsx)
        import pandas as pd
    except ImportError:
        raise ScoringError(
            f"{path}: reading {what} as .xlsx needs openpyxl (pip install openpyxl); or save the sheet as .tsv/.csv"
        ) from None
    try:
        frame = pd.read_excel(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # any reader failure means a bad input file here
        raise ScoringError(f"{path}: {what} is not a readable .xlsx sheet ({type(exc).__name__}: {exc})") from None
    return [{str(k): ("" if v is None else str(v)) for k, v in row.items()} for row in frame.to_dict("records")]


def require_columns(rows: list[dict[str, str]], columns: Iterable[str], path: PathLike, what: str) -> None:
    header = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in header]
    if missing:
        raise ScoringError(f"{path}: {what} lacks column(s) {missing}; found {sorted(header)}")


def field(record: Mapping[str, Any], key: str, path: PathLike, where: str) -> Any:
    """``record[key]``, or an error that names the file, the record and the missing key."""
    if not isinstance(record, Mapping):
        raise ScoringError(f"{path}: {where} is a {type(record).__name__}, expected an object")
    if key not in record:
        raise ScoringError(f"{path}: {where} has no '{key}' field (fields: {sorted(record)})")
    return record[key]


def id_key(value: Any, path: PathLike, where: str) -> str:
    """Ids compare as text: a JSONL ``question_id`` 12 and a sheet ``index`` "12" are the same question."""
    if isinstance(value, bool) or value is None:
        raise ScoringError(f"{path}: {where} has an invalid id {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheet readers turn integer columns into floats
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ScoringError(f"{path}: {where} has an invalid id {value!r}")


def answer_text(value: Any, path: PathLike, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # a model that answered a bare number through a JSON encoder
    raise ScoringError(f"{path}: {where} has a {type(value).__name__} answer, expected text")


def answer_field(records: list[dict[str, Any]], official: str, llava: str = "text") -> str:
    """The answer key of a prediction file: the benchmark's own result format's key, or ``text`` in
    LLaVA's own answers files (``{question_id, prompt, text, ...}`` lines), told apart by the first record."""
    if records and official not in records[0] and llava in records[0]:
        return llava
    return official


def _examples(ids: Iterable[str], limit: int = 5) -> str:
    ids = sorted(ids, key=lambda i: (len(i), i))
    shown = ", ".join(ids[:limit])
    return f"{shown}, ... ({len(ids)} in all)" if len(ids) > limit else shown


def index_predictions(
    records: list[dict[str, Any]],
    id_field: str,
    answer_field: str,
    known: Iterable[str],
    path: PathLike,
    what: str,
    *,
    ignore_unknown: bool = False,
) -> dict[str, str]:
    """Map question id -> predicted text, refusing duplicates and (unless ``ignore_unknown``, for a
    reference that ignores them) ids the annotations do not have; ignored ids stay in the map.

    Missing predictions are not an error: scorers count them as wrong and report how many.
    """
    known = set(known)
    out: dict[str, str] = {}
    duplicates, unknown = set(), set()
    for position, record in enumerate(records, start=1):
        where = f"record {position} of {what}"
        qid = id_key(field(record, id_field, path, where), path, where)
        text = answer_text(field(record, answer_field, path, where), path, where)
        if qid in out:
            duplicates.add(qid)
        elif qid not in known:
            unknown.add(qid)
        out[qid] = text
    if duplicates:
        raise ScoringError(f"{path}: {what} has more than one prediction for id(s) {_examples(duplicates)}")
    if unknown and not ignore_unknown:
        raise ScoringError(f"{path}: {what} has predictions for id(s) not in the annotations: {_examples(unknown)}")
    return out


def reject_unused(value: PathLike | None, name: str, benchmark: str) -> None:
    """A file that a benchmark does not read is an error rather than silently ignored."""
    if value is not None:
        raise ScoringError(f"{benchmark} does not use a {name} file (got {value})")


def result(benchmark: str, headline: str, value: float | None, n: int, **metrics: Any) -> dict[str, Any]:
    """The common shape of every scorer's answer: benchmark, headline, sub-metrics, then ``n``."""
    return {"benchmark": benchmark, "headline": {"name": headline, "value": value}, **metrics, "n": n}


def percent(numerator: float, denominator: int) -> float:
    return 100.0 * numerator / denominator if denominator else 0.0
