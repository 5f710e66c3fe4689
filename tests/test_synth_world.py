"""The synthetic world: LLaVA structure, determinism, held-out disjointness, and answers that are
true of the *rendered pixels* (objects are recovered from colour masks, not from the scene specs)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from impkit.config import WorldConfig, WorldSizes
from impkit.data.synth import WorldSummary, generate_world
from impkit.data.synth.scene import PALETTE, TEXT_COLOURS

SIZE = 96
SIZES = WorldSizes(
    captions=40,
    vqa=150,
    existence=80,
    multiple_choice=80,
    text_reading=50,
    textcaps=25,
    charts=80,
    conversations=20,
    detailed=20,
    allava=30,
    text_only=20,
    lm_corpus=60,
    vision_pairs=20,
    heldout_scenes=40,
    heldout_charts=15,
    heldout_text=15,
)
CONFIG = WorldConfig(seed=1, heldout_seed=2, image_size=SIZE, sizes=SIZES)
FAMILIES = (
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
SHORT = "\nAnswer the question using a single word or phrase."
MC_TAIL = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, WorldSummary]:
    out = tmp_path_factory.mktemp("world")
    return out, generate_world(CONFIG, out, progress=False)


def load_records(root: Path, family: str) -> list[dict]:
    json_path = root / "sources" / f"{family}.json"
    if json_path.exists():
        data = json.loads(json_path.read_text())
        assert isinstance(data, list)
        return data
    return [json.loads(line) for line in (root / "sources" / f"{family}.jsonl").read_text().splitlines()]


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def single_turn(record: dict) -> tuple[str, str]:
    human, gpt = record["conversations"][:2]
    return human["value"].removeprefix("<image>\n"), gpt["value"]


# --------------------------------------------------------------------------- pixel analysis
@dataclasses.dataclass
class Blob:
    colour: str
    shape: str
    size: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 inclusive
    centroid: tuple[float, float]  # x, y

    def matches(self, attrs: dict[str, str]) -> bool:
        return all(getattr(self, k) == v for k, v in attrs.items())


def find_blobs(img: np.ndarray, colours=PALETTE) -> list[Blob]:
    """Connected components of exact palette colours; shape from the fill ratio of their box."""
    cell = img.shape[0] / 3
    blobs = []
    for name, rgb in colours.items():
        labels, _ = ndimage.label(np.all(img == rgb, axis=-1))
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            component = labels[box] == index
            h, w = component.shape
            fill = component.sum() / (h * w)
            shape = "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"
            cy, cx = ndimage.center_of_mass(component)
            x0, y0 = box[1].start, box[0].start
            size = "large" if w > 0.64 * cell else "small"
            blobs.append(Blob(name, shape, size, (x0, y0, x0 + w - 1, y0 + h - 1), (x0 + cx, y0 + cy)))
    return blobs


COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
REGION_CELLS = {
    "top left": (0, 0),
    "top": (0, 1),
    "top right": (0, 2),
    "left": (1, 0),
    "center": (1, 1),
    "right": (1, 2),
    "bottom left": (2, 0),
    "bottom": (2, 1),
    "bottom right": (2, 2),
}


def parse_phrase(phrase: str) -> dict[str, str]:
    """'large red circle' -> attributes; 'red object(s)' -> colour only."""
    *modifiers, noun = phrase.split()
    noun = noun.removesuffix("s") if noun not in SHAPES else noun
    attrs = {} if noun == "object" else {"shape": noun}
    assert noun in SHAPES + ("object",), phrase
    for word in modifiers:
        key = "size" if word in ("small", "large") else "colour"
        assert word in (("small", "large") if key == "size" else COLOURS), phrase
        attrs[key] = word
    return attrs


def resolve(phrase: str, blobs: list[Blob]) -> Blob:
    hits = [b for b in blobs if b.matches(parse_phrase(phrase))]
    assert len(hits) == 1, f"'{phrase}' names {len(hits)} objects"
    return hits[0]


def check_scene_answer(question: str, answer: str, img: np.ndarray) -> str:
    """Assert ``answer`` is right for ``question`` about the rendered scene; return the question type."""
    blobs = find_blobs(img)
    if m := re.fullmatch(r"(?:What colour is|What is the colour of) the (.+)\?", question):
        x0, y0, x1, y1 = resolve(m[1], blobs).bbox
        assert tuple(img[(y0 + y1) // 2, (x0 + x1) // 2]) == PALETTE[answer], question
        return "colour"
    if m := re.fullmatch(r"What shape is the (.+)\?", question):
        assert resolve(m[1], blobs).shape == answer, question
        return "shape"
    if m := re.fullmatch(r"Is the (.+) small or large\?|What size is the (.+)\?", question):
        assert resolve(m[1] or m[2], blobs).size == answer, question
        return "size"
    if m := re.fullmatch(r"(?:Where is|In which part of the image is) the (.+)\?", question):
        x, y = resolve(m[1], blobs).centroid
        row, col = REGION_CELLS[answer]
        cell = img.shape[0] / 3
        assert col * cell <= x < (col + 1) * cell and row * cell <= y < (row + 1) * cell, question
        return "position"
    if m := re.fullmatch(r"Is the (.+) (left of|right of|above|below) the (.+)\?", question):
        (ax, ay), (bx, by) = resolve(m[1], blobs).centroid, resolve(m[3], blobs).centroid
        truth = {"left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[m[2]]
        assert answer == ("yes" if truth else "no"), question
        return "relation"
    if m := re.fullmatch(r"How many (.+) (?:are there|can you see)\?", question):
        attrs = parse_phrase(m[1])
        assert int(answer) == sum(b.matches(attrs) for b in blobs), question
        return "count"
    if m := re.fullmatch(r"Is there anything (\w+) in the image\?", question):
        assert answer == ("yes" if any(b.colour == m[1] for b in blobs) else "no"), question
        return "existence"
    if m := re.fullmatch(r"Is there an? (.+) in the image\?", question):
        attrs = parse_phrase(m[1])
        assert answer == ("yes" if any(b.matches(attrs) for b in blobs) else "no"), question
        return "existence"
    raise AssertionError(f"unrecognised scene question: {question!r}")


def check_chart_answer(question: str, answer: str, img: np.ndarray, truth: dict) -> None:
    labels, values = truth["labels"], truth["values"]
    assert truth["kind"] == "chart"
    if truth["chart_type"] == "bar":
        bars = sorted(find_blobs(img, {truth["colour"]: PALETTE[truth["colour"]]}), key=lambda b: b.bbox[0])
        assert len(bars) == len(labels)
        heights = {lab: b.bbox[3] - b.bbox[1] + 1 for lab, b in zip(labels, bars, strict=True)}
        # Pixel heights are proportional to the recorded values (within rounding).
        unit = heights[labels[0]] / values[0]
        for lab, v in zip(labels, values, strict=True):
            assert abs(heights[lab] - v * unit) <= 1.5, (heights, values)
        if m := re.fullmatch(r"What is the value of bar ([A-E])\?", question):
            assert abs(heights[m[1]] - int(answer) * unit) <= 1.5, question
        elif question == "Which bar is the tallest?":
            assert heights[answer] > max(h for lab, h in heights.items() if lab != answer)
        elif question == "Which bar is the shortest?":
            assert heights[answer] < min(h for lab, h in heights.items() if lab != answer)
        elif m := re.fullmatch(r"Which bar is taller, ([A-E]) or ([A-E])\?", question):
            other = m[2] if answer == m[1] else m[1]
            assert answer in (m[1], m[2]) and heights[answer] > heights[other]
        elif question == "What is the highest value in the bar chart?":
            assert abs(max(heights.values()) - int(answer) * unit) <= 1.5
        elif question == "How many bars are there?":
            assert int(answer) == len(bars)
        else:
            raise AssertionError(f"unrecognised bar chart question: {question!r}")
        return
    # Line charts: checked against the recorded values the chart was drawn from.
    if question == "What is the highest value in the line chart?":
        assert int(answer) == max(values)
    elif question == "What is the lowest value in the line chart?":
        assert int(answer) == min(values)
    elif m := re.fullmatch(r"What is the value at point ([A-E])\?", question):
        assert int(answer) == values[labels.index(m[1])]
    elif question == "At which point does the line reach its highest value?":
        assert values[labels.index(answer)] == max(values) and values.count(max(values)) == 1
    elif m := re.fullmatch(r"Does the line go up or down from point ([A-E]) to point ([A-E])\?", question):
        a, b = values[labels.index(m[1])], values[labels.index(m[2])]
        assert answer == ("up" if b > a else "down") and a != b
    elif question == "How many points are there in the line chart?":
        assert int(answer) == len(values)
    else:
        raise AssertionError(f"unrecognised line chart question: {question!r}")


def check_text_answer(question: str, answer: str, img: np.ndarray, truth: dict) -> None:
    word = truth["word"]
    if question in ("What word is written in the image?", "What does the text in the image say?"):
        assert answer == word
    elif question == "What is the first letter of the word?":
        assert answer == word[0]
    elif question == "What is the last letter of the word?":
        assert answer == word[-1]
    elif question == "How many letters does the word have?":
        assert int(answer) == len(word)
    elif question == "What colour is the text?":
        assert np.all(img == TEXT_COLOURS[answer], axis=-1).sum() > 50
    elif question == "What colour is the frame around the word?":
        assert tuple(img[3, SIZE // 2]) == PALETTE[answer] and tuple(img[SIZE // 2, 3]) == PALETTE[answer]
    elif question == "Is there a frame around the word?":
        assert answer == ("yes" if tuple(img[3, SIZE // 2]) in PALETTE.values() else "no")
    else:
        raise AssertionError(f"unrecognised text question: {question!r}")


# --------------------------------------------------------------------------- structure
def test_summary_and_files(world):
    root, summary = world
    assert summary.records == {f: getattr(SIZES, f) for f in FAMILIES}
    meta = json.loads((root / "world.json").read_text())
    assert meta["records"] == summary.records and meta["seed"] == 1 and meta["heldout_seed"] == 2
    assert meta["vocabulary"]["palette"] == {k: list(v) for k, v in PALETTE.items()}
    assert isinstance(json.loads((root / "sources" / "captions.json").read_text()), list)
    assert isinstance(json.loads((root / "sources" / "allava.json").read_text()), list)
    lines = (root / "backbone" / "lm_corpus.txt").read_text().splitlines()
    assert len(lines) == SIZES.lm_corpus and all(line.strip() for line in lines)
    pairs = load_jsonl(root / "backbone" / "vision_pairs.jsonl")
    assert len(pairs) == SIZES.vision_pairs
    assert all((root / "images" / p["image"]).exists() and p["caption"] for p in pairs)
    kinds = Counter(row["kind"] for row in load_jsonl(root / "scenes.jsonl"))
    assert dict(kinds) == {k: v for k, v in summary.images.items() if v}
    assert sum(kinds.values()) == len(list((root / "images").rglob("*.png")))


def test_llava_structure_of_every_record(world):
    root, _ = world
    ids = []
    for family in FAMILIES:
        for record in load_records(root, family):
            ids.append(record["id"])
            assert re.fullmatch(rf"{family}-\d{{6}}", record["id"])
            turns = record["conversations"]
            assert turns and len(turns) % 2 == 0
            assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
            assert all(isinstance(t["value"], str) and t["value"].strip() for t in turns)
            tags = sum(t["value"].count("<image>") for t in turns)
            if family == "text_only":
                assert "image" not in record and tags == 0
            else:
                assert tags == 1 and turns[0]["value"].startswith("<image>\n")
                assert (root / "images" / record["image"]).is_file()
    assert len(ids) == len(set(ids))


def test_textcaps_shares_images_with_text_reading_only(world):
    root, _ = world
    reading = {r["image"] for r in load_records(root, "text_reading")}
    caps = {r["image"] for r in load_records(root, "textcaps")}
    assert caps and caps <= reading
    for family in FAMILIES:
        if family not in ("text_reading", "textcaps", "text_only"):
            assert not caps & {r["image"] for r in load_records(root, family)}


def test_heldout_images_are_disjoint_from_training(world):
    root, summary = world

    def digests(folder: Path) -> set[str]:
        return {hashlib.sha1(pixels(p).tobytes()).hexdigest() for p in folder.rglob("*.png")}

    train, heldout = digests(root / "images"), digests(root / "heldout" / "images")
    assert (
        len(heldout)
        == sum(summary.heldout_images.values())
        == SIZES.heldout_scenes + SIZES.heldout_charts + SIZES.heldout_text
    )
    assert not train & heldout


def test_heldout_ground_truth_and_questions(world):
    root, _ = world
    truth = {row["image"]: row for row in load_jsonl(root / "heldout" / "scenes.jsonl")}
    assert Counter(row["kind"] for row in truth.values()) == {"scene": 40, "chart": 15, "text": 15}
    for row in truth.values():
        img = pixels(root / "heldout" / "images" / row["image"])
        if row["kind"] == "scene":
            blobs = find_blobs(img)
            assert sorted((b.colour, b.shape, b.size) for b in blobs) == sorted(
                (o["colour"], o["shape"], o["size"]) for o in row["objects"]
            )
            for o in row["objects"]:
                assert tuple(img[o["center"][1], o["center"][0]]) == PALETTE[o["colour"]]
                assert set(o) >= {"shape", "colour", "size", "cell", "center", "bbox"}
    questions = load_jsonl(root / "heldout" / "questions.jsonl")
    assert len({q["id"] for q in questions}) == len(questions) and set(q["image"] for q in questions) == set(truth)
    allowed = {"colour", "shape", "count", "position", "size", "existence", "text", "chart"}
    for q in questions:
        assert q["type"] in allowed and "Answer the question" not in q["question"]
        img, row = pixels(root / "heldout" / "images" / q["image"]), truth[q["image"]]
        if row["kind"] == "scene":
            qtype = check_scene_answer(q["question"], q["answer"], img)
            assert q["type"] == ("position" if qtype == "relation" else qtype)
        elif row["kind"] == "chart":
            check_chart_answer(q["question"], q["answer"], img, row)
        else:
            check_text_answer(q["question"], q["answer"], img, row)


# --------------------------------------------------------------------------- answers against pixels
def test_training_ground_truth_matches_pixels(world):
    root, _ = world
    rows = [r for r in load_jsonl(root / "scenes.jsonl") if r["kind"] == "scene"]
    for row in rows[:150]:
        blobs = find_blobs(pixels(root / "images" / row["image"]))
        detected = sorted((b.colour, b.shape, b.size) for b in blobs)
        assert detected == sorted((o["colour"], o["shape"], o["size"]) for o in row["objects"]), row["image"]
        for o in row["objects"]:
            x0, y0, x1, y1 = o["bbox"]
            assert 0 <= x0 and 0 <= y0 and x1 < SIZE and y1 < SIZE


def test_vqa_answers_match_pixels(world):
    root, _ = world
    seen = Counter()
    for record in load_records(root, "vqa"):
        question, answer = single_turn(record)
        assert question.endswith(SHORT)
        seen[check_scene_answer(question.removesuffix(SHORT), answer, pixels(root / "images" / record["image"]))] += 1
    assert set(seen) == {"colour", "shape", "size", "position", "relation", "count"}


def test_existence_answers_match_pixels_and_are_balanced(world):
    root, _ = world
    answers = []
    for record in load_records(root, "existence"):
        question, answer = single_turn(record)
        kind = check_scene_answer(question.removesuffix(SHORT), answer, pixels(root / "images" / record["image"]))
        assert kind == "existence"
        answers.append(answer)
    assert 0.4 <= answers.count("yes") / len(answers) <= 0.6


def test_multiple_choice_answers_match_pixels_and_letters_spread(world):
    root, _ = world
    letters = Counter()
    for record in load_records(root, "multiple_choice"):
        question, letter = single_turn(record)
        assert question.endswith(MC_TAIL)
        stem, *option_lines = question.removesuffix(MC_TAIL).split("\n")
        options = dict(line.split(". ", 1) for line in option_lines)
        assert list(options) == ["A", "B", "C", "D"][: len(options)] and len(set(options.values())) == len(options)
        check_scene_answer(stem, options[letter], pixels(root / "images" / record["image"]))
        letters[letter] += 1
    total = sum(letters.values())
    assert all(letters[x] >= 0.1 * total for x in "ABC") and max(letters.values()) <= 0.5 * total


def test_chart_answers_match_pixels(world):
    root, _ = world
    truth = {row["image"]: row for row in load_jsonl(root / "scenes.jsonl")}
    bar_questions = 0
    for record in load_records(root, "charts"):
        question, answer = single_turn(record)
        row = truth[record["image"]]
        check_chart_answer(question.removesuffix(SHORT), answer, pixels(root / "images" / record["image"]), row)
        bar_questions += row["chart_type"] == "bar"
    assert bar_questions >= 20


def test_text_reading_answers_and_legibility(world):
    root, _ = world
    truth = {row["image"]: row for row in load_jsonl(root / "scenes.jsonl")}
    for record in load_records(root, "text_reading"):
        question, answer = single_turn(record)
        img = pixels(root / "images" / record["image"])
        row = truth[record["image"]]
        check_text_answer(question.removesuffix(SHORT), answer, img, row)
        # The word must be drawn big: its ink spans most of the image width.
        ink = np.nonzero(np.all(img == TEXT_COLOURS[row["text_colour"]], axis=-1))[1]
        assert ink.max() - ink.min() >= 0.55 * SIZE
    for record in load_records(root, "textcaps"):
        _, caption = single_turn(record)
        assert f"'{truth[record['image']]['word']}'" in caption


def test_captions_name_every_object(world):
    root, _ = world
    truth = {row["image"]: row for row in load_jsonl(root / "scenes.jsonl")}
    for record in load_records(root, "captions"):
        _, caption = single_turn(record)
        row = truth[record["image"]]
        if row["kind"] == "scene":
            for o in row["objects"]:
                assert f"{o['size']} {o['colour']} {o['shape']}" in caption
        elif row["kind"] == "text":
            assert f"'{row['word']}'" in caption


# --------------------------------------------------------------------------- determinism
def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_config_gives_identical_files(world, tmp_path):
    root, _ = world
    generate_world(CONFIG, tmp_path / "again", progress=False)
    assert file_hashes(tmp_path / "again") == file_hashes(root)


def test_family_streams_are_independent(world, tmp_path):
    root, _ = world
    cfg = dataclasses.replace(CONFIG, sizes=dataclasses.replace(SIZES, vqa=10, detailed=5))
    generate_world(cfg, tmp_path / "resized", progress=False)
    for family in ("captions", "existence", "charts", "text_only"):
        name = "captions.json" if family == "captions" else f"{family}.jsonl"
        assert (tmp_path / "resized" / "sources" / name).read_bytes() == (root / "sources" / name).read_bytes()
    assert load_records(tmp_path / "resized", "vqa") == load_records(root, "vqa")[:10]


@pytest.mark.parametrize("image_size", [48, 64, 160])
def test_other_image_sizes_keep_answers_true(tmp_path, image_size):
    tiny = WorldSizes(**{f.name: 0 for f in dataclasses.fields(WorldSizes)} | {"vqa": 40, "existence": 20})
    root = tmp_path / "world"
    generate_world(WorldConfig(seed=5, heldout_seed=6, image_size=image_size, sizes=tiny), root, progress=False)
    for family in ("vqa", "existence"):
        for record in load_records(root, family):
            question, answer = single_turn(record)
            img = pixels(root / "images" / record["image"])
            assert img.shape == (image_size, image_size, 3)
            check_scene_answer(question.removesuffix(SHORT), answer, img)
