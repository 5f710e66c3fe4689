"""The multiple-choice twins: ScienceQA (problems.json + pid_splits.json) and MMBench / MMBench-CN
(the dev TSV with CircularEval copies)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from impkit.data.synth import language as lang
from impkit.data.synth.scene import COLOURS, POSITIONS, SHAPES, SIZES, WORDS, Chart, Scene, TextImage
from impkit.eval import prompts
from impkit.eval.benchmarks.mmbench import CIRCULAR_STRIDE
from impkit.eval.twins.common import Heldout, HeldoutImage, Prompt, Table, TwinFiles, pick

# --------------------------------------------------------------------------- ScienceQA
_SQA_TOPICS = {
    "colour": "colors",
    "shape": "geometry",
    "count": "counting",
    "position": "spatial sense",
    "size": "measurement",
    "text": "reading",
    "chart": "graphs",
}
_SQA_HINTS = {
    Scene: "The figure shows flat shapes drawn on a {background} background.",
    TextImage: "The sign shows one English word.",
    Chart: "The chart shows one value for each label.",
}


def _choices(rng: random.Random, qa: lang.QA, most: int) -> tuple[list[str], int] | None:
    others = [d for d in qa.domain if d != qa.answer]
    if not others:
        return None
    picked = rng.sample(others, min(len(others), rng.randint(1, most - 1)))
    answer = rng.randrange(len(picked) + 1)
    return picked[:answer] + [qa.answer] + picked[answer:], answer


def _text_only_problem(rng: random.Random) -> tuple[str, list[str], int, str, str]:
    """(question, choices, answer, hint, topic): knowledge questions without an image, as
    ScienceQA's text-only problems (which the IMG score leaves out)."""
    kind = rng.choice(("corners", "mix", "thing"))
    if kind == "corners":
        shape = rng.choice(SHAPES)
        gold = str(lang.SHAPE_CORNERS[shape])
        choices = sorted({"0", "3", "4", "5"})
        return (
            f"How many corners does a {shape} have?",
            choices,
            choices.index(gold),
            "A corner is a point where two straight sides meet.",
            "geometry",
        )
    if kind == "mix":
        (a, b), gold = rng.choice(tuple(lang.COLOUR_MIXES.items()))
        choices = [gold, *rng.sample([c for c in COLOURS if c not in (gold, a, b)], 2)]
        rng.shuffle(choices)
        hint = "Mixing two paint colours gives a new colour." if rng.random() < 0.5 else ""
        return f"Which colour do you get by mixing {a} and {b} paint?", choices, choices.index(gold), hint, "colors"
    thing, gold = rng.choice(lang.THING_COLOURS)
    choices = [gold, *rng.sample([c for c in COLOURS if c != gold], rng.randint(1, 3))]
    rng.shuffle(choices)
    return f"What colour is {thing} usually?", choices, choices.index(gold), "", "colors"


def _image_problem(rng: random.Random, item: HeldoutImage) -> tuple[str, list[str], int, str] | None:
    spec = item.spec
    if isinstance(spec, Scene):
        qa = lang.scene_question(rng, spec, kinds=("colour", "shape", "count", "position", "size"))
    elif isinstance(spec, TextImage):
        qa = lang.text_question(rng, spec)
    else:
        qa = lang.chart_question(rng, spec)
    made = _choices(rng, qa, most=5)  # ScienceQA problems have two to five choices
    if made is None:
        return None
    choices, answer = made
    return qa.question, choices, answer, qa.qtype


