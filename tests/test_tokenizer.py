"""The offline tokenizers: one BPE, each family's special tokens as single ids, round trips."""

from __future__ import annotations

import pytest

from impkit.config import ConfigError
from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer, train_bpe

TEXTS = [
    "a large red circle and a small blue square.",
    "How many triangles are there? There are two triangles.",
    "The word 'lamp' is written in dark green capital letters.",
] * 20


@pytest.fixture(scope="module")
def base():
    return train_bpe(TEXTS, vocab_size=400)


@pytest.mark.parametrize(
    ("family", "markers"),
    [
        ("phi2", ["</s>"]),
        ("qwen2", ["<|im_start|>", "<|im_end|>"]),
        ("phi3", ["<|user|>", "<|assistant|>", "<|end|>", "<s>", "<unk>"]),
    ],
)
def test_family_special_tokens_are_single_ids(base, family, markers, tmp_path):
    tok = family_tokenizer(base, family)
    for marker in [*markers, IMAGE_TOKEN, tok.eos_token]:
        ids = tok(f"x {marker} y", add_special_tokens=False)["input_ids"]
        assert tok.convert_tokens_to_ids(marker) in ids, marker
    text = "a large red circle and a small blue square."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    # every family sees the same vocabulary: ids of plain text agree across families
    assert tok(text)["input_ids"] == family_tokenizer(base, "phi2")(text)["input_ids"]
    tok.save_pretrained(tmp_path / family)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path / family)
    assert again.convert_tokens_to_ids(IMAGE_TOKEN) == tok.convert_tokens_to_ids(IMAGE_TOKEN)


def test_unknown_family(base):
    with pytest.raises(ConfigError, match="no special tokens for family 'gpt9'"):
        family_tokenizer(base, "gpt9")
