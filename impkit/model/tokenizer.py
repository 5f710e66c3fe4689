"""Tokenizers for the offline analogs: one byte-level BPE vocabulary, each family's special tokens.

The real families ship their tokenizers; the nano analogs get a BPE trained with ``tokenizers`` on
the synthetic world's text, shared by the family as the vocabulary is the same language, plus the
special tokens each family's chat template and llama.cpp expect, plus ``<image>`` as a real added
token (Imp registers it the same way: id 50296 on Phi-2, 151646 on Qwen1.5).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from impkit.config import ConfigError

IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class FamilyTokens:
    bos: str | None
    eos: str
    unk: str | None
    pad: str
    extra: tuple[str, ...]  # chat-template markers


# Special tokens as the real checkpoints define them. Phi-3's GGUF loader in llama.cpp requires
# <s>, </s>, <unk> and <|endoftext|> to exist; Imp adds </s> to Phi-2 as its answer end marker.
FAMILY_TOKENS: dict[str, FamilyTokens] = {
    "phi2": FamilyTokens(
        bos="<|endoftext|>", eos="<|endoftext|>", unk="<|endoftext|>", pad="<|endoftext|>", extra=("</s>",)
    ),
    "qwen2": FamilyTokens(
        bos=None, eos="<|endoftext|>", unk=None, pad="<|endoftext|>", extra=("<|im_start|>", "<|im_end|>")
    ),
    "phi3": FamilyTokens(
        bos="<s>",
        eos="<|endoftext|>",
        unk="<unk>",
        pad="<|endoftext|>",
        extra=("</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
    ),
    "llama": FamilyTokens(bos="<s>", eos="</s>", unk="<unk>", pad="</s>", extra=()),
}


def family_tokens(family: str) -> FamilyTokens:
    try:
        return FAMILY_TOKENS[family]
    except KeyError:
        raise ConfigError(f"no special tokens for family '{family}'; known: {sorted(FAMILY_TOKENS)}") from None


def all_special_tokens() -> list[str]:
    """Every family's specials and <image>, in a fixed order, so all families share one vocabulary."""
    seen: dict[str, None] = {}
    for tokens in FAMILY_TOKENS.values():
        for t in (tokens.bos, tokens.eos, tokens.unk, tokens.pad, *tokens.extra):
            if t is not None:
                seen[t] = None
    seen[IMAGE_TOKEN] = None
    return list(seen)


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE with GPT-2's pre-tokenisation (so GGUF exports declare pre = "gpt-2")."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=all_special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def family_tokenizer(base: Tokenizer, family: str, chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """Wrap the shared BPE with one family's special-token roles (and its chat template)."""
    tokens = family_tokens(family)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=base.__class__.from_str(base.to_str()),
        bos_token=tokens.bos,
        eos_token=tokens.eos,
        unk_token=tokens.unk,
        pad_token=tokens.pad,
        additional_special_tokens=[*tokens.extra, IMAGE_TOKEN],
        clean_up_tokenization_spaces=False,
    )
    tok.padding_side = "right"  # training; generation switches to left padding for batches
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok
