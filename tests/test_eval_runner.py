"""The PyTorch runner: batch size never changes an answer (left padding + attention mask), answers
come back in input order, the blind baseline really feeds a grey image, stop strings cut answers,
and a saved release is answered exactly as the model in memory."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY
from PIL import Image

from impkit.config import PresetConfig, from_dict
from impkit.data.templates import get_template
from impkit.eval.heldout import answer_questions, normalise
from impkit.eval.runners import BLANK_GREY, Question, TorchRunner, clean_answer, questions_from_prompts
from impkit.eval.runners.base import question_image
from impkit.model.presets import num_image_tokens
from impkit.release import ReleaseError, write_release

PROMPTS = [
    "What colour is it?",
    "How many squares are there in the picture, counting the small ones and the large ones?",
    "Is there a lamp?",
    "Which shape is red?\nAnswer the question using a single word or phrase.",
    "What is written on the sign at the left edge of the image, next to the two blue squares?",
    "Colour?",
    "Is the circle bigger than the square, or are they the same size when you look closely?",
    "What word is shown?",
    "Name the shape.",
    "Count the objects.\nAnswer the question using a single word or phrase.",
]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 20), (10, 10, 10)]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i, colour in enumerate(COLOURS):  # different shapes too, so "pad" fills differ
        Image.new("RGB", (40 + 8 * i, 32 + 4 * (i % 3)), colour).save(root / f"scene{i}.png")
    return root


def questions(text_only: bool = True) -> list[Question]:
    qs = [Question(id=f"q{i}", image=f"scene{i % len(COLOURS)}.png", prompt=p) for i, p in enumerate(PROMPTS)]
    if text_only:  # one question with no image, mid-list
        qs[4] = Question(id="q4", image=None, prompt=PROMPTS[4])
    return qs


def runner(preset, tok, model, images, **kwargs) -> TorchRunner:
    options = dict(
        template=preset.template,
        image_size=32,
        image_aspect=preset.image_aspect,
        n_image_tokens=num_image_tokens(preset),
        image_root=images,
        batch_size=1,
        max_new_tokens=6,
    )
    return TorchRunner(model, tok, **{**options, **kwargs})


@pytest.fixture(scope="module")
def one_by_one(tiny, images):
    """The reference answers: every question on its own (no padding at all)."""
    qs = questions()
    return [runner(*tiny, images, batch_size=1).answer([q])[0] for q in qs]


def test_the_reference_answers_are_not_degenerate(one_by_one):
    # the equality tests below mean something only if answers are non-empty and differ
    assert sum(bool(a) for a in one_by_one) >= 8
    assert len(set(one_by_one)) >= 4


@pytest.mark.parametrize("batch_size", [1, 3, 8, 16])
def test_batched_answers_equal_one_question_at_a_time(tiny, images, one_by_one, batch_size):
    assert runner(*tiny, images, batch_size=batch_size).answer(questions()) == one_by_one


def test_the_greedy_loop_answers_as_transformers_generate_does(tiny, images, one_by_one):
    preset, tok, model = tiny
    run = runner(preset, tok, model, images)
    for q, answer in zip(questions(), one_by_one, strict=True):
        inputs = reference_inputs(run, q)
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=run.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=run.pad_id,
                eos_token_id=run.stop_ids,
            )
        text = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
        assert clean_answer(text, run.stop_strings) == answer, q.id


@pytest.mark.parametrize("batch_size", [3, 10])
def test_rows_that_stop_leave_the_batch_and_the_answers_stay(tiny, images, batch_size, monkeypatch):
    preset, tok, model = tiny
    reference = runner(preset, tok, model, images)
    # Stop at the commonest token of the reference answers' first steps as well, so rows stop at
    # different steps (a random model seldom emits its end marker); answers then end there.
    with torch.no_grad():
        steps = [reference._greedy(reference_inputs(reference, q))[0] for q in questions()]
    common = max({t for row in steps for t in row[:3]}, key=lambda t: sum(t in row[:3] for row in steps))
    reference.stop_ids = [*reference.stop_ids, common]
    alone = [reference.answer([q])[0] for q in questions()]
    run = runner(preset, tok, model, images, batch_size=batch_size)
    run.stop_ids = reference.stop_ids
    rows_per_forward, generated = [], []
    forward, greedy = model.forward, run._greedy

    decoding = []

    def count_rows(*args, **kwargs):
        if decoding:  # the decoding loop's calls, not the shared prefix's or the image heads'
            rows_per_forward.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    def keep(inputs):
        decoding.append(True)
        generated.append(greedy(inputs))
        decoding.clear()
        return generated[-1]

    monkeypatch.setattr(model, "forward", count_rows)
    monkeypatch.setattr(run, "_greedy", keep)
    assert run.answer(questions()) == alone
    lengths = [len(row) for batch in generated for row in batch]
    assert min(lengths) < max(lengths)  # some rows stopped before others
    expected = []  # forward k of a batch computes the rows that generated more than k tokens
    for batch in generated:
        expected += [sum(len(row) > k for row in batch) for k in range(max(len(row) for row in batch))]
    assert rows_per_forward == expected


def reference_inputs(run: TorchRunner, q: Question) -> dict:
    """One question's unpadded prompt ids, mask and pixels."""
    inputs = dict(run.tokenizer([run.prompt_text(q)], add_special_tokens=False, return_tensors="pt"))
    if q.image is not None:
        inputs["pixel_values"] = run.processor([question_image(q, run.image_root, run.image_size)])
    return inputs