def sqa(heldout: Heldout, rng: random.Random, n: int) -> TwinFiles:
    """``problems.json`` ``{pid: {question, choices, answer, hint, image, split: "test", ...}}`` and
    ``pid_splits.json``. ``image`` is the path under the held-out images folder (ScienceQA writes
    "image.png" inside the problem's folder) or null for the text-only quarter of the problems."""
    problems, prompt_rows = {}, []
    pool = pick(rng, heldout.images, len(heldout.images))
    cursor = 0
    while len(problems) < n and cursor < 4 * n + 4:
        pid = str(len(problems) + 1)
        if rng.random() < 0.25:
            question, choices, answer, hint, topic = _text_only_problem(rng)
            item = None
        else:
            item = pool[cursor % len(pool)]
            cursor += 1
            made = _image_problem(rng, item)
            if made is None:
                continue
            question, choices, answer, qtype = made
            topic = _SQA_TOPICS[qtype]
            spec = item.spec
            template = _SQA_HINTS[type(spec)]
            hint = template.format(background=getattr(spec, "background", "")) if rng.random() < 0.4 else ""
        problems[pid] = {
            "question": question,
            "choices": choices,
            "answer": answer,
            "hint": hint,
            "image": item.image if item else None,
            "task": "closed choice",
            "grade": "grade3",
            "subject": "natural science",
            "topic": topic,
            "category": topic,
            "skill": topic,
            "lecture": "",
            "solution": "",
            "split": "test",
        }
        prompt = prompts.scienceqa(question, choices, hint)
        prompt_rows.append(Prompt(pid, item.image if item else None, prompt, prompts.OPTION_LETTERS[answer], topic))
    splits = {"train": [], "val": [], "test": list(problems), "minival": [], "minitest": []}
    return TwinFiles(
        files={"problems.json": problems, "pid_splits.json": splits},
        prompts=prompt_rows,
        annotations="problems.json",
        questions="pid_splits.json",
        info={"image_problems": sum(p["image"] is not None for p in problems.values())},
    )


# --------------------------------------------------------------------------- MMBench
# A small translation table covering exactly the words the MMBench twin's templates use.
CN_WORDS = {
    "red": "红色",
    "green": "绿色",
    "blue": "蓝色",
    "yellow": "黄色",
    "purple": "紫色",
    "orange": "橙色",
    "circle": "圆形",
    "square": "正方形",
    "triangle": "三角形",
    "object": "物体",
    "small": "小",
    "large": "大",
    "top left": "左上角",
    "top": "上方",
    "top right": "右上角",
    "left": "左侧",
    "center": "中间",
    "right": "右侧",
    "bottom left": "左下角",
    "bottom": "下方",
    "bottom right": "右下角",
    "left of": "左边",
    "right of": "右边",
    "above": "上方",
    "below": "下方",
    "bar chart": "柱状图",
    "line chart": "折线图",
    "word sign": "写有单词的标志",
    "shapes": "几何图形",
}
EN_OPTION = {
    "left of": "to the left",
    "right of": "to the right",
    "above": "above",
    "below": "below",
    "bar chart": "a bar chart",
    "line chart": "a line chart",
    "word sign": "a word on a sign",
    "shapes": "geometric shapes",
}
TEMPLATES = {
    "colour": ("What colour is the {ref}?", "{ref}是什么颜色？"),
    "shape": ("What shape is the {ref}?", "{ref}是什么形状？"),
    "size": ("What size is the {ref}?", "{ref}是什么尺寸？"),
    "position": ("Where is the {ref} in the image?", "{ref}在图片中的什么位置？"),
    "relation": ("Where is the {ref} relative to the {other}?", "{ref}在{other}的什么方位？"),
    "ocr": ("What word is written in the image?", "图片中写的是哪个单词？"),
    "bar_top": ("Which bar is the tallest?", "哪个柱子最高？"),
    "line_top": ("At which point does the line reach its highest value?", "折线在哪个点达到最高值？"),
    "bar_value": ("What is the value of bar {label}?", "柱子{label}的数值是多少？"),
    "line_value": ("What is the value at point {label}?", "点{label}处的数值是多少？"),
    "style": ("What kind of image is this?", "这是什么类型的图片？"),
}
HINTS = {
    "grid": ("The objects in the picture sit on a three by three grid.", "图中的物体位于三乘三的网格上。"),
    "labels": ("The labels run from A to {last} from left to right.", "标签从左到右依次为A到{last}。"),
    "word": ("The image shows a single English word.", "图中显示一个英文单词。"),
}
# MMBench's ability taxonomy: (L3 category, L2 category) per question kind.
CATEGORIES = {
    "colour": ("attribute_recognition", "finegrained_perception (instance-level)"),
    "shape": ("attribute_recognition", "finegrained_perception (instance-level)"),
    "size": ("attribute_recognition", "finegrained_perception (instance-level)"),
    "position": ("object_localization", "finegrained_perception (instance-level)"),
    "relation": ("spatial_relationship", "finegrained_perception (cross-instance)"),
    "ocr": ("ocr", "finegrained_perception (instance-level)"),
    "chart": ("structuralized_imagetext_understanding", "logic_reasoning"),
    "style": ("image_style", "coarse_perception"),
}
# The order in which references single an object out, fewest attributes first (as language.refer).
_REFERENCE_ATTRS = (
    ("shape",),
    ("colour",),
    ("size",),
    ("colour", "shape"),
    ("size", "shape"),
    ("size", "colour"),
    ("size", "colour", "shape"),
)


