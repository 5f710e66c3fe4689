"""Backbone pretraining on a tiny synthetic world: the losses fall, the saved towers and LMs load
cleanly (the tower without SigLIP's pooling head, ready for LLaVA), runs repeat for a seed, and
missing inputs fail in plain words."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlavaConfig,
    LlavaModel,
    Qwen2Config,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from impkit.config import ConfigError, WorldConfig, WorldSizes
from impkit.data.synth import generate_world
from impkit.data.templates import get_template
from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer, train_bpe
from impkit.train.backbones.classification import CLASS_LABELS, pretrain_classifier_vision_tower, scene_label
from impkit.train.backbones.contrastive import pretrain_vision_tower
from impkit.train.backbones.inputs import read_corpus, read_scenes, read_vision_pairs
from impkit.train.backbones.lm import pretrain_causal_lm
from impkit.train.backbones.tokenizer import template_texts
from impkit.train.backbones.vision import in_turn, random_vision_tower
from impkit.train.side_by_side import run_side_by_side
from impkit.train.starting_model import resize_position_embeddings

SIZES = WorldSizes(
    captions=40,
    vqa=10,
    existence=5,
    multiple_choice=5,
    text_reading=10,
    textcaps=5,
    charts=10,
    conversations=2,
    detailed=2,
    allava=2,
    text_only=2,
    lm_corpus=160,
    vision_pairs=64,
    heldout_scenes=2,
    heldout_charts=1,
    heldout_text=1,
)
VISION = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu_pytorch_tanh",
}
TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2}
LLM = {
    "phi2": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 128,
        "partial_rotary_factor": 0.5,
        "hidden_act": "gelu_new",
    },
    "qwen2": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "tie_word_embeddings": True,
    },
    "phi3": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "tie_word_embeddings": False,
    },
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small run fastest on one thread, and a second thread on a busy machine only waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(WorldConfig(seed=1, heldout_seed=2, image_size=64, sizes=SIZES), root, progress=False)
    return root


@pytest.fixture(scope="module")
def base_bpe(world):
    texts = read_corpus(world / "backbone" / "lm_corpus.txt")
    captions = [c for _, c in read_vision_pairs(world / "backbone" / "vision_pairs.jsonl")]
    return train_bpe(texts + captions, 400)


def vision_kwargs(tmp_path: Path, **overrides):
    kwargs = {
        "vision_arch": VISION,
        "text_arch": TEXT,
        "steps": 60,
        "batch_size": 16,
        "lr": 1e-3,
        "seed": 0,
        "out_dir": tmp_path / "tower",
        "progress": False,
    }
    return {**kwargs, **overrides}


def assert_clean_tower(out_dir: Path) -> SiglipVisionModel:
    tower, info = SiglipVisionModel.from_pretrained(out_dir, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    assert tower.config.vision_use_head is False and not hasattr(tower, "head")
    with safe_open(out_dir / "model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if k.startswith("head.")]
    assert tower.config.image_size == VISION["image_size"] and tower.config.hidden_size == VISION["hidden_size"]
    return tower


# --------------------------------------------------------------------------- vision towers
@pytest.fixture(scope="module")
def contrastive(world, base_bpe, tmp_path_factory):
    out = tmp_path_factory.mktemp("contrastive")
    tok = family_tokenizer(base_bpe, "phi2")
    metrics = pretrain_vision_tower(
        world / "backbone" / "vision_pairs.jsonl", world / "images", tok, **vision_kwargs(out)
    )
    return out / "tower", metrics


def test_contrastive_loss_falls_and_tower_loads_without_head(contrastive):
    out_dir, m = contrastive
    assert m["steps"] == 60 and len(m["loss_curve"]) >= 10
    # below the loss of a model that only learns the bias: embeddings pair images with captions
    assert m["loss_last"] < m["loss_bias_only"] - 0.3 < m["loss_first"], m["loss_curve"]
    assert 0 <= m["retrieval_top1_before"] <= 1 and 0 <= m["retrieval_top1_after"] <= 1
    assert m["eval_pairs"] == 6  # a tenth of 64 pairs held back, never trained on
    assert m["samples_per_s"] > 0 and m["wall_s"] > 0
    tower = assert_clean_tower(out_dir)
    assert len(tower.state_dict()) > 0


def test_saved_tower_drops_into_a_llava_vision_tower(contrastive):
    out_dir, _ = contrastive
    tower = SiglipVisionModel.from_pretrained(out_dir)
    text = Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=400,
    )
    llava = LlavaModel(LlavaConfig(vision_config=tower.config, text_config=text, image_token_index=399))
    llava.vision_tower.load_state_dict(tower.state_dict(), strict=True)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = tower(pixel_values=pixels).last_hidden_state
        theirs = llava.vision_tower(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(ours, theirs)


def test_contrastive_run_is_deterministic_for_a_seed(world, base_bpe, tmp_path):
    tok = family_tokenizer(base_bpe, "qwen2")
    pairs = read_vision_pairs(world / "backbone" / "vision_pairs.jsonl")
    runs = [
        pretrain_vision_tower(pairs, world / "images", tok, **vision_kwargs(tmp_path / str(i), steps=2, seed=seed))
        for i, seed in enumerate((5, 5, 6))
    ]
    assert runs[0]["loss_step1"] == runs[1]["loss_step1"]
    assert runs[0]["loss_curve"] == runs[1]["loss_curve"]
    assert runs[0]["loss_step1"] != runs[2]["loss_step1"]
    a = SiglipVisionModel.from_pretrained(tmp_path / "0" / "tower").state_dict()
    b = SiglipVisionModel.from_pretrained(tmp_path / "1" / "tower").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_classifier_tower_learns_and_saves_a_clean_tower(world, tmp_path):
    scenes = read_scenes(world / "scenes.jsonl")
    assert {scene_label(r) for r in scenes} <= set(CLASS_LABELS)
    m = pretrain_classifier_vision_tower(
        scenes,
        world / "images",
        vision_arch=VISION,
        steps=40,
        batch_size=16,
        lr=3e-3,
        seed=0,
        out_dir=tmp_path / "cls",
        progress=False,
    )
    assert m["classes"] == len(CLASS_LABELS) == 21
    assert m["loss_last"] < m["loss_first"], m["loss_curve"]
    assert_clean_tower(tmp_path / "cls")


def test_scene_label_names_the_first_large_object_in_reading_order():
    scene = {
        "kind": "scene",
        "image": "x.png",
        "objects": [
            {"shape": "circle", "colour": "red", "size": "small", "cell": [0, 0]},
            {"shape": "square", "colour": "blue", "size": "large", "cell": [2, 0]},
            {"shape": "triangle", "colour": "green", "size": "large", "cell": [1, 2]},
        ],
    }
    assert scene_label(scene) == "green triangle"
    assert (
        scene_label(
            {"kind": "scene", "objects": [{"shape": "circle", "colour": "red", "size": "small", "cell": [1, 1]}]}
        )
        == "red circle"
    )
    assert scene_label({"kind": "text", "word": "bus"}) == "text"
    assert scene_label({"kind": "chart", "chart_type": "line"}) == "line chart"
    with pytest.raises(ValueError, match="unknown image kind"):
        scene_label({"kind": "photo", "image": "y.png"})


def test_random_tower_is_clean_and_seeded(tmp_path):
    random_vision_tower(VISION, 3, tmp_path / "a")
    random_vision_tower(VISION, 3, tmp_path / "b")
    random_vision_tower(VISION, 4, tmp_path / "c")
    a, b, c = (assert_clean_tower(tmp_path / n).state_dict() for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embeddings.patch_embedding.weight"], c["embeddings.patch_embedding.weight"])


# --------------------------------------------------------------------------- causal LMs
def lm_kwargs(tmp_path: Path, **overrides):
    kwargs = {
        "steps": 60,
        "batch_size": 8,
        "seq_len": 32,
        "lr": 3e-3,
        "seed": 0,
        "out_dir": tmp_path / "lm",
        "progress": False,
    }
    return {**kwargs, **overrides}


@pytest.mark.parametrize("family", ["phi2", "qwen2", "phi3"])
def test_causal_lm_learns_and_reloads_identically(family, world, base_bpe, tmp_path):
    tok = family_tokenizer(base_bpe, family)
    arch = {**LLM[family], "vocab_size": 448}
    m = pretrain_causal_lm(family, arch, tok, world / "backbone" / "lm_corpus.txt", **lm_kwargs(tmp_path))
    assert m["loss_last"] < m["loss_first"] - 1.0, m["loss_curve"]
    assert m["perplexity_after"] < m["perplexity_before"] / 3
    lines = read_corpus(world / "backbone" / "lm_corpus.txt")
    distinct = set(lines)
    assert m["eval_lines"] == len(distinct) // 10 and m["tokens_per_s"] > 0
    assert m["train_lines"] <= len(lines) - m["eval_lines"]

    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "lm", output_loading_info=True)
    assert not any(info.values()), info
    assert model.config.vocab_size == 448
    assert (model.config.eos_token_id, model.config.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    assert model.config.bos_token_id == tok.bos_token_id
    reloaded_tok = AutoTokenizer.from_pretrained(tmp_path / "lm")
    assert reloaded_tok.convert_tokens_to_ids(IMAGE_TOKEN) == tok.convert_tokens_to_ids(IMAGE_TOKEN)

    # the in-memory model is not returned; retrain the same seed and compare logits with the saved one
    again = pretrain_causal_lm(family, arch, tok, world / "backbone" / "lm_corpus.txt", **lm_kwargs(tmp_path / "again"))
    assert again["loss_curve"] == m["loss_curve"]
    twin = AutoModelForCausalLM.from_pretrained(tmp_path / "again" / "lm")
    ids = torch.tensor([tok("A small red circle on a white background.")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, twin(input_ids=ids).logits, rtol=0, atol=0)


def test_held_back_lines_are_kept_out_of_training_in_every_copy(base_bpe, tmp_path):
    tok = family_tokenizer(base_bpe, "qwen2")
    colours, shapes = ("red", "green", "blue", "yellow", "purple"), ("circle", "square", "triangle", "star")
    distinct = [f"A {c} {s} number {n}." for c in colours for s in shapes for n in range(5)]  # 100 lines
    m = pretrain_causal_lm(
        "qwen2", {**LLM["qwen2"], "vocab_size": 448}, tok, distinct * 3, **lm_kwargs(tmp_path, steps=2)
    )
    assert m["eval_lines"] == 10 and m["train_lines"] == 3 * 90


def test_causal_lm_rejects_a_vocabulary_smaller_than_the_tokenizer(world, base_bpe, tmp_path):
    tok = family_tokenizer(base_bpe, "qwen2")
    texts = read_corpus(world / "backbone" / "lm_corpus.txt")
    with pytest.raises(ConfigError, match="smaller than the tokenizer"):
        pretrain_causal_lm("qwen2", {**LLM["qwen2"], "vocab_size": 100}, tok, texts, **lm_kwargs(tmp_path))
    with pytest.raises(ConfigError, match="vocab_size"):
        pretrain_causal_lm("qwen2", LLM["qwen2"], tok, texts, **lm_kwargs(tmp_path))
    with pytest.raises(ConfigError, match="unknown LLM family"):
        pretrain_causal_lm("gpt9", {**LLM["qwen2"], "vocab_size": 448}, tok, texts, **lm_kwargs(tmp_path))
    assert not (tmp_path / "lm").exists()


# --------------------------------------------------------------------------- missing inputs
def test_missing_files_are_reported_in_plain_words(world, base_bpe, tmp_path):
    tok = family_tokenizer(base_bpe, "phi2")
    with pytest.raises(FileNotFoundError, match="image-caption pairs file not found: .*nope.jsonl"):
        pretrain_vision_tower(tmp_path / "nope.jsonl", world / "images", tok, **vision_kwargs(tmp_path))
    with pytest.raises(FileNotFoundError, match="language-model corpus not found: .*corpus.txt"):
        pretrain_causal_lm(
            "phi2", {**LLM["phi2"], "vocab_size": 448}, tok, tmp_path / "corpus.txt", **lm_kwargs(tmp_path)
        )
    with pytest.raises(FileNotFoundError, match="scenes file not found"):
        pretrain_classifier_vision_tower(
            tmp_path / "scenes.jsonl",
            world / "images",
            vision_arch=VISION,
            steps=1,
            batch_size=2,
            lr=1e-3,
            seed=0,
            out_dir=tmp_path / "cls",
        )
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"image": "scenes/missing.png", "caption": "a red circle."}) + "\n")
    with pytest.raises(FileNotFoundError, match="image not found: .*scenes/missing.png"):
        pretrain_vision_tower(pairs, world / "images", tok, **vision_kwargs(tmp_path))
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        pretrain_vision_tower(
            read_vision_pairs(world / "backbone" / "vision_pairs.jsonl"),
            tmp_path / "no-images",
            tok,
            **vision_kwargs(tmp_path),
        )
    assert not (tmp_path / "tower").exists() and not (tmp_path / "lm").exists()


def test_bf16_autocast_trains_and_saves_fp32_weights(world, base_bpe, tmp_path):
    tok = family_tokenizer(base_bpe, "phi3")
    m = pretrain_causal_lm(
        "phi3",
        {**LLM["phi3"], "vocab_size": 448},
        tok,
        world / "backbone" / "lm_corpus.txt",
        **lm_kwargs(tmp_path, steps=20, precision="bf16"),
    )
    assert m["precision"] == "bf16" and m["loss_last"] < m["loss_first"]
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "lm").dtype == torch.float32
    v = pretrain_vision_tower(
        world / "backbone" / "vision_pairs.jsonl",
        world / "images",
        tok,
        **vision_kwargs(tmp_path, steps=4, precision="bf16"),
    )
    assert all(math.isfinite(x) for _, x in v["loss_curve"])
    assert assert_clean_tower(tmp_path / "tower").dtype == torch.float32
    with pytest.raises(ConfigError, match="precision must be 'fp32' or 'bf16'"):
        pretrain_causal_lm(
            "phi3",
            {**LLM["phi3"], "vocab_size": 448},
            tok,
            world / "backbone" / "lm_corpus.txt",
            **lm_kwargs(tmp_path / "fp16", precision="fp16"),
        )


def test_phi2_lm_head_bias_stays_zero_so_llava_loses_nothing(tmp_path):
    """LlavaForConditionalGeneration's lm_head has no bias; the phi2 analog trains with it at zero."""
    from transformers import AutoModelForCausalLM

    from impkit.model.tokenizer import family_tokenizer, train_bpe

    tok = family_tokenizer(train_bpe(["a red circle and a blue square."] * 40, 300), "phi2")
    arch = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "vocab_size": 512,
    }
    pretrain_causal_lm(
        "phi2",
        arch,
        tok,
        ["a red circle and a blue square."] * 60,
        steps=3,
        batch_size=4,
        seq_len=16,
        lr=1e-2,
        seed=0,
        out_dir=tmp_path / "lm",
        progress=False,
    )
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
    assert model.lm_head.bias is not None and float(model.lm_head.bias.abs().max()) == 0.0


