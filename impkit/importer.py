"""``impkit import``: a published Imp checkpoint folder -> a release in the project's format.

The published checkpoints (MILVLG/imp-v1-3b, imp-v1.5-2b, imp-v1.5-3b, imp-v1.5-4b, imp-v1.5-3b-196)
are saved by Imp's remote code (``trust_remote_code``): one causal LM whose ``model`` (or, for
v1-3b, ``transformer``) also holds the vision tower and the projector. Everything here reads the
folder as data (``config.json``, the weights, the tokenizer), maps every tensor by a table to the
names of ``LlavaForConditionalGeneration`` (``LlavaWithHeadBias`` for Phi-2's biased head) and writes
a release with :func:`impkit.release.write_release`, so evaluation, GGUF export, parity, latency, the
registry and chat take it as they take a trained release. No network, no remote code.

What Imp's code does and the mapping keeps (MILVLG/imp, ``imp_llava/model``):

* ``config.json`` is the LLM's config plus ``mm_*`` keys; ``model_type`` says the family: ``imp``
  (Phi-2; v1-3b in the older Microsoft Phi layout with ``n_embd``, ``n_layer`` ...), ``imp_qwen2``
  (Qwen1.5), ``imp_phi3`` (Phi-3-mini). It holds no vision config, only ``mm_vision_tower`` and
  ``mm_hidden_size``: SigLIP's settings come from a local copy of that tower where there is one,
  else from the weights' shapes (heads from SigLIP-SO400M's 72-wide heads).
* The tower (``vision_tower.vision_tower.vision_model.*``) was saved after Imp deleted its layers
  past ``mm_vision_select_layer`` (-2: the last of SigLIP-SO400M's 27) and its head; the features
  are the last stored layer's output for every patch (no CLS, no post-layernorm). Here: a SigLIP
  tower with exactly the stored layers and ``vision_feature_layer = -1``; its unused post-layernorm
  is written as the identity so the checkpoint is complete.
* The projector ``mm_projector.{0,2}`` is ``mlp2x_gelu``: Linear, GELU, Linear -> ``linear_1``/``linear_2``.
* v1-3b: ``transformer.embd.wte``, ``transformer.h.N.{ln, mixer.Wqkv, mixer.out_proj, mlp.fc1,
  mlp.fc2}``, ``lm_head.{ln, linear}``; the fused ``Wqkv`` holds q, k, v in that order.
* The image's place in Imp's ``input_ids`` is the placeholder -200, not a vocabulary id; the
  tokenizers ship ``<image>`` as an added token (50296 on Phi-2), which the release's config names.
* The image aspect is the config's ``image_aspect_ratio`` (``pad``: LLaVA's expand-to-square with the
  mean colour; absent or ``square``: resize straight). Imp's own inference processor always resizes
  straight to a square (docs/real-models.md lists this among the deviations).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PretrainedConfig, SiglipVisionConfig

from impkit.config import PresetConfig, from_dict
from impkit.data.templates import get_template, jinja_chat_template
from impkit.errors import ImpkitError
from impkit.model.head_bias import model_class
from impkit.model.presets import describe, family_config_class, llava_config
from impkit.model.tokenizer import IMAGE_TOKEN
from impkit.release import Release, write_release


class CheckpointImportError(ImpkitError, ValueError):
    """A folder that is no published Imp checkpoint this importer knows (the message names the key)."""


# config.json's model_type -> (family, chat template). Exact keys; anything else is refused.
IMP_MODEL_TYPES: dict[str, tuple[str, str]] = {
    "imp": ("phi2", "phi2"),
    "imp_qwen2": ("qwen2", "qwen2"),
    "imp_phi3": ("phi3", "phi3"),
}
IMAGE_PLACEHOLDER = -200  # Imp's (LLaVA's) IMAGE_TOKEN_INDEX in input_ids
SIGLIP_HEAD_DIM = 72  # SigLIP-SO400M: 1152 wide, 16 heads (the shapes cannot tell the head count)
SIGLIP_DEFAULTS = {"layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh"}
ASPECTS = {None: "square", "square": "square", "pad": "pad"}

VISION_IN = "vision_tower.vision_tower.vision_model."
VISION_OUT = "model.vision_tower."
PROJECTOR = {
    "mm_projector.0.": "model.multi_modal_projector.linear_1.",
    "mm_projector.2.": "model.multi_modal_projector.linear_2.",
}
LLM_OUT = "model.language_model."


@dataclass(frozen=True)
class Layout:
    """How one checkpoint generation names its tensors: the prefix of everything under the causal
    LM's body, and a function mapping an LLM tensor (prefix removed) to Llava names and tensors."""

    name: str
    body: str  # "model." (v1.5) or "transformer." (v1-3b)
    map_llm: Callable[[str, torch.Tensor, dict[str, Any]], list[tuple[str, torch.Tensor]] | None]


