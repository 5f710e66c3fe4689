"""GGUF export: llama.cpp runs the exported files as PyTorch runs the release.

Tiny random LLaVA releases (qwen2, phi2, phi3, llama LLMs; SigLIP tower; 16 image tokens) are
exported and run with llama-cpp-python: same tokens, next-token logits within f16 rounding and the
same top-1 on text prompts, the same image embeddings and post-image logits through mtmd, a chat
handler answering about an image with the same first token; transformers loads the qwen2 / phi3 /
llama files; quantized levels are smaller and still run; unknown levels and unmapped tensors fail
loudly, naming what is wrong.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from conftest import CORPUS
from PIL import Image

from impkit.config import PresetConfig, from_dict
from impkit.data.templates import get_template, jinja_chat_template, render_prompt
from impkit.export import (
    MEDIA_MARKER,
    QUANT_LEVELS,
    ExportError,
    export_and_quantize,
    export_release,
    gguf_chat_template,
    llm_filename,
    mmproj_filename,
    quantize,
)
from impkit.export import names as export_names
from impkit.export.llm import _SPLIT_PRE, bpe_pre, gguf_model_name
from impkit.llamacpp import GGUFSession
from impkit.model.presets import build_model, llava_config
from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer, train_bpe
from impkit.release import write_release

llama_cpp = pytest.importorskip("llama_cpp")
mtmd = pytest.importorskip("llama_cpp.mtmd_cpp")

THREADS = 1  # llama.cpp: one thread is the fastest for these tiny models (no per-operation thread sync)
QWEN2_SPLIT = next(pattern for pattern, name in _SPLIT_PRE.items() if name == "qwen2")
REL_TOL = 1e-2  # max |llama.cpp - torch| / max |torch| at F16 (measured 1e-3 .. 4e-3)
QUESTION = "What colour is the shape? Count 123 lamps, 4 squares!"

# LLM shapes per family: qwen2 with grouped KV heads, phi2 with partial rotary (its own LayerNorm
# and GELU), phi3 with fused qkv / gate_up, llama with permuted q/k. Template per family.
LLM_ARCH = {
    "qwen2": ({"intermediate_size": 3, "num_key_value_heads": 1, "tie_word_embeddings": False}, "qwen2"),
    "phi2": ({"intermediate_size": 2, "partial_rotary_factor": 0.5}, "phi2"),
    "phi3": ({"intermediate_size": 3, "num_key_value_heads": 2, "tie_word_embeddings": False}, "phi3"),
    "llama": ({"intermediate_size": 3}, "phi2"),
}


def make_release(root: Path, family: str, width: int = 64) -> Path:
    """A random LLaVA release (write_release) with a ``width``-wide LLM and vision tower."""
    arch, template = LLM_ARCH[family]
    llm = {
        "hidden_size": width,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 512,
        **arch,
        "intermediate_size": arch["intermediate_size"] * width,
    }
    vision = {
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    preset = from_dict(
        PresetConfig,
        {
            "family": family,
            "template": template,
            "image_aspect": "pad",
            "offline": True,
            "train": "nano",
            "vision": {"arch": vision},
            "llm": {"arch": llm},
        },
    )
    # digits in the corpus give merges like "1"+"2" that only GPT-2's split (" 123" kept whole) lets apply,
    # so exporting the wrong pre-tokenizer name would show in the token ids
    texts = [*CORPUS, "count 123 lamps and 45 squares"] * 10
    tok = family_tokenizer(train_bpe(texts, 360), family, chat_template=jinja_chat_template(get_template(template)))
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    config = llava_config(
        preset, image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN), vocab_size=len(tok), special_ids=ids
    )
    for cfg in (config, config.text_config, config.vision_config):
        # logits that depend on the input (conftest's `tiny` uses 0.2 at width 64), same gain when wider
        cfg.initializer_range = 0.2 * (64 / width) ** 0.5
    model = build_model(config, seed=0).eval()
    # Readable first answer tokens (raw bytes decode to U+FFFD, which would make texts look alike)
    unreadable = [i for i in range(len(tok)) if not (tok.decode([i]).isascii() and tok.decode([i]).isprintable())]
    with torch.no_grad():
        model.lm_head.weight[unreadable] = 0
    return write_release(model, tok, preset, root / f"tiny-{family}-{width}", {"preset": f"tiny-{family}"}).folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """family -> (release folder, export record), built once per family on first use."""
    root = tmp_path_factory.mktemp("gguf")
    cache: dict[str, tuple[Path, dict]] = {}

    def get(family: str) -> tuple[Path, dict]:
        if family not in cache:
            release = make_release(root / "releases", family)
            cache[family] = (release, export_release(release, root / "out" / family))
        return cache[family]

    return get


@pytest.fixture(scope="module")
def reference():
    """release folder -> (model, tokenizer, impkit.json) as PyTorch loads the release."""
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    cache: dict[Path, tuple] = {}

    def get(release: Path):
        if release not in cache:
            model = LlavaForConditionalGeneration.from_pretrained(release, dtype=torch.float32).eval()
            meta = json.loads((release / "impkit.json").read_text())
            cache[release] = (model, AutoTokenizer.from_pretrained(release), meta)
        return cache[release]

    return get


@contextlib.contextmanager
def llama(path: str | Path, **kwargs):
    llm = llama_cpp.Llama(str(path), logits_all=True, n_ctx=256, n_threads=THREADS, verbose=False, **kwargs)
    try:
        yield llm
    finally:
        llm.close()


def assert_logits_match(
    ours: np.ndarray, ref: np.ndarray, tol: float = REL_TOL, min_decisive: float = 0.5
) -> tuple[float, float]:
    """Max relative error below ``tol``, and the same top-1 at every position where the reference's
    best token leads the runner-up by more than twice the largest logit error (only closer calls can
    flip without a bug: f16 coin flips)."""
    assert ours.shape == ref.shape
    err = float(np.abs(ours - ref).max())
    rel = err / float(np.abs(ref).max())
    assert rel < tol, f"max relative logit error {rel:.2e} >= {tol}"
    top2 = np.sort(ref, axis=-1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * err
    same = ours.argmax(-1) == ref.argmax(-1)
    assert decisive.mean() > min_decisive, "too few positions with a clear best token: the check would be vacuous"
    assert same[decisive].all(), f"top-1 differs at positions {np.where(decisive & ~same)[0].tolist()}"
    return rel, float(same.mean())


def torch_logits(model, ids: list[int], pixel_values: torch.Tensor | None = None) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), pixel_values=pixel_values).logits[0].numpy()


def random_image(size: int) -> np.ndarray:
    """Random RGB pixels at the model's square input size: no padding or resizing on either side."""
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def pixels(rgb: np.ndarray) -> torch.Tensor:
    """SigLIP normalisation (mean = std = 0.5, the release's processor_config) of a square image."""
    x = (rgb / 255.0 - 0.5) / 0.5
    return torch.tensor(x, dtype=torch.float32).permute(2, 0, 1)[None]


