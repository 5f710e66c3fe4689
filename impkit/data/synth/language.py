"""Text for the synthetic world: captions, questions and answers, descriptions, conversations.

Everything here is a template over a scene spec, so each statement is true of the rendered
image by construction. Questions only name objects through phrases that pick out exactly one
object of the scene (``refer``), which keeps every short answer unambiguous.

The module is long on purpose: it is the world's one vocabulary, word tables
(glosses, prompts, what shapes and colours suggest) and the sentence templates that use them, and
the benchmark twins (``impkit.eval.twins``) word their questions with the same functions, so a
twin's question and a training question come from one place. Most of its length is those tables
and templates, which a split would scatter over modules importing each other's words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from impkit.data.synth.scene import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    TEXT_COLOURS,
    WORDS,
    Chart,
    Scene,
    SceneObject,
    Spec,
    TextImage,
    sample_any,
    sample_scene,
)

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
MC_INSTRUCTION = "\nAnswer with the option's letter from the given choices directly."
OPTION_LETTERS = ("A", "B", "C", "D")

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COUNT_DOMAIN = ("0", "1", "2", "3", "4")

CAPTION_PROMPTS = (
    "Describe the image briefly.",
    "Give a short caption.",
    "Write a short caption for the image.",
    "Provide a brief description of the given image.",
    "What is in this image? Answer briefly.",
    "Summarize the visual content of the image.",
    "Share a concise description of the picture.",
    "Give a one-line summary of the image.",
)
DETAIL_PROMPTS = (
    "Describe the image in detail.",
    "Give a detailed description of this picture.",
    "What do you see in this image? Describe everything.",
    "Explain the visual content of the image in great detail.",
    "Write a thorough description of the image.",
)

# One true sentence per word, used by descriptions, text-only questions and the LM corpus.
WORD_GLOSSES: dict[str, str] = {
    "cat": "A cat is a small furry animal that people keep as a pet.",
    "dog": "A dog is a friendly animal that barks and likes to play.",
    "sun": "The sun is the bright star that lights the sky during the day.",
    "hat": "A hat is something you wear on your head.",
    "cup": "A cup is a small container you drink from.",
    "box": "A box is a container with flat sides that holds things.",
    "pen": "A pen is a tool for writing with ink.",
    "key": "A key is a small piece of metal that opens a lock.",
    "car": "A car is a vehicle with four wheels that people drive on roads.",
    "bus": "A bus is a large vehicle that carries many passengers.",
    "map": "A map is a drawing that shows where places are.",
    "egg": "An egg is laid by a bird and can be cooked and eaten.",
    "bed": "A bed is a piece of furniture you sleep on.",
    "cow": "A cow is a large farm animal that gives milk.",
    "pig": "A pig is a pink farm animal with a curly tail.",
    "fox": "A fox is a wild animal with red fur and a bushy tail.",
    "owl": "An owl is a bird that is awake at night.",
    "bee": "A bee is a flying insect that makes honey.",
    "ant": "An ant is a tiny insect that lives in large groups.",
    "ice": "Ice is frozen water and it feels very cold.",
    "tree": "A tree is a tall plant with a trunk, branches and leaves.",
    "lamp": "A lamp is a thing that gives light in a room.",
    "book": "A book is a set of printed pages that you can read.",
    "fish": "A fish is an animal that lives and swims in water.",
    "bird": "A bird is an animal with feathers and wings.",
    "star": "A star is a bright point of light in the night sky.",
    "moon": "The moon shines in the sky at night.",
    "cake": "A cake is a sweet food that people eat at parties.",
    "door": "A door is what you open to walk into a room.",
    "ship": "A ship is a large boat that sails on the sea.",
    "milk": "Milk is a white drink that comes from cows.",
    "road": "A road is a hard path that cars drive on.",
    "rain": "Rain is water that falls from clouds.",
    "snow": "Snow is soft and white and falls when it is cold.",
    "frog": "A frog is a small green animal that jumps and swims.",
    "boat": "A boat is something that floats and carries people on water.",
    "kite": "A kite flies high in the wind on a long string.",
    "ball": "A ball is a round toy that you can throw and kick.",
    "bell": "A bell is a metal object that rings when you strike it.",
    "coat": "A coat is warm clothing that you wear outside.",
    "desk": "A desk is a table where you sit to write or work.",
    "drum": "A drum is an instrument that you play by hitting it.",
    "gift": "A gift is something you give to someone you like.",
    "leaf": "A leaf is the flat green part of a plant.",
    "nest": "A nest is a home that a bird builds for its eggs.",
    "rose": "A rose is a flower that smells sweet and has thorns.",
    "sock": "A sock is soft clothing that you wear on your foot.",
    "tent": "A tent is a shelter made of cloth that you sleep in when camping.",
    "wolf": "A wolf is a wild animal that looks like a large dog.",
    "apple": "An apple is a round fruit that is red or green.",
    "bread": "Bread is a food made from flour and baked in an oven.",
    "chair": "A chair is a seat with a back for one person.",
    "clock": "A clock is a device that shows the time.",
    "house": "A house is a building where people live.",
    "horse": "A horse is a large animal that people can ride.",
    "water": "Water is a clear liquid that we drink.",
    "plant": "A plant is a living thing that grows in soil.",
    "table": "A table is a piece of furniture with a flat top and legs.",
    "train": "A train is a long vehicle that runs on rails.",
    "mouse": "A mouse is a small animal with a long tail.",
    "heart": "The heart is the part of the body that pumps blood.",
    "lemon": "A lemon is a yellow fruit with a sour taste.",
}
assert set(WORD_GLOSSES) == set(WORDS), "every word of the text images needs a gloss"

# What a shape of a given colour might stand for, for the open-ended "what could it be" answers.
SHAPE_IDEAS: dict[str, str] = {
    "circle": "a ball, a coin or a wheel",
    "square": "a box, a window or a tile",
    "triangle": "a roof, a slice of pizza or a warning sign",
}
COLOUR_IDEAS: dict[str, str] = {
    "red": "an apple or a stop sign",
    "green": "grass or a leaf",
    "blue": "water or the sky",
    "yellow": "the sun or a lemon",
    "purple": "grapes or a plum",
    "orange": "an orange or a pumpkin",
}
COLOUR_MIXES: dict[tuple[str, str], str] = {
    ("red", "blue"): "purple",
    ("red", "yellow"): "orange",
    ("blue", "yellow"): "green",
}
SHAPE_CORNERS = {"circle": 0, "square": 4, "triangle": 3}
THING_COLOURS = (
    ("a lemon", "yellow"),
    ("grass", "green"),
    ("the sky", "blue"),
    ("a ripe tomato", "red"),
    ("a carrot", "orange"),
    ("a plum", "purple"),
    ("a banana", "yellow"),
    ("a leaf", "green"),
    ("a strawberry", "red"),
    ("the sea", "blue"),
    ("a pumpkin", "orange"),
    ("a grape", "purple"),
)


@dataclass(frozen=True)
class QA:
    """One question about one image, with its short answer and a full-sentence answer."""

    question: str
    answer: str  # short answer: a word, phrase, digit or letter
    sentence: str  # the same answer as a complete sentence, for conversations
    qtype: str  # colour|shape|count|position|size|existence|text|chart
    domain: tuple[str, ...] = ()  # answers of this kind, for multiple-choice distractors


# --------------------------------------------------------------------------- small helpers
def article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def join_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def count_phrase(n: int, singular: str) -> str:
    """'no circles', 'one circle', 'three circles'."""
    if n == 0:
        return f"no {singular}s"
    return f"{NUMBER_WORDS[n]} {singular if n == 1 else singular + 's'}"


def position_phrase(position: str) -> str:
    """'top left' -> 'in the top left corner', 'top' -> 'at the top', 'left' -> 'on the left'."""
    if position == "center":
        return "in the center"
    if " " in position:
        return f"in the {position} corner"
    if position in ("left", "right"):
        return f"on the {position}"
    return f"at the {position}"


# --------------------------------------------------------------------------- referring to objects
_ATTRS = ("size", "colour", "shape")
# Shortest phrases first: a reference uses the fewest attributes that single the object out.
_REFERENCE_ATTRS = (
    ("shape",),
    ("colour",),
    ("size",),
    ("colour", "shape"),
    ("size", "shape"),
    ("size", "colour"),
    ("size", "colour", "shape"),
)


def describe_attrs(values: dict[str, str], plural: bool = False) -> str:
    """'large red circle' / 'red object' (plural: 'large red circles' / 'red objects')."""
    words = [values[a] for a in ("size", "colour") if a in values]
    noun = values.get("shape", "object")
    words.append(noun + "s" if plural else noun)
    return " ".join(words)


def full_name(obj: SceneObject) -> str:
    return f"{obj.size} {obj.colour} {obj.shape}"


def _key(obj: SceneObject, attrs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(getattr(obj, a) for a in attrs)


def reference_options(obj: SceneObject, objects: tuple[SceneObject, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    """Every phrase (shortest first) that names ``obj`` and no other object without using ``exclude``."""
    options = []
    for attrs in _REFERENCE_ATTRS:
        if set(attrs) & set(exclude):
            continue
        if sum(_key(o, attrs) == _key(obj, attrs) for o in objects) == 1:
            options.append(describe_attrs({a: getattr(obj, a) for a in attrs}))
    return options


def refer(
    rng: random.Random, obj: SceneObject, objects: tuple[SceneObject, ...], exclude: tuple[str, ...] = ()
) -> str | None:
    options = reference_options(obj, objects, exclude)
    if not options:
        return None
    # Mostly the shortest phrase (the natural one), sometimes a longer but still unique one.
    return options[0] if rng.random() < 0.6 else rng.choice(options)


# --------------------------------------------------------------------------- scene questions
def colour_question(rng: random.Random, scene: Scene) -> QA | None:
    obj = rng.choice(scene.objects)
    ref = refer(rng, obj, scene.objects, exclude=("colour",))
    if ref is None:
        return None
    question = rng.choice((f"What colour is the {ref}?", f"What is the colour of the {ref}?"))
    return QA(question, obj.colour, f"The {ref} is {obj.colour}.", "colour", COLOURS)


def shape_question(rng: random.Random, scene: Scene) -> QA | None:
    obj = rng.choice(scene.objects)
    ref = refer(rng, obj, scene.objects, exclude=("shape",))
    if ref is None:
        return None
    return QA(f"What shape is the {ref}?", obj.shape, f"The {ref} is {with_article(obj.shape)}.", "shape", SHAPES)


def size_question(rng: random.Random, scene: Scene) -> QA | None:
    obj = rng.choice(scene.objects)
    ref = refer(rng, obj, scene.objects, exclude=("size",))
    if ref is None:
        return None
    question = rng.choice((f"Is the {ref} small or large?", f"What size is the {ref}?"))
    return QA(question, obj.size, f"The {ref} is {obj.size}.", "size", SIZES)


def position_question(rng: random.Random, scene: Scene) -> QA | None:
    obj = rng.choice(scene.objects)
    ref = refer(rng, obj, scene.objects)
    question = rng.choice((f"Where is the {ref}?", f"In which part of the image is the {ref}?"))
    sentence = f"The {ref} is {position_phrase(obj.position)} of the image."
    return QA(question, obj.position, sentence, "position", POSITIONS)


_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def relation_question(rng: random.Random, scene: Scene) -> QA | None:
    """Yes/no spatial relation between two objects in different columns (or rows).

    Asked only across grid columns/rows, so the true relation never hinges on a few pixels.
    """
    if len(scene.objects) < 2:
        return None
    a, b = rng.sample(scene.objects, 2)
    axes = []
    if a.col != b.col:
        axes.append("horizontal")
    if a.row != b.row:
        axes.append("vertical")
    axis = rng.choice(axes)
    if axis == "horizontal":
        truth = "left of" if a.col < b.col else "right of"
    else:
        truth = "above" if a.row < b.row else "below"
    asked = truth if rng.random() < 0.5 else _OPPOSITE[truth]
    ref_a, ref_b = refer(rng, a, scene.objects), refer(rng, b, scene.objects)
    answer = "yes" if asked == truth else "no"
    sentence = f"{capitalize(answer)}, the {ref_a} is {truth} the {ref_b}."
    return QA(f"Is the {ref_a} {asked} the {ref_b}?", answer, sentence, "position", ("yes", "no"))


def count_question(rng: random.Random, scene: Scene) -> QA:
    # Usually count something present; sometimes an arbitrary category (the answer may be 0).
    attrs = rng.choice(((), ("shape",), ("shape",), ("colour",), ("colour", "shape"), ("size", "shape")))
    if rng.random() < 0.8:
        values = {a: getattr(rng.choice(scene.objects), a) for a in attrs}
    else:
        pools = {"shape": SHAPES, "colour": COLOURS, "size": SIZES}
        values = {a: rng.choice(pools[a]) for a in attrs}
    n = sum(all(getattr(o, a) == v for a, v in values.items()) for o in scene.objects)
    plural = describe_attrs(values, plural=True)
    question = rng.choice((f"How many {plural} are there?", f"How many {plural} can you see?"))
    if n == 0:
        sentence = f"There are no {plural}."
    elif n == 1:
        sentence = f"There is one {describe_attrs(values)}."
    else:
        sentence = f"There are {NUMBER_WORDS[n]} {plural}."
    return QA(question, str(n), sentence, "count", COUNT_DOMAIN)


SCENE_QUESTIONS = {
    "colour": colour_question,
    "shape": shape_question,
    "count": count_question,
    "position": position_question,
    "relation": relation_question,
    "size": size_question,
}
SCENE_QUESTION_WEIGHTS = {"colour": 4, "shape": 3, "count": 4, "position": 3, "relation": 3, "size": 3}


def scene_question(rng: random.Random, scene: Scene, kinds: tuple[str, ...] = tuple(SCENE_QUESTIONS)) -> QA:
    """A random answerable question of one of ``kinds`` (falls back to counting, always answerable)."""
    weights = [SCENE_QUESTION_WEIGHTS[k] for k in kinds]
    for _ in range(8):
        qa = SCENE_QUESTIONS[rng.choices(kinds, weights=weights)[0]](rng, scene)
        if qa is not None:
            return qa
    return count_question(rng, scene)


def existence_question(rng: random.Random, scene: Scene, present: bool) -> QA:
    """POPE-style yes/no; negatives name a colour, shape or combination absent from the scene."""
    objects = scene.objects
    form = rng.choices(("colour shape", "shape", "colour"), weights=(7, 1.5, 1.5))[0]
    if present:
        obj = rng.choice(objects)
        colour, shape = obj.colour, obj.shape
    else:
        if form == "shape":
            absent = [s for s in SHAPES if all(o.shape != s for o in objects)]
            if not absent:
                form = "colour shape"
            shape = rng.choice(absent) if absent else ""
        if form == "colour":
            colour = rng.choice([c for c in COLOURS if all(o.colour != c for o in objects)])
        if form == "colour shape":
            combos = [(c, s) for c in COLOURS for s in SHAPES if all((o.colour, o.shape) != (c, s) for o in objects)]
            colour, shape = rng.choice(combos)
    if form == "colour":
        question = f"Is there anything {colour} in the image?"
        sentence = (
            f"Yes, there is something {colour} in the image."
            if present
            else f"No, there is nothing {colour} in the image."
        )
    else:
        thing = shape if form == "shape" else f"{colour} {shape}"
        question = f"Is there {with_article(thing)} in the image?"
        sentence = (
            f"Yes, there is {with_article(thing)} in the image."
            if present
            else f"No, there is no {thing} in the image."
        )
    return QA(question, "yes" if present else "no", sentence, "existence", ("yes", "no"))


# --------------------------------------------------------------------------- text and chart questions
def text_question(rng: random.Random, spec: TextImage) -> QA:
    word = spec.word
    kind = rng.choices(("word", "first", "last", "length", "ink", "frame"), weights=(9, 2.5, 2, 2, 2, 2.5))[0]
    if kind == "first":
        return QA(
            "What is the first letter of the word?",
            word[0],
            f"The word starts with the letter {word[0].upper()}.",
            "text",
        )
    if kind == "last":
        return QA(
            "What is the last letter of the word?",
            word[-1],
            f"The word ends with the letter {word[-1].upper()}.",
            "text",
        )
    if kind == "length":
        n = len(word)
        return QA(
            "How many letters does the word have?",
            str(n),
            f"The word '{word}' has {NUMBER_WORDS[n]} letters.",
            "text",
            ("3", "4", "5", "6"),
        )
    if kind == "ink":
        return QA(
            "What colour is the text?", spec.ink, f"The text is written in {spec.ink}.", "text", tuple(TEXT_COLOURS)
        )
    if kind == "frame":
        if spec.frame is not None and rng.random() < 0.6:
            return QA(
                "What colour is the frame around the word?", spec.frame, f"The frame is {spec.frame}.", "text", COLOURS
            )
        answer = "yes" if spec.frame else "no"
        sentence = (
            f"Yes, there is {with_article(spec.frame)} frame around the word."
            if spec.frame
            else "No, the word has no frame."
        )
        return QA("Is there a frame around the word?", answer, sentence, "text", ("yes", "no"))
    question = rng.choice(("What word is written in the image?", "What does the text in the image say?"))
    return QA(question, word, f"The image shows the word '{word}'.", "text", WORDS)


CHART_VALUES = tuple(str(v) for v in range(1, 10))  # the values a chart's bars and points take


def _unique_extreme(chart: Chart, best: int) -> str | None:
    hits = [label for label, value in zip(chart.labels, chart.values, strict=True) if value == best]
    return hits[0] if len(hits) == 1 else None


def _bar_questions(rng: random.Random, chart: Chart, label: str) -> list[QA]:
    """What a bar chart can be asked: ``label``'s value, the extremes, a comparison, the count."""
    labels, values = chart.labels, chart.values
    top, bottom = max(values), min(values)
    label_domain = labels
    candidates: list[QA] = []
    value = chart.value_of(label)
    candidates.append(
        QA(
            f"What is the value of bar {label}?",
            str(value),
            f"Bar {label} has a value of {value}.",
            "chart",
            CHART_VALUES,
        )
    )
    if (tallest := _unique_extreme(chart, top)) is not None:
        candidates.append(
            QA("Which bar is the tallest?", tallest, f"Bar {tallest} is the tallest.", "chart", label_domain)
        )
    if (shortest := _unique_extreme(chart, bottom)) is not None:
        candidates.append(
            QA("Which bar is the shortest?", shortest, f"Bar {shortest} is the shortest.", "chart", label_domain)
        )
    a, b = rng.sample(labels, 2)
    if chart.value_of(a) != chart.value_of(b):
        taller = a if chart.value_of(a) > chart.value_of(b) else b
        candidates.append(QA(f"Which bar is taller, {a} or {b}?", taller, f"Bar {taller} is taller.", "chart", (a, b)))
    candidates.append(
        QA(
            "What is the highest value in the bar chart?",
            str(top),
            f"The highest value in the bar chart is {top}.",
            "chart",
            CHART_VALUES,
        )
    )
    candidates.append(
        QA(
            "How many bars are there?",
            str(len(labels)),
            f"There are {NUMBER_WORDS[len(labels)]} bars.",
            "chart",
            ("2", "3", "4", "5"),
        )
    )
    return candidates


