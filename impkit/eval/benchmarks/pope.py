"""POPE (random / popular / adversarial): yes/no object hallucination.

Each answer is reduced to yes/no with LLaVA-1.5's POPE rule: keep the text before the first ``.``,
delete commas, split on spaces; if a word is exactly ``No``, ``not`` or ``no`` the answer is "no",
otherwise "yes". So "No, there is not." -> no, "Yes. No." -> yes (only the first sentence counts),
and "Not really" -> yes (the reference matches whole words case-sensitively and has no ``Not``).

Per split, with "yes" as the positive class: accuracy, precision, recall, F1 and the share of "yes"
answers, all ×100. Headline: the mean F1 of the three splits ×100 (how the Imp README reports POPE).
A missing answer counts as the wrong answer (a false negative for a "yes" question, a false
positive for a "no" question) and is not counted as a "yes" in the yes-ratio.

Inputs. Annotations: a folder holding the three official question files (JSON Lines
``{question_id, image, text, label}``, one file per split, named with the split, e.g.
``coco_pope_random.json``), or one JSON Lines file whose lines also carry ``category`` (the split).
Predictions: one answers file (JSON Lines ``{question_id, text}``), or a folder with one answers file
per split named with the split. In one answers file each answer goes to the split its
``category`` names or, without one, to the only split holding its ``question_id``.

LLaVA's own answers file. LLaVA asks POPE from one question file (``llava_pope_test.jsonl``: the three
splits one after the other, ids running on across them, each line with its ``category``) and its
``answers.jsonl`` carries those ids and no category. Give that question file as ``questions`` and
the answers are split as LLaVA's ``eval_pope.py`` splits them: by the category the question file
gives each id, the k-th question of a category answering the k-th line of that split's official
file (the reference pairs answers and labels by position). Here the position is the question's
place in the question file, so answers written out of order still meet their own label, and a
question whose image differs from its official line's image is an error instead of a silent
mismatch.

Official files: ``coco_pope_{adversarial,popular,random}.json``, JSON Lines of ``{question_id,
image, text, label}``. Prompt ids are ``<split>/<question_id>``; the question type is the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impkit.eval import prompts
from impkit.eval.benchmarks.base import Benchmark, Prompt, ScoreInputs, TwinContext
from impkit.eval.benchmarks.official import Images, integer_id, one_file_reader, text
from impkit.eval.scoring.inputs import (
    PathLike,
    ScoringError,
    existing,
    field,
    id_key,
    index_predictions,
    read_jsonl,
    read_records,
    result,
)
from impkit.io import atomic_path

SPLITS = ("adversarial", "popular", "random")
_NO_WORDS = frozenset({"No", "not", "no"})


def pope_answer(text: str) -> str:
    """ "yes" or "no" by LLaVA-1.5's POPE rule (see the module docstring)."""
    first_sentence = text.split(".")[0]
    words = first_sentence.replace(",", "").split(" ")
    return "no" if any(word in _NO_WORDS for word in words) else "yes"


def split_files(folder: Path, what: str) -> dict[str, Path]:
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in (".json", ".jsonl")]
    found = {}
    for split in SPLITS:
        matches = [p for p in files if split in p.name.lower()]
        if len(matches) != 1:
            names = [p.name for p in matches] or "none"
            raise ScoringError(f"{folder}: expected one {what} file named with '{split}' (.json/.jsonl), found {names}")
        found[split] = matches[0]
    return found


def _load_labels(
    annotations: PathLike | None, images: dict[str, dict[str, str]] | None = None
) -> dict[str, dict[str, str]]:
    """split -> question id -> "yes"/"no", in file order; ``images`` (if given) is filled with
    split -> question id -> image name."""
    path = existing(annotations, "POPE questions", folder=None)
    labels: dict[str, dict[str, str]] = {split: {} for split in SPLITS}
    if path.is_dir():
        sources = [(split, file) for split, file in split_files(path, "POPE question").items()]
    else:
        sources = [(None, path)]
    for split, file in sources:
        for i, record in enumerate(read_records(file, "POPE questions"), start=1):
            where = f"question {i}"
            record_split = split or str(field(record, "category", file, where))
            if record_split not in labels:
                raise ScoringError(f"{file}: {where} has category {record_split!r}; expected one of {list(SPLITS)}")
            qid = id_key(field(record, "question_id", file, where), file, where)
            label = str(field(record, "label", file, where)).strip().lower()
            if label not in ("yes", "no"):
                raise ScoringError(f"{file}: {where} has label {label!r}; expected yes or no")
            if qid in labels[record_split]:
                raise ScoringError(f"{file}: question_id {qid} appears twice in the {record_split} split")
            labels[record_split][qid] = label
            if images is not None and "image" in record:
                images.setdefault(record_split, {})[qid] = str(record["image"])
    empty = [split for split in SPLITS if not labels[split]]
    if empty:
        raise ScoringError(f"{path}: no questions for the POPE split(s) {empty}; the headline needs all three")
    return labels