def _map_hf(name: str, tensor: torch.Tensor, cfg: dict[str, Any]) -> list[tuple[str, torch.Tensor]] | None:
    """v1.5: the LLM is the transformers family model itself (``model.*``, ``lm_head.*``)."""
    if name.startswith("lm_head."):
        return [(name, tensor)]
    if name.startswith("model."):
        return [(LLM_OUT + name.removeprefix("model."), tensor)]
    return None


_MSFT_BLOCK = re.compile(r"transformer\.h\.(\d+)\.(.+)")
_MSFT_BLOCK_NAMES = {
    "ln.": "input_layernorm.",
    "mixer.out_proj.": "self_attn.dense.",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
}


def _map_msft_phi(name: str, tensor: torch.Tensor, cfg: dict[str, Any]) -> list[tuple[str, torch.Tensor]] | None:
    """v1-3b: Microsoft's first Phi code. ``Wqkv`` rows are q, k, v (its "(three h d)" layout)."""
    if name.startswith("transformer.embd.wte."):
        return [(LLM_OUT + "embed_tokens." + name.removeprefix("transformer.embd.wte."), tensor)]
    if name.startswith("lm_head.ln."):
        return [(LLM_OUT + "final_layernorm." + name.removeprefix("lm_head.ln."), tensor)]
    if name.startswith("lm_head.linear."):
        return [("lm_head." + name.removeprefix("lm_head.linear."), tensor)]
    match = _MSFT_BLOCK.fullmatch(name)
    if not match:
        return None
    layer, rest = match.groups()
    out = f"{LLM_OUT}layers.{layer}."
    if rest.startswith("mixer.Wqkv."):
        suffix = rest.removeprefix("mixer.Wqkv.")
        q, k, v = torch.chunk(tensor, 3, dim=0)
        return [(f"{out}self_attn.{p}_proj.{suffix}", t.contiguous()) for p, t in zip("qkv", (q, k, v), strict=True)]
    for old, new in _MSFT_BLOCK_NAMES.items():
        if rest.startswith(old):
            return [(out + new + rest.removeprefix(old), tensor)]
    return None


LAYOUTS = {"v1.5": Layout("v1.5", "model.", _map_hf), "phi-msft": Layout("phi-msft", "transformer.", _map_msft_phi)}


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint (safetensors, sharded or not; else PyTorch ``.bin`` files)."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if files:
        weights: dict[str, torch.Tensor] = {}
        for f in files:
            weights.update(load_file(str(f)))
        return weights
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if not bins:
        raise CheckpointImportError(f"{folder}: no *.safetensors or pytorch_model*.bin weights")
    weights = {}
    for f in bins:
        weights.update(torch.load(f, map_location="cpu", weights_only=True))
    return weights


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointImportError(f"{path} not found: {folder} is no Hugging Face checkpoint folder")
    return json.loads(path.read_text(encoding="utf-8"))


