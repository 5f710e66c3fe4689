"""The release folder contract (impkit.release): what training writes is what every reader gets, stock
transformers included, and a folder that is no release fails in one line naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

from impkit.config import PresetConfig, from_dict
from impkit.model.image_processing import ImageProcessor
from impkit.release import (
    REQUIRED_META,
    Release,
    ReleaseError,
    ReleaseNotFound,
    gguf_levels,
    llm_filename,
    mmproj_file,
    write_release,
)


@pytest.fixture(scope="module")
def released(tiny, tmp_path_factory):
    preset, tok, model = tiny
    return write_release(model, tok, preset, tmp_path_factory.mktemp("rel") / "nano-x", {"preset": "nano-x"})


def test_a_written_release_reads_back_what_the_preset_says(released, tiny):
    preset, _, model = tiny
    again = Release.open(released.folder)
    assert again == released and again.name == "nano-x"
    assert (again.template, again.image_aspect, again.family) == (preset.template, preset.image_aspect, preset.family)
    assert (again.image_size, again.patch_size, again.image_tokens) == (32, 8, 16)
    assert again.normalisation() == ([0.5] * 3, [0.5] * 3)
    loaded, tokenizer = again.load()
    assert tokenizer("a red circle")["input_ids"] == tiny[1]("a red circle")["input_ids"]
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_load_gives_the_dtype_asked_for(released):
    model, _ = released.load(dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("aspect", ["pad", "square"])
def test_stock_autoprocessor_prepares_images_as_impkit_trains_on_them(tiny, tmp_path, aspect):
    """LLaVA-1.5's pad-to-square with the mean colour where the preset pads: the pixels a user gets from
    ``AutoProcessor.from_pretrained(release)`` are the ones impkit trained and evaluates on."""
    _, tok, model = tiny
    preset = from_dict(PresetConfig, {**TINY, "image_aspect": aspect})
    release = write_release(model, tok, preset, tmp_path / aspect, {})
    processor = AutoProcessor.from_pretrained(release.folder)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((20, 50), (61, 17))]
    ours = release.image_processor()(images)
    theirs = processor(images=images, text=["<image>"] * 2, return_tensors="pt")["pixel_values"]
    assert theirs.shape == ours.shape == (2, 3, 32, 32)
    assert float((theirs - ours).abs().max()) < 1e-5
    if aspect == "pad":  # and they differ from a plain resize, so the comparison can fail
        squashed = ImageProcessor(size=32, aspect="square")(images)
        assert float((squashed - ours).abs().max()) > 0.1


def test_folders_that_are_no_release_fail_naming_the_file(released, tmp_path):
    with pytest.raises(ReleaseNotFound, match=r"impkit\.json not found: .* is not a release folder"):
        Release.open(tmp_path)
    folder = tmp_path / "copy"
    folder.mkdir()
    meta = json.loads((released.folder / "impkit.json").read_text())
    (folder / "impkit.json").write_text("{not json")
    with pytest.raises(ReleaseError, match=r"impkit\.json is not valid JSON"):
        Release.open(folder)
    (folder / "impkit.json").write_text(json.dumps([meta]))
    with pytest.raises(ReleaseError, match=r"impkit\.json holds a JSON list, not an object"):
        Release.open(folder)
    (folder / "impkit.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "template"}))
    with pytest.raises(ReleaseError, match=r"impkit\.json lacks \['template'\]"):
        Release.open(folder)
    (folder / "impkit.json").write_text(json.dumps(meta))
    with pytest.raises(ReleaseNotFound, match=r"config\.json not found"):
        Release.open(folder)
    (folder / "config.json").write_text(json.dumps({"vision_config": {}}))
    with pytest.raises(ReleaseError, match="vision_config.image_size"):
        Release.open(folder)
    with pytest.raises(ReleaseError, match=r"lacks \['stage'\]"):
        Release.open(released.folder, required=("stage",))
    assert set(REQUIRED_META) <= set(meta)


def test_a_processor_config_at_another_size_is_refused(released, tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    for name in ("impkit.json", "config.json"):
        (folder / name).write_text((released.folder / name).read_text())
    (folder / "processor_config.json").write_text(
        json.dumps({"image_processor": {"size": {"height": 64, "width": 64}}})
    )
    with pytest.raises(ReleaseError, match="resizes to .*64.* the vision tower takes 32 px"):
        Release.open(folder).normalisation()
    (folder / "processor_config.json").unlink()
    assert Release.open(folder).normalisation() == ([0.5] * 3, [0.5] * 3)  # SigLIP's, as transformers defaults
    with pytest.raises(ReleaseNotFound, match="processor_config.json not found"):
        Release.open(folder).normalisation(required=True)


def test_strict_load_names_tensors_the_model_class_does_not_know(released, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "extra"
    folder.mkdir()
    for path in released.folder.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    weights = next(folder.glob("*.safetensors"))
    state = load_file(weights)
    state["model.language_model.mystery.weight"] = torch.zeros(2)
    save_file(state, weights, metadata={"format": "pt"})
    model, _ = Release.open(folder).load()  # lenient: transformers drops it
    assert isinstance(model, LlavaForConditionalGeneration)
    with pytest.raises(ReleaseError, match=r"unexpected: model\.language_model\.mystery\.weight"):
        Release.open(folder).load(strict=True)


def test_gguf_file_names_and_discovery(tmp_path):
    assert llm_filename("Q4_K_M") == "llm-Q4_K_M.gguf"
    with pytest.raises(ReleaseError, match=r"unknown quantization level 'Q3'.*Q4_K_M"):
        llm_filename("Q3")
    for name in ("llm-Q4_K_M.gguf", "llm-F16.gguf", "llm-other.gguf", "mmproj-Q8_0.gguf"):
        (tmp_path / name).write_bytes(b"")
    assert list(gguf_levels(tmp_path)) == ["F16", "Q4_K_M"]
    assert mmproj_file(tmp_path).name == "mmproj-Q8_0.gguf"
    with pytest.raises(ReleaseNotFound, match="no mmproj"):
        mmproj_file(tmp_path / "none")