def _line_questions(rng: random.Random, chart: Chart, label: str) -> list[QA]:
    """What a line chart can be asked: the extremes, the value at ``label``, a trend, the count."""
    labels, values = chart.labels, chart.values
    top, bottom = max(values), min(values)
    label_domain = labels
    candidates: list[QA] = []
    value = chart.value_of(label)
    candidates.append(
        QA(
            "What is the highest value in the line chart?",
            str(top),
            f"The highest value in the line chart is {top}.",
            "chart",
            CHART_VALUES,
        )
    )
    candidates.append(
        QA(
            "What is the lowest value in the line chart?",
            str(bottom),
            f"The lowest value in the line chart is {bottom}.",
            "chart",
            CHART_VALUES,
        )
    )
    candidates.append(
        QA(
            f"What is the value at point {label}?",
            str(value),
            f"The value at point {label} is {value}.",
            "chart",
            CHART_VALUES,
        )
    )
    if (peak := _unique_extreme(chart, top)) is not None:
        candidates.append(
            QA(
                "At which point does the line reach its highest value?",
                peak,
                f"The line is highest at point {peak}.",
                "chart",
                label_domain,
            )
        )
    i = rng.randrange(len(labels) - 1)
    if values[i] != values[i + 1]:
        direction = "up" if values[i + 1] > values[i] else "down"
        candidates.append(
            QA(
                f"Does the line go up or down from point {labels[i]} to point {labels[i + 1]}?",
                direction,
                f"The line goes {direction} from point {labels[i]} to point {labels[i + 1]}.",
                "chart",
                ("up", "down"),
            )
        )
    candidates.append(
        QA(
            "How many points are there in the line chart?",
            str(len(labels)),
            f"There are {NUMBER_WORDS[len(labels)]} points.",
            "chart",
            ("3", "4", "5", "6"),
        )
    )
    return candidates


