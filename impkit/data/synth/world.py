"""Generate the whole synthetic world: images, LLaVA-format record families, corpora, held-out split.

Every family draws from its own ``random.Random`` derived from (seed, family name), so resizing
one family never reshuffles another, and the same config always yields byte-identical files.
Output directories are built in temporary siblings and renamed into place, and ``world.json``
is written last: its presence means the world is complete.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from impkit.config import WorldConfig
from impkit.data.synth import language as lang
from impkit.data.synth.render import render
from impkit.data.synth.scene import (
    BACKGROUNDS,
    CHART_LABELS,
    PALETTE,
    POSITIONS,
    SHAPES,
    SIZES,
    TEXT_COLOURS,
    WORDS,
    Scene,
    Spec,
    TextImage,
    sample_any,
    sample_chart,
    sample_scene,
    sample_text_image,
)
from impkit.io import atomic_open, atomic_path, dumps_line, write_json
from impkit.progress import progress as progress_bar

GENERATOR_VERSION = "1"
IMAGE_DIRS = {"scene": "scenes", "text": "text", "chart": "charts"}

# Record families in generation (and file) order; LLaVA-Pretrain and ALLaVA ship JSON lists.
RECORD_FAMILIES = (
    "captions",
    "vqa",
    "existence",
    "multiple_choice",
    "text_reading",
    "textcaps",
    "charts",
    "conversations",
    "detailed",
    "allava",
    "text_only",
)
JSON_LIST_FAMILIES = ("captions", "allava")


def record_file(family: str) -> str:
    return f"sources/{family}.json" if family in JSON_LIST_FAMILIES else f"sources/{family}.jsonl"


def family_rng(seed: int, name: str) -> random.Random:
    """A generator private to one family, stable across Python runs (no salted ``hash()``)."""
    digest = hashlib.sha256(f"impkit-world/{seed}/{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def pixel_digest(pixels: bytes) -> bytes:
    return hashlib.sha1(pixels).digest()


@dataclass
class WorldSummary:
    out_dir: Path
    records: dict[str, int]  # per record family
    images: dict[str, int]  # training images per kind (scene, text, chart)
    heldout_images: dict[str, int]
    heldout_questions: int
    lm_corpus_lines: int
    vision_pairs: int

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    @property
    def total_images(self) -> int:
        return sum(self.images.values()) + sum(self.heldout_images.values())


class ImageStore:
    """Renders specs as PNGs under ``root`` and keeps their ground truth and pixel hashes."""

    def __init__(self, root: Path, image_size: int, forbidden: frozenset[bytes] = frozenset()):
        self.root = root
        self.image_size = image_size
        self.forbidden = forbidden  # pixel hashes this store must never reproduce
        self.rows: list[dict[str, Any]] = []
        self.digests: set[bytes] = set()
        self.counts: Counter[str] = Counter()
        for sub in IMAGE_DIRS.values():
            (root / sub).mkdir(parents=True, exist_ok=True)

    def add(self, spec: Spec, name: str) -> str:
        image = render(spec, self.image_size)
        return self._save(spec, image, name)

    def add_unseen(self, sample: Callable[[], Spec], name: str) -> tuple[str, Spec]:
        """Sample until the render matches no forbidden or already stored image, then save it."""
        for _ in range(1000):
            spec = sample()
            image = render(spec, self.image_size)
            digest = pixel_digest(image.tobytes())
            if digest not in self.forbidden and digest not in self.digests:
                return self._save(spec, image, name, digest), spec
        raise RuntimeError("could not sample an image distinct from all training images")

    def _save(self, spec: Spec, image: Any, name: str, digest: bytes | None = None) -> str:
        rel = f"{IMAGE_DIRS[spec.kind]}/{name}.png"
        image.save(self.root / rel, format="PNG")
        self.digests.add(digest or pixel_digest(image.tobytes()))
        self.rows.append({"image": rel, **spec.to_dict()})
        self.counts[spec.kind] += 1
        return rel


def image_record(record_id: str, image: str, turns: list[tuple[str, str]]) -> dict[str, Any]:
    """LLaVA record: ``<image>`` once, at the start of the first human turn."""
    conversations = []
    for i, (question, answer) in enumerate(turns):
        conversations.append({"from": "human", "value": f"<image>\n{question}" if i == 0 else question})
        conversations.append({"from": "gpt", "value": answer})
    return {"id": record_id, "image": image, "conversations": conversations}


def text_record(record_id: str, turns: list[tuple[str, str]]) -> dict[str, Any]:
    conversations = []
    for question, answer in turns:
        conversations += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return {"id": record_id, "conversations": conversations}


@dataclass
class _Context:
    image_size: int
    store: ImageStore
    tick: Callable[[], Any]
    text_images: list[tuple[str, TextImage]] = field(default_factory=list)  # shared with textcaps


Family = Callable[[_Context, random.Random, int], list[dict[str, Any]]]


# draws one image's spec and its dialogue turns: (rng, index in the family) -> (spec, turns)
Maker = Callable[[random.Random, int], tuple[Spec, list[tuple[str, str]]]]


def _per_image(make: Maker, family: str) -> Family:
    """A family of one fresh image per record; ``make`` returns the spec and the dialogue turns."""

    def generate(ctx: _Context, rng: random.Random, n: int) -> list[dict[str, Any]]:
        records = []
        for i in range(n):
            spec, turns = make(rng, i)
            name = f"{family}-{i:06d}"
            records.append(image_record(name, ctx.store.add(spec, name), turns))
            ctx.tick()
        return records

    return generate


def _balanced_flags(rng: random.Random, n: int) -> list[bool]:
    """Exactly half True (rounded up), shuffled: existence answers are balanced, not just on average."""
    flags = [i % 2 == 0 for i in range(n)]
    rng.shuffle(flags)
    return flags


def _per_image_makers(seed: int, image_size: int, sizes: Any) -> dict[str, Maker]:
    """The families of one new image per record: each maker draws the image's spec and its turns."""

    def captions(rng: random.Random, i: int):
        spec = sample_any(rng, image_size, (0.7, 0.15, 0.15))
        return spec, [(rng.choice(lang.CAPTION_PROMPTS), lang.caption(rng, spec))]

    def vqa(rng: random.Random, i: int):
        scene = sample_scene(rng, image_size)
        qa = lang.scene_question(rng, scene)
        return scene, [(qa.question + lang.SHORT_ANSWER, qa.answer)]

    existence_flags = _balanced_flags(family_rng(seed, "existence/answers"), sizes.existence)

    def existence(rng: random.Random, i: int):
        scene = sample_scene(rng, image_size)
        qa = lang.existence_question(rng, scene, present=existence_flags[i])
        return scene, [(qa.question + lang.SHORT_ANSWER, qa.answer)]

    def multiple_choice(rng: random.Random, i: int):
        scene = sample_scene(rng, image_size)
        qa = lang.scene_question(rng, scene, kinds=("colour", "shape", "count", "position"))
        question, letter = lang.multiple_choice(rng, qa)
        return scene, [(question, letter)]

    def charts(rng: random.Random, i: int):
        chart = sample_chart(rng)
        qa = lang.chart_question(rng, chart)
        return chart, [(qa.question + lang.SHORT_ANSWER, qa.answer)]

    def conversations(rng: random.Random, i: int):
        scene = sample_scene(rng, image_size)
        target = rng.randint(2, 4)
        turns: list[tuple[str, str]] = []
        for _ in range(4 * target):  # retries, so that no question repeats within a dialogue
            qa = lang.scene_question(rng, scene)
            if all(qa.question != q for q, _ in turns):
                turns.append((qa.question, qa.sentence))
            if len(turns) == target:
                break
        return scene, turns

    def detailed(rng: random.Random, i: int):
        spec = sample_any(rng, image_size, (0.8, 0.1, 0.1))
        return spec, [(rng.choice(lang.DETAIL_PROMPTS), lang.describe(rng, spec))]

    def allava(rng: random.Random, i: int):
        spec = sample_any(rng, image_size, (0.75, 0.1, 0.15))
        turns = [lang.open_exchange(rng, spec)]
        if rng.random() < 0.25:  # some ALLaVA-style dialogues carry a short follow-up
            qa = lang.image_question(rng, spec)
            turns.append((qa.question, qa.sentence))
        return spec, turns

    return {
        "captions": captions,
        "vqa": vqa,
        "existence": existence,
        "multiple_choice": multiple_choice,
        "charts": charts,
        "conversations": conversations,
        "detailed": detailed,
        "allava": allava,
    }


