"""``impkit import``: the five published Imp checkpoint layouts become releases whose logits equal a
reference forward pass of Imp's architecture, that export to a GGUF passing the parity check, and that
``impkit evaluate`` answers the twins with; what is not an Imp checkpoint is refused, naming the key."""

from __future__ import annotations

import json

import pytest
import torch
from imp_layouts import LAYOUTS, reference_logits, save_imp
from transformers import AutoModelForImageTextToText

from impkit.cli import main as cli
from impkit.importer import CheckpointImportError, import_checkpoint
from impkit.model.tokenizer import IMAGE_TOKEN
from impkit.release import Release


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return tmp_path_factory.mktemp("imp")


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_imported_logits_equal_imps_forward(hub, name):
    parts = save_imp(name, hub / name)
    release = import_checkpoint(hub / name, hub / "releases" / name)
    model, tok = release.load()
    model.eval()
    layout = LAYOUTS[name]
    assert release.family == layout.family and release.template == layout.family
    assert release.image_aspect == (layout.aspect or "square")
    assert release.image_size == parts.image_size
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == parts.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert len(tok) == len(parts.tokenizer)
    before = tok("a red circle", add_special_tokens=False)["input_ids"]
    after = tok(" what colour is the shape", add_special_tokens=False)["input_ids"]
    pixels = torch.randn(1, 3, parts.image_size, parts.image_size, generator=torch.Generator().manual_seed(0))
    ids = before + [model.config.image_token_index] * release.image_tokens + after
    with torch.no_grad():
        ours = model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits[0]
    theirs = reference_logits(parts, before, after, pixels)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
    # the stock Auto class loads it too (once impkit is imported), Phi-2's head bias with it
    auto = AutoModelForImageTextToText.from_pretrained(release.folder)
    assert (getattr(auto.lm_head, "bias", None) is not None) == (layout.family == "phi2")


