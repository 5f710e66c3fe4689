"""MME: perception (10 subtasks, max 2000) and cognition (4 subtasks, max 800).

Input is the folder the official MME eval tool reads: one ``<subtask>.txt`` per subtask with lines
``image<TAB>question<TAB>ground truth<TAB>prediction`` (LLaVA-1.5's converter writes it). The
ground truth and the predictions live in the same files, so MME takes no separate annotations.

As in the eval tool, a prediction is lowercased and read as: exactly "yes" or "no"; else "yes" if
the first four characters contain "yes", else "no" if they contain "no"; else "other", which is
wrong. So "Yes, it is" -> yes and "The answer is yes" -> other (wrong).
Per subtask: acc = share of questions right, acc+ = share of images with both questions right,
score = acc×100 + acc+×100 (max 200). The eval tool pairs consecutive lines; this groups the
lines by image instead and requires exactly two per image, which agrees on well-formed files and
refuses reordered or truncated ones. A line without a prediction column is a missing answer
(wrong, counted in ``missing``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from impkit.eval.scoring.inputs import PathLike, ScoringError, existing, reject_unused, result

# The official subtask names (file stems in the eval tool's folder).
PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def mme_answer(prediction: str) -> str:
    """ "yes", "no" or "other" by the eval tool's rule."""
    text = prediction.lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def subtask_metrics(path: Path) -> dict[str, Any]:
    images: dict[str, list[bool]] = {}
    missing = 0
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) == 3:
            cells.append("")  # no prediction written
        if len(cells) != 4:
            raise ScoringError(
                f"{path}: line {number} has {len(cells)} tab-separated columns; expected image, question, gt, prediction"
            )
        image, _question, gold, prediction = cells
        gold = gold.strip().lower()
        if gold not in ("yes", "no"):
            raise ScoringError(f"{path}: line {number} has ground truth {gold!r}; expected yes or no")
        if not prediction.strip():
            missing += 1
        images.setdefault(image, []).append(mme_answer(prediction.strip()) == gold)
    if not images:
        raise ScoringError(f"{path}: no questions")
    odd = [image for image, hits in images.items() if len(hits) != 2]
    if odd:
        raise ScoringError(f"{path}: image {odd[0]} has {len(images[odd[0]])} questions; MME has exactly two per image")
    questions = 2 * len(images)
    acc = 100.0 * sum(sum(hits) for hits in images.values()) / questions
    acc_plus = 100.0 * sum(all(hits) for hits in images.values()) / len(images)
    return {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "missing": missing, "n": questions}


def score_mme(annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None) -> dict[str, Any]:
    """``predictions``: the eval-tool folder of ``<subtask>.txt`` files. ``annotations`` is not
    needed; if given it must be that same folder."""
    reject_unused(questions, "questions", "mme")
    folder = existing(predictions, "MME results folder", folder=True)
    if annotations is not None and Path(annotations).resolve() != folder.resolve():
        raise ScoringError(
            f"mme reads ground truth and predictions from the one eval-tool folder ({folder}); "
            f"leave out the annotations path or give the same folder (got {annotations})"
        )
    files = {p.stem: p for p in sorted(folder.glob("*.txt"))}
    unknown = sorted(set(files) - set(PERCEPTION) - set(COGNITION))
    if unknown:
        raise ScoringError(f"{folder}: unknown MME subtask file(s) {unknown}; known: {list(PERCEPTION + COGNITION)}")
    absent = [name for name in PERCEPTION if name not in files]
    if absent:
        raise ScoringError(f"{folder}: perception subtask file(s) missing: {[name + '.txt' for name in absent]}")
    subtasks = {name: subtask_metrics(files[name]) for name in PERCEPTION + COGNITION if name in files}
    perception = sum(subtasks[name]["score"] for name in PERCEPTION)
    have_cognition = all(name in subtasks for name in COGNITION)
    return result(
        "mme",
        "perception",
        perception,
        sum(m["n"] for m in subtasks.values()),
        perception=perception,
        # the sum of four is only meaningful complete; a partial sum would look like a low score
        cognition=sum(subtasks[name]["score"] for name in COGNITION) if have_cognition else None,
        missing_cognition_subtasks=[name for name in COGNITION if name not in subtasks],
        subtasks=subtasks,
        missing=sum(m["missing"] for m in subtasks.values()),
    )
