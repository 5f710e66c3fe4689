"""What the readers of the benchmarks' official files share: finding images by a benchmark's file
naming, checking they exist, and the one-line errors for malformed records.

Images are found with a format pattern per benchmark, relative to the images folder (each
benchmark's ``image_patterns``: its official file naming); ``impkit prepare --image-pattern``
replaces it, with the fields the benchmark's ``pattern_fields`` lists. Every referenced image must
exist, so a wrong folder or pattern fails at preparation rather than halfway through an evaluation.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from impkit.eval.benchmarks.base import Official, Prompt, ReadRequest
from impkit.eval.scoring.inputs import PathLike, ScoringError, existing, field

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
EXAMPLES = 3  # how many missing images an error names


def absolute(path: PathLike) -> Path:
    return Path(os.path.abspath(path))


class Images:
    """Image paths from a benchmark's pattern(s), relative to the images folder."""

    def __init__(
        self,
        benchmark: str,
        defaults: tuple[str, ...],
        images: PathLike | None,
        pattern: str | None,
        source: Path,
        hint: str = "",
    ):
        self.benchmark, self.source, self.hint = benchmark, source, hint
        self.patterns = (pattern,) if pattern else defaults
        self.folder = None if images is None else absolute(existing(images, "images folder", folder=True))

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


def check_images(rows: list[Prompt], source: PathLike, images: PathLike | None) -> None:
    """Every image the rows name must be a file; else one error with the count and a few examples."""
    named = list(dict.fromkeys(row.image for row in rows if row.image))
    missing = [path for path in named if not os.path.isfile(path)]
    if missing:
        shown = ", ".join(missing[:EXAMPLES]) + (", ..." if len(missing) > EXAMPLES else "")
        raise ScoringError(
            f"{source}: {len(missing)} of {len(named)} images are missing under {images} ({shown}); "
            "check the images folder and the image pattern"
        )


def text(value: Any, path: Path, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise ScoringError(f"{path}: {where} has a {type(value).__name__} '{key}', expected text")
    return value


def most_common(answers: list[str], key: Callable[[str], str] = lambda a: a) -> str | None:
    """The answer whose ``key`` is the most common (ties: met first), in its most common spelling."""
    if not answers:
        return None
    counts = Counter(key(a) for a in answers)
    top = max(counts.values())
    winner = next(key(a) for a in answers if counts[key(a)] == top)
    spellings = Counter(a for a in answers if key(a) == winner)
    best = max(spellings.values())
    return next(a for a in answers if key(a) == winner and spellings[a] == best)


def integer_id(qid: str, path: Path, where: str) -> str:
    """Ids the result files write as integers (VQAv2, TextVQA, POPE, MMBench)."""
    try:
        return str(int(float(qid)))
    except ValueError:
        raise ScoringError(f"{path}: {where} has id {qid!r}; expected an integer") from None


def records(data: Any, key: str, path: Path) -> list[Any]:
    found = field(data, key, path, "the file")
    if not isinstance(found, list):
        raise ScoringError(f"{path}: '{key}' must be a list")
    return found


def one_source(benchmark: str, annotations: PathLike | None, questions: PathLike | None) -> Path:
    """The single official file (or folder) of a benchmark that has one: given as the annotations,
    or, for a split without answers, as the questions."""
    if annotations is not None and questions is not None and absolute(annotations) != absolute(questions):
        raise ScoringError(f"{benchmark} reads one official file: give it as the annotations (got two paths)")
    given = annotations if annotations is not None else questions
    if given is None:
        raise ScoringError(f"{benchmark}: give the official file (annotations)")
    return Path(given)


def one_file_reader(benchmark: str, read: Callable[..., list[Prompt]]) -> Callable[[ReadRequest], Official]:
    """The ``impkit prepare`` reader of a benchmark whose questions and answers are one official file
    (or folder): ``read(path, images, image_pattern=...)``; the file is also what the scorer reads."""

    def read_request(request: ReadRequest) -> Official:
        source = absolute(one_source(benchmark, request.annotations, request.questions))
        return Official(read(source, request.images, image_pattern=request.image_pattern), source, source)

    return read_request
