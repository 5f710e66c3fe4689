"""The short-answer twins: VQAv2, GQA, VizWiz and TextVQA, in their official annotation formats."""

from __future__ import annotations

import random

from impkit.data.synth import language as lang
from impkit.data.synth.scene import COLOURS, SHAPES, WORDS, Scene, TextImage
from impkit.eval import prompts
from impkit.eval.scoring.vqa import normalize_answer
from impkit.eval.twins.common import (
    Heldout,
    HeldoutImage,
    Prompt,
    TwinFiles,
    human_answers,
    pick,
    usable,
    vqa_answer_type,
    wrong_pool,
)

# --------------------------------------------------------------------------- VQAv2
# VQAv2 question types are the question's opening words from a fixed list of 65; these are the
# ones the world's templates produce (longest first, so "what color is the" wins over "what").
_VQA_QUESTION_TYPES = (
    "what color is the",
    "what colour is the",
    "what is the color of the",
    "what is the colour of the",
    "how many",
    "is there a",
    "is there an",
    "is there",
    "is the",
    "what shape is the",
    "where is the",
    "what size is the",
    "in which",
    "what is the",
    "what",
    "is",
    "where",
    "which",
)


def vqa_question_type(question: str) -> str:
    lowered = question.lower()
    for prefix in _VQA_QUESTION_TYPES:
        if lowered.startswith(prefix + " "):
            return prefix
    return "none of the above"  # VQAv2's own catch-all type


def _scene_qas(rng: random.Random, scene: Scene, n: int) -> list[lang.QA]:
    """Up to ``n`` distinct questions about one scene: the training question kinds plus existence."""
    qas: list[lang.QA] = []
    for _ in range(4 * n):
        if rng.random() < 0.25:
            qa = lang.existence_question(rng, scene, present=rng.random() < 0.5)
        else:
            qa = lang.scene_question(rng, scene)
        if usable(qa) and all(qa.question != q.question for q in qas):
            qas.append(qa)
        if len(qas) == n:
            break
    return qas


def vqav2(heldout: Heldout, rng: random.Random, n: int) -> TwinFiles:
    """``{"questions": [...]}`` and ``{"annotations": [...]}`` as the VQAv2 val files; question ids
    follow VQAv2's ``image_id * 1000 + k``; ten simulated human answers per question."""
    questions, annotations, prompt_rows = [], [], []
    for item in pick(rng, heldout.scenes, len(heldout.scenes)):
        if len(questions) == n:
            break
        for k, qa in enumerate(_scene_qas(rng, item.spec, min(3, n - len(questions)))):
            qid = item.index * 1000 + k
            questions.append({"image_id": item.index, "question": qa.question, "question_id": qid})
            answers = human_answers(rng, qa.answer, wrong_pool(qa))
            annotations.append(
                {
                    "question_type": vqa_question_type(qa.question),
                    "multiple_choice_answer": qa.answer,
                    "answers": [
                        {"answer": a, "answer_confidence": c, "answer_id": i + 1} for i, (a, c) in enumerate(answers)
                    ],
                    "image_id": item.index,
                    "answer_type": vqa_answer_type(qa.answer),
                    "question_id": qid,
                }
            )
            prompt_rows.append(
                Prompt(
                    str(qid), item.image, prompts.short_answer(qa.question), qa.answer, annotations[-1]["question_type"]
                )
            )
    return TwinFiles(
        files={"questions.json": {"questions": questions}, "annotations.json": {"annotations": annotations}},
        prompts=prompt_rows,
        annotations="annotations.json",
        questions="questions.json",
    )


# --------------------------------------------------------------------------- GQA
def _choose_colour(rng: random.Random, scene: Scene) -> lang.QA | None:
    """GQA's "choose" structure: the answer is one of two named values."""
    obj = rng.choice(scene.objects)
    ref = lang.refer(rng, obj, scene.objects, exclude=("colour",))
    if ref is None:
        return None
    other = rng.choice([c for c in COLOURS if c != obj.colour])
    a, b = (obj.colour, other) if rng.random() < 0.5 else (other, obj.colour)
    return lang.QA(f"Is the {ref} {a} or {b}?", obj.colour, "", "colour_choose", (a, b))