def chart_question(rng: random.Random, chart: Chart) -> QA:
    label = rng.choice(chart.labels)
    questions = _bar_questions if chart.chart_type == "bar" else _line_questions
    return rng.choice(questions(rng, chart, label))


def image_question(rng: random.Random, spec: Spec) -> QA:
    if isinstance(spec, Scene):
        return scene_question(rng, spec)
    if isinstance(spec, TextImage):
        return text_question(rng, spec)
    return chart_question(rng, spec)


def multiple_choice(rng: random.Random, qa: QA) -> tuple[str, str]:
    """(question with lettered options and the MMBench-style instruction, correct letter).

    The correct option lands on a uniformly random letter so a model cannot learn a position bias.
    """
    others = [d for d in qa.domain if d != qa.answer]
    distractors = rng.sample(others, min(len(OPTION_LETTERS) - 1, len(others)))
    correct = rng.randrange(len(distractors) + 1)
    options = distractors[:correct] + [qa.answer] + distractors[correct:]
    lines = [f"{letter}. {option}" for letter, option in zip(OPTION_LETTERS, options, strict=False)]
    return qa.question + "\n" + "\n".join(lines) + MC_INSTRUCTION, OPTION_LETTERS[correct]


# --------------------------------------------------------------------------- captions
def caption(rng: random.Random, spec: Spec) -> str:
    """Short caption naming every object (scenes), the word (text) or the chart type and bars."""
    if isinstance(spec, Scene):
        listing = join_words([with_article(full_name(o)) for o in spec.objects])
        n = len(spec.objects)
        return rng.choice(
            (
                f"{listing}.",
                f"{listing} on {with_article(spec.background)} background.",
                f"a picture of {listing}.",
                f"{count_phrase(n, 'shape')}: {listing}.",
            )
        )
    if isinstance(spec, TextImage):
        options = [
            f"a sign with the word '{spec.word}' written in {spec.ink}.",
            f"the word '{spec.word}' in {spec.ink} capital letters.",
            f"the word '{spec.word}' on {with_article(spec.background)} background.",
        ]
        if spec.frame:
            options.append(f"the word '{spec.word}' inside {with_article(spec.frame)} frame.")
        return rng.choice(options)
    n, last = len(spec.labels), spec.labels[-1]
    if spec.chart_type == "bar":
        return rng.choice(
            (
                f"a bar chart with {NUMBER_WORDS[n]} {spec.colour} bars labelled A to {last}.",
                f"{with_article(spec.colour)} bar chart with {NUMBER_WORDS[n]} bars.",
            )
        )
    return rng.choice(
        (
            f"a line chart with {NUMBER_WORDS[n]} {spec.colour} points labelled A to {last}.",
            f"{with_article(spec.colour)} line chart with {NUMBER_WORDS[n]} points.",
        )
    )


