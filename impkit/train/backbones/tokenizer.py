"""The offline presets' tokenizer: one byte-level BPE (``impkit.model.tokenizer.train_bpe``) trained
on everything the models will read, which each family wraps with its own special tokens.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tokenizers import Tokenizer

from impkit.data.templates import TEMPLATES
from impkit.model.tokenizer import IMAGE_TOKEN, all_special_tokens, train_bpe
from impkit.train.backbones.inputs import read_corpus


def template_texts() -> list[str]:
    """The fixed text of every chat template (system prompt, role markers), special tokens left out
    (they are whole tokens already). Without it the nano BPE, trained on the world's words, spelled
    the phi2 template's system prompt and user opening in 74 tokens, more than half of a short-answer
    sample and twice what Phi-2's or Qwen's tokenizers use; with it, 32 (qwen2 36, phi3 34)."""
    specials = re.compile("|".join(re.escape(token) for token in all_special_tokens()))
    texts = []
    for template in TEMPLATES.values():
        for text in (template.system_block(), template.user_prefix, template.user_suffix, template.assistant_prefix):
            texts.extend(piece for piece in specials.split(text) if piece.strip())  # as the tokenizer splits it
    return texts


def texts_for_tokenizer(world: Path, assembled: Path) -> list[str]:
    """Everything the models will read: the LM corpus, the chat templates' fixed text and every turn
    of the assembled mixtures."""
    texts = read_corpus(world / "backbone" / "lm_corpus.txt") + template_texts()
    for name in ("pretrain.jsonl", "finetune.jsonl"):
        with open(assembled / name, encoding="utf-8") as f:
            for line in f:
                texts.extend(turn["value"].replace(IMAGE_TOKEN, "") for turn in json.loads(line)["conversations"])
    return texts


def train_tokenizer(world: Path, assembled: Path, vocab_size: int) -> Tokenizer:
    """The shared BPE of the offline presets, trained on :func:`texts_for_tokenizer`."""
    return train_bpe(texts_for_tokenizer(world, assembled), vocab_size)
