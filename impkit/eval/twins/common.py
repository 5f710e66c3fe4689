"""What every benchmark twin shares: the held-out world as typed specs, seeded generators, the
simulated human answers of the VQA-style benchmarks, and the rows a twin hands to the writer."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impkit.data.synth import language as lang
from impkit.data.synth.scene import POSITIONS, SHAPES, WORDS, Chart, Scene, SceneObject, Spec, TextImage
from impkit.eval.benchmarks.base import Prompt
from impkit.eval.scoring.vqa import NUMBER_WORDS as NORMALISED_NUMBERS
from impkit.eval.scoring.vqa import normalize_answer
from impkit.io import dumps_line

MANIFEST = "twins.json"


@dataclass(frozen=True)
class HeldoutImage:
    index: int  # line number in scenes.jsonl: a stable integer image id
    image: str  # path relative to the held-out images folder
    spec: Spec

    @property
    def stem(self) -> str:
        """The image path without its extension (GQA/TextVQA-style image ids)."""
        return self.image.rsplit(".", 1)[0]


@dataclass
class Heldout:
    images: list[HeldoutImage]

    def of_kind(self, kind: type) -> list[HeldoutImage]:
        return [item for item in self.images if isinstance(item.spec, kind)]

    @property
    def scenes(self) -> list[HeldoutImage]:
        return self.of_kind(Scene)

    @property
    def texts(self) -> list[HeldoutImage]:
        return self.of_kind(TextImage)

    @property
    def charts(self) -> list[HeldoutImage]:
        return self.of_kind(Chart)


def spec_from_row(row: dict[str, Any]) -> Spec:
    """Rebuild a spec from its ``scenes.jsonl`` row (the inverse of the specs' ``to_dict``)."""
    kind = row.get("kind")
    if kind == "scene":
        objects = tuple(
            SceneObject(o["shape"], o["colour"], o["size"], o["cell"][0], o["cell"][1], tuple(o["bbox"]))
            for o in row["objects"]
        )
        return Scene(row["background"], tuple(row["background_rgb"]), objects)
    if kind == "text":
        # Layout (width, offset) is not recorded and no question depends on it.
        return TextImage(
            row["word"], row["text_colour"], row["frame"], row["background"], tuple(row["background_rgb"]), 0.0, (0, 0)
        )
    if kind == "chart":
        return Chart(
            row["chart_type"], tuple(row["labels"]), tuple(row["values"]), row["colour"], tuple(row["background_rgb"])
        )
    raise ValueError(f"unknown held-out image kind {kind!r}")


def load_heldout(heldout_dir: Path) -> Heldout:
    """The held-out split's ground truth (``scenes.jsonl``), checking every image is on disk."""
    heldout_dir = Path(heldout_dir)
    rows_path, images_dir = heldout_dir / "scenes.jsonl", heldout_dir / "images"
    if not rows_path.is_file():
        raise FileNotFoundError(f"held-out ground truth not found: {rows_path}")
    images = []
    for number, line in enumerate(rows_path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            spec = spec_from_row(row)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"{rows_path}: line {number + 1} is not a held-out image row ({exc!r})") from None
        if not (images_dir / row["image"]).is_file():
            raise FileNotFoundError(f"{rows_path}: line {number + 1} names a missing image {images_dir / row['image']}")
        images.append(HeldoutImage(number, row["image"], spec))
    if not images:
        raise ValueError(f"{rows_path}: no held-out images")
    return Heldout(images)


def twin_rng(seed: int, benchmark: str) -> random.Random:
    """A generator private to one twin (stable across Python runs), so resizing one twin never
    changes another."""
    digest = hashlib.sha256(f"impkit-twins/{seed}/{benchmark}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def pick(rng: random.Random, pool: Sequence[HeldoutImage], n: int) -> list[HeldoutImage]:
    """Up to ``n`` distinct images in a seeded order."""
    return rng.sample(list(pool), min(n, len(pool)))


class Jsonl(list):
    """Rows written one JSON object per line (POPE's question files are JSON Lines named .json)."""


@dataclass(frozen=True)
class Table:
    """Rows written as a tab-separated sheet with a header (MMBench's TSV)."""

    columns: tuple[str, ...]
    rows: list[dict[str, str]]


@dataclass
class TwinFiles:
    """A twin's output: official files (relative path -> JSON value, ``Jsonl``, ``Table`` or raw
    text), its prompts, and how ``impkit score`` is called on it."""

    files: dict[str, Any] = field(default_factory=dict)
    prompts: list[Prompt] = field(default_factory=list)
    annotations: str = ""  # relative to the twin's folder
    questions: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def dump(path: Path, value: Any) -> None:
    """One twin file: raw text as it is, ``Jsonl`` one object per line, ``Table`` as a TSV with a
    header, anything else as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(value, str):
        text = value
    elif isinstance(value, Jsonl):
        text = "".join(dumps_line(row) for row in value)
    elif isinstance(value, Table):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=value.columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(value.rows)
        text = buffer.getvalue()
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def read_prompts(twin_dir: Path) -> list[dict[str, Any]]:
    """A twin's ``prompts.jsonl`` rows."""
    text = (Path(twin_dir) / "prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- answer types
def vqa_answer_type(answer: str) -> str:
    """VQAv2's three answer types."""
    if answer in ("yes", "no"):
        return "yes/no"
    return "number" if answer.isdigit() else "other"


# --------------------------------------------------------------------------- simulated humans
# Real answers that differ from the canonical one and that the normaliser does *not* merge: they
# are the honest disagreement of VQA annotators ("round" for a circle), counted as non-matching.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("round", "ring"),
    "square": ("rectangle", "box"),
    "triangle": ("pyramid",),
    "purple": ("violet",),
    "orange": ("gold",),
    "green": ("lime",),
    "blue": ("navy",),
    "red": ("pink",),
    "yellow": ("gold",),
    "large": ("big",),
    "small": ("tiny", "little"),
    "yes": ("yeah", "yep"),
    "no": ("nope",),
    "top left": ("upper left",),
    "top right": ("upper right",),
    "center": ("middle",),
    "top": ("upper",),
    "bottom": ("lower",),
    "bottom left": ("lower left",),
    "bottom right": ("lower right",),
    "black": ("dark",),
    "dark blue": ("navy",),
    "dark red": ("maroon",),
    "dark green": ("green",),
}
_DIGIT_WORDS = {digit: word for word, digit in NORMALISED_NUMBERS.items() if word != "none"}


def surface_variants(answer: str) -> list[str]:
    """Ways annotators write ``answer`` that the VQA normaliser maps back onto it: casing, a final
    period, a leading article, number words, hyphens (benchmarks.md, "VQA answer normalisation")."""
    variants = [answer.capitalize(), answer.upper(), answer + "."]
    if answer in _DIGIT_WORDS:
        variants += [_DIGIT_WORDS[answer], _DIGIT_WORDS[answer].capitalize()]
    elif answer in SHAPES or answer in WORDS or answer in POSITIONS:  # nouns take an article
        variants += [f"the {answer}", f"{lang.article(answer)} {answer}"]
    if " " in answer:
        variants.append(answer.replace(" ", "-"))
    target = normalize_answer(answer)
    return [v for v in dict.fromkeys(variants) if v != answer and normalize_answer(v) == target]


def human_answers(
    rng: random.Random, gold: str, wrong: Sequence[str], *, variants: bool = True
) -> list[tuple[str, str]]:
    """Ten (answer, confidence) pairs with realistic disagreement.

    Six to ten of them normalise to ``gold`` (a majority, so the gold answer always scores 1.0 and
    about 0.6-0.9 of the questions are unanimous, as in VQAv2); the rest are synonyms or wrong
    answers. ``variants=False`` keeps the agreeing answers literally equal to ``gold`` (VizWiz:
    its scorer does not normalise the human answers, and its answers are already lowercase).
    """
    agreeing = rng.choices((10, 9, 8, 7, 6), weights=(30, 28, 22, 13, 7))[0]
    forms = surface_variants(gold) if variants else []
    answers: list[tuple[str, str]] = []
    for _ in range(agreeing):
        answers.append((rng.choice(forms) if forms and rng.random() < 0.3 else gold, "yes"))
    target = normalize_answer(gold)
    others = [w for w in wrong if normalize_answer(w) != target]
    synonyms = [s for s in SYNONYMS.get(gold, ()) if normalize_answer(s) != target]
    for _ in range(10 - agreeing):
        if synonyms and (rng.random() < 0.5 or not others):
            answers.append((rng.choice(synonyms), "maybe"))
        elif others:
            answers.append((rng.choice(others), rng.choice(("maybe", "no"))))
        else:
            answers.append(("i don't know", "no"))
    rng.shuffle(answers)
    return answers


def wrong_pool(qa: lang.QA) -> list[str]:
    return [d for d in qa.domain if d != qa.answer]


def usable(qa: lang.QA | None) -> bool:
    """A short answer the normaliser does not erase (a first letter "a" is an article to it)."""
    return qa is not None and bool(normalize_answer(qa.answer))