# --------------------------------------------------------------------------- long descriptions
def _relation_sentence(rng: random.Random, scene: Scene) -> str | None:
    pairs = [(a, b) for a in scene.objects for b in scene.objects if a is not b and (a.col < b.col or a.row < b.row)]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    rel = "left of" if a.col < b.col else "above"
    return f"The {refer(rng, a, scene.objects)} is {rel} the {refer(rng, b, scene.objects)}."


def _summary_sentence(scene: Scene) -> str:
    objects = scene.objects
    if len(objects) == 1:
        return f"It is the only object in the picture, and it is {objects[0].size}."
    sizes = {o.size for o in objects}
    if len(sizes) == 1:
        return f"All of the objects are {objects[0].size}."
    counts = [(s, sum(o.shape == s for o in objects)) for s in SHAPES]
    parts = [count_phrase(n, s) for s, n in counts if n]
    return f"In total there {'is' if counts and parts[0].startswith('one ') else 'are'} {join_words(parts)}."


def describe_scene(rng: random.Random, scene: Scene) -> str:
    n = len(scene.objects)
    sentences = [f"The image shows {count_phrase(n, 'object')} on {with_article(scene.background)} background."]
    for obj in scene.objects:
        sentences.append(f"{capitalize(position_phrase(obj.position))} there is {with_article(full_name(obj))}.")
    if (relation := _relation_sentence(rng, scene)) is not None:
        sentences.append(relation)
    if n < 4:  # keeps descriptions at 3-6 sentences
        sentences.append(_summary_sentence(scene))
    return " ".join(sentences)


