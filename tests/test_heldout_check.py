"""The held-out learning check's baselines: the shuffled-image run must pair every question with
an image of a different question, deterministically, and scoring is exact match after the light
normalisation the check documents."""

import pytest

from impkit.eval.heldout import accuracy, shuffled_images


def _questions():
    return [
        {"id": f"q{i}", "image": f"scenes/{i // 3:03d}.png", "question": "?", "answer": "red", "type": "colour"}
        for i in range(10)
    ]


def test_shuffled_images_never_keep_a_questions_own_image_and_keep_the_questions():
    questions = _questions()
    shuffled = shuffled_images(questions)
    assert [q["id"] for q in shuffled] == [q["id"] for q in questions]
    assert all(s["image"] != q["image"] for s, q in zip(shuffled, questions, strict=True))
    assert {s["image"] for s in shuffled} == {q["image"] for q in questions}  # only the world's images
    assert shuffled_images(questions) == shuffled  # deterministic


def test_shuffled_images_need_two_images():
    with pytest.raises(ValueError, match="at least two images"):
        shuffled_images(_questions()[:3])


def test_accuracy_is_exact_match_by_type_after_normalising():
    questions = _questions()[:4]
    answers = ["Red.", " red", "blue", "red is it"]
    result = accuracy(questions, answers)
    assert result == {"accuracy": 0.5, "n": 4, "by_type": {"colour": 0.5}}


def test_check_release_answers_as_the_model_in_memory_with_the_presets_settings(tiny, tmp_path):
    """The training stage's held-out check goes through the release folder (impkit.release) and gets
    the answers the model in memory gives with the preset's template, size, aspect and tokens."""
    import json

    from PIL import Image

    from impkit.eval.heldout import answer_questions, check_release
    from impkit.model.presets import num_image_tokens
    from impkit.release import write_release

    preset, tok, model = tiny
    heldout = tmp_path / "world" / "heldout"
    (heldout / "images").mkdir(parents=True)
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200), (240, 240, 20)]):
        Image.new("RGB", (40 + 9 * i, 30), colour).save(heldout / "images" / f"{i}.png")
    rows = [
        {"id": f"q{i}", "image": f"{i % 3}.png", "question": q, "answer": "red", "type": t}
        for i, (q, t) in enumerate(
            [
                ("What colour is it?", "colour"),
                ("How many?", "count"),
                ("Is there a lamp?", "existence"),
                ("Which shape?", "shape"),
            ]
        )
    ]
    common = dict(
        template=preset.template,
        image_size=32,
        image_aspect=preset.image_aspect,
        n_image_tokens=num_image_tokens(preset),
        image_root=heldout / "images",
        batch_size=2,
    )
    answers = answer_questions(model, tok, questions=rows, blank=False, **common)
    assert len(set(answers)) >= 2  # the answers differ, so a wrong image or template would show
    # the gold answers are the in-memory model's own: through the release folder every one must match
    rows = [{**row, "answer": answer} for row, answer in zip(rows, answers, strict=True)]
    (heldout / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    release = write_release(model, tok, preset, tmp_path / "release", {})
    got = check_release(release.folder, tmp_path / "world", limit=None, batch_size=2)
    assert set(got) == {"with_image", "blank_image", "shuffled_image"}
    assert got["with_image"] == {
        "accuracy": 1.0,
        "n": 4,
        "by_type": dict.fromkeys(sorted(r["type"] for r in rows), 1.0),
    }
    blank = answer_questions(model, tok, questions=rows, blank=True, **common)
    assert got["blank_image"] == accuracy(rows, blank)
