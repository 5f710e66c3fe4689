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

Official files: the eval tool's folder of ``<subtask>.txt`` lines (``image<TAB>question<TAB>answer``;
a fourth prediction column is dropped), or the release folder itself (``<subtask>/`` holding the
question files ``<image stem>.txt`` of ``question<TAB>answer`` lines, next to the images or in
``questions_answers_YN/`` beside ``images/``). All ten perception subtasks are required, as the scorer
requires them. Prompt ids are ``<subtask>/<line>`` in the ground-truth lines, which ``impkit
prepare`` writes as ``mme/ground_truth/<subtask>.txt`` and the prediction writer fills.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impkit.eval import prompts
from impkit.eval.benchmarks.base import Benchmark, Official, Prompt, ReadRequest, ScoreInputs, TwinContext
from impkit.eval.benchmarks.official import IMAGE_SUFFIXES, Images, absolute, one_source
from impkit.eval.scoring.inputs import PathLike, ScoringError, existing, reject_unused, result
from impkit.io import atomic_path

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


if TYPE_CHECKING:
    from impkit.eval.twins.common import TwinFiles

NAME = "mme"
IMAGE_PATTERNS = ("{subtask}/{image}", "{subtask}/images/{image}")  # five subtasks keep images in images/
SUBTASKS = PERCEPTION + COGNITION
QA_FOLDER, IMAGE_FOLDER = "questions_answers_YN", "images"


@dataclass(frozen=True)
class MmeLine:
    """One line of the eval tool's ``<subtask>.txt``: the image's name there, question, answer."""

    image: str
    question: str
    answer: str
    source: str  # file and line, for errors

    def text(self) -> str:
        return f"{self.image}\t{self.question}\t{self.answer}"


def _answer(value: str, where: str) -> str:
    answer = value.strip()
    if answer.lower() not in ("yes", "no"):
        raise ScoringError(f"{where} has ground truth {answer!r}; expected Yes or No")
    return answer


def _utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _eval_tool(files: dict[str, Path]) -> dict[str, list[MmeLine]]:
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
            lines.append(MmeLine(cells[0], cells[1], _answer(cells[2], where), where))
        out[subtask] = lines
    return out


def _release(root: Path, subtasks: list[str]) -> dict[str, list[MmeLine]]:
    out: dict[str, list[MmeLine]] = {}
    for subtask in subtasks:
        folder = root / subtask
        qa_dir = folder / QA_FOLDER if (folder / QA_FOLDER).is_dir() else folder
        image_dir = folder / IMAGE_FOLDER if (folder / IMAGE_FOLDER).is_dir() else folder
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
                lines.append(MmeLine(names[path.stem], cells[0], _answer(cells[1], where), where))
        if orphans:
            raise ScoringError(
                f"{qa_dir}: {len(orphans)} question file(s) have no image of the same name in {image_dir} "
                f"(e.g. {orphans[0]})"
            )
        out[subtask] = lines
    return out


def read_mme_lines(folder: PathLike) -> dict[str, list[MmeLine]]:
    """Subtask -> its ground-truth lines, from the eval tool's folder or the release folder."""
    root = existing(folder, "MME folder", folder=True)
    txt = {p.stem: p for p in sorted(root.glob("*.txt"))}
    dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name in SUBTASKS)
    if set(txt) & set(SUBTASKS):
        unknown = sorted(set(txt) - set(SUBTASKS))
        if unknown:
            raise ScoringError(f"{root}: unknown MME subtask file(s) {unknown}; known: {list(SUBTASKS)}")
        found = _eval_tool({name: txt[name] for name in SUBTASKS if name in txt})
    elif dirs:
        found = _release(root, [name for name in SUBTASKS if name in dirs])
    else:
        raise ScoringError(
            f"{root}: neither the eval tool's <subtask>.txt files nor the release's <subtask>/ folders "
            f"(subtasks: {list(SUBTASKS)})"
        )
    absent = [name for name in PERCEPTION if not found.get(name)]
    if absent:
        raise ScoringError(f"{root}: no questions for the MME perception subtask(s) {absent}; the score needs all ten")
    return {name: lines for name, lines in found.items() if lines}


def _rows(
    lines: dict[str, list[MmeLine]], images: PathLike | None, image_pattern: str | None, root: Path
) -> list[Prompt]:
    resolve = Images(NAME, IMAGE_PATTERNS, images, image_pattern, root)
    rows = []
    for subtask, subtask_lines in lines.items():
        for number, line in enumerate(subtask_lines):
            try:
                prompt = prompts.mme(line.question)
            except ValueError:
                raise ScoringError(f"{line.source}: the question does not end with {prompts.MME_YES_NO!r}") from None
            image = resolve(subtask=subtask, image=line.image)
            rows.append(Prompt(f"{subtask}/{number}", image, prompt, line.answer, subtask))
    return rows


def read_mme(folder: PathLike, images: PathLike | None, *, image_pattern: str | None = None) -> list[Prompt]:
    """MME's questions; ids ``<subtask>/<line number>`` in the ground-truth lines (``read_mme_lines``)."""
    return _rows(read_mme_lines(folder), images, image_pattern, Path(folder))


def _read(request: ReadRequest) -> Official:
    if request.questions is not None:
        raise ScoringError(f"mme does not use a questions file (got {request.questions})")
    source = absolute(one_source(NAME, request.annotations, request.questions))
    lines = read_mme_lines(source)
    ground_truth = {
        f"{subtask}.txt": "".join(line.text() + "\n" for line in subtask_lines)
        for subtask, subtask_lines in lines.items()
    }
    rows = _rows(lines, request.images, request.image_pattern, source)
    return Official(rows, source, source, ground_truth=ground_truth)


def _twin(ctx: TwinContext) -> TwinFiles:
    from impkit.eval.twins import yes_no

    return yes_no.mme(ctx.heldout, ctx.rng(NAME), ctx.sizes.mme_images)


def write_results(given: Sequence[tuple[str, str]], out: Path, twin_dir: Path) -> None:
    """The ground-truth lines with the answer appended, as LLaVA-1.5's converter writes them."""
    by_id = dict(given)
    from impkit.eval.twins.common import dump

    with atomic_path(out) as folder:
        folder.mkdir()
        for gt in sorted((twin_dir / "ground_truth").glob("*.txt")):
            lines = gt.read_text(encoding="utf-8").splitlines()
            filled = []
            for number, line in enumerate(lines):
                answer = by_id.get(f"{gt.stem}/{number}")
                flat = None if answer is None else " ".join(answer.split())
                filled.append(line if flat is None else f"{line}\t{flat}")
            dump(folder / gt.name, "".join(line + "\n" for line in filled))


BENCHMARK = Benchmark(
    name=NAME,
    label="MME-P",
    paper_column=6,
    score=score_mme,
    score_inputs=ScoreInputs(
        "not used (or the same folder)",
        "-",
        "eval-tool folder of <subtask>.txt",
        note="ground truth and predictions are in the same eval-tool files, so --annotations is not needed "
        "(if given it must be the --predictions folder).",
    ),
    prompt=prompts.mme,
    read=_read,
    image_patterns=IMAGE_PATTERNS,
    pattern_fields=("subtask", "image"),
    build_twin=_twin,
    predictions="results/ folder: <subtask>.txt with the prediction as 4th column",
    write_predictions=write_results,
    reads_annotations=False,
)