def image_prompt_ids(tok, meta) -> tuple[str, list[int]]:
    prompt = render_prompt(get_template(meta["template"]), QUESTION, has_image=True)
    ids = tok(prompt.replace(IMAGE_TOKEN, IMAGE_TOKEN * meta["image_tokens"]), add_special_tokens=False)["input_ids"]
    return prompt, ids


# ---------------------------------------------------------------------------------------------
# Text


@pytest.mark.parametrize("family", ["qwen2", "phi2", "phi3", "llama"])
def test_text_logits_match_pytorch(exported, reference, family):
    release, record = exported(family)
    model, tok, meta = reference(release)
    prompt = render_prompt(get_template(meta["template"]), QUESTION, has_image=False)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    with llama(record["llm"]["path"]) as llm:
        # the exported vocabulary, merges, pre-tokenizer and special tokens split as transformers does
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
        assert llm.n_vocab() == model.config.text_config.vocab_size
        llm.eval(ids)
        ours = np.array(llm.scores[: len(ids)])
    assert_logits_match(ours, torch_logits(model, ids))


# ---------------------------------------------------------------------------------------------
# Image


def run_image_prompt(session: GGUFSession, prompt: str, rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """Feed a prompt with one image through llama.cpp's multimodal path as the project's runners
    do (``GGUFSession``: text chunks decoded, the image chunk encoded by the ViT + projector, then
    decoded); returns the image chunk's token count and its embeddings. ``session.llama.scores``
    holds the logits of every text position."""
    n_image, embeddings = 0, None
    session.reset()
    with session.chunks(prompt.replace(IMAGE_TOKEN, session.marker), Image.fromarray(rgb)) as chunks:
        for chunk in chunks:
            if chunk.kind == "text":
                session.eval_text(chunk.tokens)
                continue
            n_image = chunk.n_tokens
            out = session.encode_image(chunk)
            width = session.llama.n_embd()
            embeddings = np.ctypeslib.as_array(out, shape=(n_image * width,)).reshape(n_image, -1).copy()
            session.decode_image(chunk, out)
    return n_image, embeddings


@pytest.mark.parametrize("family", ["qwen2", "phi2", "phi3"])
def test_image_embeddings_and_logits_match_pytorch(exported, reference, family):
    release, record = exported(family)
    model, tok, meta = reference(release)
    rgb = random_image(model.config.vision_config.image_size)
    prompt, ids = image_prompt_ids(tok, meta)
    pix = pixels(rgb)
    with torch.no_grad():
        features = model.get_image_features(pixel_values=pix)
    features = getattr(features, "pooler_output", features)
    features = (features[0] if isinstance(features, list | tuple) else features).reshape(meta["image_tokens"], -1)
    with GGUFSession(
        record["llm"]["path"], record["mmproj"]["path"], n_threads=THREADS, n_ctx=256, logits_all=True
    ) as session:
        n_image, embeddings = run_image_prompt(session, prompt, rgb)
        assert n_image == meta["image_tokens"] == record["image_tokens"] == 16
        assert session.n_past == len(ids)
        ours = np.array(session.llama.scores[: session.n_past])
    ref_features = features.numpy()
    assert np.abs(embeddings - ref_features).max() / np.abs(ref_features).max() < REL_TOL
    after = ids.index(model.config.image_token_id) + meta["image_tokens"]  # positions that see the image
    assert_logits_match(ours[after:], torch_logits(model, ids, pix)[after:])


def png_data_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("family", ["qwen2", "phi2", "phi3"])
def test_chat_handler_answers_about_an_image(exported, reference, family):
    from llama_cpp.llama_chat_format import MTMDChatHandler

    release, record = exported(family)
    model, tok, meta = reference(release)
    rgb = random_image(model.config.vision_config.image_size)
    _, ids = image_prompt_ids(tok, meta)
    with torch.no_grad():
        first = int(model(input_ids=torch.tensor([ids]), pixel_values=pixels(rgb)).logits[0, -1].argmax())
    handler = MTMDChatHandler(clip_model_path=record["mmproj"]["path"], verbose=False)
    message = {
        "role": "user",
        "content": [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": png_data_uri(rgb)}}],
    }
    with llama(record["llm"]["path"], chat_handler=handler) as llm:
        reply = llm.create_chat_completion(
            messages=[message], max_tokens=1, temperature=0.0, top_k=1, repeat_penalty=1.0
        )
        prompt_ids = llm.input_ids[: reply["usage"]["prompt_tokens"]].tolist()
    # The GGUF's chat template rendered the training prompt: same length, same text tokens around
    # the image (positions inside the image chunk hold no token ids).
    start = ids.index(model.config.image_token_id)
    end = start + meta["image_tokens"]
    assert reply["usage"]["prompt_tokens"] == len(ids)
    assert prompt_ids[:start] == ids[:start] and prompt_ids[end:] == ids[end:]
    content = reply["choices"][0]["message"]["content"]
    assert content and content.startswith(tok.decode([first])), (content, tok.decode([first]))


def test_chat_template_renders_the_training_prompt_with_the_media_marker():
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    assert MEDIA_MARKER == mtmd.mtmd_default_marker().decode()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as MTMDChatHandler renders

    def raise_exception(message):
        raise ValueError(message)

    for name in ("qwen2", "phi2", "phi3", "plain"):
        template = env.from_string(gguf_chat_template(name))
        expected = render_prompt(get_template(name), "Which shape?", has_image=True).replace(IMAGE_TOKEN, MEDIA_MARKER)
        image_parts = [
            {"type": "text", "text": MEDIA_MARKER},  # what MTMDChatHandler passes for an image_url
            {"type": "image_url", "image_url": {"url": "file:///x.png"}},
            {"type": "image"},
        ]
        for part in image_parts:
            messages = [{"role": "user", "content": [{"type": "text", "text": "Which shape?"}, part]}]
            assert (
                template.render(messages=messages, add_generation_prompt=True, raise_exception=raise_exception)
                == expected
            ), (name, part)
        text_only = render_prompt(get_template(name), "Which shape?", has_image=False)
        if name != "plain":  # the stage-1 template keeps only the image of a user turn
            messages = [{"role": "user", "content": "Which shape?"}]
            assert template.render(messages=messages, add_generation_prompt=True) == text_only


# ---------------------------------------------------------------------------------------------
# Files, records, transformers


def test_export_record_and_file_contents(exported):
    release, record = exported("qwen2")
    out = Path(record["llm"]["path"]).parent
    assert llm_filename("F16") == "llm-F16.gguf" and mmproj_filename("Q8_0") == "mmproj-Q8_0.gguf"
    assert sorted(os.listdir(out)) == ["llm-F16.gguf", "mmproj-F16.gguf"]  # and no temporary files left
    assert record["arch"] == "qwen2" and record["family"] == "qwen2"
    for part in ("llm", "mmproj"):
        assert record[part]["bytes"] == os.path.getsize(record[part]["path"]) > 0
    llm = gguf.GGUFReader(record["llm"]["path"])
    assert llm.fields["general.architecture"].contents() == "qwen2"
    # 2 layers x (q, k, v weights + biases, o, gate, up, down, 2 norms) + embeddings, norm, output
    assert record["llm"]["n_tensors"] == len(llm.tensors) == 2 * 12 + 3
    assert llm.fields["tokenizer.ggml.merges"].contents()  # llama.cpp refuses an empty merges list
    for tensor in llm.tensors:  # F16 matrices; norms and biases F32
        expected = gguf.GGMLQuantizationType.F32 if len(tensor.shape) == 1 else gguf.GGMLQuantizationType.F16
        assert tensor.tensor_type == expected, tensor.name
    vision = gguf.GGUFReader(record["mmproj"]["path"])
    fields = {
        name: vision.fields[name].contents()
        for name in (
            "clip.projector_type",
            "clip.use_gelu",
            "clip.vision.block_count",
            "clip.vision.feature_layer",
            "clip.vision.image_mean",
        )
    }
    # penultimate-layer features of a 3-layer tower: 2 layers stored, block_count 2, feature_layer [2]
    assert fields == {
        "clip.projector_type": "mlp",
        "clip.use_gelu": True,
        "clip.vision.block_count": 2,
        "clip.vision.feature_layer": [2],
        "clip.vision.image_mean": [0.5, 0.5, 0.5],
    }
    names = {t.name for t in vision.tensors}
    assert {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias", "v.blk.1.ffn_down.weight"} <= names
    assert "v.blk.2.attn_q.weight" not in names and "v.post_ln.weight" not in names
    assert "model.vision_tower.post_layernorm.weight" in record["skipped"]
    assert "model.vision_tower.encoder.layers.2.mlp.fc1.weight" in record["skipped"]


@pytest.mark.parametrize("family", ["qwen2", "phi3", "llama"])  # transformers cannot load phi2 GGUF files
def test_transformers_loads_the_llm_gguf(exported, reference, family):
    from transformers import AutoModelForCausalLM

    release, record = exported(family)
    model, tok, meta = reference(release)
    path = Path(record["llm"]["path"])
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    ids = tok(render_prompt(get_template(meta["template"]), QUESTION, has_image=False), add_special_tokens=False)[
        "input_ids"
    ]
    with torch.no_grad():
        ours = loaded(input_ids=torch.tensor([ids])).logits[0].numpy()
    assert_logits_match(ours, torch_logits(model, ids))


def test_phi3_name_does_not_switch_on_llama_cpp_whitespace_stripping(exported):
    release, record = exported("phi3")
    reader = gguf.GGUFReader(record["llm"]["path"])
    assert record["name"] == "tiny-phi3"
    assert reader.fields["general.name"].contents() == "tiny-phi_3"

    class Tok:  # a tokenizer whose special tokens strip whitespace, as real Phi-3's do
        added_tokens_decoder = {0: type("T", (), {"special": True, "content": "<|user|>", "rstrip": True})()}

    assert gguf_model_name("Imp-Phi3-4B", Tok()) == "Imp-Phi3-4B"


def test_bpe_pre_is_read_from_the_pre_tokenizer():
    byte_level = {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}}
    assert bpe_pre(byte_level, "qwen2") == "gpt-2" and bpe_pre(byte_level, "phi2") == "phi-2"
    qwen = {
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}},
                {"type": "ByteLevel", "use_regex": False},
            ],
        }
    }
    assert bpe_pre(qwen, "qwen2") == "qwen2"
    with pytest.raises(ExportError, match="unsupported pre-tokenizer"):
        bpe_pre({"pre_tokenizer": {"type": "Metaspace"}}, "phi3")


