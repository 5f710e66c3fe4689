"""The LM reading benchmark's parts: every question is answerable from the description before it, and
the ranking picks the answer the LM finds likeliest, summing over an answer's tokens."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from benchmarks.lm_reading import passages, ranked_answer


def test_every_question_is_answerable_from_its_description():
    asked = passages(n_scenes=40, seed=0)
    kinds = {qa.qtype for _, qa in asked}
    assert kinds == {"colour", "shape", "size", "position", "existence"}
    for context, qa in asked:
        assert qa.answer in qa.domain
        if qa.qtype in ("colour", "shape", "size", "position"):
            assert qa.answer in context.lower(), (context, qa.question, qa.answer)


class WordTokenizer:
    """One id per space-separated word (ids in order of first sight)."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, text: str):
        return SimpleNamespace(input_ids=[self.ids.setdefault(w, len(self.ids)) for w in text.split()])


class FixedNextToken(torch.nn.Module):
    """An LM whose next-token distribution is the same everywhere: softmax of ``scores``."""

    def __init__(self, scores: torch.Tensor):
        super().__init__()
        self.scores = scores

    def forward(self, ids: torch.Tensor):
        return SimpleNamespace(logits=self.scores.expand(ids.shape[0], ids.shape[1], -1))


def test_the_likeliest_answer_wins_and_long_answers_pay_for_every_token():
    tok = WordTokenizer()
    for word in ("where", "is", "it?", "left", "top", "right"):
        tok(word)
    scores = torch.zeros(8)
    scores[tok.ids["top"]] = 3.0
    scores[tok.ids["left"]] = 2.5
    model = FixedNextToken(scores)
    assert ranked_answer(model, tok, "where is it?", ("right", "left")) == "left"
    # "top left" starts with the likeliest token, but pays for both: log p(top) + log p(left) is
    # below log p(left) (a first-token or mean-per-token ranking would pick "top left")
    assert ranked_answer(model, tok, "where is it?", ("top left", "left")) == "left"
    scores[tok.ids["right"]] = 4.0
    assert ranked_answer(model, tok, "where is it?", ("left", "right")) == "right"


def test_an_answer_that_merges_into_the_prompt_is_refused():
    class Merging(WordTokenizer):
        def __call__(self, text: str):  # "it? no" becomes one token: the prompt's ids change
            return super().__call__(text.replace("it? no", "it?no"))

    tok = Merging()
    with pytest.raises(ValueError, match="does not tokenize apart"):
        ranked_answer(FixedNextToken(torch.zeros(8)), tok, "is it?", ("no",))