def describe_text(spec: TextImage) -> str:
    word = spec.word
    sentences = [
        f"The image shows the word '{word.upper()}' written in large {spec.ink} capital letters on {with_article(spec.background)} background.",
        f"It is surrounded by {with_article(spec.frame)} frame." if spec.frame else "There is no frame around it.",
        f"The word has {NUMBER_WORDS[len(word)]} letters; it starts with {word[0].upper()} and ends with {word[-1].upper()}.",
        WORD_GLOSSES[word],
    ]
    return " ".join(sentences)


def describe_chart(spec: Chart) -> str:
    n, labels, values = len(spec.labels), spec.labels, spec.values
    top, bottom = max(values), min(values)
    tops = [lab for lab, v in zip(labels, values, strict=True) if v == top]
    bottoms = [lab for lab, v in zip(labels, values, strict=True) if v == bottom]
    if spec.chart_type == "bar":
        listing = join_words([f"bar {lab} is {v}" for lab, v in zip(labels, values, strict=True)])
        sentences = [
            f"This is a bar chart with {NUMBER_WORDS[n]} {spec.colour} bars on a white background.",
            f"The bars are labelled {join_words(list(labels))} from left to right.",
            f"Their values are as follows: {listing}.",
            f"The highest value is {top}, reached by bar{'s' if len(tops) > 1 else ''} {join_words(tops)}, "
            f"and the lowest is {bottom}, for bar{'s' if len(bottoms) > 1 else ''} {join_words(bottoms)}.",
        ]
    else:
        if values[-1] == values[0]:
            trend = f"The line ends at the same value, {values[0]}, that it starts with."
        else:
            trend = f"Overall the line goes {'up' if values[-1] > values[0] else 'down'} from point A to point {labels[-1]}."
        sentences = [
            f"This is a line chart with {NUMBER_WORDS[n]} points drawn in {spec.colour} on a white background.",
            f"The points are labelled {join_words(list(labels))} from left to right.",
            f"The values are {join_words([str(v) for v in values])}.",
            f"The line reaches its highest value, {top}, at point{'s' if len(tops) > 1 else ''} {join_words(tops)} "
            f"and its lowest value, {bottom}, at point{'s' if len(bottoms) > 1 else ''} {join_words(bottoms)}.",
            trend,
        ]
    return " ".join(sentences)