# ---------------------------------------------------------------------------------------------
# Quantization


def test_quantized_levels_are_smaller_and_run(tmp_path, reference):
    from transformers import AutoModelForCausalLM

    release = make_release(tmp_path / "releases", "qwen2", width=256)  # K-quants need rows of 256
    model, tok, meta = reference(release)
    record = export_and_quantize(release, tmp_path / "q", levels=("F16", "Q8_0", "Q4_K_M"), threads=THREADS)
    kept = ["llm-F16.gguf", "llm-Q4_K_M.gguf", "llm-Q8_0.gguf", "mmproj-F16.gguf"]
    assert sorted(os.listdir(tmp_path / "q")) == kept  # and no intermediates left
    sizes = record["sizes"]
    for level, rec in record["llm"].items():
        assert rec["bytes"] == os.path.getsize(tmp_path / "q" / llm_filename(level)) == sizes[level]["llm"]
        assert sizes[level]["total"] == sizes[level]["llm"] + sizes[level]["mmproj"]
    assert sizes["F16"]["llm"] > sizes["Q8_0"]["llm"] > sizes["Q4_K_M"]["llm"]
    assert sizes["Q8_0"]["llm"] < 0.6 * sizes["F16"]["llm"] and sizes["Q4_K_M"]["llm"] < 0.4 * sizes["F16"]["llm"]
    assert "Q8_0" in record["llm"]["Q8_0"]["tensor_types"] and "Q4_K" in record["llm"]["Q4_K_M"]["tensor_types"]
    prompt = render_prompt(get_template(meta["template"]), QUESTION, has_image=False)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    original = torch_logits(model, ids)
    drift = {}
    for level in ("F16", "Q8_0", "Q4_K_M"):
        path = Path(record["llm"][level]["path"])
        with llama(path) as llm:
            llm.eval(ids)
            ours = np.array(llm.scores[: len(ids)])
        # The file's own weights, dequantized by transformers' GGUF reader, run in PyTorch: llama.cpp
        # computes the same up to its 8-bit activations in quantized matmuls (measured: 0.2 % F16,
        # 2.5 % Q8_0, 6 % Q4_K_M of the largest logit, against 0.3 / 5 / 51 % from the original model).
        own = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
        with torch.no_grad():
            expected = own(input_ids=torch.tensor([ids])).logits[0].numpy()
        tol = {"F16": REL_TOL, "Q8_0": 5e-2, "Q4_K_M": 0.1}[level]
        rel, top1 = assert_logits_match(ours, expected, tol=tol, min_decisive=0.15)
        assert top1 > 0.9, (level, top1)
        drift[level] = (np.abs(ours - original).max() / np.abs(original).max(), rel)
    assert drift["F16"][0] < REL_TOL and drift["F16"][0] < drift["Q8_0"][0] < drift["Q4_K_M"][0]
    # what separates Q4_K_M from the original model is its weights, not how llama.cpp runs them
    assert drift["Q4_K_M"][1] < 0.25 * drift["Q4_K_M"][0]

    # Only the levels asked for are kept: here no F16 at all, and a Q8_0 mmproj that still runs.
    other = export_and_quantize(release, tmp_path / "q6", levels=("Q6_K",), mmproj_level="Q8_0", threads=THREADS)
    assert sorted(os.listdir(tmp_path / "q6")) == ["llm-Q6_K.gguf", "mmproj-Q8_0.gguf"]
    assert other["mmproj"]["bytes"] < record["mmproj"]["bytes"]
    prompt, ids = image_prompt_ids(tok, meta)
    with GGUFSession(other["llm"]["Q6_K"]["path"], other["mmproj"]["path"], n_threads=THREADS, n_ctx=256) as session:
        n_image, _ = run_image_prompt(session, prompt, random_image(32))
        assert n_image == meta["image_tokens"] and session.n_past == len(ids)


