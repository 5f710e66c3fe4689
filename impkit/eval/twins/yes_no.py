"""The yes/no twins: POPE (three negative-sampling splits) and MME (14 subtasks, two questions per
image, one "Yes" and one "No")."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from itertools import combinations

from impkit.data.synth import language as lang
from impkit.data.synth.scene import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    TEXT_COLOURS,
    WORDS,
    Chart,
    Scene,
    TextImage,
)
from impkit.eval import prompts
from impkit.eval.benchmarks.mme import COGNITION, PERCEPTION
from impkit.eval.benchmarks.pope import SPLITS
from impkit.eval.twins.common import Heldout, HeldoutImage, Jsonl, Prompt, TwinFiles, pick

# --------------------------------------------------------------------------- POPE
# The world's "object categories" are colour-shape combinations ("red circle"): what POPE asks
# about is a category, and a scene's annotation is the set of categories it shows.
Category = tuple[str, str]
CATEGORIES: tuple[Category, ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
POSITIVES_PER_IMAGE = 3  # POPE asks three positive and three negative questions per image


def categories_of(scene: Scene) -> set[Category]:
    return {(o.colour, o.shape) for o in scene.objects}


def _name(category: Category) -> str:
    return f"{category[0]} {category[1]}"


def _popular_order(scenes: list[Scene]) -> list[Category]:
    """Categories by how many held-out images show them (POPE "popular": the most frequent
    objects of the dataset), ties by name so the order is fixed."""
    frequency = Counter(cat for scene in scenes for cat in categories_of(scene))
    return sorted(CATEGORIES, key=lambda cat: (-frequency[cat], cat))


def _adversarial_order(present: set[Category], cooccurrence: Counter) -> list[Category]:
    """Absent categories most easily confused with the image's own (POPE "adversarial": objects
    that co-occur most with the ground-truth objects). In the world objects are sampled
    independently, so co-occurrence alone barely ranks them; sharing a colour or a shape with an
    object in the image is the stronger lure and ranks first, co-occurrence breaks the ties."""

    def key(cat: Category) -> tuple[int, int, Category]:
        shared = sum(cat[0] == p[0] for p in present) + sum(cat[1] == p[1] for p in present)
        return (-shared, -sum(cooccurrence[frozenset((cat, p))] for p in present), cat)

    return sorted((cat for cat in CATEGORIES if cat not in present), key=key)


def pope(heldout: Heldout, rng: random.Random, n_images: int) -> TwinFiles:
    """Three JSON Lines files ``coco_pope_{random,popular,adversarial}.json`` of ``{question_id,
    image, text, label}`` (POPE's names and fields; ids count from 1 in each file). The splits
    share their images and positive questions and differ only in how the negatives are drawn
    (POPE, Li et al. 2023, section 3.2): at random among absent categories; the most frequent
    categories of the held-out set; the categories most confusable with the image's own.
    Every image gets as many negatives as positives (up to three), so each split is balanced."""
    all_scenes = [item.spec for item in heldout.scenes]
    popular = _popular_order(all_scenes)
    cooccurrence: Counter = Counter()
    for scene in all_scenes:
        for a, b in combinations(sorted(categories_of(scene)), 2):
            cooccurrence[frozenset((a, b))] += 1
    chosen = sorted(pick(rng, heldout.scenes, n_images), key=lambda item: item.image)
    files: dict[str, list[dict]] = {}
    prompt_rows: list[Prompt] = []
    plan = []  # per image: (item, positives, {split: negatives})
    for item in chosen:
        present = categories_of(item.spec)
        positives = rng.sample(sorted(present), min(POSITIVES_PER_IMAGE, len(present)))
        absent = [cat for cat in CATEGORIES if cat not in present]
        k = len(positives)
        negatives = {
            "random": rng.sample(absent, k),
            "popular": [cat for cat in popular if cat not in present][:k],
            "adversarial": _adversarial_order(present, cooccurrence)[:k],
        }
        plan.append((item, positives, negatives))
    for split in SPLITS:
        lines = []
        for item, positives, negatives in plan:
            asked = [(cat, "yes") for cat in positives] + [(cat, "no") for cat in negatives[split]]
            for cat, label in asked:
                text = f"Is there {lang.with_article(_name(cat))} in the image?"
                qid = len(lines) + 1
                lines.append({"question_id": qid, "image": item.image, "text": text, "label": label})
                prompt_rows.append(Prompt(f"{split}/{qid}", item.image, prompts.short_answer(text), label, split))
        files[f"questions/coco_pope_{split}.json"] = Jsonl(lines)
    return TwinFiles(
        files=files,
        prompts=prompt_rows,
        annotations="questions",
        info={"per_split": {split: len(files[f"questions/coco_pope_{split}.json"]) for split in SPLITS}},
    )


# --------------------------------------------------------------------------- MME
# Each MME subtask asks the same kind of question of every image, once with the true value ("Yes")
# and once with a wrong one ("No"). The world has no celebrities, landmarks or paintings, so each
# subtask is mapped onto the world fact closest to what it tests (see MME_SUBTASKS).
YesNo = tuple[str, str]  # (question whose answer is yes, question whose answer is no), without the tail
Maker = Callable[[random.Random, object], YesNo | None]


def _other(rng: random.Random, pool, value):
    return rng.choice([v for v in pool if v != value])


def _existence(rng: random.Random, scene: Scene) -> YesNo:
    present = sorted(categories_of(scene))
    yes = rng.choice(present)
    no = rng.choice([cat for cat in CATEGORIES if cat not in present])
    return tuple(f"Is there {lang.with_article(_name(cat))} in this image?" for cat in (yes, no))  # type: ignore[return-value]


def _count(rng: random.Random, scene: Scene) -> YesNo:
    shape = rng.choice(sorted({o.shape for o in scene.objects}))
    n = sum(o.shape == shape for o in scene.objects)
    wrong = rng.choice([m for m in (n - 1, n + 1) if m >= 1])

    def ask(m: int) -> str:
        return (
            f"Is there exactly one {shape} in this image?"
            if m == 1
            else (f"Are there exactly {lang.NUMBER_WORDS[m]} {shape}s in this image?")
        )

    return ask(n), ask(wrong)


_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _position(rng: random.Random, scene: Scene) -> YesNo:
    objects = scene.objects
    if len(objects) == 1:
        obj, ref = objects[0], lang.refer(rng, objects[0], objects)
        wrong = _other(rng, POSITIONS, obj.position)
        return tuple(f"Is the {ref} {lang.position_phrase(p)} of the image?" for p in (obj.position, wrong))  # type: ignore[return-value]
    a, b = rng.sample(objects, 2)
    truths = (["left of" if a.col < b.col else "right of"] if a.col != b.col else []) + (
        ["above" if a.row < b.row else "below"] if a.row != b.row else []
    )
    truth = rng.choice(truths)
    ref_a, ref_b = lang.refer(rng, a, objects), lang.refer(rng, b, objects)
    return f"Is the {ref_a} {truth} the {ref_b}?", f"Is the {ref_a} {_OPPOSITE[truth]} the {ref_b}?"


def _colour(rng: random.Random, scene: Scene) -> YesNo | None:
    for obj in rng.sample(scene.objects, len(scene.objects)):
        ref = lang.refer(rng, obj, scene.objects, exclude=("colour",))
        if ref is not None:
            return f"Is the {ref} {obj.colour}?", f"Is the {ref} {_other(rng, COLOURS, obj.colour)}?"
    return None


def _identity(rng: random.Random, scene: Scene) -> YesNo:
    """celebrity: name the thing at a marked place (MME: "Is the actor inside the red box X?")."""
    obj = rng.choice(scene.objects)
    where = lang.position_phrase(obj.position)
    changed = rng.choice(("shape", "colour", "size"))
    pool = {"shape": SHAPES, "colour": COLOURS, "size": SIZES}[changed]
    wrong = {"shape": obj.shape, "colour": obj.colour, "size": obj.size} | {
        changed: _other(rng, pool, getattr(obj, changed))
    }
    right = lang.full_name(obj)
    wrong_name = f"{wrong['size']} {wrong['colour']} {wrong['shape']}"
    return (
        f"Is the object {where} {lang.with_article(right)}?",
        f"Is the object {where} {lang.with_article(wrong_name)}?",
    )


def _background(rng: random.Random, scene: Scene) -> YesNo:
    wrong = _other(rng, tuple(BACKGROUNDS), scene.background)
    return tuple(f"Is the background of this picture {bg}?" for bg in (scene.background, wrong))  # type: ignore[return-value]


def _corners(rng: random.Random, scene: Scene) -> YesNo | None:
    for obj in rng.sample(scene.objects, len(scene.objects)):
        ref = lang.refer(rng, obj, scene.objects, exclude=("shape",))
        if ref is None:
            continue
        n = lang.SHAPE_CORNERS[obj.shape]
        wrong = _other(rng, (0, 3, 4), n)

        def ask(m: int, ref=ref) -> str:
            return (
                f"Does the {ref} have no corners?" if m == 0 else f"Does the {ref} have {lang.NUMBER_WORDS[m]} corners?"
            )

        return ask(n), ask(wrong)
    return None


def _ocr(rng: random.Random, spec: TextImage) -> YesNo:
    near = [w for w in WORDS if w != spec.word and len(w) == len(spec.word)]
    wrong = rng.choice(near or [w for w in WORDS if w != spec.word])
    return tuple(f'Is the word in the image "{w}"?' for w in (spec.word, wrong))  # type: ignore[return-value]


def _ink(rng: random.Random, spec: TextImage) -> YesNo:
    wrong = _other(rng, tuple(TEXT_COLOURS), spec.ink)
    return tuple(f"Is the text on this sign written in {ink}?" for ink in (spec.ink, wrong))  # type: ignore[return-value]


def _meaning(rng: random.Random, spec: TextImage) -> YesNo:
    wrong = _other(rng, WORDS, spec.word)
    return tuple(
        f'Is "{lang.WORD_GLOSSES[w]}" a correct explanation of the word in the image?' for w in (spec.word, wrong)
    )  # type: ignore[return-value]


def _reversed(rng: random.Random, spec: TextImage) -> YesNo:
    same = [w for w in WORDS if w != spec.word and len(w) == len(spec.word)]
    wrong = rng.choice(same or [w for w in WORDS if w != spec.word])
    return tuple(
        f'If s holds the word in the image in lower case, does the Python code print(s[::-1]) output "{w[::-1]}"?'
        for w in (spec.word, wrong)
    )  # type: ignore[return-value]


def _chart_kind(rng: random.Random, chart: Chart) -> YesNo:
    wrong = "line" if chart.chart_type == "bar" else "bar"
    return tuple(f"Is this a picture of a {kind} chart?" for kind in (chart.chart_type, wrong))  # type: ignore[return-value]


def _chart_colour(rng: random.Random, chart: Chart) -> YesNo:
    wrong = _other(rng, COLOURS, chart.colour)
    return tuple(f"Is this chart drawn in {c}?" for c in (chart.colour, wrong))  # type: ignore[return-value]


def _chart_sum(rng: random.Random, chart: Chart) -> YesNo:
    a, b = rng.sample(chart.labels, 2)
    total = chart.value_of(a) + chart.value_of(b)
    wrong = total + rng.choice([d for d in (-3, -2, -1, 1, 2, 3) if total + d >= 0])
    noun = "bar" if chart.chart_type == "bar" else "point"
    return tuple(f"Is the value of {noun} {a} plus the value of {noun} {b} equal to {s}?" for s in (total, wrong))  # type: ignore[return-value]


# subtask -> (image kind, question maker). The mapping (documented in the README of the twins):
# the four MME perception subtasks with a direct world analogue keep their meaning (existence,
# count, position, color on scenes; OCR on text images); the others test the world fact closest to
# theirs: celebrity -> the identity of the object at a named place, scene -> the background,
# posters -> the ink of a sign, landmark -> what kind of chart the picture is, artwork -> the colour
# a chart is drawn in; cognition: commonsense_reasoning -> corners of the named object's shape,
# numerical_calculation -> a sum of two chart values, text_translation -> the meaning of the word
# on a sign, code_reasoning -> the output of a one-line program over the word on a sign.
MME_SUBTASKS: dict[str, tuple[type, Maker]] = {
    "existence": (Scene, _existence),
    "count": (Scene, _count),
    "position": (Scene, _position),
    "color": (Scene, _colour),
    "posters": (TextImage, _ink),
    "celebrity": (Scene, _identity),
    "scene": (Scene, _background),
    "landmark": (Chart, _chart_kind),
    "artwork": (Chart, _chart_colour),
    "OCR": (TextImage, _ocr),
    "commonsense_reasoning": (Scene, _corners),
    "numerical_calculation": (Chart, _chart_sum),
    "text_translation": (TextImage, _meaning),
    "code_reasoning": (TextImage, _reversed),
}
assert tuple(MME_SUBTASKS) == PERCEPTION + COGNITION, "one world mapping per official MME subtask"


def mme(heldout: Heldout, rng: random.Random, n_images: int) -> TwinFiles:
    """The eval tool's folder layout: ``ground_truth/<subtask>.txt`` with lines
    ``image<TAB>question<TAB>Yes|No`` (MME's questions end with "Please answer yes or no."), the
    "Yes" question of an image first. The runner copies each line and appends its answer as a
    fourth column; the scorer reads a line without it as a missing answer."""
    files, prompt_rows = {}, []
    for subtask, (kind, maker) in MME_SUBTASKS.items():
        lines: list[str] = []
        items: list[HeldoutImage] = [item for item in heldout.images if isinstance(item.spec, kind)]
        chosen: list[tuple[HeldoutImage, YesNo]] = []
        for item in pick(rng, items, len(items)):
            if len(chosen) == n_images:
                break
            made = maker(rng, item.spec)
            if made is not None:
                chosen.append((item, made))
        if not chosen:
            raise ValueError(f"the held-out world has no image for the MME subtask {subtask!r} ({kind.__name__})")
        for item, (yes, no) in sorted(chosen, key=lambda pair: pair[0].image):
            for question, gold in ((yes, "Yes"), (no, "No")):
                full = f"{question} {prompts.MME_YES_NO}"
                prompt_rows.append(Prompt(f"{subtask}/{len(lines)}", item.image, prompts.mme(full), gold, subtask))
                lines.append(f"{item.image}\t{full}\t{gold}")
        files[f"ground_truth/{subtask}.txt"] = "".join(line + "\n" for line in lines)
    return TwinFiles(files=files, prompts=prompt_rows, annotations="ground_truth")
