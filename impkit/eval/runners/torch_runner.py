"""Batched greedy answers from a ``LlavaForConditionalGeneration`` (a release folder or a model in memory).

Batching must not change any answer. Bunny once lost benchmark points to a padding bug in batched
inference, and a score that moves with the batch size is not a score. What keeps the answers fixed:

* **Left padding** with an attention mask of zeros over the pads: every row's last prompt token sits
  at the end, so the first generated token of every row is predicted from its own prompt;
  the position ids are derived from the mask (cumsum - 1), so a padded row sees the same positions
  as the row alone.
* Rows are **sorted by length** (longest first: the tokens a row computes itself, after the shared
  prefix and its image's head, below) before batching, so a batch pads little, and the answers are
  put back in input order at the end.
* A row that emits a stop token **leaves the batch**: its KV-cache rows are dropped and the batch's
  later steps compute only the rows still answering (a greedy loop of the runner's own, ``_greedy``,
  in place of ``generate``, which keeps finished rows to the end). Answers are cut at the template's
  stop string, eos and pad in text (``clean_answer``), exactly as a lone row's would be.

Text-only questions (``image`` None) share batches with image questions: the model places image
features at the image-token positions, in row order, so ``pixel_values`` holds the images of the
rows that have one and nothing for the others. Mixing keeps batches full. (With the image heads
below, an image row starts after its image, so the two kinds mix by the length of what is left.)

The tokenizer is never modified: padding is built here, so its ``padding_side`` stays as it was.

**Shared prefix.** Every prompt of an evaluation starts with the same tokens (the template's system
prompt and the user-turn opening: most of a short question's prompt). The runner finds that prefix
(the template's opening, stopping before any image token), runs it through the model once,
and hands each batch a copy of that KV cache; a row is then ``[prefix][pads][own tokens]``, the
pads masked out and the position ids (cumsum of the mask) exactly those of the unpadded prompt.
Causal attention makes the prefix's keys and values independent of what follows, so the answers
are those of the full prompt; only the work is saved.

**Each image encoded once.** Benchmarks ask several questions about one image (POPE six, MME two,
MMBench's circular copies four, VQAv2 several), and the blind baseline asks every question about
the same blank image. The runner encodes each distinct image of a batch once (vision tower and
projector, ``get_image_features``) and keeps the features of recent images in a cache bounded in
bytes (``feature_cache_mb``); the forward pass receives them as ``mm_encoder_outputs``, the very
tensors it would have computed from ``pixel_values`` itself, so the answers do not change.

**Each image read once.** In a LLaVA-style prompt the image comes first in the user turn, so a
question's prompt is ``[shared prefix][head: a token or two and the image tokens][question]``, and
the head's keys and values depend only on the prefix and the image. The runner computes each
distinct head once, on the prefix's cache, keeps recent ones (``feature_cache_mb`` bounds them too)
and starts every row after its head: a batch's cache is ``[prefix][the row's head][masked gap]``
(a text-only row has no head; the gap evens out the widths), then pads and the row's own tokens,
with position ids from the mask as everywhere. For real models this is most of the prompt (729
image tokens of Imp-3B's ~800 on a short question); for nano, 17 of ~137 tokens.

**A cache with room.** The batch's cache is allocated with room for the rows' own tokens and their
answers, and each step writes into it (``_RoomyLayer``) instead of concatenating: transformers'
``DynamicLayer`` copies the whole cache at every step, which for a batch of 32 nano rows cost more
than the step's attention (11 % of a 512-question evaluation in a profile).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling

from impkit.data.templates import get_template, render_prompt
from impkit.eval.runners.base import Question, Runner, clean_answer, question_image
from impkit.model.image_processing import SIGLIP_MEAN, SIGLIP_STD, ImageProcessor
from impkit.model.shared_prefix import common_prefix_length, prefill
from impkit.model.tokenizer import IMAGE_TOKEN
from impkit.progress import progress
from impkit.release import Release


class _RoomyLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views into a buffer with room to grow: each
    decoding step writes its token into the room instead of concatenating (copying) the whole cache,
    which for a batch of 32 costs more than the step's attention. Same values, same answers."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self._room = (keys, values)  # [batch, heads, capacity, head_dim]
        self.keys, self.values = keys[..., :length, :], values[..., :length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n, new = self.keys.shape[-2], key_states.shape[-2]
        if self._room is None or n + new > self._room[0].shape[-2]:
            self._room = None  # out of room: from here on a plain DynamicLayer, growing by concatenation
            return super().update(key_states, value_states)
        self._room[0][..., n : n + new, :] = key_states
        self._room[1][..., n : n + new, :] = value_states
        self.keys, self.values = self._room[0][..., : n + new, :], self._room[1][..., : n + new, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        room = self._room
        if room is None:
            return super().batch_select_indices(indices)
        n = self.keys.shape[-2]  # keep the room: the selected rows' whole buffers, filled part and all
        self._room = (room[0][indices], room[1][indices])
        self.keys, self.values = self._room[0][..., :n, :], self._room[1][..., :n, :]


class TorchRunner(Runner):
    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        template: str,
        image_size: int,
        image_aspect: str,
        n_image_tokens: int,
        image_root: Path | str | None = None,
        batch_size: int = 16,
        max_new_tokens: int = 8,
        image_mean: Sequence[float] = SIGLIP_MEAN,
        image_std: Sequence[float] = SIGLIP_STD,
        desc: str = "answer",
        source: str | None = None,
        prefix_cache: bool = True,
        feature_cache_mb: float = 256,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if n_image_tokens < 1:
            raise ValueError(f"n_image_tokens must be at least 1, got {n_image_tokens}")
        if feature_cache_mb < 0:
            raise ValueError(f"feature_cache_mb must be 0 (no cache) or more, got {feature_cache_mb}")
        self.model = model
        self.tokenizer = tokenizer
        self.template = get_template(template)
        self.image_size = image_size
        self.image_aspect = image_aspect
        self.n_image_tokens = n_image_tokens
        self.image_root = Path(image_root) if image_root is not None else None
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.desc = desc
        self.source = source or type(model).__name__
        self.prefix_cache = prefix_cache
        self.feature_cache_mb = feature_cache_mb  # 0: encode every question's image, even a repeated one
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        probes = [Question("probe", "probe.png", "A"), Question("probe", None, "b"), Question("probe", None, "\n1")]
        self._probe_ids = tokenizer([self.prompt_text(q) for q in probes], add_special_tokens=False)["input_ids"]
        self.processor = ImageProcessor(
            size=image_size, aspect=image_aspect, mean=tuple(image_mean), std=tuple(image_std)
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token to pad batches with")
        # Stop ids let finished rows stop early; the text-level cut in clean_answer stays the rule
        # (a stop string that is not one token, e.g. the plain template's "\n", is only cut there).
        vocab = tokenizer.get_vocab()
        self.stop_ids = sorted({tokenizer.eos_token_id, *(vocab[s] for s in self.template.stop if s in vocab)} - {None})
        self.stop_strings = (*self.template.stop, tokenizer.eos_token, tokenizer.pad_token)

    # -- construction from a release ---------------------------------------------------------

    @classmethod
    def from_release(
        cls,
        folder: Path | str,
        *,
        image_root: Path | str | None = None,
        batch_size: int = 16,
        max_new_tokens: int = 8,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        desc: str = "answer",
        feature_cache_mb: float = 256,
    ) -> TorchRunner:
        """A runner over a release folder (``impkit.release``): the chat template and image aspect it
        records, the input size, image tokens and normalisation of its configs (a folder that disagrees
        with itself fails when opened)."""
        release = Release.open(folder)
        mean, std = release.normalisation()
        model, tokenizer = release.load(dtype=dtype if dtype is not None else torch.float32)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = model.to(device)
        return cls(
            model,
            tokenizer,
            template=release.template,
            image_size=release.image_size,
            image_aspect=release.image_aspect,
            n_image_tokens=release.image_tokens,
            image_root=image_root,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            image_mean=mean,
            image_std=std,
            desc=desc,
            source=str(folder),
            feature_cache_mb=feature_cache_mb,
        )

    # -- answering ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        param = next(self.model.parameters())
        return {
            "backend": self.name,
            "model": self.source,
            "template": self.template.name,
            "image_size": self.image_size,
            "image_aspect": self.image_aspect,
            "image_tokens": self.n_image_tokens,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
            "prefix_cache": self.prefix_cache,
            "feature_cache_mb": self.feature_cache_mb,
            "device": str(param.device),
            "dtype": str(param.dtype).removeprefix("torch."),
        }

    def prompt_text(self, question: Question) -> str:
        """The full prompt string: template around the question, ``<image>`` expanded to one token
        per patch (what LlavaProcessor does), tokenized as one string as at inference elsewhere."""
        has_image = question.image is not None
        text = render_prompt(self.template, question.prompt, has_image=has_image)
        return text.replace(IMAGE_TOKEN, IMAGE_TOKEN * self.n_image_tokens) if has_image else text

    def _batch(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids and the mask that keeps the pads out of attention (and out of the
        position ids derived from it)."""
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, ids in enumerate(rows):
            input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[r, width - len(ids) :] = 1
        return input_ids, mask

    def shared_prefix(self, ids: Sequence[Sequence[int]]) -> list[int]:
        """The token prefix every prompt in ``ids`` shares with the template's own opening, cut
        before the first image token (image features are placed by the forward pass that sees the
        pixels) and leaving every prompt at least one token of its own (the first answer token is
        predicted from it).

        The template's opening is what a few probe prompts share (with and without an image,
        different first characters), so the prefix does not depend on which questions are asked
        together: a shard of a data-parallel run or a single benchmark gets the same prefix, the
        same arithmetic and hence the same answers as the whole list.
        """
        if len(ids) < 2:
            return []
        limit = min(len(row) for row in ids) - 1
        rows = [*self._probe_ids, *ids]
        return list(rows[0][: common_prefix_length(rows, stop_token=self.image_token_id, limit=limit)])

    def _image_features(
        self, questions: list[Question], blank: bool, cache: OrderedDict[Any, torch.Tensor], device: torch.device
    ) -> list[torch.Tensor]:
        """Projected features ([n_image_tokens, hidden] each) of ``questions``' images, in order:
        each distinct image encoded once, recent ones taken from ``cache`` (least recently used
        evicted beyond ``feature_cache_mb``)."""
        keys = [self._image_key(q, blank) for q in questions]
        missing = list(dict.fromkeys(k for k in keys if k not in cache))
        if missing:
            first = {k: q for k, q in zip(keys, questions, strict=True)}
            images = [question_image(first[k], self.image_root, self.image_size, blank=blank) for k in missing]
            pixels = self.processor(images).to(device=device, dtype=next(self.model.parameters()).dtype)
            features = self.model.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
            for k, f in zip(missing, features, strict=True):
                cache[k] = f
        rows = [cache[k] for k in keys]
        self._keep_recent(cache, keys, lambda f: f.nbytes)
        return rows

    @staticmethod
    def _image_key(question: Question, blank: bool) -> str:
        return "blank" if blank else str(question.image)

    def _keep_recent(self, cache: OrderedDict[Any, Any], used: list[Any], nbytes) -> None:
        """Mark ``used`` entries as recent, then evict the least recent ones beyond
        ``feature_cache_mb`` (never an entry the current batch uses)."""
        for k in used:
            cache.move_to_end(k)
        budget = self.feature_cache_mb * 2**20
        in_use = len(set(used))
        while len(cache) > in_use and sum(nbytes(v) for v in cache.values()) > budget:
            cache.popitem(last=False)

    def _head_key(self, question: Question, ids: Sequence[int], prefix_len: int, blank: bool) -> tuple | None:
        """What a prompt's head (the tokens after the shared prefix up to its image's last token)
        depends on: the image and the tokens before it (the phi2 template's space after "USER:").
        None when the prompt has no image run of ``n_image_tokens`` or nothing of its own after it."""
        if question.image is None or self.image_token_id not in ids[prefix_len:]:
            return None
        start = ids.index(self.image_token_id, prefix_len)
        end = start + self.n_image_tokens
        if len(ids) <= end or any(t != self.image_token_id for t in ids[start:end]):
            return None
        return (self._image_key(question, blank), tuple(ids[prefix_len:start]))

    def _prefix_and_heads(
        self,
        keys: list[tuple | None],
        questions: list[Question],
        blank: bool,
        prefix: list[int],
        prefix_cache: Any,
        heads: OrderedDict[tuple, list[tuple[torch.Tensor, torch.Tensor]]],
        features: OrderedDict[Any, torch.Tensor],
        device: torch.device,
        room: int,
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """A batch's cache, ids and mask up to the end of its longest head: ``[prefix][head][masked]``
        for a row with a head key, ``[prefix][masked]`` for the others (a batch without heads gets the
        prefix alone, repeated for every row). The cache has ``room`` more positions allocated for the
        rows' own tokens and answers (:class:`_RoomyLayer`).

        A head's keys and values depend only on the prefix, the tokens before the image and the image
        (causal attention), so each is computed once: on first use (a batch's new heads together, on
        the shared prefix's cache) and kept in ``heads``, least recently used evicted beyond
        ``feature_cache_mb``. POPE asks six questions per image, MMBench's circular copies four, the
        blind baseline every question about one blank image.
        """
        p, m = len(prefix), self.n_image_tokens
        missing = list(dict.fromkeys(k for k in keys if k is not None and k not in heads))
        by_length: dict[int, list[tuple]] = {}
        for k in missing:
            by_length.setdefault(len(k[1]), []).append(k)
        first = {k: q for k, q in zip(keys, questions, strict=True) if k is not None}
        for group in by_length.values():
            encoded = self._image_features([first[k] for k in group], blank, features, device)
            past = copy.deepcopy(prefix_cache)
            past.batch_repeat_interleave(len(group))
            head_ids = torch.tensor(
                [[*k[1], *[self.image_token_id] * m] for k in group], dtype=torch.long, device=device
            )
            mask = torch.ones((len(group), p + head_ids.shape[1]), dtype=torch.long, device=device)
            out = self.model(
                input_ids=head_ids,
                attention_mask=mask,
                past_key_values=past,
                use_cache=True,
                logits_to_keep=1,
                mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=encoded)},
            )
            for j, k in enumerate(group):  # clones: a slice would keep the whole batch's tensors alive
                heads[k] = [
                    (layer.keys[j : j + 1, :, p:].clone(), layer.values[j : j + 1, :, p:].clone())
                    for layer in out.past_key_values.layers
                ]
        lengths = [len(k[1]) + m if k is not None else 0 for k in keys]
        width = max(lengths)
        with_head: dict[int, list[int]] = {}  # head length -> the batch rows with a head that long
        for r, n in enumerate(lengths):
            if n:
                with_head.setdefault(n, []).append(r)
        layers = []
        for index, layer in enumerate(prefix_cache.layers):
            kv = []
            for part, prefix_part in enumerate((layer.keys, layer.values)):
                # One tensor per layer and part, filled in place: zeros (the masked gap), the prefix
                # broadcast to every row, then each length's heads in one assignment.
                batch = prefix_part.new_zeros(
                    (len(keys), prefix_part.shape[1], p + width + room, prefix_part.shape[-1])
                )
                batch[:, :, :p] = prefix_part
                for n, rows in with_head.items():
                    batch[rows, :, p : p + n] = torch.cat([heads[keys[r]][index][part] for r in rows])
                kv.append(batch)
            layers.append(kv)
        ids = torch.full((len(keys), p + width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(keys), p + width), dtype=torch.long)
        ids[:, :p], mask[:, :p] = torch.tensor(prefix, dtype=torch.long), 1
        for r, (k, n) in enumerate(zip(keys, lengths, strict=True)):
            if k is not None:
                ids[r, p : p + n] = torch.tensor([*k[1], *[self.image_token_id] * m])
                mask[r, p : p + n] = 1
        self._keep_recent(
            heads, [k for k in keys if k is not None], lambda kv: sum(t.nbytes for pair in kv for t in pair)
        )
        cache = DynamicCache(config=self.model.config)
        for index, (k, v) in enumerate(layers):
            if type(cache.layers[index]) is DynamicLayer:  # full attention (a sliding window keeps its own layer)
                cache.layers[index] = _RoomyLayer(k, v, length=p + width)
            else:
                cache.layers[index].update(k[..., : p + width, :], v[..., : p + width, :])
        return cache, ids, mask

    def _greedy(self, inputs: dict[str, Any]) -> list[list[int]]:
        """Greedy decoding of a left-padded batch, each row's tokens up to and including its stop token.

        What ``generate`` does with ``do_sample=False`` (position ids from the mask, KV cache, one new
        token per step), except that a row leaves the batch when it emits a stop token: its cache rows
        are dropped and later steps compute only the rows still answering. A short answer then costs
        its own steps, not those of the longest answer in its batch.
        """
        input_ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
        past = inputs.pop("past_key_values", None)
        done = past.get_seq_length() if past is not None else 0
        # A padded row's positions are those of the row alone: pads are masked out and not counted.
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        out = self.model(
            input_ids=input_ids[:, done:],
            attention_mask=mask,
            position_ids=positions[:, done:],
            past_key_values=past,
            use_cache=True,
            logits_to_keep=1,
            **inputs,
        )
        stop = torch.tensor(self.stop_ids, dtype=torch.long, device=input_ids.device)
        active = torch.arange(input_ids.shape[0], device=input_ids.device)  # batch row of each answering row
        next_position = positions[:, -1] + 1
        generated: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
        for step in range(self.max_new_tokens):
            token = out.logits[:, -1].argmax(dim=-1)
            for row, t in zip(active.tolist(), token.tolist(), strict=True):
                generated[row].append(t)
            answering = ~torch.isin(token, stop)
            if step == self.max_new_tokens - 1 or not bool(answering.any()):
                break
            cache = out.past_key_values
            if not bool(answering.all()):
                keep = answering.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                active, token, mask, next_position = active[keep], token[keep], mask[keep], next_position[keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = self.model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=next_position[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            next_position = next_position + 1
        return generated

    @torch.inference_mode()
    def answer(self, questions: Sequence[Question], *, blank_images: bool = False) -> list[str]:
        questions = list(questions)
        if not questions:
            return []
        ids = self.tokenizer([self.prompt_text(q) for q in questions], add_special_tokens=False)["input_ids"]
        self.model.eval()
        param = next(self.model.parameters())
        prefix = self.shared_prefix(ids) if self.prefix_cache else []
        cache = prefill(self.model, prefix, param.device) if prefix else None
        p, m = len(prefix), self.n_image_tokens
        # Rows with an image start after it, from its head's cached keys and values.
        head_keys = [
            self._head_key(q, row, p, blank_images) if cache is not None and self.feature_cache_mb > 0 else None
            for q, row in zip(questions, ids, strict=True)
        ]
        own_tokens = [row[p + (len(k[1]) + m if k is not None else 0) :] for row, k in zip(ids, head_keys, strict=True)]
        # Longest first by the tokens a batch computes itself (after the prefix and the image's
        # head): similar lengths share a batch (little padding; an image question's own tokens are
        # its head shorter than a text question of the same prompt length) and a too-long batch
        # fails at once rather than at the end. sorted() is stable, so ties keep input order.
        order = sorted(range(len(questions)), key=lambda i: -len(own_tokens[i]))
        answers: list[str | None] = [None] * len(questions)
        features: OrderedDict[Any, torch.Tensor] = OrderedDict()
        heads: OrderedDict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        bar = progress(total=len(questions), desc=self.desc, unit="q")
        try:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                keys = [head_keys[i] for i in rows]
                own = [own_tokens[i] for i in rows]
                input_ids, mask = self._batch(own)
                extra: dict[str, Any] = {}
                if cache is not None:  # [prefix][head][gap][pads][own tokens]; prefix and heads computed once
                    past, head_ids, head_mask = self._prefix_and_heads(
                        keys,
                        [questions[i] for i in rows],
                        blank_images,
                        prefix,
                        cache,
                        heads,
                        features,
                        param.device,
                        input_ids.shape[1] + self.max_new_tokens,
                    )
                    input_ids, mask = torch.cat([head_ids, input_ids], dim=1), torch.cat([head_mask, mask], dim=1)
                    extra["past_key_values"] = past
                inputs: dict[str, Any] = {
                    "input_ids": input_ids.to(param.device),
                    "attention_mask": mask.to(param.device),
                    **extra,
                }
                # images still to be read by this batch's forward pass (not already in a head)
                with_image = [
                    questions[i]
                    for i, k in zip(rows, keys, strict=True)
                    if questions[i].image is not None and k is None
                ]
                if with_image and self.feature_cache_mb > 0:
                    encoded = self._image_features(with_image, blank_images, features, param.device)
                    inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=encoded)}
                elif with_image:
                    images = [
                        question_image(q, self.image_root, self.image_size, blank=blank_images) for q in with_image
                    ]
                    inputs["pixel_values"] = self.processor(images).to(device=param.device, dtype=param.dtype)
                generated = self._greedy(inputs)
                for i, tokens in zip(rows, generated, strict=True):
                    text = self.tokenizer.decode(tokens, skip_special_tokens=False)
                    answers[i] = clean_answer(text, self.stop_strings)
                bar.update(len(rows))
        finally:
            bar.close()
        return answers  # type: ignore[return-value]
