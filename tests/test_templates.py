"""Chat templates: exact renderings, label masks from segments, image tokens, mismatches, Jinja twins.

Everything runs on tiny tokenizers trained here in a fraction of a second; nothing is downloaded.
"""

from __future__ import annotations

import pytest

from impkit.data.templates import (
    IGNORE_INDEX,
    TEMPLATES,
    ChatTemplate,
    TemplateError,
    encode,
    get_template,
    jinja_chat_template,
    normalise_conversation,
    render_chat_prompt,
    render_prompt,
    render_segments,
    render_text,
)

SYS = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
SPECIAL = [
    "<image>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|endoftext|>",
]
CHAT = ["phi2", "qwen2", "phi3"]
N_IMAGE = 5

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What colour is the square? The square is red.",
    "How many circles are there? There are two circles.",
    "Where is the triangle? The triangle is on the left.",
    "Describe the image in detail.",
    "A small blue circle sits next to a large green square.",
    "Is there a star in the picture? No, there is no star.",
    "Read the word in the frame. The word is apple.",
    "Which bar is the tallest? The bar labelled C is the tallest.",
    "The chart shows five bars and a line.",
    "Answer with the option's letter from the given choices directly.",
    "First paragraph.\n\nSecond paragraph.\n\nThird paragraph.",
    "One line.\nAnother line.\n\nA new block.",
    "USER: hello ASSISTANT: hi there",
    "system user assistant",
    SYS,
]


def _bpe(pre_tokenizer, decoder, vocab_size: int, alphabet=()):
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoder
    # paragraph breaks after a word (after punctuation they join it), so "\n\n" becomes one token
    paragraphs = "\n\n".join(line.rstrip(".?") for line in CORPUS)
    texts = CORPUS * 3 + [paragraphs] * 3 + [render_text(t, _conversation(3, True), True) for t in TEMPLATES.values()]
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=list(alphabet), show_progress=False)
    )
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)
    hf.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": SPECIAL})
    return hf


# Qwen2's pre-tokenization: runs of newlines ("\s*[\r\n]+") are one pre-token, so "\n\n" can merge.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@pytest.fixture(scope="module")
def tokenizer():
    """Byte-level BPE pre-tokenized as Qwen2's, vocabulary ~400, the template markers as special tokens."""
    from tokenizers import Regex, decoders, pre_tokenizers

    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return _bpe(pre, decoders.ByteLevel(), 400, pre_tokenizers.ByteLevel.alphabet())


@pytest.fixture(scope="module")
def metaspace_tokenizer():
    """SentencePiece-style BPE (as Phi-3's): Metaspace marks the first word of a text with "▁"."""
    from tokenizers import decoders, pre_tokenizers

    return _bpe(pre_tokenizers.Metaspace(prepend_scheme="first"), decoders.Metaspace(prepend_scheme="first"), 300)


QUESTIONS = ["What colour is the square?", "How many circles are there?", "Where is the triangle?"]
ANSWERS = ["The square is red.", "There are two circles.", "The triangle is on the left."]


def _conversation(exchanges: int, image: bool, image_at_end: bool = False) -> list[dict[str, str]]:
    turns = []
    for i in range(exchanges):
        question = QUESTIONS[i]
        if image and i == 0:
            question = f"{question}\n<image>" if image_at_end else f"<image>\n{question}"
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": ANSWERS[i]}]
    return turns