def _text_config(family: str, layout: str, cfg: dict[str, Any], vocab_rows: int, tok) -> PretrainedConfig:
    cls = family_config_class(family)
    if layout == "phi-msft":  # Microsoft's Phi config keys -> transformers' PhiConfig
        head_dim = cfg["n_embd"] // cfg["n_head"]
        arch = {
            "hidden_size": cfg["n_embd"],
            "num_hidden_layers": cfg["n_layer"],
            "num_attention_heads": cfg["n_head"],
            "num_key_value_heads": cfg.get("n_head_kv") or cfg["n_head"],
            "intermediate_size": cfg.get("n_inner") or 4 * cfg["n_embd"],
            "max_position_embeddings": cfg.get("n_positions", 2048),
            "partial_rotary_factor": min(cfg.get("rotary_dim", 32), head_dim) / head_dim,
            "layer_norm_eps": cfg.get("layer_norm_epsilon", 1e-5),
            "hidden_act": cfg.get("activation_function", "gelu_new"),
            "rope_theta": 10000.0,
        }
    else:
        known = set(cls().to_dict()) | {"rope_theta", "rope_scaling", "partial_rotary_factor"}
        drop = {"model_type", "architectures", "transformers_version", "auto_map", "torch_dtype", "dtype"}
        arch = {k: v for k, v in cfg.items() if k in known and k not in drop and not k.startswith("mm_")}
    arch.update(
        vocab_size=vocab_rows,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    return cls(**arch)


def _vision_arch(stored: dict[str, torch.Tensor], cfg: dict[str, Any], tower: Path | None) -> dict[str, Any]:
    """SigLIP settings: the local tower's config where given, checked against (and sized by) the weights."""
    patch = stored["embeddings.patch_embedding.weight"]
    rows = stored["embeddings.position_embedding.weight"].shape[0]
    side = math.isqrt(rows)
    if side * side != rows:
        raise CheckpointImportError(f"{VISION_IN}embeddings.position_embedding.weight has {rows} rows: no square grid")
    layers = sorted({int(m.group(1)) for k in stored if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    if layers != list(range(len(layers))) or not layers:
        raise CheckpointImportError(f"{VISION_IN}encoder.layers.*: stored layers {layers} are not 0..N-1")
    hidden, patch_size = int(patch.shape[0]), int(patch.shape[-1])
    arch: dict[str, Any] = dict(SIGLIP_DEFAULTS)
    if tower is not None:
        own = SiglipVisionConfig.from_pretrained(tower)  # a SigLIP folder (vision part read from it)
        arch.update(layer_norm_eps=own.layer_norm_eps, hidden_act=own.hidden_act)
        arch["num_attention_heads"] = own.num_attention_heads
        if own.hidden_size != hidden or own.patch_size != patch_size:
            raise CheckpointImportError(
                f"the vision tower {tower} is {own.hidden_size} wide with {own.patch_size} px patches; the "
                f"checkpoint's is {hidden} wide with {patch_size} px patches"
            )
        image_size = own.image_size if own.image_size // patch_size == side else side * patch_size
    else:
        if hidden % SIGLIP_HEAD_DIM:
            raise CheckpointImportError(
                f"mm_vision_tower '{cfg.get('mm_vision_tower')}' is not a local folder and a {hidden}-wide tower "
                "is no SigLIP-SO400M: give --vision-tower FOLDER (a copy of the tower the checkpoint names)"
            )
        arch["num_attention_heads"] = hidden // SIGLIP_HEAD_DIM
        # SigLIP-SO400M at 384 px has 27 patches a side (384 // 14); other grids run at side x patch px
        image_size = 384 if (side, patch_size) == (27, 14) else side * patch_size
    arch.update(
        hidden_size=hidden,
        intermediate_size=int(stored["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=len(layers),
        patch_size=patch_size,
        image_size=image_size,
    )
    return arch


def _tower_folder(cfg: dict[str, Any], vision_tower: str | Path | None, folder: Path) -> Path | None:
    for candidate in (vision_tower, cfg.get("mm_vision_tower")):
        if candidate is None:
            continue
        path = Path(candidate)
        if not path.is_absolute() and not path.exists():
            path = folder / path
        if (path / "config.json").is_file():
            return path
        if candidate is vision_tower:
            raise CheckpointImportError(f"--vision-tower {vision_tower}: no config.json there")
    return None


def import_checkpoint(
    folder: str | Path, out_dir: str | Path, *, name: str | None = None, vision_tower: str | Path | None = None
) -> Release:
    """Write the release of the published Imp checkpoint in ``folder`` to ``out_dir``."""
    folder = Path(folder)
    cfg = _read_config(folder)
    model_type = cfg.get("model_type")
    if model_type not in IMP_MODEL_TYPES:
        raise CheckpointImportError(
            f"{folder / 'config.json'}: model_type {model_type!r} is no published Imp checkpoint; "
            f"known: {sorted(IMP_MODEL_TYPES)}"
        )
    family, template = IMP_MODEL_TYPES[model_type]
    layout = LAYOUTS["phi-msft" if "n_embd" in cfg else "v1.5"]
    if cfg.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise CheckpointImportError(
            f"{folder / 'config.json'}: mm_projector_type {cfg['mm_projector_type']!r}; known: mlp2x_gelu"
        )
    aspect = cfg.get("image_aspect_ratio")
    if aspect not in ASPECTS:
        raise CheckpointImportError(f"{folder / 'config.json'}: image_aspect_ratio {aspect!r}; known: pad, square")

    weights = read_weights(folder)
    vision_prefix = layout.body + VISION_IN
    vision = {k.removeprefix(vision_prefix): v for k, v in weights.items() if k.startswith(vision_prefix)}
    if not vision:
        raise CheckpointImportError(f"{folder}: no tensor under {vision_prefix}*")
    unused_vision = [k for k in vision if k.startswith(("head.", "post_layernorm."))]  # absent in Imp's saves
    mapped: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in weights.items():
        if key.startswith(vision_prefix):
            rel = key.removeprefix(vision_prefix)
            if rel not in unused_vision:
                mapped[VISION_OUT + rel] = tensor
            continue
        projector = next((p for p in PROJECTOR if key == layout.body + p + key.rsplit(".", 1)[-1]), None)
        if projector is not None:
            mapped[PROJECTOR[projector] + key.rsplit(".", 1)[-1]] = tensor
            continue
        if key.endswith("rotary_emb.inv_freq"):
            continue  # recomputed from the config
        pairs = layout.map_llm(key, tensor, cfg)
        if pairs is None:
            unknown.append(key)
        else:
            mapped.update(pairs)
    if unknown:
        raise CheckpointImportError(
            f"{folder}: {len(unknown)} tensors of no known {layout.name} Imp layout, e.g. {', '.join(unknown[:5])}"
        )

    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)  # the tokenizer class is a stock one
    if IMAGE_TOKEN not in tok.get_vocab():
        raise CheckpointImportError(f"{folder}: the tokenizer has no {IMAGE_TOKEN} token (Imp's checkpoints add it)")
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    tok.chat_template = jinja_chat_template(get_template(template))

    embed = mapped.get(LLM_OUT + "embed_tokens.weight")
    if embed is None:
        raise CheckpointImportError(f"{folder}: no token embeddings ({layout.body}embed_tokens / embd.wte)")
    head_bias = "lm_head.bias" in mapped
    tower = _tower_folder(cfg, vision_tower, folder)
    vision_arch = _vision_arch(vision, cfg, tower)
    text = _text_config(family, layout.name, cfg, int(embed.shape[0]), tok)
    preset = from_dict(
        PresetConfig,
        {
            "family": family,
            "template": template,
            "image_aspect": ASPECTS[aspect],
            "offline": False,
            "train": "real",
            "vision": {"source": str(tower) if tower else cfg.get("mm_vision_tower"), "arch": vision_arch},
            "llm": {
                "source": str(folder),
                "arch": {"hidden_size": text.hidden_size, "num_hidden_layers": text.num_hidden_layers},
            },
        },
        "imported",
    )
    config = llava_config(
        preset,
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        vocab_size=text.vocab_size,
        special_ids={k: getattr(text, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")},
        head_bias=head_bias,
    )
    config.text_config = text
    config.vision_feature_layer = -1  # the stored tower already ends at Imp's feature layer
    dtype = next(t.dtype for t in mapped.values() if t.is_floating_point())
    model = model_class(config)._from_config(config, dtype=dtype)
    own = model.state_dict()
    for key in ("post_layernorm.weight", "post_layernorm.bias"):  # unused by the features; complete the file
        mapped.setdefault(
            VISION_OUT + key,
            torch.ones_like(own[VISION_OUT + key])
            if key.endswith("weight")
            else torch.zeros_like(own[VISION_OUT + key]),
        )
    missing = [k for k in own if k not in mapped]
    extra = [k for k in mapped if k not in own]
    shapes = [k for k in own if k in mapped and mapped[k].shape != own[k].shape]
    if missing or extra or shapes:
        raise CheckpointImportError(
            f"{folder}: the weights do not fit the {layout.name} layout: "
            + "; ".join(
                f"{what} {', '.join(keys[:4])}"
                for what, keys in (("missing", missing), ("unexpected", extra), ("other shapes", shapes))
                if keys
            )
        )
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in mapped.items()}, strict=True)
    meta = {
        "preset": name or folder.name,
        "stage": "import",
        "model": describe(preset),
        "imported": {
            "folder": str(folder),
            "model_type": model_type,
            "layout": layout.name,
            "mm_vision_tower": cfg.get("mm_vision_tower"),
            "vision_tower_config": str(tower) if tower else "from the weights' shapes",
            "image_placeholder": IMAGE_PLACEHOLDER,
            "dtype": str(dtype).removeprefix("torch."),
        },
    }
    return write_release(model.eval(), tok, preset, out_dir, meta)
