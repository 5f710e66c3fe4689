"""The mmproj GGUF file (arch ``clip``): SigLIP tower up to the feature layer + the MLP projector.

Facts this reproduces (field notes §3): ``clip.projector_type = "mlp"`` with the projector's two
Linear layers as ``mm.0`` / ``mm.2``; ``clip.use_gelu`` so llama.cpp runs SigLIP's tanh GELU rather
than quick-GELU; image mean/std as float arrays; and the layer-count rule: this llama.cpp runs one
ViT layer fewer than ``block_count`` unless ``clip.vision.feature_layer`` is set, so the file holds
exactly the K layers whose output LLaVA uses, with ``block_count = K``, ``feature_layer = [K]`` and no
post-layernorm — correct with or without the upstream fix.

llama.cpp pads a non-square image with a grey (122, 116, 104) and resizes it to ``image_size``; an
image already square at that size (impkit's own preprocessing) reaches the tower as in PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gguf
import torch

from impkit.export.names import ExportError, TensorPlan
from impkit.export.writer import export_array

TANH_GELU = ("gelu_pytorch_tanh", "gelu_new")  # what llama.cpp's clip computes with use_gelu
PROJECTOR_ACTS = ("gelu", *TANH_GELU)  # the mlp projector runs ggml's GELU (tanh form: ~1e-3 off erf)


def vision_layers_kept(config: Any) -> int:
    """How many ViT layers run before LLaVA takes the features (-2: all but the last)."""
    n = config.vision_config.num_hidden_layers
    layer = config.vision_feature_layer
    if not isinstance(layer, int):
        raise ExportError(f"vision_feature_layer {layer!r}: only a single feature layer is exported")
    kept = layer if layer >= 0 else n + 1 + layer  # hidden_states[i] is the output of i layers
    if not 1 <= kept <= n:
        raise ExportError(f"vision_feature_layer {layer} is outside the {n}-layer tower")
    return kept


def check_vision(config: Any) -> None:
    v = config.vision_config
    if v.model_type != "siglip_vision_model":
        # CLIP towers have a class token that this llama.cpp places wrongly (field notes §3)
        raise ExportError(f"vision tower {v.model_type!r}: only SigLIP (no class token) is exported exactly")
    if v.hidden_act not in TANH_GELU:
        raise ExportError(f"vision hidden_act {v.hidden_act!r}: llama.cpp's clip computes tanh GELU {TANH_GELU}")
    if config.vision_feature_select_strategy != "full":
        raise ExportError(
            f"vision_feature_select_strategy {config.vision_feature_select_strategy!r}: "
            "SigLIP features are exported with every patch ('full')"
        )
    if config.projector_hidden_act not in PROJECTOR_ACTS:
        raise ExportError(f"projector_hidden_act {config.projector_hidden_act!r}: the mlp projector runs GELU")


def add_vision(
    writer: gguf.GGUFWriter,
    config: Any,
    state: Mapping[str, torch.Tensor],
    plan: TensorPlan,
    *,
    image_mean: Sequence[float],
    image_std: Sequence[float],
) -> dict[str, Any]:
    """Metadata and tensors of the mmproj file; returns the headline facts."""
    check_vision(config)
    v = config.vision_config
    kept = vision_layers_kept(config)
    width = config.text_config.hidden_size
    out = next((state[hf] for hf, t in plan.mmproj.items() if t == "mm.2.weight"), None)
    if out is None or out.shape[0] != width:
        raise ExportError(
            f"projector output {None if out is None else tuple(out.shape)} does not match the LLM width {width}"
        )
    if len(image_mean) != 3 or len(image_std) != 3:
        raise ExportError(f"image_mean / image_std need 3 values, got {image_mean} / {image_std}")
    writer.add_clip_has_vision_encoder(True)
    writer.add_clip_projector_type(gguf.VISION_PROJECTOR_TYPE_NAMES[gguf.VISION_PROJECTOR_TYPE.MLP])
    writer.add_vision_use_gelu(True)
    writer.add_vision_image_size(v.image_size)
    writer.add_vision_patch_size(v.patch_size)
    writer.add_vision_embedding_length(v.hidden_size)
    writer.add_vision_feed_forward_length(v.intermediate_size)
    writer.add_vision_block_count(kept)
    writer.add_vision_head_count(v.num_attention_heads)
    writer.add_vision_attention_layernorm_eps(v.layer_norm_eps)
    writer.add_vision_projection_dim(width)  # required by the loader though the mlp projector ignores it
    writer.add_vision_image_mean([float(x) for x in image_mean])
    writer.add_vision_image_std([float(x) for x in image_std])
    writer.add_array("clip.vision.feature_layer", [kept])
    for hf, target in plan.mmproj.items():
        # position embeddings are added to F32 activations: keep them F32 (as llama.cpp's converter does)
        writer.add_tensor(target, export_array(target, state[hf], f32=target.startswith("v.position_embd")))
    return {
        "vision_layers": kept,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "image_tokens": (v.image_size // v.patch_size) ** 2,
        "projection_dim": width,
    }
