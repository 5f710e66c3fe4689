"""HF -> GGUF tensor names: every tensor of a release is mapped, or skipped for a stated reason.

A release is a ``LlavaForConditionalGeneration``; its state dict (as loaded by transformers, whatever
the layout on disk) has three parts, each going to one file:

* ``model.language_model.*`` and ``lm_head.*``: the LLM file. Names are those of the family's
  ``*ForCausalLM`` once the prefix becomes ``model.``; ``gguf.get_tensor_name_map`` maps them for
  qwen2 / phi2 / phi3 / llama, Phi-3's fused ``qkv_proj`` and ``gate_up_proj`` included (llama.cpp
  reads them unsplit as ``attn_qkv`` and ``ffn_up``).
* ``model.vision_tower.*`` and ``model.multi_modal_projector.*``: the mmproj file, by the explicit
  table below (llama.cpp's ``clip`` names).
* anything else: an error, as is a tensor of a known part that no rule maps. Export never drops a
  weight silently; the few tensors left out on purpose are listed with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import gguf

from impkit.errors import ImpkitError


class ExportError(ImpkitError, ValueError):
    """A release cannot be written as GGUF files llama.cpp would run correctly."""


LLM_PREFIX = "model.language_model."
LM_HEAD = "lm_head."
VISION_PREFIX = "model.vision_tower."
PROJECTOR_PREFIX = "model.multi_modal_projector."

# SigLIP (transformers) -> llama.cpp clip names, relative to VISION_PREFIX. Full-match regexes;
# groups fill the target's {} in order.
VISION_TABLE: tuple[tuple[str, str], ...] = (
    (r"embeddings\.patch_embedding\.(weight|bias)", "v.patch_embd.{}"),
    (r"embeddings\.position_embedding\.weight", "v.position_embd.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", "v.blk.{}.attn_q.{}"),
    (r"encoder\.layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)", "v.blk.{}.attn_k.{}"),
    (r"encoder\.layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)", "v.blk.{}.attn_v.{}"),
    (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", "v.blk.{}.attn_out.{}"),
    (r"encoder\.layers\.(\d+)\.layer_norm1\.(weight|bias)", "v.blk.{}.ln1.{}"),
    (r"encoder\.layers\.(\d+)\.layer_norm2\.(weight|bias)", "v.blk.{}.ln2.{}"),
    (r"encoder\.layers\.(\d+)\.mlp\.fc1\.(weight|bias)", "v.blk.{}.ffn_up.{}"),
    (r"encoder\.layers\.(\d+)\.mlp\.fc2\.(weight|bias)", "v.blk.{}.ffn_down.{}"),
)

# LLaVA's projector is nn.Sequential(Linear, GELU, Linear): llama.cpp's "mlp" projector names the
# two Linear layers by their Sequential index, mm.0 and mm.2 (transformers calls them linear_1/2).
PROJECTOR_TABLE: tuple[tuple[str, str], ...] = (
    (r"linear_1\.(weight|bias)", "mm.0.{}"),
    (r"linear_2\.(weight|bias)", "mm.2.{}"),
)

_VISION_LAYER = re.compile(r"encoder\.layers\.(\d+)\.")


@dataclass
class TensorPlan:
    """Where each state-dict tensor goes: ``llm`` and ``mmproj`` map HF name -> GGUF name."""

    llm: dict[str, str] = field(default_factory=dict)
    mmproj: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # HF name -> why it is not exported


def _from_table(table: tuple[tuple[str, str], ...], name: str) -> str | None:
    for pattern, target in table:
        match = re.fullmatch(pattern, name)
        if match:
            return target.format(*match.groups())
    return None


def plan_tensors(
    names: Iterable[str],
    *,
    arch: gguf.MODEL_ARCH,
    n_llm_layers: int,
    n_vision_layers_kept: int,
    tied_output: bool,
) -> TensorPlan:
    """Map every name of a Llava state dict, or raise ``ExportError`` naming all that do not map.

    ``n_vision_layers_kept``: ViT layers the mmproj holds (those that run before the features are
    taken, see ``mmproj.vision_layers_kept``); later layers and the post-layernorm are skipped.
    ``tied_output``: the LM head shares the embedding matrix and llama.cpp reuses ``token_embd``.
    """
    llm_map = gguf.get_tensor_name_map(arch, n_llm_layers)
    plan = TensorPlan()
    unmapped: list[str] = []
    for name in names:
        if name.endswith("rotary_emb.inv_freq"):
            plan.skipped[name] = "rotary frequencies: llama.cpp computes them from rope.freq_base"
        elif name.startswith(LLM_PREFIX) or name.startswith(LM_HEAD):
            if name.startswith(LM_HEAD) and tied_output:
                plan.skipped[name] = "tied to the token embeddings (llama.cpp reuses token_embd)"
                continue
            hf = "model." + name.removeprefix(LLM_PREFIX) if name.startswith(LLM_PREFIX) else name
            target = llm_map.get_name(hf, try_suffixes=(".weight", ".bias"))
            if target is None:
                unmapped.append(name)
            else:
                plan.llm[name] = target
        elif name.startswith(VISION_PREFIX):
            rel = name.removeprefix(VISION_PREFIX)
            layer = _VISION_LAYER.match(rel)
            if rel.startswith("post_layernorm."):
                plan.skipped[name] = "LLaVA takes features before the post-layernorm"
            elif rel.startswith("head."):
                plan.skipped[name] = "SigLIP's pooling head is unused by LLaVA"
            elif layer and int(layer.group(1)) >= n_vision_layers_kept:
                plan.skipped[name] = f"ViT layer after the feature layer ({n_vision_layers_kept} layers run)"
            else:
                target = _from_table(VISION_TABLE, rel)
                if target is None:
                    unmapped.append(name)
                else:
                    plan.mmproj[name] = target
        elif name.startswith(PROJECTOR_PREFIX):
            target = _from_table(PROJECTOR_TABLE, name.removeprefix(PROJECTOR_PREFIX))
            if target is None:
                unmapped.append(name)
            else:
                plan.mmproj[name] = target
        else:
            unmapped.append(name)
    if unmapped:
        raise ExportError(
            f"{len(unmapped)} tensor(s) have no GGUF name for arch {gguf.MODEL_ARCH_NAMES[arch]!r} and would be lost: "
            + ", ".join(unmapped)
        )
    for part, mapping in (("LLM", plan.llm), ("mmproj", plan.mmproj)):
        seen: dict[str, str] = {}
        for hf, target in mapping.items():
            if target in seen:
                raise ExportError(f"{part}: {seen[target]} and {hf} both map to {target}")
            seen[target] = hf
    return plan