def _text_reading(ctx: _Context, rng: random.Random, n: int) -> list[dict[str, Any]]:
    records = []
    for i in range(n):
        spec = sample_text_image(rng)
        name = f"text_reading-{i:06d}"
        rel = ctx.store.add(spec, name)
        ctx.text_images.append((rel, spec))
        qa = lang.text_question(rng, spec)
        records.append(image_record(name, rel, [(qa.question + lang.SHORT_ANSWER, qa.answer)]))
        ctx.tick()
    return records


def _textcaps(ctx: _Context, rng: random.Random, n: int) -> list[dict[str, Any]]:
    # Captions of the text_reading images themselves (TextCaps captions TextVQA's images), so
    # dropping this family leaves those images to text_reading alone.
    pool = ctx.text_images
    records = []
    for i in range(n):
        name = f"textcaps-{i:06d}"
        if pool:
            rel, spec = pool[(i * len(pool)) // n] if n <= len(pool) else pool[i % len(pool)]
        else:  # no text_reading family: the captions need text images of their own
            spec = sample_text_image(rng)
            rel = ctx.store.add(spec, name)
        turns = [(rng.choice(lang.CAPTION_PROMPTS), lang.caption(rng, spec))]
        records.append(image_record(name, rel, turns))
        ctx.tick()
    return records


def _text_only(ctx: _Context, rng: random.Random, n: int) -> list[dict[str, Any]]:
    # Resample exact repeats: identical text-only records would only be dropped again by the
    # content deduplication of the data assembly.
    records, seen = [], set()
    for i in range(n):
        for _ in range(20):
            turns = [lang.text_only_exchange(rng) for _ in range(1 if rng.random() < 0.8 else 2)]
            if tuple(turns) not in seen:
                break
        seen.add(tuple(turns))
        records.append(text_record(f"text_only-{i:06d}", turns))
        ctx.tick()
    return records


def _families(seed: int, image_size: int, sizes: Any) -> dict[str, Family]:
    per_image = _per_image_makers(seed, image_size, sizes)
    families: dict[str, Family] = {name: _per_image(make, name) for name, make in per_image.items()}
    families.update(text_reading=_text_reading, textcaps=_textcaps, text_only=_text_only)
    return families


# --------------------------------------------------------------------------- held-out split
HELDOUT_SCENE_TYPES = ("colour", "shape", "count", "position", "size", "existence")


def heldout_questions(rng: random.Random, spec: Spec) -> list[lang.QA]:
    """A few plain questions (no answer-format suffix) of distinct types about one image."""
    qas: list[lang.QA] = []
    if isinstance(spec, Scene):
        for qtype in rng.sample(HELDOUT_SCENE_TYPES, 3):
            if qtype == "existence":
                qa = lang.existence_question(rng, spec, present=rng.random() < 0.5)
            elif qtype == "position" and rng.random() < 0.5 and len(spec.objects) > 1:
                qa = lang.relation_question(rng, spec)
            else:
                qa = lang.SCENE_QUESTIONS[qtype](rng, spec)
            if qa is not None:
                qas.append(qa)
        return qas
    make = lang.text_question if isinstance(spec, TextImage) else lang.chart_question
    if isinstance(spec, TextImage):
        qas.append(lang.QA("What word is written in the image?", spec.word, "", "text"))
    for _ in range(8):
        qa = make(rng, spec)
        # Distinct answers too: a second wording of the word question would add nothing.
        if len(qas) < 2 and all(qa.question != q.question and qa.answer != q.answer for q in qas):
            qas.append(qa)
    return qas


def _generate_heldout(cfg: WorldConfig, root: Path, forbidden: frozenset[bytes], tick: Callable[[], Any]):
    store = ImageStore(root / "images", cfg.image_size, forbidden)
    question_rng = family_rng(cfg.heldout_seed, "heldout/questions")
    questions: list[dict[str, Any]] = []
    plan = (
        ("scenes", cfg.sizes.heldout_scenes, lambda r: sample_scene(r, cfg.image_size)),
        ("charts", cfg.sizes.heldout_charts, sample_chart),
        ("text", cfg.sizes.heldout_text, sample_text_image),
    )
    for kind, n, sampler in plan:
        rng = family_rng(cfg.heldout_seed, f"heldout/{kind}")
        for i in range(n):
            rel, spec = store.add_unseen(lambda sampler=sampler, rng=rng: sampler(rng), f"{i:06d}")
            for qa in heldout_questions(question_rng, spec):
                questions.append(
                    {
                        "id": f"heldout-{len(questions):06d}",
                        "image": rel,
                        "question": qa.question,
                        "answer": qa.answer,
                        "type": qa.qtype,
                    }
                )
            tick()
    _write_jsonl(root / "scenes.jsonl", store.rows)
    _write_jsonl(root / "questions.jsonl", questions)
    return store, questions


# --------------------------------------------------------------------------- writing
def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(dumps_line(row) for row in rows)


def _vocabulary() -> dict[str, Any]:
    return {
        "palette": {name: list(rgb) for name, rgb in PALETTE.items()},
        "shapes": list(SHAPES),
        "sizes": list(SIZES),
        "positions": list(POSITIONS),
        "backgrounds": {name: list(rgb) for name, rgb in BACKGROUNDS.items()},
        "text_colours": {name: list(rgb) for name, rgb in TEXT_COLOURS.items()},
        "words": list(WORDS),
        "chart_labels": list(CHART_LABELS),
    }


def generate_world(cfg: WorldConfig, out_dir: Path, progress: bool = True) -> WorldSummary:
    """Write the synthetic world for ``cfg`` under ``out_dir`` (see the layout in ``world.json``).

    Layout: ``images/{scenes,text,charts}/*.png`` (record image paths are relative to ``images``),
    ``sources/<family>.json[l]``, ``scenes.jsonl`` (ground truth per training image),
    ``backbone/lm_corpus.txt``, ``backbone/vision_pairs.jsonl``, ``heldout/{images,scenes.jsonl,
    questions.jsonl}`` (held-out paths relative to ``heldout/images``) and ``world.json``.
    """
    out_dir = Path(out_dir)
    sizes = cfg.sizes
    total = (
        sum(getattr(sizes, f) for f in RECORD_FAMILIES)
        + sizes.vision_pairs
        + sizes.lm_corpus
        + sizes.heldout_scenes
        + sizes.heldout_charts
        + sizes.heldout_text
    )
    bar = progress_bar(total=total, desc="world", unit="item", disable=not progress)
    records: dict[str, list[dict[str, Any]]] = {}
    with atomic_path(out_dir / "images") as images_root:
        store = ImageStore(images_root, cfg.image_size)
        ctx = _Context(cfg.image_size, store, bar.update)
        families = _families(cfg.seed, cfg.image_size, sizes)
        for family in RECORD_FAMILIES:
            bar.set_description(family)
            records[family] = families[family](ctx, family_rng(cfg.seed, family), getattr(sizes, family))

        bar.set_description("vision_pairs")
        rng = family_rng(cfg.seed, "vision_pairs")
        pairs = []
        for i in range(sizes.vision_pairs):
            spec = sample_any(rng, cfg.image_size, (0.7, 0.15, 0.15))
            pairs.append({"image": store.add(spec, f"vision_pairs-{i:06d}"), "caption": lang.caption(rng, spec)})
            bar.update()

    for family in RECORD_FAMILIES:
        if family in JSON_LIST_FAMILIES:
            write_json(out_dir / record_file(family), records[family])
        else:
            _write_jsonl(out_dir / record_file(family), records[family])
    _write_jsonl(out_dir / "scenes.jsonl", store.rows)
    _write_jsonl(out_dir / "backbone" / "vision_pairs.jsonl", pairs)

    bar.set_description("lm_corpus")
    rng = family_rng(cfg.seed, "lm_corpus")
    with atomic_open(out_dir / "backbone" / "lm_corpus.txt", "w", encoding="utf-8") as f:
        for _ in range(sizes.lm_corpus):
            f.write(lang.corpus_line(rng, cfg.image_size).replace("\n", " ") + "\n")
            bar.update()

    bar.set_description("heldout")
    with atomic_path(out_dir / "heldout") as heldout_root:
        heldout_store, questions = _generate_heldout(cfg, heldout_root, frozenset(store.digests), bar.update)
    bar.close()

    summary = WorldSummary(
        out_dir=out_dir,
        records={family: len(records[family]) for family in RECORD_FAMILIES},
        images={kind: store.counts[kind] for kind in IMAGE_DIRS},
        heldout_images={kind: heldout_store.counts[kind] for kind in IMAGE_DIRS},
        heldout_questions=len(questions),
        lm_corpus_lines=sizes.lm_corpus,
        vision_pairs=len(pairs),
    )
    meta = {
        "generator_version": GENERATOR_VERSION,
        "seed": cfg.seed,
        "heldout_seed": cfg.heldout_seed,
        "image_size": cfg.image_size,
        "sizes": asdict(sizes),
        "image_root": "images",
        "heldout_image_root": "heldout/images",
        "record_files": {family: record_file(family) for family in RECORD_FAMILIES},
        **{k: v for k, v in asdict(summary).items() if k != "out_dir"},
        "vocabulary": _vocabulary(),
    }
    write_json(out_dir / "world.json", meta)  # last: marks the world as complete
    return summary