def describe(rng: random.Random, spec: Spec) -> str:
    if isinstance(spec, Scene):
        return describe_scene(rng, spec)
    if isinstance(spec, TextImage):
        return describe_text(spec)
    return describe_chart(spec)


# --------------------------------------------------------------------------- open instructions (ALLaVA-like)
_ROWS = ("top", "middle", "bottom")
_COLUMN_PHRASES = ("on the left", "in the middle", "on the right")


def _arrangement(scene: Scene) -> str:
    sentences = ["The objects are laid out on an invisible three by three grid."]
    for row, row_name in enumerate(_ROWS):
        here = [o for o in scene.objects if o.row == row]
        if not here:
            sentences.append(f"The {row_name} row is empty.")
            continue
        parts = [f"{with_article(full_name(o))} {_COLUMN_PHRASES[o.col]}" for o in here]
        sentences.append(f"In the {row_name} row there is {join_words(parts)}.")
    cols = {o.col for o in scene.objects}
    if len(scene.objects) > 1 and len(cols) == 1:
        sentences.append("All of the objects are stacked in the same column.")
    elif len(scene.objects) > 1 and len({o.row for o in scene.objects}) == 1:
        sentences.append("All of the objects are lined up in the same row.")
    else:
        sentences.append(f"Apart from the objects, the {scene.background} background is plain.")
    return " ".join(sentences)