def test_answers_come_back_in_input_order(tiny, images, one_by_one):
    reordered = list(reversed(questions()))
    assert runner(*tiny, images, batch_size=3).answer(reordered) == list(reversed(one_by_one))


def test_batches_are_left_padded_sorted_by_length_and_masked(tiny, images, monkeypatch):
    preset, tok, model = tiny
    seen = []
    before = tok.padding_side
    run = runner(preset, tok, model, images, batch_size=4, prefix_cache=False)
    greedy = run._greedy

    def spy(inputs):
        seen.append((inputs["input_ids"].clone(), inputs["attention_mask"].clone()))
        return greedy(inputs)

    monkeypatch.setattr(run, "_greedy", spy)
    run.answer(questions())
    assert tok.padding_side == before  # the tokenizer is left as it was
    lengths = [int(mask.sum(1).max()) for _, mask in seen]
    assert lengths == sorted(lengths, reverse=True)  # longest batch first
    for ids, mask in seen:
        assert mask[:, -1].all()  # every row's last prompt token is at the end: left padding
        assert (ids[mask == 0] == run.pad_id).all()
        assert (mask.cummax(1).values == mask).all()  # pads only before the prompt
    total = sum(ids.numel() for ids, _ in seen)
    real = sum(int(mask.sum()) for _, mask in seen)
    assert total - real < 0.5 * real  # sorting keeps the padding small


def test_with_the_caches_batches_are_sorted_by_the_tokens_they_compute(tiny, images, monkeypatch):
    """An image row starts after its image's head, so what a batch computes is the prompt less the
    cached prefix and head: batches come longest first by that, not by the whole prompt."""
    preset, tok, model = tiny
    own_widths = []
    run = runner(preset, tok, model, images, batch_size=2)
    greedy = run._greedy

    def spy(inputs):
        own_widths.append(inputs["input_ids"].shape[1] - inputs["past_key_values"].get_seq_length())
        return greedy(inputs)

    monkeypatch.setattr(run, "_greedy", spy)
    run.answer(questions())
    assert len(own_widths) > 2 and own_widths == sorted(own_widths, reverse=True)