def test_unknown_layouts_are_refused_naming_the_key(hub, tmp_path):
    save_imp("imp-v1.5-3b", tmp_path / "ok")
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    (tmp_path / "ok" / "config.json").write_text(json.dumps({**config, "model_type": "llava_llama"}))
    with pytest.raises(CheckpointImportError, match="model_type 'llava_llama' is no published Imp checkpoint"):
        import_checkpoint(tmp_path / "ok", tmp_path / "out")
    (tmp_path / "ok" / "config.json").write_text(json.dumps({**config, "mm_projector_type": "resampler"}))
    with pytest.raises(CheckpointImportError, match="mm_projector_type 'resampler'"):
        import_checkpoint(tmp_path / "ok", tmp_path / "out")
    (tmp_path / "ok" / "config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "ok" / "model.safetensors")
    weights["model.layers.0.mlp.adapter.weight"] = torch.zeros(2, 2)
    save_file(weights, tmp_path / "ok" / "model.safetensors")
    with pytest.raises(CheckpointImportError, match=r"model\.layers\.0\.mlp\.adapter\.weight"):
        import_checkpoint(tmp_path / "ok", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_impkit_import_then_gguf_parity_and_evaluation(tmp_path, eval_world, eval_twins):
    """The command line's import of a v1.5-3b folder gives a release that the later stages take: its F16
    GGUF passes the parity stage's check, and `impkit evaluate` answers the twins with it."""

    from impkit.export import export_release

    pytest.importorskip("llama_cpp")
    save_imp("imp-v1.5-3b", tmp_path / "hub" / "imp-v1.5-3b")
    release = tmp_path / "releases" / "imp-3b"
    cli(["import", str(tmp_path / "hub" / "imp-v1.5-3b"), "--name", "imp-3b", "--out", str(release)])
    assert Release.open(release).meta["imported"]["layout"] == "v1.5"

    export_release(release, tmp_path / "gguf")
    assert_f16_parity(release, tmp_path / "gguf", eval_world, eval_twins)

    out = tmp_path / "eval"
    cli(
        [
            "evaluate",
            str(release),
            "--twins",
            str(eval_twins),
            "--images",
            str(eval_world / "images"),
            "--out",
            str(out),
        ]
        + ["--benchmarks", "pope", "sqa", "--batch-size", "4", "--no-blind"]
    )
    details = json.loads((out / "details.json").read_text())
    assert details["release"]["preset"] == "imp-3b"
    for benchmark in ("pope", "sqa"):
        assert details["scores"]["torch"][benchmark]["n"] > 0


def test_a_params_entry_imports_with_its_vision_tower_and_a_hub_id_needs_one(tmp_path):
    import yaml

    save_imp("imp-v1.5-2b", tmp_path / "hub" / "imp-v1.5-2b")
    config_path = tmp_path / "hub" / "imp-v1.5-2b" / "config.json"
    config = json.loads(config_path.read_text())
    tower = config["mm_vision_tower"]
    config_path.write_text(json.dumps({**config, "mm_vision_tower": "google/siglip-so400m-patch14-384"}))
    # the tower's settings cannot come from a hub id here, nor from a 32-wide tower's shapes
    with pytest.raises(CheckpointImportError, match="give --vision-tower FOLDER"):
        import_checkpoint(tmp_path / "hub" / "imp-v1.5-2b", tmp_path / "out")
    params = tmp_path / "params.yaml"
    entry = {"folder": str(tmp_path / "hub" / "imp-v1.5-2b"), "vision_tower": tower}
    params.write_text(yaml.safe_dump({"imports": {"checkpoints": {"imp-2b": entry}}}))
    cli(["import", "imp-2b", "--params", str(params), "--out", str(tmp_path / "releases" / "imp-2b")])
    release = Release.open(tmp_path / "releases" / "imp-2b")
    assert release.name == "imp-2b" and release.meta["imported"]["vision_tower_config"] == tower


def test_an_imported_release_is_fine_tuned_with_stage_2(tmp_path):
    """A researcher's path: import imp-v1.5-3b where stage 1's model goes, then LoRA-tune it on their data."""
    from conftest import qa, rgb_image, write_jsonl
    from published import real_preset, tiny_recipe

    from impkit.config import PresetConfig, from_dict
    from impkit.train.pipeline import tune

    parts = save_imp("imp-v1.5-3b", tmp_path / "hub" / "imp-v1.5-3b")
    aligned = import_checkpoint(tmp_path / "hub" / "imp-v1.5-3b", tmp_path / "aligned").folder
    preset = from_dict(PresetConfig, real_preset("phi2", tmp_path / "unused", tmp_path / "hub" / "imp-v1.5-3b"))
    data = tmp_path / "assembled"
    for i in range(2):
        rgb_image(data / "images" / f"{i}.png", (40, 24), colour=(40 * i, 90, 200))
    write_jsonl(
        data / "finetune.jsonl", [{"id": f"f{i}", "image": f"{i}.png", "conversations": qa()} for i in range(2)]
    )
    out = tmp_path / "release"
    tune(
        "my-imp",
        preset,
        tiny_recipe(),
        aligned=aligned,
        assembled=data,
        checkpoints=tmp_path / "ck",
        out=out,
        adapter_out=tmp_path / "adapter",
        seed=0,
    )
    model, _ = Release.open(out).load(strict=True)
    assert model.config.vision_feature_layer == -1  # the imported tower, as stored
    bias = parts.llm.lm_head.bias.detach()
    torch.testing.assert_close(model.lm_head.bias.detach(), bias, rtol=0, atol=1e-6)  # LoRA leaves the bias


@pytest.mark.parametrize(("grid", "image_size"), [(27, 384), (14, 196)])
def test_siglip_so400m_settings_come_from_the_published_shapes(grid, image_size):
    """Imp's config names the tower only by hub id; SO400M's shapes (1152 wide, 14 px patches, 26 stored
    layers) give its settings, the stored position grid its input size (Imp-3B@196: 14 x 14)."""
    from impkit.importer import _vision_arch

    stored = {
        "embeddings.patch_embedding.weight": torch.zeros(1152, 3, 14, 14),
        "embeddings.position_embedding.weight": torch.zeros(grid * grid, 1152),
        "encoder.layers.0.mlp.fc1.weight": torch.zeros(4304, 1152),
        **{f"encoder.layers.{i}.layer_norm1.weight": torch.zeros(1) for i in range(26)},
    }
    arch = _vision_arch(stored, {"mm_vision_tower": "google/siglip-so400m-patch14-384"}, None)
    assert arch == {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 26,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": image_size,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu_pytorch_tanh",
    }


def test_the_published_llm_configs_map_to_transformers_configs():
    """imp-v1-3b's Microsoft Phi keys and imp-v1.5-3b's transformers Phi keys give the same Phi-2."""
    from types import SimpleNamespace

    from impkit.importer import _text_config

    tok = SimpleNamespace(bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
    msft = {
        "n_embd": 2560,
        "n_layer": 32,
        "n_head": 32,
        "n_inner": None,
        "n_positions": 2048,
        "rotary_dim": 32,
        "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new",
        "vocab_size": 51200,
        "model_type": "imp",
    }
    hf = {
        "hidden_size": 2560,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "intermediate_size": 10240,
        "max_position_embeddings": 2048,
        "partial_rotary_factor": 0.4,
        "layer_norm_eps": 1e-5,
        "hidden_act": "gelu_new",
        "rope_theta": 10000.0,
        "vocab_size": 51200,
        "model_type": "imp",
        "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "mm_hidden_size": 1152,
        "image_aspect_ratio": "square",
        "architectures": ["ImpForCausalLM"],
    }
    a, b = _text_config("phi2", "phi-msft", msft, 51200, tok), _text_config("phi2", "v1.5", hf, 51200, tok)
    keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "max_position_embeddings",
        "layer_norm_eps",
        "hidden_act",
        "vocab_size",
    )
    assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}
    assert a.rope_parameters["partial_rotary_factor"] == b.rope_parameters["partial_rotary_factor"] == 0.4
    assert not hasattr(b, "mm_vision_tower") and b.model_type == "phi"


def assert_f16_parity(release, gguf_dir, eval_world, eval_twins) -> None:
    """The release's exported F16 GGUF computes what PyTorch computes: the parity stage's check."""
    from sections import section_with

    from impkit.config import ParityConfig
    from impkit.eval import benchmarks
    from impkit.eval.parity import check, logit_parity, pick_prompts
    from impkit.eval.runners import LlamaCppRunner, TorchRunner
    from impkit.eval.twins import read_prompts

    images = eval_world / "images"
    rows = {b: read_prompts(eval_twins / b) for b in benchmarks.names() if (eval_twins / b / "prompts.jsonl").is_file()}
    cfg = section_with(ParityConfig, "parity", prompts=6)
    torch_runner = TorchRunner.from_release(release, image_root=images, device="cpu")
    gguf_runner = LlamaCppRunner.from_export(gguf_dir, "F16", release, image_root=images, logits_all=True, n_ctx=1024)
    try:
        report = logit_parity(torch_runner, gguf_runner, pick_prompts(rows, cfg.prompts))
    finally:
        gguf_runner.close()
    assert check(report, cfg) == [], report
