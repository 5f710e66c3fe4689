"""The MM-Vet twin: open-ended questions with long reference answers, graded by an LLM judge."""

from __future__ import annotations

import random

from impkit.data.synth import language as lang
from impkit.data.synth.scene import Chart, Scene, TextImage
from impkit.eval import prompts
from impkit.eval.twins.common import Heldout, HeldoutImage, Prompt, TwinFiles, pick

# MM-Vet's six capabilities: rec(ognition), ocr, know(ledge), gen(eration), spat(ial), math.
# Capabilities of the open instructions that need more than recognition; the rest are rec + spat.
_SCENE_CAPABILITIES = {
    "What could these shapes represent?": ["rec", "know", "gen"],
    "How many objects of each shape are there? Explain.": ["rec", "math"],
    "Tell me about the colours in this image.": ["rec", "gen"],
}
_KIND_CAPABILITIES = {TextImage: ["ocr", "know", "gen"], Chart: ["ocr", "spat", "math"]}


def _item(rng: random.Random, item: HeldoutImage) -> tuple[str, str, list[str]]:
    spec = item.spec
    roll = rng.random()
    if isinstance(spec, Chart) and roll < 0.3:
        noun = "bars" if spec.chart_type == "bar" else "points"
        return f"What is the sum of the values of all the {noun} in this chart?", str(sum(spec.values)), ["ocr", "math"]
    if roll < 0.25:
        question = rng.choice(lang.DETAIL_PROMPTS)
        return (
            question,
            lang.describe(rng, spec),
            ["rec", "ocr", "gen"] if isinstance(spec, TextImage) else ["rec", "gen"],
        )
    question, answer = lang.open_exchange(rng, spec)
    if isinstance(spec, Scene):
        return question, answer, _SCENE_CAPABILITIES.get(question, ["rec", "spat"])
    return question, answer, _KIND_CAPABILITIES[type(spec)]


def mmvet(heldout: Heldout, rng: random.Random, n: int) -> TwinFiles:
    """``mm-vet.json``: ``{"v1_<i>": {imagename, capability, question, answer}}``; ``imagename`` is
    the path under the held-out images folder. Asked without any instruction suffix."""
    data, prompt_rows = {}, []
    for i, item in enumerate(pick(rng, heldout.images, n)):
        question, answer, capability = _item(rng, item)
        qid = f"v1_{i}"
        data[qid] = {"imagename": item.image, "capability": capability, "question": question, "answer": answer}
        prompt_rows.append(Prompt(qid, item.image, prompts.mmvet(question), answer, "+".join(capability)))
    return TwinFiles(files={"mm-vet.json": data}, prompts=prompt_rows, annotations="mm-vet.json")