def _decode(tok, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _supervised_runs(labels: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for label in labels:
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(label)
        previous = label
    return runs


# --- renderings ---------------------------------------------------------------------------------

EXPECTED_TWO_EXCHANGES = {
    "plain": "<image>The square is red.\n",
    "phi2": (
        f"{SYS} USER: <image>\nWhat colour is the square? ASSISTANT: The square is red.</s>"
        "USER: How many circles are there? ASSISTANT: There are two circles.</s>"
    ),
    "qwen2": (
        f"<|im_start|>system\n{SYS}<|im_end|>\n"
        "<|im_start|>user\n<image>\nWhat colour is the square?<|im_end|>\n"
        "<|im_start|>assistant\nThe square is red.<|im_end|>\n"
        "<|im_start|>user\nHow many circles are there?<|im_end|>\n"
        "<|im_start|>assistant\nThere are two circles.<|im_end|>\n"
    ),
    "phi3": (
        f"<|system|>\n{SYS}<|end|>\n"
        "<|user|>\n<image>\nWhat colour is the square?<|end|>\n"
        "<|assistant|>\nThe square is red.<|end|>\n"
        "<|user|>\nHow many circles are there?<|end|>\n"
        "<|assistant|>\nThere are two circles.<|end|>\n"
    ),
}

EXPECTED_PROMPT = {
    "plain": "<image>",
    "phi2": f"{SYS} USER: <image>\nWhat colour is the square? ASSISTANT:",
    "qwen2": f"<|im_start|>system\n{SYS}<|im_end|>\n<|im_start|>user\n<image>\nWhat colour is the square?<|im_end|>\n<|im_start|>assistant\n",
    "phi3": f"<|system|>\n{SYS}<|end|>\n<|user|>\n<image>\nWhat colour is the square?<|end|>\n<|assistant|>\n",
}


def test_registry_keys_and_stop_strings():
    assert set(TEMPLATES) == {"plain", "phi2", "qwen2", "phi3"}
    assert all(isinstance(t, ChatTemplate) and t.name == name for name, t in TEMPLATES.items())
    assert {n: t.stop for n, t in TEMPLATES.items()} == {
        "plain": ("\n",),
        "phi2": ("</s>",),
        "qwen2": ("<|im_end|>",),
        "phi3": ("<|end|>",),
    }
    assert TEMPLATES["phi2"].generation_prompt == " ASSISTANT:"
    assert TEMPLATES["qwen2"].generation_prompt == "<|im_start|>assistant\n"
    assert TEMPLATES["phi3"].generation_prompt == "<|assistant|>\n"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_full_rendering_is_the_literal_format(name):
    assert render_text(get_template(name), _conversation(2, True), True) == EXPECTED_TWO_EXCHANGES[name]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_inference_prompt(name):
    assert render_prompt(get_template(name), "What colour is the square?", True) == EXPECTED_PROMPT[name]
    # a tag anywhere in the question is moved to the front, as in training
    assert render_prompt(get_template(name), "What colour is the square?\n<image>", True) == EXPECTED_PROMPT[name]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_chat_prompt_renders_earlier_turns_as_training_does(name):
    """The chat server's prompt: one user turn is the inference prompt; with earlier turns, those
    render exactly as training renders the conversation, then the next question and the generation
    prompt (plain, stage 1, keeps its first exchange only)."""
    template = get_template(name)
    question = "What colour is the square?"
    assert render_chat_prompt(template, [("user", question)], True) == EXPECTED_PROMPT[name]
    turns = normalise_conversation(_conversation(2, True), True)
    history = render_text(template, _conversation(1, True), True)
    chat = render_chat_prompt(template, [(r, t.replace("<image>\n", "")) for r, t in turns[:3]], True)
    if template.max_exchanges is None:
        assert chat.startswith(history) and chat.endswith(
            turns[2][1] + template.user_suffix + template.generation_prompt
        )
    with pytest.raises(TemplateError, match="alternate"):
        render_chat_prompt(template, [("user", "a"), ("user", "b")], False)
    with pytest.raises(TemplateError, match="ends with a user turn"):
        render_chat_prompt(template, turns[:2], True)
    with pytest.raises(TemplateError, match="passed on its own"):
        render_chat_prompt(template, [("user", "<image> what")], True)


def test_image_placeholder_is_its_own_unsupervised_segment():
    segments = render_segments(TEMPLATES["qwen2"], normalise_conversation(_conversation(1, True), True), True)
    images = [s for s in segments if s.image]
    assert len(images) == 1 and images[0].text == "<image>" and not images[0].supervised
    assert [s.text for s in segments if s.supervised] == ["The square is red.<|im_end|>"]


# --- labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("image", [True, False])
def test_only_answers_and_end_markers_are_supervised(tokenizer, name, image):
    template = get_template(name)
    exchanges = 1 if name == "plain" else 3
    enc = encode(template, _conversation(3, image), tokenizer, has_image=image, num_image_tokens=N_IMAGE)
    assert not enc.mismatch and not enc.truncated
    assert len(enc.input_ids) == len(enc.labels)
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(enc.input_ids, enc.labels, strict=True))
    decoded = [_decode(tokenizer, run) for run in _supervised_runs(enc.labels)]
    # phi2's answer_lead is the space after "ASSISTANT:": byte-level BPE fuses it into the answer's
    # first token, so it is supervised with the answer (LLaVA v1 masks the same way).
    assert decoded == [template.answer_lead + answer + template.answer_end for answer in ANSWERS[:exchanges]]
    assert template.answer_lead == (" " if name == "phi2" else "")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_ids_are_the_tokenization_of_the_rendered_text(tokenizer, name):
    enc = encode(get_template(name), _conversation(3, False), tokenizer, has_image=False, num_image_tokens=N_IMAGE)
    assert (
        enc.input_ids
        == tokenizer(render_text(get_template(name), _conversation(3, False), False), add_special_tokens=False)[
            "input_ids"
        ]
    )


# --- image tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_image_tokens_expanded_where_the_tag_was(tokenizer, name):
    template = get_template(name)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    enc = encode(template, _conversation(2, True), tokenizer, has_image=True, num_image_tokens=N_IMAGE)
    positions = [i for i, t in enumerate(enc.input_ids) if t == image_id]
    assert len(positions) == N_IMAGE and positions == list(range(positions[0], positions[0] + N_IMAGE))
    assert all(enc.labels[i] == IGNORE_INDEX for i in positions)
    rendered = EXPECTED_TWO_EXCHANGES[name]
    before, _, after = rendered.partition("<image>")
    assert _decode(tokenizer, enc.input_ids[: positions[0]]) == before
    assert _decode(tokenizer, enc.input_ids[positions[-1] + 1 :]) == after


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_image_tag_at_end_of_question_moves_to_front(tokenizer, name):
    template = get_template(name)
    front = encode(template, _conversation(2, True), tokenizer, has_image=True, num_image_tokens=N_IMAGE)
    end = encode(
        template, _conversation(2, True, image_at_end=True), tokenizer, has_image=True, num_image_tokens=N_IMAGE
    )
    assert end == front
    assert normalise_conversation(_conversation(1, True, image_at_end=True), True)[0] == (
        "user",
        "<image>\nWhat colour is the square?",
    )


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_text_only_records_have_no_image_tokens(tokenizer, name):
    enc = encode(get_template(name), _conversation(2, False), tokenizer, has_image=False, num_image_tokens=N_IMAGE)
    assert tokenizer.convert_tokens_to_ids("<image>") not in enc.input_ids


# --- tokenization mismatch ----------------------------------------------------------------------


def test_mismatch_reported_when_a_merge_spans_a_segment_boundary(tokenizer):
    """An answer that starts with a newline: in the whole qwen2 text "assistant\\n" + "\\nThe ..."
    the two newlines form one pre-token (Qwen2's "\\s*[\\r\\n]+"), which the tiny BPE merges into one
    token ("ĊĊ", learnt from the paragraph breaks of the corpus); tokenized segment by segment they
    are two tokens. The sample is kept and flagged, not dropped and not raised."""
    assert len(tokenizer("\n\n", add_special_tokens=False)["input_ids"]) == 1  # the merge exists
    record = [
        {"from": "human", "value": "<image>\nDescribe the image."},
        {"from": "gpt", "value": "\nThe square is red."},
    ]
    enc = encode(TEMPLATES["qwen2"], record, tokenizer, has_image=True, num_image_tokens=N_IMAGE)
    assert enc.mismatch
    assert [_decode(tokenizer, r) for r in _supervised_runs(enc.labels)] == ["\nThe square is red.<|im_end|>"]
    # the same answer without the leading newline is clean
    record[1]["value"] = "The square is red."
    assert not encode(TEMPLATES["qwen2"], record, tokenizer, has_image=True, num_image_tokens=N_IMAGE).mismatch


def test_metaspace_tokenizer_segments_continue_the_text(metaspace_tokenizer):
    """A segment tokenized on its own would get the start-of-text "▁" ("▁The" instead of "The" after
    "<|assistant|>\\n"); segments after the first are encoded as continuations, so ids match."""
    tok = metaspace_tokenizer
    alone = tok("The square is red.", add_special_tokens=False)["input_ids"]
    in_context = tok("<|assistant|>The square is red.", add_special_tokens=False)["input_ids"][1:]
    assert alone != in_context  # the pitfall is real for this tokenizer
    for name in sorted(TEMPLATES):
        enc = encode(get_template(name), _conversation(3, True), tok, has_image=True, num_image_tokens=N_IMAGE)
        assert not enc.mismatch, name


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "turns, message",
    [
        ([{"from": "gpt", "value": "hi"}, {"from": "human", "value": "<image>\nq"}], "alternate"),
        ([{"from": "human", "value": "<image>\nq"}, {"from": "human", "value": "q"}], "alternate"),
        (
            [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}],
            "ends with a human",
        ),
        ([{"from": "human", "value": "<image>\nq"}, {"from": "bot", "value": "a"}], "unknown role"),
        ([], "empty"),
    ],
)
def test_bad_roles_raise(turns, message):
    with pytest.raises(TemplateError, match=message):
        normalise_conversation(turns, has_image=True)