def _logical_and(rng: random.Random, scene: Scene) -> lang.QA:
    """GQA's "logical" structure: two existence checks joined by "and"."""
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    present = sorted({(o.colour, o.shape) for o in scene.objects})
    absent = [c for c in combos if c not in present]
    first = rng.choice(present)
    second = rng.choice(present if rng.random() < 0.5 else absent)
    answer = "yes" if second in present else "no"
    things = [f"{lang.with_article(f'{c} {s}')}" for c, s in (first, second)]
    if rng.random() < 0.5:
        things.reverse()
    return lang.QA(f"Are there both {things[0]} and {things[1]} in the image?", answer, "", "logical", ("yes", "no"))


# qtype -> GQA's (structural, semantic, detailed) type triple
_GQA_TYPES = {
    "colour": ("query", "attr", "color"),
    "colour_choose": ("choose", "attr", "colorChoose"),
    "shape": ("query", "attr", "shape"),
    "size": ("query", "attr", "size"),
    "size_choose": ("choose", "attr", "sizeChoose"),
    "position": ("query", "rel", "positionQuery"),
    "relation": ("verify", "rel", "relVerify"),
    "existence": ("verify", "obj", "exist"),
    "logical": ("logical", "obj", "existAnd"),
}


def _gqa_qa(rng: random.Random, scene: Scene) -> tuple[lang.QA, str] | None:
    kind = rng.choices(
        ("colour", "colour_choose", "shape", "size", "position", "relation", "existence", "logical"),
        weights=(3, 2, 3, 2, 2, 3, 3, 2),
    )[0]
    if kind == "colour_choose":
        qa = _choose_colour(rng, scene)
    elif kind == "logical":
        qa = _logical_and(rng, scene)
    elif kind == "existence":
        qa = lang.existence_question(rng, scene, present=rng.random() < 0.5)
    elif kind == "relation":
        qa = lang.relation_question(rng, scene)
    else:
        qa = lang.SCENE_QUESTIONS[kind](rng, scene)
    if qa is None:
        return None
    if kind == "size" and " or " in qa.question:
        kind = "size_choose"
    return qa, kind


def gqa(heldout: Heldout, rng: random.Random, n: int) -> TwinFiles:
    """``testdev_balanced_questions.json``: ``{qid: {imageId, question, answer, fullAnswer,
    isBalanced, types}}``. GQA asks no counting questions, so neither does its twin; about one
    question in six is marked unbalanced (GQA's "all" questions), which the scorer skips."""
    data, prompt_rows = {}, []
    scenes = heldout.scenes
    order = pick(rng, scenes, len(scenes))
    i = 0
    while len(data) < n and i < 8 * n:
        item = order[i % len(order)]
        i += 1
        made = _gqa_qa(rng, item.spec)
        if made is None:
            continue
        qa, kind = made
        if any(q["imageId"] == item.stem and q["question"] == qa.question for q in data.values()):
            continue
        qid = f"{20_000_000 + len(data)}"
        structural, semantic, detailed = _GQA_TYPES[kind]
        data[qid] = {
            "imageId": item.stem,
            "question": qa.question,
            "answer": qa.answer,
            "fullAnswer": qa.sentence or f"The answer is {qa.answer}.",
            "isBalanced": rng.random() >= 1 / 6,
            "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
        }
        prompt_rows.append(Prompt(qid, item.image, prompts.short_answer(qa.question), qa.answer, detailed))
    return TwinFiles(
        files={"testdev_balanced_questions.json": data},
        prompts=prompt_rows,
        annotations="testdev_balanced_questions.json",
        info={"balanced": sum(q["isBalanced"] for q in data.values())},
    )


# --------------------------------------------------------------------------- VizWiz
UNANSWERABLE = "unanswerable"


def _unanswerable(rng: random.Random, item: HeldoutImage) -> str | None:
    """A question about something the image does not show (VizWiz's unanswerable questions are
    mostly about content the photo misses)."""
    spec = item.spec
    if isinstance(spec, Scene):
        missing = [s for s in SHAPES if all(o.shape != s for o in spec.objects)]
        options = ["What is written on the sign?", "What does the text in the image say?"]
        if missing:
            options.append(f"What colour is the {rng.choice(missing)}?")
        return rng.choice(options)
    if isinstance(spec, TextImage):
        return rng.choice((f"What colour is the {rng.choice(SHAPES)}?", "What is the value of bar B?"))
    return rng.choice(("What word is written on the sign?", f"What colour is the {rng.choice(SHAPES)}?"))


def _vizwiz_answers(rng: random.Random, gold: str, wrong: list[str]) -> list[dict[str, str]]:
    answers = human_answers(rng, gold, [*wrong, UNANSWERABLE], variants=False)
    return [{"answer": a, "answer_confidence": c} for a, c in answers]