def _interpretation(scene: Scene) -> str:
    sentences = []
    for obj in scene.objects:
        sentences.append(
            f"The {full_name(obj)} {position_phrase(obj.position)} could stand for {SHAPE_IDEAS[obj.shape]}, "
            f"and its {obj.colour} colour is reminiscent of {COLOUR_IDEAS[obj.colour]}."
        )
    what = "they are simply flat geometric shapes" if len(scene.objects) > 1 else "it is simply a flat geometric shape"
    sentences.append(
        f"Still, {what} drawn on {with_article(scene.background)} background, "
        "so any meaning comes from the viewer's imagination."
    )
    return " ".join(sentences)


def _size_comparison(scene: Scene) -> str:
    large = [o for o in scene.objects if o.size == "large"]
    small = [o for o in scene.objects if o.size == "small"]
    sentences = [
        f"There {'is' if len(large) == 1 else 'are'} {count_phrase(len(large), 'large object')} "
        f"and {count_phrase(len(small), 'small object')}."
    ]
    if large:
        sentences.append(
            f"The large {'one is' if len(large) == 1 else 'ones are'} {join_words(['the ' + o.colour + ' ' + o.shape for o in large])}."
        )
    if small:
        sentences.append(
            f"The small {'one is' if len(small) == 1 else 'ones are'} {join_words(['the ' + o.colour + ' ' + o.shape for o in small])}."
        )
    if large and small:
        sentences.append("A large object is roughly twice as wide as a small one.")
    else:
        sentences.append(f"Since every object is {scene.objects[0].size}, none of them stands out by its size.")
    return " ".join(sentences)


def _shape_census(scene: Scene) -> str:
    sentences = []
    for shape in SHAPES:
        these = [o for o in scene.objects if o.shape == shape]
        if these:
            colours = join_words([f"{o.size} {o.colour}" for o in these])
            sentences.append(
                f"There {'is' if len(these) == 1 else 'are'} {count_phrase(len(these), shape)} ({colours})."
            )
        else:
            sentences.append(f"There are no {shape}s.")
    sentences.append(f"That makes {count_phrase(len(scene.objects), 'object')} in total.")
    return " ".join(sentences)


def _colour_overview(scene: Scene) -> str:
    used = [c for c in COLOURS if any(o.colour == c for o in scene.objects)]
    sentences = [f"The picture uses {count_phrase(len(used), 'colour')} for its objects: {join_words(used)}."]
    for c in used:
        these = [o for o in scene.objects if o.colour == c]
        sentences.append(
            f"{capitalize(c)} is used for {join_words([with_article(o.size + ' ' + o.shape) for o in these])}."
        )
    sentences.append(f"The background is {scene.background}, which makes the colours easy to see.")
    return " ".join(sentences)


def _removal(rng: random.Random, scene: Scene) -> tuple[str, str] | None:
    if len(scene.objects) < 2:
        return None
    gone = rng.choice(scene.objects)
    ref = refer(rng, gone, scene.objects)
    rest = [o for o in scene.objects if o is not gone]
    answer = (
        f"Without the {ref}, {count_phrase(len(rest), 'object')} would remain: "
        f"{join_words([with_article(full_name(o)) + ' ' + position_phrase(o.position) for o in rest])}. "
        f"The spot {position_phrase(gone.position)} would then be empty."
    )
    return f"If the {ref} were removed, what would remain?", answer


def open_exchange(rng: random.Random, spec: Spec) -> tuple[str, str]:
    """An open instruction with a long, accurate answer about one image."""
    if isinstance(spec, TextImage):
        question = rng.choice(
            ("What does the sign say and what could it mean?", "Read the text in the image and explain it.")
        )
        return question, describe_text(spec) + f" The word '{spec.word}' is a common English word."
    if isinstance(spec, Chart):
        question = rng.choice(("Analyze this chart in detail.", "Summarize the chart and what it shows."))
        total = sum(spec.values)
        extra = f" The values add up to {total}, so the average is about {total / len(spec.values):.1f}."
        return question, describe_chart(spec) + extra
    choices = [
        ("Describe the arrangement of the objects.", _arrangement(spec)),
        ("What could these shapes represent?", _interpretation(spec)),
        ("Compare the sizes of the objects.", _size_comparison(spec)),
        ("How many objects of each shape are there? Explain.", _shape_census(spec)),
        ("Tell me about the colours in this image.", _colour_overview(spec)),
    ]
    if (removal := _removal(rng, spec)) is not None:
        choices.append(removal)
    return rng.choice(choices)