def _load_answers(predictions: PathLike, labels: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """split -> question id -> answer text."""
    path = existing(predictions, "POPE answers", folder=None)
    if path.is_dir():
        return {
            split: index_predictions(
                read_records(file, "POPE answers"), "question_id", "text", labels[split], file, "POPE answers"
            )
            for split, file in split_files(path, "POPE answers").items()
        }
    grouped: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for i, record in enumerate(read_records(path, "POPE answers"), start=1):
        where = f"answer {i}"
        if "category" in record:
            split = str(record["category"])
            if split not in grouped:
                raise ScoringError(f"{path}: {where} has category {split!r}; expected one of {list(SPLITS)}")
        else:
            qid = id_key(field(record, "question_id", path, where), path, where)
            holders = [s for s in SPLITS if qid in labels[s]]
            if not holders:
                raise ScoringError(
                    f"{path}: {where} is for question_id {qid}, which no POPE split has; "
                    "for LLaVA's answers.jsonl give LLaVA's question file (llava_pope_test.jsonl) as the questions"
                )
            if len(holders) > 1:
                raise ScoringError(
                    f"{path}: question_id {qid} is in several POPE splits {holders}; "
                    "give one answers file per split (a folder) or a 'category' field per answer"
                )
            split = holders[0]
        grouped[split].append(record)
    return {
        split: index_predictions(records, "question_id", "text", labels[split], path, f"POPE answers ({split})")
        for split, records in grouped.items()
    }


def _load_llava_answers(
    predictions: PathLike,
    questions: PathLike,
    labels: dict[str, dict[str, str]],
    images: dict[str, dict[str, str]],
) -> dict[str, dict[str, str]]:
    """split -> official question id -> answer text, for LLaVA's answers file and question file."""
    qpath = existing(questions, "LLaVA's POPE question file")
    path = existing(predictions, "POPE answers")
    if path.is_dir():
        raise ScoringError(f"{path}: with LLaVA's question file, give LLaVA's one answers file, not a folder")
    official = {split: list(labels[split]) for split in SPLITS}
    place: dict[str, tuple[str, int]] = {}  # LLaVA question id -> (split, position within the split)
    counts = dict.fromkeys(SPLITS, 0)
    for i, record in enumerate(read_records(qpath, "LLaVA's POPE questions"), start=1):
        where = f"question {i}"
        qid = id_key(field(record, "question_id", qpath, where), qpath, where)
        split = str(field(record, "category", qpath, where))
        if split not in counts:
            raise ScoringError(f"{qpath}: {where} has category {split!r}; expected one of {list(SPLITS)}")
        if qid in place:
            raise ScoringError(f"{qpath}: question_id {qid} appears twice")
        position = counts[split]
        if position >= len(official[split]):
            raise ScoringError(
                f"{qpath}: more {split} questions than the official {split} file has ({len(official[split])})"
            )
        expected = images.get(split, {}).get(official[split][position])
        if expected is not None and "image" in record and str(record["image"]) != expected:
            raise ScoringError(
                f"{qpath}: {where} ({split} question {position + 1}) asks about {record['image']}, but line "
                f"{position + 1} of the official {split} file is about {expected}; the files do not match"
            )
        place[qid] = (split, position)
        counts[split] += 1
    grouped: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for i, record in enumerate(read_records(path, "POPE answers"), start=1):
        where = f"answer {i}"
        qid = id_key(field(record, "question_id", path, where), path, where)
        if qid not in place:
            raise ScoringError(f"{path}: {where} is for question_id {qid}, which {qpath} does not have")
        split, position = place[qid]
        grouped[split].append({"question_id": official[split][position], "text": field(record, "text", path, where)})
    return {
        split: index_predictions(rows, "question_id", "text", labels[split], path, f"POPE answers ({split})")
        for split, rows in grouped.items()
    }


def split_metrics(labels: dict[str, str], answers: dict[str, str]) -> dict[str, Any]:
    tp = fp = tn = fn = yes = missing = 0
    for qid, label in labels.items():
        if qid in answers:
            said = pope_answer(answers[qid])
        else:
            said, missing = ("no" if label == "yes" else "yes"), missing + 1
        yes += qid in answers and said == "yes"
        if label == "yes":
            tp, fn = tp + (said == "yes"), fn + (said == "no")
        else:
            fp, tn = fp + (said == "yes"), tn + (said == "no")
    n = len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": 100.0 * (tp + tn) / n,
        "precision": 100.0 * precision,
        "recall": 100.0 * recall,
        "f1": 100.0 * f1,
        "yes_ratio": 100.0 * yes / n,
        "missing": missing,
        "n": n,
    }


def score_pope(
    annotations: PathLike | None, predictions: PathLike, questions: PathLike | None = None
) -> dict[str, Any]:
    """``annotations``: the folder of the three official split files (or one file with ``category``);
    ``predictions``: an answers file or a folder of them; ``questions`` (optional): LLaVA's POPE
    question file, to read LLaVA's own ``answers.jsonl`` (see the module docstring)."""
    images: dict[str, dict[str, str]] = {}
    labels = _load_labels(annotations, images)
    if questions is not None:
        answers = _load_llava_answers(predictions, questions, labels, images)
    else:
        answers = _load_answers(predictions, labels)
    splits = {split: split_metrics(labels[split], answers[split]) for split in SPLITS}
    return result(
        "pope",
        "mean_f1",
        sum(m["f1"] for m in splits.values()) / len(SPLITS),
        sum(m["n"] for m in splits.values()),
        splits=splits,
        missing=sum(m["missing"] for m in splits.values()),
    )


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "pope"
IMAGE_PATTERNS = ("{image}",)


def read_pope(folder: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[Prompt]:
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
            rows.append(Prompt(f"{split}/{qid}", image_path, prompts.short_answer(question), gold, split))
    return rows


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
    paper_column=5,
    score=score_pope,
    score_inputs=ScoreInputs(
        "folder of the 3 split question files (or one JSONL with category)",
        "LLaVA's llava_pope_test.jsonl (optional: reads LLaVA's answers.jsonl)",
        "answers JSONL, or a folder with one per split",
    ),
    prompt=prompts.short_answer,
    read=one_file_reader(NAME, read_pope),
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("image", "split", "question_id"),
    build_twin=_twin,
    predictions="answers/ folder: <split>.jsonl of {question_id, text}",
    write_predictions=write_answers,
)
