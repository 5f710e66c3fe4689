"""Tiny checkpoints in the five layouts MILVLG published Imp in (random weights, the real configs scaled
down), written key by key with safetensors as Imp's remote code saves them, since no transformers class
writes them: ``config.json`` is the LLM's config with ``model_type`` imp / imp_qwen2 / imp_phi3 and the
``mm_*`` keys (no vision config); the SigLIP tower under ``<body>.vision_tower.vision_tower.vision_model.*``
without its last encoder layer, post-layernorm or head; the projector ``<body>.mm_projector.{0,2}``;
v1-3b in Microsoft's first Phi layout (``transformer.h.N.mixer.Wqkv``, ``lm_head.linear`` with bias).

Each builder also returns what a reference forward pass needs, taken from the parts before they were
laid out (so the reference does not share the importer's mapping).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from published import CONFIGS, LLM_ARCH, SPARE_ROWS, VISION_ARCH, family_tokenizer, save_siglip, save_tokenizer
from safetensors.torch import save_file
from transformers import SiglipVisionConfig, SiglipVisionModel

from impkit.model.tokenizer import IMAGE_TOKEN

TOWER = "vision_tower.vision_tower.vision_model."


@dataclass(frozen=True)
class Layout:
    model_type: str
    family: str
    msft: bool = False  # v1-3b's Microsoft Phi names
    grid: int | None = None  # position grid side when retrained at a lower resolution (3b-196)
    aspect: str | None = "pad"


# name -> how it is published
LAYOUTS = {
    "imp-v1-3b": Layout("imp", "phi2", msft=True, aspect=None),
    "imp-v1.5-2b": Layout("imp_qwen2", "qwen2"),
    "imp-v1.5-3b": Layout("imp", "phi2"),
    "imp-v1.5-4b": Layout("imp_phi3", "phi3"),
    "imp-v1.5-3b-196": Layout("imp", "phi2", grid=3, aspect="square"),
}


@dataclass
class Parts:
    """The pieces of the published architecture a reference forward pass runs."""

    vision: SiglipVisionModel  # the stored tower (last layer already removed)
    projector: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # w0, b0, w2, b2
    llm: torch.nn.Module  # the transformers causal LM with the same weights
    tokenizer: Any
    image_size: int


def _imp_tokenizer(family: str):
    tok = family_tokenizer(family)
    new = (["</s>"] if family == "phi2" else []) + [IMAGE_TOKEN]
    tok.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    return tok


def _msft_phi(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """transformers' Phi names -> Microsoft's first Phi code's (q, k, v fused in that order)."""
    out = {"transformer.embd.wte.weight": state["model.embed_tokens.weight"]}
    for i in range(n_layers):
        src, dst = f"model.layers.{i}.", f"transformer.h.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}ln.{p}"] = state[f"{src}input_layernorm.{p}"]
            out[f"{dst}mixer.Wqkv.{p}"] = torch.cat([state[f"{src}self_attn.{x}_proj.{p}"] for x in "qkv"])
            out[f"{dst}mixer.out_proj.{p}"] = state[f"{src}self_attn.dense.{p}"]
            out[f"{dst}mlp.fc1.{p}"] = state[f"{src}mlp.fc1.{p}"]
            out[f"{dst}mlp.fc2.{p}"] = state[f"{src}mlp.fc2.{p}"]
    for p in ("weight", "bias"):
        out[f"lm_head.ln.{p}"] = state[f"model.final_layernorm.{p}"]
        out[f"lm_head.linear.{p}"] = state[f"lm_head.{p}"]
    return out


def _msft_config(arch: dict[str, Any], vocab: int) -> dict[str, Any]:
    head_dim = arch["hidden_size"] // arch["num_attention_heads"]
    return {
        "n_embd": arch["hidden_size"],
        "n_layer": arch["num_hidden_layers"],
        "n_head": arch["num_attention_heads"],
        "n_inner": arch["intermediate_size"],
        "n_positions": arch["max_position_embeddings"],
        "rotary_dim": int(arch["partial_rotary_factor"] * head_dim),
        "layer_norm_epsilon": arch["layer_norm_eps"],
        "activation_function": arch["hidden_act"],
        "vocab_size": vocab,
        "pad_vocab_size_multiple": 1,
    }