def test_image_tag_errors(tokenizer):
    with pytest.raises(TemplateError, match="no <image> tag"):
        normalise_conversation(_conversation(1, False), has_image=True)
    with pytest.raises(TemplateError, match="2 <image> tags"):
        normalise_conversation([{"from": "human", "value": "<image>\n<image>\nq"}, {"from": "gpt", "value": "a"}], True)
    with pytest.raises(TemplateError, match="first human turn"):
        normalise_conversation([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a <image>"}], True)
    with pytest.raises(TemplateError, match="text-only"):
        normalise_conversation(_conversation(1, True), has_image=False)
    with pytest.raises(TemplateError, match="not a single added token"):
        encode(
            TEMPLATES["qwen2"],
            _conversation(1, True),
            tokenizer,
            has_image=True,
            image_token="<img>",
            num_image_tokens=N_IMAGE,
        )


def test_unknown_template_lists_known_names():
    with pytest.raises(KeyError) as info:
        get_template("llama3")
    assert all(name in str(info.value) for name in ("plain", "phi2", "qwen2", "phi3"))


def test_truncation(tokenizer):
    template = TEMPLATES["qwen2"]
    full = encode(template, _conversation(3, True), tokenizer, has_image=True, num_image_tokens=N_IMAGE)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    last_image = max(i for i, t in enumerate(full.input_ids) if t == image_id)
    cut = encode(
        template, _conversation(3, True), tokenizer, has_image=True, num_image_tokens=N_IMAGE, max_length=last_image + 3
    )
    assert (
        cut.truncated
        and cut.input_ids == full.input_ids[: last_image + 3]
        and cut.labels == full.labels[: last_image + 3]
    )
    with pytest.raises(TemplateError, match="cut into the image tokens"):
        encode(
            template, _conversation(3, True), tokenizer, has_image=True, num_image_tokens=N_IMAGE, max_length=last_image
        )
    same = encode(
        template,
        _conversation(3, True),
        tokenizer,
        has_image=True,
        num_image_tokens=N_IMAGE,
        max_length=len(full.input_ids),
    )
    assert same == full and not same.truncated


# --- Jinja --------------------------------------------------------------------------------------


def _messages(conversations):
    role = {"human": "user", "gpt": "assistant"}
    return [{"role": role[t["from"]], "content": t["value"]} for t in conversations]


@pytest.mark.parametrize("name", [*CHAT, "plain"])
def test_jinja_template_reproduces_the_training_format(tokenizer, name):
    template = get_template(name)
    tokenizer.chat_template = jinja_chat_template(template)
    conversation = _conversation(3, True)
    messages = _messages(conversation)
    assert tokenizer.apply_chat_template(messages, tokenize=False) == render_text(template, conversation, True)
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == render_prompt(template, QUESTIONS[0], True) == EXPECTED_PROMPT[name]
    text_only = _messages(_conversation(2, False))
    assert tokenizer.apply_chat_template(text_only, tokenize=False) == render_text(
        template, _conversation(2, False), False
    )


@pytest.mark.parametrize("name", CHAT)
def test_jinja_template_system_message_and_content_parts(tokenizer, name):
    template = get_template(name)
    tokenizer.chat_template = jinja_chat_template(template)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the triangle?"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == render_prompt(template, "Where is the triangle?", False, system="Be brief.")
    parts = [{"role": "user", "content": [{"type": "text", "text": "What colour is the square?"}, {"type": "image"}]}]
    assert tokenizer.apply_chat_template(parts, tokenize=False, add_generation_prompt=True) == EXPECTED_PROMPT[name]
