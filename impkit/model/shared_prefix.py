"""The prompt prefix a batch shares, computed once.

Every chat-template sample starts with the same tokens: the template's system prompt and the
user-turn opening (73 tokens with the phi2 template, more than half of a nano short-answer prompt). Causal
attention makes the keys and values of those tokens independent of what follows, so a batch can run
them once at batch size 1, repeat that KV cache across its rows, and run each row's own tokens on top
of it: the same outputs for a fraction of the work. The evaluation runner does it to answer questions
(``impkit.eval.runners.torch_runner``); the trainer does it for stage-2 batches
(``impkit.train.trainer``), where gradients flow back through the repeated cache into the prefix once.

The prefix stops before the first image token, because image features are placed by the forward
pass that sees the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from impkit.data.templates import IGNORE_INDEX


def common_prefix_length(rows: Sequence[Sequence[int]], *, stop_token: int, limit: int) -> int:
    """How many leading tokens all ``rows`` share, at most ``limit`` and stopping before ``stop_token``."""
    if not rows:
        return 0
    first = rows[0]
    n = 0
    while n < limit and first[n] != stop_token and all(len(row) > n and row[n] == first[n] for row in rows):
        n += 1
    return n


def prefill(model: torch.nn.Module, prefix: Sequence[int], device: torch.device) -> Any:
    """The KV cache of ``prefix`` run alone (batch 1); only the last position's logits are computed."""
    out = model(input_ids=torch.tensor([list(prefix)], device=device), use_cache=True, logits_to_keep=1)
    return out.past_key_values


def training_prefix_length(batch: dict[str, torch.Tensor], image_token_id: int) -> int:
    """The prefix a right-padded training batch can share: tokens equal in every row, before any
    image token, leaving every row at least one token of its own, and unsupervised through the first
    token after it (that token's prediction comes from the prefix's last position, which the rows'
    own forward pass no longer computes)."""
    input_ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    if input_ids.shape[0] < 2:
        return 0
    lengths = mask.sum(dim=1)
    supervised = labels != IGNORE_INDEX
    # first supervised position of each row (a row with none: its length)
    first_supervised = torch.where(supervised.any(dim=1), supervised.int().argmax(dim=1), lengths)
    limit = int(torch.minimum(lengths - 1, first_supervised - 1).min())
    if limit <= 0:
        return 0
    return common_prefix_length(input_ids[:, :limit].tolist(), stop_token=image_token_id, limit=limit)


def with_shared_prefix(
    model: torch.nn.Module, batch: dict[str, Any], image_token_id: int, *, min_tokens: int = 2
) -> dict[str, Any]:
    """``batch`` with its shared prefix run once: the returned inputs hold each row's own tokens, the
    prefix's KV cache repeated for every row, and an attention mask over prefix and own tokens. The
    loss computed from them equals the whole batch's (same supervised tokens, same count). A batch
    that shares fewer than ``min_tokens`` tokens is returned unchanged."""
    n = training_prefix_length(batch, image_token_id)
    if n < min_tokens:
        return batch
    input_ids = batch["input_ids"]
    cache = prefill(model, input_ids[0, :n].tolist(), input_ids.device)
    cache.batch_repeat_interleave(input_ids.shape[0])
    # Rows are right-padded, so each row's own tokens start at position n: the model derives their
    # positions from the cache length, as it would have from the unsplit row.
    return {**batch, "input_ids": input_ids[:, n:], "labels": batch["labels"][:, n:], "past_key_values": cache}
