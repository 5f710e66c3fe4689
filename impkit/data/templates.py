"""Chat templates as data, and exact label masks from rendering.

A template is a frozen description of how a conversation becomes text (system block, user prefix and
suffix, assistant prefix, answer end marker, ...). Rendering produces *segments*, each marked
supervised or not, and the image placeholder as a segment of its own. ``encode`` tokenizes every
segment on its own and concatenates, so the labels are right by construction: no hand-counted
offsets, no ``len(tokenizer(...)) - 2``.

Segment-wise tokenization can differ from tokenizing the whole rendered string (a BPE merge across a
segment boundary). That is the "tokenization mismatch" LLaVA and Bunny drop samples for without a
word; here ``encode`` sets ``Encoded.mismatch`` and the caller counts and logs it.

The same templates give the inference prompt (``render_prompt``) and a Jinja chat template
(``jinja_chat_template``) for ``tokenizer.chat_template`` and GGUF metadata, so transformers and
llama.cpp chat handlers produce exactly the training format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from impkit.data.llava_format import IMAGE_TAG
from impkit.errors import ImpkitError

IGNORE_INDEX = -100  # label of every position that is not supervised (PyTorch's cross-entropy default)

DEFAULT_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

USER = "user"
ASSISTANT = "assistant"
_ROLES = {"human": USER, "gpt": ASSISTANT}  # LLaVA's "from" values -> chat roles


class TemplateError(ImpkitError, ValueError):
    """A conversation cannot be rendered or encoded with a template."""


@dataclass(frozen=True)
class ChatTemplate:
    """How a conversation becomes text.

    A conversation renders as::

        system_format(system_prompt)
        + for each exchange:
            user_prefix + question + user_suffix
            + assistant_prefix + [answer_lead + answer + answer_end] + turn_sep

    where the bracketed part is supervised and the first question of a record with an image is
    ``<image>`` + ``image_sep`` + question, the ``<image>`` being a segment of its own. ``answer_lead`` is the text between the assistant
    prefix and the answer that a tokenizer fuses into the answer's first token (the space after
    "ASSISTANT:" in byte-level BPE), so it is tokenized, and supervised, with the answer, as LLaVA's
    v1 masking does.
    """

    name: str
    system_prompt: str = ""  # default system prompt
    system_format: str = ""  # the system block; "{system}" is replaced by the system prompt
    user_prefix: str = ""
    user_suffix: str = ""
    assistant_prefix: str = ""  # also the generation prompt: what follows the last user turn at inference
    answer_lead: str = ""
    answer_end: str = ""  # end marker of an answer; supervised, and the stop string at inference
    turn_sep: str = ""  # after the end marker; not supervised
    keep_user_text: bool = True  # False: the user turn renders as the image placeholder only (stage 1)
    max_exchanges: int | None = None  # render only the first N exchanges (stage 1 uses one)
    image_sep: str = "\n"  # between the image placeholder and the question

    @property
    def generation_prompt(self) -> str:
        return self.assistant_prefix

    @property
    def stop(self) -> tuple[str, ...]:
        return (self.answer_end,) if self.answer_end else ()

    def system_block(self, system: str | None = None) -> str:
        return self.system_format.replace("{system}", self.system_prompt if system is None else system)


TEMPLATES: dict[str, ChatTemplate] = {
    # Stage-1 alignment (LLaVA "plain"): "<image>" + caption + "\n"; the human prompt is dropped.
    "plain": ChatTemplate(name="plain", answer_end="\n", keep_user_text=False, max_exchanges=1, image_sep=""),
    # Imp's Phi-2 template (LLaVA "v1": sep " ", sep2 "</s>").
    "phi2": ChatTemplate(
        name="phi2",
        system_prompt=DEFAULT_SYSTEM_PROMPT,
        system_format="{system} ",
        user_prefix="USER: ",
        assistant_prefix=" ASSISTANT:",
        answer_lead=" ",
        answer_end="</s>",
    ),
    # Qwen1.5 / Qwen2: ChatML.
    "qwen2": ChatTemplate(
        name="qwen2",
        system_prompt=DEFAULT_SYSTEM_PROMPT,
        system_format="<|im_start|>system\n{system}<|im_end|>\n",
        user_prefix="<|im_start|>user\n",
        user_suffix="<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        answer_end="<|im_end|>",
        turn_sep="\n",
    ),
    "phi3": ChatTemplate(
        name="phi3",
        system_prompt=DEFAULT_SYSTEM_PROMPT,
        system_format="<|system|>\n{system}<|end|>\n",
        user_prefix="<|user|>\n",
        user_suffix="<|end|>\n",
        assistant_prefix="<|assistant|>\n",
        answer_end="<|end|>",
        turn_sep="\n",
    ),
}


def get_template(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown chat template {name!r}; known templates: {', '.join(sorted(TEMPLATES))}") from None


@dataclass(frozen=True)
class Segment:
    text: str
    supervised: bool
    image: bool = False  # the image placeholder; never supervised, expanded to the image tokens


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where not supervised
    mismatch: bool  # segment-wise tokens differ from tokenizing the whole rendered text
    truncated: bool = False


# ---------------------------------------------------------------------------------------------
# Conversations


def normalise_conversation(conversations: Sequence[Mapping[str, Any]], has_image: bool) -> list[tuple[str, str]]:
    """Validate a LLaVA conversation and return ``(role, text)`` turns, roles "user"/"assistant".

    Roles must alternate human, gpt, ... and end with a gpt answer. A record with an image holds
    exactly one ``<image>`` tag, in the first human turn; wherever it is there, it is moved to the
    front as ``"<image>\\n"`` (LLaVA's ``preprocess_multimodal``). A text-only record holds none.
    """
    if not isinstance(conversations, Sequence) or isinstance(conversations, str) or not conversations:
        raise TemplateError("conversation is empty or not a list of turns")
    turns: list[tuple[str, str]] = []
    for i, turn in enumerate(conversations):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("value"), str):
            raise TemplateError(f"turn {i}: expected {{'from': 'human'|'gpt', 'value': str}}, got {turn!r:.80}")
        source = turn.get("from")
        role = _ROLES.get(source)
        if role is None:
            raise TemplateError(f"turn {i}: unknown role {source!r} (expected 'human' or 'gpt')")
        expected = USER if i % 2 == 0 else ASSISTANT
        if role != expected:
            want = "human" if expected == USER else "gpt"
            raise TemplateError(
                f"turn {i}: expected a {want!r} turn, got {source!r}; roles must alternate human, gpt, human, ..."
            )
        turns.append((role, turn["value"]))
    if turns[-1][0] != ASSISTANT:
        raise TemplateError(
            f"conversation ends with a human turn (turn {len(turns) - 1}); the last turn must be a gpt answer"
        )

    counts = [text.count(IMAGE_TAG) for _, text in turns]
    total = sum(counts)
    if not has_image:
        if total:
            raise TemplateError(f"text-only record contains {total} {IMAGE_TAG} tag(s)")
        return turns
    if total == 0:
        raise TemplateError(f"record has an image but no {IMAGE_TAG} tag")
    if total > 1:
        raise TemplateError(f"record has {total} {IMAGE_TAG} tags; expected exactly one")
    if counts[0] != 1:
        where = next(i for i, n in enumerate(counts) if n)
        raise TemplateError(f"the {IMAGE_TAG} tag is in turn {where}; it must be in the first human turn")
    question = turns[0][1].replace(IMAGE_TAG, "").strip()
    turns[0] = (USER, f"{IMAGE_TAG}\n{question}")
    return turns


# ---------------------------------------------------------------------------------------------
# Rendering


class _Builder:
    """Collects segments; consecutive unsupervised text is merged so tokenization boundaries are few."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    def text(self, text: str) -> None:
        if not text:
            return
        last = self.segments[-1] if self.segments else None
        if last is not None and not last.supervised and not last.image:
            self.segments[-1] = Segment(last.text + text, supervised=False)
        else:
            self.segments.append(Segment(text, supervised=False))

    def answer(self, text: str) -> None:
        self.segments.append(Segment(text, supervised=True))

    def image(self) -> None:
        self.segments.append(Segment(IMAGE_TAG, supervised=False, image=True))


def _render(
    template: ChatTemplate,
    turns: Sequence[tuple[str, str]],
    has_image: bool,
    *,
    add_generation_prompt: bool = False,
    system: str | None = None,
) -> list[Segment]:
    if template.max_exchanges is not None:
        turns = turns[: 2 * template.max_exchanges]
    out = _Builder()
    out.text(template.system_block(system))
    for i, (role, text) in enumerate(turns):
        if role == USER:
            out.text(template.user_prefix)
            if i == 0 and has_image:
                head = f"{IMAGE_TAG}\n"
                if not text.startswith(head):
                    raise TemplateError(f"first user turn must start with {head!r} (use normalise_conversation)")
                out.image()
                if template.keep_user_text:
                    out.text(template.image_sep)
                text = text[len(head) :]
            if template.keep_user_text:
                out.text(text)
            out.text(template.user_suffix)
        elif role == ASSISTANT:
            out.text(template.assistant_prefix)
            out.answer(template.answer_lead + text + template.answer_end)
            out.text(template.turn_sep)
        else:
            raise TemplateError(f"turn {i}: unknown role {role!r}")
    if add_generation_prompt:
        out.text(template.generation_prompt)
    return out.segments


def render_segments(template: ChatTemplate, turns: Sequence[tuple[str, str]], has_image: bool) -> list[Segment]:
    """Training segments of normalised turns (``normalise_conversation``)."""
    return _render(template, turns, has_image)


def render_text(template: ChatTemplate, conversations: Sequence[Mapping[str, Any]], has_image: bool) -> str:
    """The full training text of a LLaVA conversation."""
    return "".join(
        s.text for s in render_segments(template, normalise_conversation(conversations, has_image), has_image)
    )


def render_prompt(template: ChatTemplate, question: str, has_image: bool, *, system: str | None = None) -> str:
    """Inference prompt: system block, one user turn (``<image>\\n`` first when there is an image),
    then the generation prompt. ``system`` replaces the template's default system prompt."""
    count = question.count(IMAGE_TAG)
    if count > (1 if has_image else 0):
        raise TemplateError(f"question holds {count} {IMAGE_TAG} tag(s) (has_image={has_image})")
    if has_image:
        question = f"{IMAGE_TAG}\n{question.replace(IMAGE_TAG, '').strip()}"
    segments = _render(template, [(USER, question)], has_image, add_generation_prompt=True, system=system)
    return "".join(s.text for s in segments)


def render_chat_prompt(
    template: ChatTemplate, turns: Sequence[tuple[str, str]], has_image: bool, *, system: str | None = None
) -> str:
    """Inference prompt of a multi-turn chat: ``(role, text)`` turns alternating "user" and
    "assistant", ending with a user turn, each earlier answer rendered as training renders it, then
    the generation prompt. With an image, the first user turn starts with ``<image>\\n`` (one image,
    before the first question, as LLaVA trains). One user turn gives exactly ``render_prompt``."""
    turns = list(turns)
    if not turns or turns[-1][0] != USER:
        raise TemplateError("a chat prompt ends with a user turn")
    for i, (role, _) in enumerate(turns):
        if role != (USER if i % 2 == 0 else ASSISTANT):
            raise TemplateError(f"turn {i}: roles must alternate user, assistant, user, ... (got {role!r})")
    count = sum(text.count(IMAGE_TAG) for _, text in turns)
    if count:
        raise TemplateError(f"the chat's text holds {count} {IMAGE_TAG} tag(s); the image is passed on its own")
    if has_image:
        turns[0] = (USER, f"{IMAGE_TAG}\n{turns[0][1].strip()}")
    segments = _render(template, turns, has_image, add_generation_prompt=True, system=system)
    return "".join(s.text for s in segments)


# ---------------------------------------------------------------------------------------------
# Tokenization


def _token_id(tokenizer: Any, token: str) -> int | None:
    """Id of ``token`` when it is an added token that encodes to itself alone, else None."""
    if token not in tokenizer.get_added_vocab():
        return None
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def _continuation_anchor(tokenizer: Any, image_token: str) -> tuple[str, int] | None:
    """An added token to put before a segment that is not at the start of the text.

    Tokenizers that mark the start of the text (SentencePiece-style Metaspace, e.g. Phi-3's, adds
    "▁" to the first word) would tokenize a segment on its own as if it began the text. Encoding
    ``anchor + segment`` and dropping the anchor gives the segment as it is tokenized after other
    text; for byte-level BPE (Phi-2, Qwen2) it changes nothing.
    """
    for candidate in (image_token, *tokenizer.all_special_tokens):
        anchor_id = _token_id(tokenizer, candidate)
        if anchor_id is not None:
            return candidate, anchor_id
    return None


def _encode_pieces(tokenizer: Any, texts: list[str], first_starts_text: bool, image_token: str) -> list[list[int]]:
    """Tokenize texts on their own, each as a continuation of earlier text except a first one that
    starts the whole text (see ``_continuation_anchor``)."""
    if not texts:
        return []
    anchor = _continuation_anchor(tokenizer, image_token)
    if anchor is None:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    anchor_text, anchor_id = anchor
    prefixed = [text if i == 0 and first_starts_text else anchor_text + text for i, text in enumerate(texts)]
    out = []
    for text, ids in zip(texts, tokenizer(prefixed, add_special_tokens=False)["input_ids"], strict=True):
        if len(out) == 0 and first_starts_text:
            out.append(list(ids))
        elif ids and ids[0] == anchor_id:
            out.append(list(ids[1:]))
        else:  # the anchor did not stay a token of its own: plain encoding
            out.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return out


def encode_segments(
    segments: Sequence[Segment],
    tokenizer: Any,
    *,
    image_token: str = IMAGE_TAG,
    num_image_tokens: int,
    max_length: int | None = None,
) -> Encoded:
    """Token ids and labels of rendered segments (see ``encode``)."""
    has_image = any(s.image for s in segments)
    image_id = _token_id(tokenizer, image_token) if has_image else None
    if has_image:
        if image_id is None:
            raise TemplateError(
                f"image token {image_token!r} is not a single added token of this tokenizer; "
                "add it with tokenizer.add_special_tokens(...)"
            )
        if num_image_tokens < 1:
            raise TemplateError(f"num_image_tokens must be at least 1, got {num_image_tokens}")

    texts = [s.text for s in segments if not s.image]
    pieces = iter(_encode_pieces(tokenizer, texts, bool(segments) and not segments[0].image, image_token))

    input_ids: list[int] = []
    labels: list[int] = []
    image_span: tuple[int, int] | None = None
    for segment in segments:
        if segment.image:
            image_span = (len(input_ids), len(input_ids) + num_image_tokens)
            input_ids += [image_id] * num_image_tokens
            labels += [IGNORE_INDEX] * num_image_tokens
            continue
        ids = next(pieces)
        input_ids += ids
        labels += ids if segment.supervised else [IGNORE_INDEX] * len(ids)

    full_text = "".join(image_token if s.image else s.text for s in segments)
    whole = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    expanded: list[int] = []
    for token in whole:
        expanded += [token] * num_image_tokens if has_image and token == image_id else [token]
    mismatch = expanded != input_ids

    truncated = max_length is not None and len(input_ids) > max_length
    if truncated:
        if image_span is not None and image_span[1] > max_length:
            raise TemplateError(
                f"max_length={max_length} would cut into the image tokens at positions "
                f"{image_span[0]}..{image_span[1] - 1} of a {len(input_ids)}-token sample"
            )
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return Encoded(input_ids=input_ids, labels=labels, mismatch=mismatch, truncated=truncated)


def encode(
    template: ChatTemplate,
    conversations: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    *,
    has_image: bool,
    image_token: str = IMAGE_TAG,
    num_image_tokens: int,
    max_length: int | None = None,
) -> Encoded:
    """Token ids and labels of a LLaVA conversation.

    Every segment is tokenized on its own (``add_special_tokens=False``) and the results are
    concatenated; supervised segments keep their ids as labels, the rest get ``IGNORE_INDEX``. The
    ``<image>`` segment becomes ``num_image_tokens`` copies of the image token id. ``mismatch`` is
    set when tokenizing the whole rendered text (with the image token expanded) gives other ids;
    such samples are reported by the caller, never dropped here. ``max_length`` truncates at the
    end; cutting into the image tokens raises ``TemplateError``.
    """
    turns = normalise_conversation(conversations, has_image)
    return encode_segments(
        render_segments(template, turns, has_image),
        tokenizer,
        image_token=image_token,
        num_image_tokens=num_image_tokens,
        max_length=max_length,
    )


# ---------------------------------------------------------------------------------------------
# Jinja chat template


def _lit(text: str) -> str:
    """A Jinja string literal (Jinja unescapes backslash escapes as Python does)."""
    return json.dumps(text)


def _concat(*terms: str | tuple[str]) -> str:
    """A Jinja expression concatenating literal texts (plain ``str``) and expressions (1-tuples)."""
    parts = [term[0] if isinstance(term, tuple) else _lit(term) for term in terms if term]
    return " + ".join(parts) or '""'


def jinja_chat_template(template: ChatTemplate) -> str:
    """A ``tokenizer.chat_template`` rendering exactly what ``render_segments`` renders.

    Messages have roles "system" (optional, first), "user" and "assistant", alternating from a
    user turn. Content is a string, or a list of ``{"type": "image"}`` / ``{"type": "text",
    "text": ...}`` parts (images are placed first, as in training). Without a system message the
    template's default system prompt is used. Only plain Jinja is used (no ``generation`` tags), so
    llama.cpp's template engine renders it too.
    """
    t = template
    before, has_system, after = t.system_format.partition("{system}")
    system = _concat(before, ("system_message",), after) if has_system else _concat(before)
    if t.keep_user_text:
        user = _concat(t.user_prefix, ("content",), t.user_suffix)
    else:  # only the image placeholder of the user turn is kept
        user = _concat(t.user_prefix, (f"({_lit(IMAGE_TAG)} if {_lit(IMAGE_TAG)} in content else '')",), t.user_suffix)
    answer = _concat(t.assistant_prefix, t.answer_lead, ("content",), t.answer_end, t.turn_sep)
    lines = [
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set system_message = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}",
        "{%- else -%}",
        f"{{%- set system_message = {_lit(t.system_prompt)} -%}}{{%- set loop_messages = messages -%}}",
        "{%- endif -%}",
        f"{{{{- {system} -}}}}",
        "{%- for message in loop_messages -%}",
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}",
        "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}",
        "{%- endif -%}",
        "{%- if message['content'] is string -%}{%- set content = message['content'] -%}",
        "{%- else -%}",
        "{%- set ns = namespace(images='', text='') -%}",
        "{%- for part in message['content'] -%}",
        f"{{%- if part['type'] == 'image' -%}}{{%- set ns.images = ns.images + {_lit(IMAGE_TAG + t.image_sep)} -%}}",
        "{%- elif part['type'] == 'text' -%}{%- set ns.text = ns.text + part['text'] -%}{%- endif -%}",
        "{%- endfor -%}",
        "{%- set content = ns.images + ns.text -%}",
        "{%- endif -%}",
    ]
    if t.max_exchanges is not None:
        lines.append(f"{{%- if loop.index0 < {2 * t.max_exchanges} -%}}")
    lines += [
        f"{{%- if message['role'] == 'user' -%}}{{{{- {user} -}}}}",
        f"{{%- else -%}}{{{{- {answer} -}}}}{{%- endif -%}}",
    ]
    if t.max_exchanges is not None:
        lines.append("{%- endif -%}")
    lines += [
        "{%- endfor -%}",
        f"{{%- if add_generation_prompt -%}}{{{{- {_concat(t.generation_prompt)} -}}}}{{%- endif -%}}",
    ]
    return "\n".join(lines)
