"""The held-out learning check's baselines: the shuffled-image run must pair every question with
an image of a different question, deterministically, and scoring is exact match after the light
normalisation the check documents."""

import pytest

from impkit.eval.heldout import accuracy, shuffled_images


def _questions():
    return [{"id": f"q{i}", "image": f"scenes/{i // 3:03d}.png", "question": "?", "answer": "red", "type": "colour"}
            for i in range(10)]  # fmt: skip


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
