"""Presets build Imp-shaped LlavaConfigs; image tokens match patches; preprocessing is Imp's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from impkit.config import ConfigError, PresetConfig, from_dict, load_params
from impkit.model.image_processing import ImageProcessor
from impkit.model.presets import LORA_TARGETS, build_model, llava_config, num_image_tokens

PRESETS = {name: from_dict(PresetConfig, raw, name) for name, raw in load_params()["model"]["presets"].items()}

IDS = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}  # what a tokenizer would provide

# Paper/recipe facts the real presets must reproduce: LLM width, visual tokens.
REAL = {"imp-2b": (2048, 729), "imp-3b": (2560, 729), "imp-3b-196": (2560, 196), "imp-4b": (3072, 729)}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_presets_build_at_reduced_depth(name):
    preset = PRESETS[name]
    width, tokens = REAL[name]
    assert num_image_tokens(preset) == tokens
    config = llava_config(preset, image_token_id=5, vision_layers=2, llm_layers=1, vocab_size=512, special_ids=IDS)
    assert config.text_config.hidden_size == width
    assert config.vision_config.hidden_size == 1152 and config.vision_feature_layer == -2
    model = build_model(config)
    proj = model.model.multi_modal_projector
    assert (proj.linear_1.in_features, proj.linear_1.out_features, proj.linear_2.out_features) == (1152, width, width)
    # every LoRA target named for the family exists in the built model
    names = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(LORA_TARGETS[preset.family]) <= names


@pytest.mark.parametrize("name", ["nano-2b", "nano-3b", "nano-3b-196", "nano-4b"])
def test_nano_image_tokens_match_patches_in_a_forward_pass(name):
    preset = PRESETS[name]
    config = llava_config(preset, image_token_id=3, vocab_size=300, special_ids=IDS)
    model = build_model(config).eval()
    n = num_image_tokens(preset)
    size = preset.vision.arch["image_size"]
    ids = torch.tensor([[1] + [3] * n + [7, 8]])
    out = model(input_ids=ids, pixel_values=torch.zeros(1, 3, size, size))
    assert out.logits.shape == (1, n + 3, 300)
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(input_ids=torch.tensor([[1] + [3] * (n - 1) + [7]]), pixel_values=torch.zeros(1, 3, size, size))
    # widths are multiples of 256 so llama.cpp's K-quants apply to every matrix
    for key in ("hidden_size", "intermediate_size"):
        assert preset.llm.arch[key] % 256 == 0 and preset.vision.arch[key] % 256 == 0


def test_twin_resolutions():
    assert num_image_tokens(PRESETS["nano-3b"]) == 16 and num_image_tokens(PRESETS["nano-3b-196"]) == 9


def test_unknown_family_and_bad_token_id_are_clear_errors():
    raw = load_params()["model"]["presets"]["nano-3b"]
    with pytest.raises(ConfigError, match="unknown LLM family 'gpt9'; known families"):
        llava_config(
            from_dict(PresetConfig, {**raw, "family": "gpt9"}), image_token_id=1, vocab_size=10, special_ids=IDS
        )
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        llava_config(PRESETS["nano-3b"], image_token_id=10, vocab_size=10, special_ids=IDS)


def test_pad_fills_with_the_mean_colour_then_resizes():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    padded = ImageProcessor(size=32, aspect="pad").prepare(image)
    assert padded.size == (32, 32)
    pixels = np.asarray(padded)
    assert tuple(pixels[0, 16]) == (127, 127, 127)  # top band: padding in SigLIP's mean grey
    assert tuple(pixels[16, 16]) == (255, 0, 0)
    squashed = np.asarray(ImageProcessor(size=32, aspect="square").prepare(image))
    assert tuple(squashed[0, 16]) == (255, 0, 0)  # square: stretched, no padding
    tensor = ImageProcessor(size=32)([image, image])
    assert tensor.shape == (2, 3, 32, 32)
    assert torch.isclose(tensor[0, 0, 16, 16], torch.tensor(1.0)) and torch.isclose(
        tensor[0, 1, 0, 16], torch.tensor(-0.0039), atol=1e-3
    )