def test_unknown_quantization_level_is_a_clear_error(tmp_path, exported):
    release, record = exported("qwen2")
    with pytest.raises(ExportError, match=r"unknown quantization level 'Q3_X'.*Q4_K_M"):
        quantize(record["llm"]["path"], tmp_path / "x.gguf", "Q3_X")
    with pytest.raises(ExportError, match="unknown quantization level 'q8_0'"):
        export_and_quantize(release, tmp_path / "never", levels=("F16", "q8_0"))
    assert not (tmp_path / "never").exists() and not (tmp_path / "x.gguf").exists()
    assert set(QUANT_LEVELS) == {"F16", "Q8_0", "Q4_K_M", "Q4_0", "Q6_K"}
    for name, code in QUANT_LEVELS.items():  # the numbers are llama.h's
        assert code == getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")


# ---------------------------------------------------------------------------------------------
# Unmapped tensors


def test_an_unmapped_tensor_is_named(tmp_path, exported, monkeypatch):
    release, _ = exported("qwen2")
    # a name rule missing: the vision MLP's second Linear has nowhere to go
    table = tuple(rule for rule in export_names.VISION_TABLE if "fc2" not in rule[0])
    monkeypatch.setattr(export_names, "VISION_TABLE", table)
    with pytest.raises(ExportError, match=r"model\.vision_tower\.encoder\.layers\.0\.mlp\.fc2\.weight"):
        export_release(release, tmp_path / "a")
    assert not list((tmp_path / "a").glob("*.gguf"))
    monkeypatch.undo()

    # a tensor the LLM table does not know
    names = ["model.language_model.layers.0.self_attn.q_proj.weight", "model.language_model.layers.0.mystery.weight"]
    with pytest.raises(ExportError, match=r"1 tensor\(s\).*model\.language_model\.layers\.0\.mystery\.weight"):
        export_names.plan_tensors(
            names, arch=gguf.MODEL_ARCH.QWEN2, n_llm_layers=1, n_vision_layers_kept=1, tied_output=False
        )


def test_a_checkpoint_tensor_the_model_would_drop_is_an_error(tmp_path, exported):
    from safetensors.torch import load_file, save_file

    release, _ = exported("qwen2")
    copy = shutil.copytree(release, tmp_path / "release")
    weights = load_file(copy / "model.safetensors")
    weights["language_model.model.extra_scale.weight"] = torch.ones(4)
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ExportError, match=r"unexpected: model\.language_model\.extra_scale\.weight"):
        export_release(copy, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.gguf"))


def test_a_failing_late_check_leaves_no_half_pair(tmp_path, exported, monkeypatch):
    from impkit.export import mmproj

    def refuse(*args, **kwargs):
        raise ExportError("projector refused")

    release, _ = exported("qwen2")
    monkeypatch.setattr(mmproj, "add_vision", refuse)  # fails after the LLM file is written
    with pytest.raises(ExportError, match="projector refused"):
        export_release(release, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []  # no LLM file without its mmproj, no temporary files