def test_the_roomy_cache_layer_holds_what_a_dynamic_layer_holds_without_copying():
    from transformers.cache_utils import DynamicLayer

    from impkit.eval.runners.torch_runner import _RoomyLayer

    torch.manual_seed(0)
    start_k, start_v = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    plain = DynamicLayer()
    plain.update(start_k, start_v)
    room_k, room_v = torch.zeros(3, 2, 8, 4), torch.zeros(3, 2, 8, 4)
    room_k[..., :5, :], room_v[..., :5, :] = start_k, start_v
    roomy = _RoomyLayer(room_k, room_v, length=5)
    # rows dropped while in room, then growth past its capacity (8), then rows dropped after that
    steps = [
        (torch.randn(3, 2, 2, 4), None),
        (torch.randn(3, 2, 1, 4), torch.tensor([0, 2])),
        (torch.randn(2, 2, 1, 4), None),
        (torch.randn(2, 2, 1, 4), torch.tensor([1])),
        (torch.randn(1, 2, 1, 4), None),
    ]
    for new, keep in steps:
        expected = plain.update(new, -new)
        got = roomy.update(new, -new)
        for a, b in zip(expected, got, strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
        assert roomy.get_seq_length() == plain.get_seq_length()
        if keep is not None:
            plain.batch_select_indices(keep)
            roomy.batch_select_indices(keep)
    # the first steps wrote into the buffer it was given; past its capacity (8) it grew like a DynamicLayer
    assert roomy.get_seq_length() == 11 and roomy.keys.shape == (1, 2, 11, 4)
    fresh = _RoomyLayer(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2), length=1)
    buffer = fresh.keys.data_ptr()
    fresh.update(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    assert fresh.keys.data_ptr() == buffer and fresh.get_seq_length() == 3


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_the_shared_prefix_is_computed_once_and_changes_no_answer(tiny, images, one_by_one, batch_size, monkeypatch):
    preset, tok, model = tiny
    run = runner(preset, tok, model, images, batch_size=batch_size)
    ids = tok([run.prompt_text(q) for q in questions()], add_special_tokens=False)["input_ids"]
    prefix = run.shared_prefix(ids)
    assert len(prefix) >= 10  # the phi2 system prompt and "USER:": most of a short prompt
    assert all(row[: len(prefix)] == prefix for row in ids)
    assert run.image_token_id not in prefix
    seen = []
    greedy = run._greedy

    def spy(inputs):
        cached = inputs["past_key_values"].get_seq_length()  # decoding extends the cache it is given
        seen.append((inputs["input_ids"].clone(), inputs["attention_mask"].clone(), cached))
        return greedy(inputs)

    monkeypatch.setattr(run, "_greedy", spy)
    assert run.answer(questions()) == one_by_one
    heads = 0
    for input_ids, mask, cached in seen:
        # the prefix arrives as a filled cache, followed there by the rows' image heads, if any
        assert (input_ids[:, : len(prefix)] == torch.tensor(prefix)).all() and mask[:, : len(prefix)].all()
        head = mask[:, len(prefix) : cached]
        assert (head.flip(1).cummax(1).values == head.flip(1)).all()  # a row's head, then masked gap
        heads += int((input_ids[:, len(prefix) : cached] == run.image_token_id).any(1).sum())
        own = mask[:, cached:]
        assert own[:, -1].all() and (own.cummax(1).values == own).all()  # then pads, then the row's own tokens
    assert heads == sum(q.image is not None for q in questions())  # every image row started after its image


def test_a_prefix_never_swallows_image_tokens_or_a_whole_prompt(tiny, images):
    preset, tok, model = tiny
    run = runner(preset, tok, model, images)
    same = [Question(id=str(i), image="scene0.png", prompt="Colour?") for i in range(3)]
    ids = tok([run.prompt_text(q) for q in same], add_special_tokens=False)["input_ids"]
    assert run.image_token_id not in run.shared_prefix(ids)
    run._probe_ids = []  # without the template's probes, identical prompts meet only the guards:
    assert ids[0][len(run.shared_prefix(ids))] == run.image_token_id  # cut before the first image token
    text_only = [Question(id=str(i), image=None, prompt="Colour?") for i in range(3)]
    ids = tok([run.prompt_text(q) for q in text_only], add_special_tokens=False)["input_ids"]
    assert len(run.shared_prefix(ids)) == len(ids[0]) - 1  # the last token stays each row's own
    assert run.shared_prefix(ids[:1]) == []


def test_the_prefix_is_the_templates_whatever_questions_share_a_call(tiny, images):
    # A data-parallel shard or one benchmark must get the prefix (and so the arithmetic) of the
    # whole list, or near-tie answers could differ between a sharded and an unsharded run.
    preset, tok, model = tiny
    run = runner(preset, tok, model, images)
    qs = questions() + [Question(id="x", image=None, prompt="What colour is it? Colour?")]
    ids = tok([run.prompt_text(q) for q in qs], add_special_tokens=False)["input_ids"]
    whole = run.shared_prefix(ids)
    for part in (ids[:2], ids[2:5], [ids[0], ids[5]], [ids[-1], ids[-1]]):
        assert run.shared_prefix(part) == whole


def pixel_spy(model, monkeypatch):
    """The pixels every call of the vision tower receives (whichever path encodes them)."""
    seen: list[torch.Tensor] = []
    tower = model.model.vision_tower
    forward = tower.forward

    def spy(pixel_values, *args, **kwargs):
        seen.append(pixel_values.clone())
        return forward(pixel_values, *args, **kwargs)

    monkeypatch.setattr(tower, "forward", spy)
    return seen


def test_blank_images_feed_mid_grey_pixels_and_real_images_feed_the_images(tiny, images, monkeypatch):
    preset, tok, model = tiny
    seen = pixel_spy(model, monkeypatch)
    qs = questions()
    real = runner(preset, tok, model, images, batch_size=16).answer(qs)
    blind = runner(preset, tok, model, images, batch_size=16).answer(qs, blank_images=True)
    real_px, blind_px = seen
    # 9 image questions about 5 distinct images: each encoded once; the blank image once for all
    assert real_px.shape[0] == 5 and blind_px.shape[0] == 1
    grey = (BLANK_GREY[0] / 255 - 0.5) / 0.5
    assert torch.allclose(blind_px, torch.full_like(blind_px, grey))
    assert real_px.amax() > 0.5 and real_px.amin() < -0.5  # saturated colours, not grey
    assert blind[4] == real[4]  # the text-only question is asked the same way in both modes
    assert blind != real  # this model's answers depend on the image


def test_text_only_batches_pass_no_pixels(tiny, images, monkeypatch):
    preset, tok, model = tiny
    seen = pixel_spy(model, monkeypatch)
    qs = [Question(id="t", image=None, prompt="Name the shape.")]
    answers = runner(preset, tok, model, images).answer(qs, blank_images=True)
    assert seen == [] and len(answers) == 1


@pytest.mark.parametrize("batch_size", [1, 3, 16])
@pytest.mark.parametrize("cache_mb", [0, 1e-6, 256])
def test_each_image_is_encoded_once_and_the_cache_changes_no_answer(
    tiny, images, one_by_one, batch_size, cache_mb, monkeypatch
):
    preset, tok, model = tiny
    seen = pixel_spy(model, monkeypatch)
    qs = questions()
    run = runner(preset, tok, model, images, batch_size=batch_size, feature_cache_mb=cache_mb)
    assert run.answer(qs) == one_by_one
    encoded = sum(px.shape[0] for px in seen)
    if cache_mb == 0:  # no cache: every image question's image, as generate(pixel_values=...) does
        assert encoded == 9
    elif cache_mb == 256:  # room for all: the 5 distinct images once each, whatever the batches
        assert encoded == 5
    else:  # a cache too small for more than the last batch: a batch encodes what that one lacked
        held: set[str] = set()
        expected = 0
        for batch in _batches_as_run(run, qs):
            wanted = {q.image for q in batch if q.image}
            expected += len(wanted - held)
            held = wanted
        assert 5 <= expected <= 9 and encoded == expected
    assert run.describe()["feature_cache_mb"] == cache_mb


def _batches_as_run(run: TorchRunner, qs: list[Question]) -> list[list[Question]]:
    """The batches ``answer`` forms: prompts sorted longest first, cut every ``batch_size``."""
    ids = run.tokenizer([run.prompt_text(q) for q in qs], add_special_tokens=False)["input_ids"]
    order = sorted(range(len(qs)), key=lambda i: -len(ids[i]))
    return [[qs[i] for i in order[s : s + run.batch_size]] for s in range(0, len(order), run.batch_size)]


def test_clean_answer_cuts_at_the_earliest_stop_and_strips():
    stops = get_template("phi2").stop + ("<|endoftext|>",)
    assert clean_answer(" yes</s> no", stops) == "yes"
    assert clean_answer(" two<|endoftext|>three</s>", stops) == "two"
    assert clean_answer("  red  ", stops) == "red"
    assert clean_answer("</s>red", stops) == ""


@pytest.mark.parametrize(
    ("continuation", "expected"),
    [
        (" yes</s> and more", "yes"),
        (" a red circle<|endoftext|>lamp", "a red circle"),
        (" blue</s><|endoftext|><|endoftext|>", "blue"),
        (" two blue squares", "two blue squares"),
    ],
)
def test_generated_stop_strings_cut_the_answer(tiny, images, monkeypatch, continuation, expected):
    preset, tok, model = tiny
    run = runner(preset, tok, model, images, batch_size=4)
    tail = tok(continuation, add_special_tokens=False)["input_ids"]
    # every row generates a fixed continuation, stop strings and all
    monkeypatch.setattr(run, "_greedy", lambda inputs: [list(tail)] * inputs["input_ids"].shape[0])
    assert run.answer(questions()) == [expected] * len(PROMPTS)


def test_from_release_reads_template_image_handling_and_tokens_from_the_folder(tiny, images, tmp_path):
    preset, tok, model = tiny
    square = from_dict(PresetConfig, {**TINY, "image_aspect": "square"})  # not the constructor default
    out = write_release(model, tok, square, tmp_path / "release", {"stage": "tune"}).folder
    loaded = TorchRunner.from_release(out, image_root=images, batch_size=3, max_new_tokens=6, device="cpu")
    info = loaded.describe()
    assert (info["template"], info["image_size"], info["image_aspect"], info["image_tokens"]) == (
        "phi2",
        32,
        "square",
        16,
    )
    assert info["model"] == str(out) and info["batch_size"] == 3
    in_memory = runner(preset, tok, model, images, image_aspect="square", batch_size=1)
    assert loaded.answer(questions()) == in_memory.answer(questions())


def test_from_release_rejects_a_folder_that_disagrees_with_itself(tiny, tmp_path):
    preset, tok, model = tiny
    with pytest.raises(ReleaseError, match="64 image tokens"):  # meta overrides; never put in place
        write_release(model, tok, preset, tmp_path / "bad", {"image_tokens": 64})
    assert not (tmp_path / "bad").exists()
    out = write_release(model, tok, preset, tmp_path / "release", {}).folder
    meta = json.loads((out / "impkit.json").read_text())
    (out / "impkit.json").write_text(json.dumps({**meta, "image_tokens": 64}))  # edited by hand
    with pytest.raises(ReleaseError, match="64 image tokens"):
        TorchRunner.from_release(out, device="cpu")
    with pytest.raises(FileNotFoundError, match="not a release folder"):
        TorchRunner.from_release(tmp_path, device="cpu")


def test_twin_prompt_lines_become_questions():
    rows = [
        {"id": "7", "image": "a.png", "prompt": "Q?", "benchmark": "gqa"},
        {"id": 8, "image": None, "prompt": "T?", "benchmark": "mmvet"},
    ]
    assert questions_from_prompts(rows) == [Question("7", "a.png", "Q?"), Question("8", None, "T?")]


def test_heldout_answer_questions_delegates_to_the_runner(tiny, images):
    preset, tok, model = tiny
    held = [{"id": f"h{i}", "image": f"scene{i}.png", "question": p} for i, p in enumerate(PROMPTS[:5])]
    got = answer_questions(
        model,
        tok,
        template="phi2",
        image_size=32,
        image_aspect="pad",
        n_image_tokens=16,
        questions=held,
        image_root=images,
        blank=False,
        batch_size=2,
        max_new_tokens=6,
    )
    asked = [
        Question(q["id"], q["image"], q["question"] + "\nAnswer the question using a single word or phrase.")
        for q in held
    ]
    assert got == [normalise(a) for a in runner(preset, tok, model, images).answer(asked)]