@dataclass(frozen=True)
class ChoiceItem:
    """One MMBench question in language-neutral form: options are keys the two languages render."""

    kind: str  # key of TEMPLATES
    category: str  # key of CATEGORIES
    slots: tuple[tuple[str, dict[str, str] | str], ...]  # template slot -> object reference or plain text
    options: tuple[str, ...]
    answer: int
    hint: tuple[str, str] | None  # key of HINTS and its {last}
    image: str


def _reference(obj, objects, exclude: tuple[str, ...] = ()) -> dict[str, str] | None:
    for attrs in _REFERENCE_ATTRS:
        if set(attrs) & set(exclude):
            continue
        if sum(all(getattr(o, a) == getattr(obj, a) for a in attrs) for o in objects) == 1:
            return {a: getattr(obj, a) for a in attrs}
    return None


def render_reference(ref: dict[str, str], language: str) -> str:
    if language == "en":
        return lang.describe_attrs(ref)
    return "".join(CN_WORDS[ref[a]] for a in ("size", "colour") if a in ref) + CN_WORDS[ref.get("shape", "object")]


def render_option(option: str, language: str) -> str:
    if language == "cn":
        return CN_WORDS.get(option, option)  # words, labels and digits stay as written in the image
    return EN_OPTION.get(option, option)


def _with_answer(rng: random.Random, gold: str, others: list[str], most: int = 4) -> tuple[tuple[str, ...], int]:
    picked = rng.sample(others, min(len(others), most - 1))
    answer = rng.randrange(len(picked) + 1)
    return tuple(picked[:answer] + [gold] + picked[answer:]), answer


def _scene_item(rng: random.Random, item: HeldoutImage) -> ChoiceItem | None:
    scene: Scene = item.spec
    kind = rng.choices(("colour", "shape", "size", "position", "relation", "style"), weights=(3, 2, 1, 2, 3, 1))[0]
    obj = rng.choice(scene.objects)
    if kind == "style":
        options, answer = _with_answer(rng, "shapes", ["bar chart", "line chart", "word sign"])
        return ChoiceItem("style", "style", (), options, answer, None, item.image)
    if kind == "relation":
        pairs = [(a, b) for a in scene.objects for b in scene.objects if a is not b]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        truths = (["left of" if a.col < b.col else "right of"] if a.col != b.col else []) + (
            ["above" if a.row < b.row else "below"] if a.row != b.row else []
        )
        truth = rng.choice(truths)
        false = [r for r in ("left of", "right of", "above", "below") if r not in truths]
        options, answer = _with_answer(rng, truth, false)
        slots = (("ref", _reference(a, scene.objects)), ("other", _reference(b, scene.objects)))
        return ChoiceItem("relation", "relation", slots, options, answer, None, item.image)
    exclude = {"colour": ("colour",), "shape": ("shape",), "size": ("size",), "position": ()}[kind]
    ref = _reference(obj, scene.objects, exclude)
    if ref is None:
        return None
    pool = {"colour": COLOURS, "shape": SHAPES, "size": SIZES, "position": POSITIONS}[kind]
    gold = obj.position if kind == "position" else getattr(obj, kind)
    options, answer = _with_answer(rng, gold, [v for v in pool if v != gold])
    return ChoiceItem(kind, kind, (("ref", ref),), options, answer, None, item.image)


def _other_item(rng: random.Random, item: HeldoutImage) -> ChoiceItem | None:
    spec = item.spec
    if isinstance(spec, TextImage):
        if rng.random() < 0.2:
            options, answer = _with_answer(rng, "word sign", ["bar chart", "line chart", "shapes"])
            return ChoiceItem("style", "style", (), options, answer, None, item.image)
        options, answer = _with_answer(rng, spec.word, [w for w in WORDS if w != spec.word])
        return ChoiceItem("ocr", "ocr", (), options, answer, None, item.image)
    chart: Chart = spec
    prefix = "bar" if chart.chart_type == "bar" else "line"
    top = max(chart.values)
    tops = [lab for lab, v in zip(chart.labels, chart.values, strict=True) if v == top]
    if len(tops) == 1 and rng.random() < 0.5:
        options, answer = _with_answer(rng, tops[0], [lab for lab in chart.labels if lab != tops[0]])
        return ChoiceItem(f"{prefix}_top", "chart", (), options, answer, None, item.image)
    if rng.random() < 0.2:
        gold = f"{prefix} chart"
        options, answer = _with_answer(
            rng, gold, [s for s in ("bar chart", "line chart", "word sign", "shapes") if s != gold]
        )
        return ChoiceItem("style", "style", (), options, answer, None, item.image)
    label = rng.choice(chart.labels)
    gold = str(chart.value_of(label))
    options, answer = _with_answer(rng, gold, [str(v) for v in range(1, 10) if str(v) != gold])
    return ChoiceItem(f"{prefix}_value", "chart", (("label", label),), options, answer, None, item.image)