# --------------------------------------------------------------------------- lower-resolution twins
def test_multi_resolution_tower_trains_at_each_size_and_loads_as_a_twin_resizes_it(world, base_bpe, tmp_path):
    """The tower also trains at 24 px (3x3 patches) with its 4x4 positions resized on the fly; the
    saved tower, its positions resized the way a lower-resolution preset loads it, computes exactly
    what training computed at that size."""
    tok = family_tokenizer(base_bpe, "phi2")
    m = pretrain_vision_tower(
        world / "backbone" / "vision_pairs.jsonl",
        world / "images",
        tok,
        **vision_kwargs(tmp_path, steps=4, also_sizes=[24, 32]),
    )
    assert m["image_sizes"] == [32, 24]  # its own size first; the own size listed again is not a second one
    assert set(m["retrieval_top1_after_by_size"]) == {32, 24}
    assert m["retrieval_top1_after"] == m["retrieval_top1_after_by_size"][32]
    tower = assert_clean_tower(tmp_path / "tower")  # saved at its own size, 16 positions

    twin = SiglipVisionModel(SiglipVisionConfig(**{**VISION, "image_size": 24, "vision_use_head": False}))
    weights = tower.state_dict()
    key = "embeddings.position_embedding.weight"
    weights[key] = resize_position_embeddings(weights[key], 9)
    twin.load_state_dict(weights, strict=True)
    pixels = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        as_trained = tower(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        as_loaded = twin(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(as_loaded, as_trained, rtol=0, atol=1e-6)


def test_each_step_sees_the_next_size_in_turn():
    batches = iter([torch.tensor([i]) for i in range(5)])
    assert [size for size, _ in in_turn([32, 24], batches)] == [32, 24, 32, 24, 32]


def test_multi_resolution_sizes_must_be_lower_multiples_of_the_patch(world, base_bpe, tmp_path):
    tok = family_tokenizer(base_bpe, "phi2")
    for size in (20, 48):
        with pytest.raises(ConfigError, match=f"not at {size} px"):
            pretrain_vision_tower(
                world / "backbone" / "vision_pairs.jsonl",
                world / "images",
                tok,
                **vision_kwargs(tmp_path, steps=1, also_sizes=[size]),
            )
    assert not (tmp_path / "tower").exists()


def test_classifier_tower_also_trains_at_a_lower_size(world, tmp_path):
    m = pretrain_classifier_vision_tower(
        world / "scenes.jsonl",
        world / "images",
        vision_arch=VISION,
        steps=4,
        batch_size=16,
        lr=3e-3,
        seed=0,
        out_dir=tmp_path / "cls",
        progress=False,
        also_sizes=[24],
    )
    assert m["image_sizes"] == [32, 24] and set(m["accuracy_after_by_size"]) == {32, 24}
    assert_clean_tower(tmp_path / "cls")


# --------------------------------------------------------------------------- parts side by side
def _lm_job(family: str, tok, corpus: Path, out: Path, **overrides):
    arch = {**LLM[family], "vocab_size": 448}
    return (
        f"llm-{family}",
        pretrain_causal_lm,
        {"family": family, "arch": arch, "tokenizer": tok, "texts": corpus, **lm_kwargs(out, **overrides)},
    )


def test_parts_trained_side_by_side_are_those_trained_one_after_another(world, base_bpe, tmp_path):
    """The backbones stage's two-process path (one thread each) gives every part exactly what the
    one-process path on one thread gives it: the same loss curve and the same saved weights."""
    corpus = world / "backbone" / "lm_corpus.txt"
    jobs = {
        where: [
            _lm_job(f, family_tokenizer(base_bpe, f), corpus, tmp_path / where / f, steps=20)
            for f in ("phi2", "qwen2", "phi3")
        ]
        for where in ("apart", "together")
    }
    side_by_side = run_side_by_side(jobs["apart"], processes=2)
    in_turn = run_side_by_side(jobs["together"], processes=1)  # this process, one thread (fixture)
    assert list(side_by_side) == ["llm-phi2", "llm-qwen2", "llm-phi3"]
    for label, metrics in side_by_side.items():
        assert metrics["loss_curve"] == in_turn[label]["loss_curve"], label
        family = label.removeprefix("llm-")
        with (
            safe_open(tmp_path / "apart" / family / "lm" / "model.safetensors", "pt") as a,
            safe_open(tmp_path / "together" / family / "lm" / "model.safetensors", "pt") as b,
        ):
            assert set(a.keys()) == set(b.keys())
            for key in a.keys():
                torch.testing.assert_close(a.get_tensor(key), b.get_tensor(key), rtol=0, atol=0, msg=key)


def test_parts_side_by_side_report_their_progress_with_rate_and_eta(world, base_bpe, tmp_path, capfd, monkeypatch):
    """The workers draw no bars (they share one terminal) but are never silent: each writes a log line
    with its step, rate and ETA at least every IMPKIT_PROGRESS_SECONDS (here: at every step)."""
    monkeypatch.setenv("IMPKIT_PROGRESS", "1")  # as a user runs the build
    monkeypatch.setenv("IMPKIT_PROGRESS_SECONDS", "0")
    corpus = world / "backbone" / "lm_corpus.txt"
    jobs = [
        _lm_job(f, family_tokenizer(base_bpe, f), corpus, tmp_path / f, steps=5, progress=True)
        for f in ("phi2", "qwen2")
    ]
    run_side_by_side(jobs, processes=2)
    err = capfd.readouterr().err
    for family in ("phi2", "qwen2"):
        lines = [line for line in err.splitlines() if f"impkit.progress: pretrain {family} LM: " in line]
        steps = [line for line in lines if "ETA" in line]
        assert len(steps) == 5, err[-3000:]  # one a step
        assert all("tok/s" in line for line in steps) and "(100 %)" in steps[-1] and "done" in lines[-1]


def test_a_failing_part_stops_the_others_and_says_why(world, base_bpe, tmp_path):
    corpus = world / "backbone" / "lm_corpus.txt"
    endless = _lm_job("phi2", family_tokenizer(base_bpe, "phi2"), corpus, tmp_path / "endless", steps=10**7)
    broken = _lm_job("qwen2", family_tokenizer(base_bpe, "qwen2"), corpus, tmp_path / "broken")
    broken[2]["arch"]["vocab_size"] = 100
    with pytest.raises(ConfigError, match="smaller than the tokenizer"):
        run_side_by_side([endless, broken], processes=2)  # returns: the endless part was stopped
    assert not (tmp_path / "endless" / "lm").exists()


def test_the_tokenizer_learns_the_chat_templates_fixed_text(world):
    """The system prompt and role markers are spelled in about a token per word, as a real tokenizer
    spells them, not letter by letter: they are in the tokenizer's training text."""
    corpus = read_corpus(world / "backbone" / "lm_corpus.txt")
    without, with_templates = train_bpe(corpus, 2048), train_bpe(corpus + template_texts(), 2048)
    for family in ("phi2", "qwen2", "phi3"):
        template = get_template(family)
        head = template.system_block() + template.user_prefix
        short = len(family_tokenizer(with_templates, family)(head)["input_ids"])
        long = len(family_tokenizer(without, family)(head)["input_ids"])
        assert short <= 1.5 * len(head.split()) and short < 0.6 * long, (family, short, long)


def test_the_backbones_record_keeps_its_timings_apart():
    """backbones.json must be the same for the same inputs (align and tune depend on the folder); how
    long each part took goes to its own report, nested as it was."""
    from impkit.train.backbones.build import split_timings

    report = {
        "tokenizer": {"vocab": 400, "seconds": 1.5},
        "vision": {"steps": 4, "loss_last": 1.2, "samples_per_s": 56.7, "wall_s": 563.8},
        "llm-phi2": {"steps": 4, "tokens_per_s": 1198.6, "wall_s": 299.0},
        "processes": 2,
        "seconds": 663.0,
    }
    decided, timings = split_timings(report)
    assert decided == {
        "tokenizer": {"vocab": 400},
        "vision": {"steps": 4, "loss_last": 1.2},
        "llm-phi2": {"steps": 4},
        "processes": 2,
    }
    assert timings == {
        "tokenizer": {"seconds": 1.5},
        "vision": {"samples_per_s": 56.7, "wall_s": 563.8},
        "llm-phi2": {"tokens_per_s": 1198.6, "wall_s": 299.0},
        "seconds": 663.0,
    }
