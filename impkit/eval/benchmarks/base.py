"""The one interface every benchmark implements (``Benchmark``) and what its parts exchange.

A benchmark module (``impkit/eval/benchmarks/<name>.py``) builds one ``Benchmark`` from its own
reader of the official files, prompt, scorer, twin builder and prediction writer; the registry
(``impkit.eval.benchmarks``) lists them, and every consumer (``impkit score``, ``impkit prepare``,
the twins, the evaluation runners, the GGUF evaluation) looks a benchmark up there instead of
keeping a table of its own.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from impkit.io import atomic_open, dumps_line

if TYPE_CHECKING:  # the twins import the synthetic world, which `impkit score` does not need
    from impkit.config import TwinSizes
    from impkit.eval.twins.common import Heldout, TwinFiles

# ``(annotations, predictions, questions=None, **extra)`` -> ``{"benchmark", "headline", ..., "n"}``
Scorer = Callable[..., dict[str, Any]]


@dataclass
class Prompt:
    """One line of a twin's ``prompts.jsonl``: what the runner asks, and the answer that scores full
    marks (None when the official files have no answers). ``image`` is a path (relative to the images
    folder in a twin, absolute when read from official files), or None for a text-only question.

    ``type`` is the question's type in the benchmark's own taxonomy (VQAv2's question type, GQA's
    detailed type, the POPE split, the MME subtask, the MMBench category, ...): the group within
    which the majority-answer baseline answers every question alike."""

    id: str
    image: str | None
    prompt: str
    gold: str | None
    type: str

    def line(self, benchmark: str) -> dict[str, Any]:
        return {"id": self.id, "image": self.image, "prompt": self.prompt, "type": self.type, "benchmark": benchmark}


@dataclass(frozen=True)
class Official:
    """What a reader took from a benchmark's official files, for ``impkit prepare``.

    ``source`` names the file the questions came from; ``answers`` is the file the scorer reads as
    its annotations (None: the split has no answers); ``questions`` the manifest's questions entry;
    ``ground_truth`` files written under ``<benchmark>/ground_truth/`` for scorers that read the
    ground truth beside the predictions (MME's eval tool)."""

    rows: list[Prompt]
    source: Path
    answers: Path | None
    questions: str | None = None
    ground_truth: dict[str, str] | None = None


@dataclass(frozen=True)
class ReadRequest:
    """The official inputs ``impkit prepare`` was given, as one benchmark's reader receives them."""

    annotations: Path | None
    questions: Path | None
    images: Path | None
    image_pattern: str | None
    image_dir: Path  # where images embedded in the official files are decoded to (MMBench's base64)


@dataclass(frozen=True)
class ScoreInputs:
    """What ``impkit score <benchmark>`` reads, as its ``--help`` lists it ("-": not used)."""

    annotations: str
    questions: str
    predictions: str
    note: str = ""  # a line for the help's notes, e.g. a file the benchmark does not need


@dataclass
class TwinContext:
    """What a twin builder draws from: the held-out world, the sizes, a generator per twin, and a
    memo that lets two twins share one draw (MMBench-CN asks MMBench's questions in Chinese)."""

    heldout: Heldout
    seed: int
    sizes: TwinSizes
    shared: dict[str, Any] = field(default_factory=dict)

    def rng(self, name: str) -> random.Random:
        from impkit.eval.twins.common import twin_rng

        return twin_rng(self.seed, name)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]


# ``(given, out, twin_dir)``: write the (prompt id, answer) pairs, in prompt order, to ``out``.
PredictionWriter = Callable[[Sequence[tuple[str, str]], Path, Path], None]


@dataclass(frozen=True)
class Benchmark:
    """Everything about one benchmark.

    ``predictions`` describes the prediction file as ``"<file or folder>[/...]: <content>"``; the
    part before the first ``/`` or ``:`` is the name evaluation writes answers under.
    ``submission`` writes a benchmark server's upload form beside the answers: ``(annotations,
    {prompt id: answer}, folder of the prediction file)``. ``judged``: scored by an LLM judge (open-ended answers: asked
    only with a judge, with the open-ended generation budget, and without a majority baseline).
    ``reads_annotations``: False when the scorer finds the ground truth in the prediction files.
    ``options``: the scorer's named deviations from its reference tool (keyword arguments, off by default)."""

    name: str
    label: str  # its column heading in the paper's Table 3 layout
    score: Scorer
    score_inputs: ScoreInputs
    prompt: Callable[..., str]
    read: Callable[[ReadRequest], Official]
    image_patterns: tuple[str, ...]  # official image naming, relative to the images folder, tried in order
    pattern_fields: tuple[str, ...]  # the fields an image pattern may use
    build_twin: Callable[[TwinContext], TwinFiles]
    predictions: str
    write_predictions: PredictionWriter
    submission: Callable[[Path, Mapping[str, str], Path], Any] | None = None
    judged: bool = False
    reads_annotations: bool = True
    paper_column: int | None = None  # its place among the paper's Table 3 columns; None: after them
    # Named deviations from the reference tool the scorer offers, off by default: option -> what it
    # changes. Each is a keyword argument of ``score`` (``impkit score --option NAME``).
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def prediction_file(self) -> str:
        return self.predictions.split(":")[0].split("/")[0]


def write_value(path: Path, value: Any, *, lines: bool = False) -> None:
    """A prediction file, atomically: with ``lines`` the rows one per line (JSON Lines), else indented JSON."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        if lines:
            f.writelines(dumps_line(row) for row in value)
        else:
            json.dump(value, f, ensure_ascii=False, indent=1)
            f.write("\n")


def records_writer(
    id_key: str, answer_key: str, *, ids: Callable[[str], Any] = str, lines: bool = False
) -> PredictionWriter:
    """The writer of a prediction file that is one record per answer, ``{id_key: ids(prompt id),
    answer_key: answer}``: a JSON list, or JSON Lines with ``lines``."""

    def write(given: Sequence[tuple[str, str]], out: Path, twin_dir: Path) -> None:
        rows = [{id_key: ids(qid), answer_key: text} for qid, text in given]
        write_value(out, rows, lines=lines)

    return write