def vizwiz(heldout: Heldout, rng: random.Random, n: int) -> TwinFiles:
    """``val.json``: ``[{image, question, answers: [{answer, answer_confidence}×10], answerable,
    answer_type}]``, one question per image (the image name is the question id), about a fifth of
    them unanswerable (most humans answer "unanswerable"; answer_type "unanswerable")."""
    records, prompt_rows = [], []
    for item in pick(rng, heldout.images, n):
        if rng.random() < 0.2 and (question := _unanswerable(rng, item)) is not None:
            gold, answerable, answer_type = UNANSWERABLE, 0, "unanswerable"
            answers = _vizwiz_answers(rng, gold, ["2", "blue", "cat"])
        else:
            qa = None
            # VizWiz's human answers are lowercase and compared without normalising, so only
            # answers that the normaliser leaves as they are (not a chart label "A") are asked.
            while qa is None or normalize_answer(qa.answer) != qa.answer.lower():
                qa = lang.image_question(rng, item.spec)
            question, gold, answerable = qa.question, qa.answer.lower(), 1
            answer_type = "yes/no" if gold in ("yes", "no") else "number" if gold.isdigit() else "other"
            answers = _vizwiz_answers(rng, gold, [w.lower() for w in wrong_pool(qa)] or list(WORDS[:3]))
        records.append(
            {
                "image": item.image,
                "question": question,
                "answers": answers,
                "answerable": answerable,
                "answer_type": answer_type,
            }
        )
        prompt_rows.append(Prompt(item.image, item.image, prompts.vizwiz(question), gold, answer_type))
    records.sort(key=lambda r: r["image"])
    prompt_rows.sort(key=lambda p: p.id)
    return TwinFiles(files={"val.json": records}, prompts=prompt_rows, annotations="val.json")


# --------------------------------------------------------------------------- TextVQA
def _misread(rng: random.Random, word: str) -> str:
    """An OCR engine's near miss: one letter of the word replaced by a look-alike."""
    lookalike = {"o": "0", "i": "1", "l": "1", "e": "c", "a": "o", "s": "5", "b": "8", "t": "f", "n": "h"}
    spots = [i for i, ch in enumerate(word) if ch in lookalike]
    if not spots:
        return word[:-1]
    i = rng.choice(spots)
    return word[:i] + lookalike[word[i]] + word[i + 1 :]


def textvqa(heldout: Heldout, rng: random.Random, n: int) -> TwinFiles:
    """``TextVQA_0.5.1_val.json``: ``{"data": [{question_id, image_id, question, answers: [10],
    ocr_tokens}]}`` about the text images; the OCR tokens are the word as drawn (capitals), plus
    sometimes a misread copy or a second, spurious token."""
    data, prompt_rows = [], []
    texts = heldout.texts
    order = pick(rng, texts, len(texts))
    tokens_of: dict[str, list[str]] = {}
    i = 0
    while len(data) < n and i < 6 * n and order:
        item = order[i % len(order)]
        i += 1
        spec = item.spec
        qa = lang.text_question(rng, spec)
        if not usable(qa) or any(d["image_id"] == item.stem and d["question"] == qa.question for d in data):
            continue
        if item.image not in tokens_of:
            tokens = [spec.word.upper()]
            roll = rng.random()
            if roll < 0.25:
                tokens.append(_misread(rng, spec.word).upper())
            elif roll < 0.4:
                tokens.insert(rng.randrange(2), rng.choice(("1", "II", "SALE", "A")))
            tokens_of[item.image] = tokens
        wrong = wrong_pool(qa) or [w for w in WORDS if w != qa.answer][:5]
        answers = [a for a, _ in human_answers(rng, qa.answer, wrong)]
        qid = 34_602 + len(data)  # TextVQA val ids start at 34602
        data.append(
            {
                "question": qa.question,
                "image_id": item.stem,
                "image_classes": ["sign"],
                "question_tokens": qa.question.rstrip("?").lower().split(),
                "question_id": qid,
                "set_name": "val",
                "answers": answers,
                "ocr_tokens": tokens_of[item.image],
            }
        )
        prompt = prompts.textvqa(qa.question, tokens_of[item.image])
        prompt_rows.append(Prompt(str(qid), item.image, prompt, qa.answer, vqa_question_type(qa.question)))
    return TwinFiles(
        files={"TextVQA_0.5.1_val.json": {"dataset_type": "val", "dataset_name": "textvqa", "data": data}},
        prompts=prompt_rows,
        annotations="TextVQA_0.5.1_val.json",
    )