def save_imp(name: str, folder: Path, seed: int = 0, **llm: Any) -> Parts:
    """The checkpoint folder; ``llm`` overrides the tiny LLM's config (e.g. rows of 256 for K-quants)."""
    layout = LAYOUTS[name]
    tower_dir = folder.parent / f"{name}-siglip"
    if not tower_dir.exists():
        save_siglip(tower_dir, seed=seed + 1)
    tok = _imp_tokenizer(layout.family)
    config_class, model_class = CONFIGS[layout.family]
    init = llm.pop("initializer_range", 0.2)
    arch = {**LLM_ARCH[layout.family], **llm}
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    torch.manual_seed(seed)
    llm = model_class(config_class(**arch, vocab_size=len(tok) + SPARE_ROWS, **ids, initializer_range=init)).eval()
    if getattr(llm.lm_head, "bias", None) is not None:
        with torch.no_grad():
            llm.lm_head.bias.normal_(0, 2)

    # the tower as Imp saves it: layers past mm_vision_select_layer (-2) deleted, no head
    full = SiglipVisionModel.from_pretrained(tower_dir)
    side = layout.grid or VISION_ARCH["image_size"] // VISION_ARCH["patch_size"]
    image_size = side * VISION_ARCH["patch_size"]
    vcfg = SiglipVisionConfig(
        **{**VISION_ARCH, "num_hidden_layers": VISION_ARCH["num_hidden_layers"] - 1, "image_size": image_size}
    )
    stored = SiglipVisionModel(vcfg).eval()
    own = stored.state_dict()
    weights = {k: v for k, v in full.state_dict().items() if k in own and v.shape == own[k].shape}
    if layout.grid:  # retrained at the lower resolution: its own (here random) position embeddings
        weights["embeddings.position_embedding.weight"] = torch.randn(side * side, VISION_ARCH["hidden_size"])
    assert not stored.load_state_dict(weights, strict=False).missing_keys
    vision_state = {  # transformers' in-memory names are Imp's saved ones below the tower prefix
        k: v for k, v in stored.state_dict().items() if not k.startswith(("post_layernorm.", "head."))
    }
    d_in, d = VISION_ARCH["hidden_size"], arch["hidden_size"]
    projector = (torch.randn(d, d_in) * 0.2, torch.randn(d) * 0.1, torch.randn(d, d) * 0.2, torch.randn(d) * 0.1)

    body = "transformer." if layout.msft else "model."
    llm_state = {k: v for k, v in llm.state_dict().items() if "rotary_emb" not in k}
    state = _msft_phi(llm_state, arch["num_hidden_layers"]) if layout.msft else llm_state
    state |= {body + TOWER + k: v for k, v in vision_state.items()}
    state |= {
        f"{body}mm_projector.{i}.{p}": t
        for (i, p), t in zip([(0, "weight"), (0, "bias"), (2, "weight"), (2, "bias")], projector, strict=True)
    }
    folder.mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"}
    )
    if layout.msft:
        config = _msft_config(arch, len(tok) + SPARE_ROWS)
    else:
        config = {**arch, "vocab_size": len(tok) + SPARE_ROWS, **ids}
    config |= {
        "model_type": layout.model_type,
        "architectures": ["ImpForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_imp.ImpConfig",
            "AutoModelForCausalLM": "modeling_imp.ImpForCausalLM",
        },
        "mm_vision_tower": str(tower_dir),
        "mm_hidden_size": d_in,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "torch_dtype": "float32",
    }
    if layout.aspect:
        config["image_aspect_ratio"] = layout.aspect
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_tokenizer(tok, folder, layout.family)
    return Parts(stored, projector, llm, tok, image_size)


def reference_logits(parts: Parts, text_before: list[int], text_after: list[int], pixels: torch.Tensor) -> torch.Tensor:
    """Imp's forward (imp_llava/model/llava_arch.py, clip_encoder.py) written out: the stored tower's last
    hidden state for every patch, the mlp2x_gelu projector, the features spliced where the -200
    placeholder sits in input_ids, then the LLM on the embeddings."""
    with torch.no_grad():
        features = parts.vision(pixels, output_hidden_states=True).hidden_states[-1][0]
        w0, b0, w2, b2 = parts.projector
        projected = torch.nn.functional.linear(
            torch.nn.functional.gelu(torch.nn.functional.linear(features, w0, b0)), w2, b2
        )
        embed = parts.llm.get_input_embeddings()
        inputs = torch.cat([embed(torch.tensor(text_before)), projected, embed(torch.tensor(text_after))])[None]
        return parts.llm(inputs_embeds=inputs).logits[0]
