"""One family's causal LM pretrained on the world's text (``backbone/lm_corpus.txt``): next-token
prediction on packed blocks of the corpus, the model built from the family's transformers config (no
custom modeling code), perplexity of held-back lines measured before and after.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerBase

from impkit.config import ConfigError
from impkit.io import atomic_path
from impkit.model.presets import family_config_class
from impkit.train.backbones.inputs import PathLike, as_texts
from impkit.train.backbones.loop import (
    autocast_context,
    check_positive,
    run_summary,
    shuffled_batches,
    split_eval,
    train_loop,
)

EVAL_LINES = 400  # held-back distinct lines for the before-vs-after perplexity (never trained on)


def _documents(tokenizer: PreTrainedTokenizerBase, lines: Sequence[str]) -> list[list[int]]:
    """Each line as ``[bos] tokens eos``: bos only where the family has one distinct from eos."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token to separate documents")
    bos = tokenizer.bos_token_id
    prefix = [bos] if bos is not None and bos != eos else []
    ids = tokenizer(list(lines), add_special_tokens=False)["input_ids"]
    return [[*prefix, *t, eos] for t in ids]


def _pack(documents: Sequence[list[int]], seq_len: int) -> torch.Tensor:
    """Concatenate the documents and cut them into [n_blocks, seq_len] (the tail is dropped)."""
    flat = np.fromiter((t for doc in documents for t in doc), dtype=np.int64)
    n_blocks = len(flat) // seq_len
    return torch.from_numpy(flat[: n_blocks * seq_len].reshape(n_blocks, seq_len).copy())


@torch.no_grad()
def _perplexity(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, lines: Sequence[str], seq_len: int):
    """Perplexity of held-out lines, each scored on its own as training saw it: after the eos that
    ends the previous document (and the bos, for families that have one), scoring the line's
    tokens and its closing eos. Every family is scored on the same tokens."""
    model.eval()
    eos = tokenizer.eos_token_id
    docs = [[eos, *d][:seq_len] for d in _documents(tokenizer, lines)]
    n_context = 2 if tokenizer.bos_token_id not in (None, eos) else 1  # eos [bos]: given, not scored
    docs = sorted((d for d in docs if len(d) > n_context), key=len)
    total, count = 0.0, 0
    for start in range(0, len(docs), 32):
        chunk = docs[start : start + 32]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, d in enumerate(chunk):
            ids[i, : len(d)] = torch.tensor(d)
            mask[i, : len(d)] = 1
        scored = mask.clone()
        scored[:, :n_context] = 0
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = ids[:, 1:].masked_fill(scored[:, 1:] == 0, -100)
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum").item()
        count += int(scored.sum())
    return math.exp(total / count) if count else float("nan")


def _lm_config_class(family: str, arch: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> type[PretrainedConfig]:
    """The family's config class, once the arch and the tokenizer are known to fit together."""
    config_class = family_config_class(family)
    if "vocab_size" not in arch:
        raise ConfigError("the LLM arch must give vocab_size (at least the tokenizer's size)")
    if arch["vocab_size"] < len(tokenizer):
        raise ConfigError(
            f"LLM vocab_size {arch['vocab_size']} is smaller than the tokenizer ({len(tokenizer)} tokens)"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token")
    return config_class


def _split_corpus(
    texts: list[str], tokenizer: PreTrainedTokenizerBase, eval_lines: int, generator: torch.Generator
) -> tuple[list[list[int]], list[str]]:
    """Training documents and held-back lines: up to ``eval_lines`` distinct lines (at most a tenth),
    and no copy of them in training, as the corpus repeats short sentences."""
    distinct = list(dict.fromkeys(texts))
    n_eval = min(eval_lines, len(distinct) // 10)
    _, eval_idx = split_eval(len(distinct), n_eval, generator)
    held_back = {distinct[i] for i in eval_idx.tolist()}
    train_docs = _documents(tokenizer, [t for t in texts if t not in held_back])
    held_out = [distinct[i] for i in eval_idx.tolist()]
    return train_docs, held_out


def _causal_lm(
    config_class: type[PretrainedConfig], arch: dict[str, Any], tokenizer: PreTrainedTokenizerBase, seed: int
) -> torch.nn.Module:
    """The family's LM, seeded, with the tokenizer's bos/eos/pad ids."""
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = config_class(**{**arch, **special})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    head_bias = getattr(model.get_output_embeddings(), "bias", None)
    if head_bias is not None:
        # Phi-2's lm_head has a bias that LlavaForConditionalGeneration's lm_head lacks: hold it at
        # zero so moving the LM into the multimodal model loses nothing.
        with torch.no_grad():
            head_bias.zero_()
        head_bias.requires_grad_(False)
    return model


def pretrain_causal_lm(
    family: str,
    arch: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str] | PathLike,
    *,
    steps: int,
    batch_size: int,
    seq_len: int,
    lr: float,
    seed: int,
    out_dir: PathLike,
    progress: bool = True,
    weight_decay: float = 0.1,
    warmup: float = 0.05,
    eval_lines: int = EVAL_LINES,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Next-token pretraining of ``family``'s causal LM; saves model and tokenizer to ``out_dir``.

    ``arch``: keyword arguments of the family's transformers config; ``arch["vocab_size"]`` is used
    as given and must cover the tokenizer. bos/eos/pad ids come from the tokenizer. ``texts``: the
    corpus lines (or the path of ``lm_corpus.txt``); up to ``eval_lines`` distinct lines (at most a
    tenth) are held back, every copy of them, for perplexity before/after; the rest, in corpus
    order, are packed into ``seq_len``-token blocks (see :func:`_documents`) and shuffled per epoch.
    """
    check_positive(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr)
    autocast_context(precision)
    config_class = _lm_config_class(family, arch, tokenizer)
    texts = as_texts(texts)
    if not texts:
        raise ValueError("the language-model corpus is empty")

    generator = torch.Generator().manual_seed(seed)
    train_docs, held_out = _split_corpus(texts, tokenizer, eval_lines, generator)
    n_eval = len(held_out)
    blocks = _pack(train_docs, seq_len)
    if len(blocks) < batch_size:
        raise ValueError(
            f"the corpus gives {len(blocks)} blocks of {seq_len} tokens, fewer than a batch ({batch_size})"
        )
    model = _causal_lm(config_class, arch, tokenizer, seed)
    ppl_before = _perplexity(model, tokenizer, held_out, seq_len) if n_eval else None

    def step(batch: torch.Tensor) -> torch.Tensor:
        ids = blocks[batch]
        return model(input_ids=ids, labels=ids).loss

    losses, wall = train_loop(
        step,
        model,
        shuffled_batches(len(blocks), batch_size, generator),
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        clip=1.0,
        desc=f"pretrain {family} LM",
        unit="tok",
        units_per_step=batch_size * seq_len,
        show=progress,
        precision=precision,
    )
    ppl_after = _perplexity(model, tokenizer, held_out, seq_len) if n_eval else None
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {
        "family": family,
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lr": lr,
        "precision": precision,
        "train_tokens": int(blocks.numel()),
        "epochs": round(steps * batch_size / len(blocks), 3),
        **run_summary(losses, wall, steps * batch_size * seq_len, "tokens_per_s"),
        "eval_lines": n_eval,
        "train_lines": len(train_docs),
        "perplexity_before": ppl_before,
        "perplexity_after": ppl_after,
        "params": sum(p.numel() for p in model.parameters()),
    }
