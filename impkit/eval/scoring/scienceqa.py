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
ScienceQA problem id as ``question_id``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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


def score_sqa(annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None) -> dict[str, Any]:
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

    preds = index_predictions(
        read_records(predictions, "ScienceQA answers"), "question_id", "text", test, predictions, "ScienceQA answers"
    )
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
    return result(
        "sqa", "img_accuracy", percent(correct, len(image_items)), len(image_items), failed=failed, missing=missing
    )