def mmbench_items(heldout: Heldout, rng: random.Random, n: int) -> list[ChoiceItem]:
    """``n`` language-neutral questions, shared by the EN and CN twins (MMBench-CN is MMBench
    translated: same images, same questions)."""
    items: list[ChoiceItem] = []
    pool = pick(rng, heldout.images, len(heldout.images))
    for attempt in range(4 * n):
        if len(items) == n:
            break
        entry = pool[attempt % len(pool)]
        made = _scene_item(rng, entry) if isinstance(entry.spec, Scene) else _other_item(rng, entry)
        if made is None:
            continue
        if rng.random() < 0.3:  # MMBench gives a context hint with some questions
            if isinstance(entry.spec, Scene):
                hint = ("grid", "")
            elif isinstance(entry.spec, Chart):
                hint = ("labels", entry.spec.labels[-1])
            else:
                hint = ("word", "")
            made = ChoiceItem(made.kind, made.category, made.slots, made.options, made.answer, hint, made.image)
        items.append(made)
    return items


def rotations(options: tuple[str, ...], answer: int) -> list[tuple[tuple[str, ...], int]]:
    """MMBench's CircularEval: copy k shifts the options by k places, so the right option visits
    every letter (k = 0 is the original)."""
    n = len(options)
    return [(tuple(options[(i + k) % n] for i in range(n)), (answer - k) % n) for k in range(n)]


def _render(item: ChoiceItem, language: str) -> tuple[str, str]:
    pos = 0 if language == "en" else 1
    slots = {
        name: render_reference(value, language) if isinstance(value, dict) else value for name, value in item.slots
    }
    question = TEMPLATES[item.kind][pos].format(**slots)
    hint = HINTS[item.hint[0]][pos].format(last=item.hint[1]) if item.hint else ""
    return question, hint


MMBENCH_COLUMNS = (
    "index",
    "question",
    "hint",
    "A",
    "B",
    "C",
    "D",
    "answer",
    "category",
    "l2-category",
    "split",
    "image_path",
)


def mmbench(items: list[ChoiceItem], language: str) -> TwinFiles:
    """The dev TSV (``index, question, hint, A-D, answer, category, l2-category, split``) with the
    image as ``image_path`` (relative to the held-out images folder) instead of MMBench's base64
    ``image`` column, and every CircularEval copy as its own row (index + k·1,000,000)."""
    rows, prompt_rows = [], []
    for base, item in enumerate(items):
        question, hint = _render(item, language)
        category, l2 = CATEGORIES[item.category]
        for k, (options, answer) in enumerate(rotations(item.options, item.answer)):
            index = base + k * CIRCULAR_STRIDE
            shown = [render_option(o, language) for o in options]
            letter = prompts.OPTION_LETTERS[answer]
            cells = {letter_: "" for letter_ in "ABCD"} | dict(zip("ABCD", shown, strict=False))
            rows.append(
                {
                    "index": str(index),
                    "question": question,
                    "hint": hint,
                    **cells,
                    "answer": letter,
                    "category": category,
                    "l2-category": l2,
                    "split": "dev",
                    "image_path": item.image,
                }
            )
            prompt = prompts.mmbench(question, shown, hint, language)
            prompt_rows.append(Prompt(str(index), item.image, prompt, letter, category))
    name = "MMBench_DEV_EN.tsv" if language == "en" else "MMBench_DEV_CN.tsv"
    return TwinFiles(
        files={name: Table(MMBENCH_COLUMNS, rows)},
        prompts=prompt_rows,
        annotations=name,
        info={"base_questions": len(items), "rows": len(rows)},
    )