# --------------------------------------------------------------------------- text-only instructions
def text_only_exchange(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(
        (
            "mix",
            "add",
            "subtract",
            "times",
            "spell",
            "length",
            "first_letter",
            "longer",
            "corners",
            "meaning",
            "thing_colour",
            "compare",
            "next_letter",
        )
    )
    if kind == "mix":
        (a, b), result = rng.choice(tuple(COLOUR_MIXES.items()))
        if rng.random() < 0.5:
            a, b = b, a
        return f"What colour do you get by mixing {a} and {b}?", f"Mixing {a} and {b} gives {result}."
    if kind == "add":
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"What is {a} plus {b}?", str(a + b)
    if kind == "subtract":
        a, b = sorted((rng.randint(0, 9), rng.randint(0, 9)), reverse=True)
        return f"What is {a} minus {b}?", str(a - b)
    if kind == "times":
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        return f"What is {a} times {b}?", str(a * b)
    if kind == "first_letter":
        word = rng.choice(WORDS)
        return (
            f"What is the first letter of the word '{word}'?",
            f"The word '{word}' starts with the letter {word[0].upper()}.",
        )
    if kind == "longer":
        a, b = rng.sample(WORDS, 2)
        if len(a) == len(b):
            return (
                f"Do the words '{a}' and '{b}' have the same number of letters?",
                f"Yes, both words have {NUMBER_WORDS[len(a)]} letters.",
            )
        longer = a if len(a) > len(b) else b
        return f"Which word is longer, '{a}' or '{b}'?", f"The word '{longer}' is longer."
    if kind == "thing_colour":
        thing, colour = rng.choice(THING_COLOURS)
        return f"What colour is {thing}?", f"{capitalize(thing)} is usually {colour}."
    if kind == "spell":
        word = rng.choice(WORDS)
        return f"How do you spell the word '{word}'?", "-".join(word)
    if kind == "length":
        word = rng.choice(WORDS)
        return (
            f"How many letters are in the word '{word}'?",
            f"The word '{word}' has {NUMBER_WORDS[len(word)]} letters.",
        )
    if kind == "corners":
        shape = rng.choice(SHAPES)
        n = SHAPE_CORNERS[shape]
        answer = f"A {shape} has {NUMBER_WORDS[n]} corners." if n else "A circle has no corners."
        return f"How many corners does a {shape} have?", answer
    if kind == "meaning":
        word = rng.choice(WORDS)
        return f"What does the word '{word}' mean?", WORD_GLOSSES[word]
    if kind == "compare":
        a, b = rng.sample(range(10), 2)
        return f"Which number is larger, {a} or {b}?", f"{max(a, b)} is larger than {min(a, b)}."
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = rng.randrange(len(letters) - 1)
    return (
        f"Which letter comes after {letters[i].upper()} in the alphabet?",
        f"The letter after {letters[i].upper()} is {letters[i + 1].upper()}.",
    )


# --------------------------------------------------------------------------- language-model corpus
def reading_passage(rng: random.Random, spec: Spec) -> str:
    """A description followed by questions answered from it: reading comprehension, the skill a real
    LLM brings from pretraining and that LLaVA-style tuning relies on (answer from the context, here
    the text; later the image tokens) rather than from priors."""
    context = describe(rng, spec) if rng.random() < 0.5 else capitalize(caption(rng, spec))
    answers = []
    for _ in range(rng.randint(1, 3)):
        qa = image_question(rng, spec)
        answers.append(f"{qa.question} {qa.answer if rng.random() < 0.6 else qa.sentence}")
    return " ".join([context, *answers])


def corpus_line(rng: random.Random, image_size: int) -> str:
    """One line of plain English in the world's vocabulary (no rendering needed)."""
    kind = rng.choices(
        ("caption", "description", "qa", "text_only", "gloss", "open", "reading"), weights=(3, 3, 4, 2, 1, 1, 6)
    )[0]
    if kind == "reading":
        return reading_passage(rng, sample_any(rng, image_size, (0.7, 0.15, 0.15)))
    if kind == "text_only":
        question, answer = text_only_exchange(rng)
        return f"{question} {answer}"
    if kind == "gloss":
        return WORD_GLOSSES[rng.choice(WORDS)]
    if kind == "qa":
        spec = sample_any(rng, image_size, (0.7, 0.15, 0.15))
        qa = image_question(rng, spec)
        return f"{qa.question} {qa.sentence}"
    if kind == "open":
        question, answer = open_exchange(rng, sample_scene(rng, image_size))
        return f"{question} {answer}"
    spec = sample_any(rng, image_size, (0.6, 0.2, 0.2))
    if kind == "caption":
        return capitalize(caption(rng, spec))
    return describe(rng, spec)
