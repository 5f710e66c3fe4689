"""The binding probe benchmark's questions: each names an object no other object of its scene
shares the naming attribute with, and is answered from the scene's ground truth."""

from __future__ import annotations

import json
import random

from benchmarks.binding_probe import as_records, colour_of_shape, questions, shape_alone, shape_of_colour
from impkit.data.synth.language import SHORT_ANSWER


def obj(shape: str, colour: str) -> dict:
    return {"shape": shape, "colour": colour, "size": "small", "position": "center"}


def test_a_named_object_is_the_only_one_with_its_name():
    rng = random.Random(0)
    objects = [obj("circle", "red"), obj("square", "red"), obj("triangle", "blue")]
    for _ in range(20):  # the two red objects can never be named by colour
        assert shape_of_colour(rng, objects) == ("What shape is the blue object?", "triangle")
    assert shape_of_colour(rng, [obj("circle", "red"), obj("square", "red")]) is None
    asked = {colour_of_shape(rng, objects) for _ in range(50)}
    assert asked == {
        ("What colour is the circle?", "red"),
        ("What colour is the square?", "red"),
        ("What colour is the triangle?", "blue"),
    }


def test_shape_alone_asks_only_of_one_object_scenes():
    rng = random.Random(0)
    assert shape_alone(rng, [obj("square", "green")]) == ("What shape is the object?", "square")
    assert shape_alone(rng, [obj("square", "green"), obj("circle", "red")]) is None


def test_questions_come_from_scenes_and_become_world_style_records(tmp_path):
    scenes = tmp_path / "scenes.jsonl"
    rows = [
        {"image": "scenes/a.png", "kind": "scene", "objects": [obj("circle", "purple")]},
        {"image": "charts/b.png", "kind": "chart"},
        {"image": "scenes/c.png", "kind": "scene", "objects": [obj("circle", "red"), obj("square", "red")]},
    ]
    scenes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    asked = questions(scenes, "shape-of-colour", seed=0)
    assert asked == [
        {
            "image": "scenes/a.png",
            "question": "What shape is the purple object?",
            "answer": "circle",
            "type": "shape-of-colour",
        }
    ]
    (record,) = as_records(asked)
    assert record["image"] == "scenes/a.png"
    assert record["conversations"] == [
        {"from": "human", "value": f"<image>\nWhat shape is the purple object?{SHORT_ANSWER}"},
        {"from": "gpt", "value": "circle"},
    ]
