"""The LLM GGUF file: hyper-parameters, tokenizer (byte-level BPE or SentencePiece), chat template and weights.

Facts this reproduces (checked against llama.cpp as built here, see field notes §3): per-family
metadata keys, Phi-2's partial rotary dimension, the BPE vocabulary padded to the embedding rows
with a non-empty merges list, q/k permutation for ``llama`` only, and an explicit ``output`` (+ bias)
for ``phi2``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np
import torch

from impkit.data.templates import get_template, jinja_chat_template
from impkit.export.names import ExportError, TensorPlan
from impkit.export.writer import export_array
from impkit.model.tokenizer import IMAGE_TOKEN

# llama.cpp's default media marker (mtmd_default_marker()): where a prompt's image goes.
MEDIA_MARKER = "<__media__>"


@dataclass(frozen=True)
class LlmArch:
    arch: gguf.MODEL_ARCH
    model_type: str  # transformers text_config.model_type
    rms_norm: bool  # RMSNorm (eps key layer_norm_rms_epsilon) or LayerNorm (layer_norm_epsilon)
    activations: tuple[str, ...]  # hidden_act values llama.cpp's graph for the arch computes
    permute_qk: bool = False  # llama.cpp's llama uses interleaved rope pairs, HF rotates halves
    explicit_output: bool = False  # the arch has no tied-embedding fallback (output + bias required)

    @property
    def name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]


# family (impkit.json / preset) -> GGUF architecture. Exact keys; unknown families fail listing them.
LLM_ARCHS: dict[str, LlmArch] = {
    "qwen2": LlmArch(gguf.MODEL_ARCH.QWEN2, "qwen2", rms_norm=True, activations=("silu",)),
    "phi2": LlmArch(
        gguf.MODEL_ARCH.PHI2,
        "phi",
        rms_norm=False,
        activations=("gelu_new", "gelu_pytorch_tanh", "gelu_fast"),
        explicit_output=True,
    ),
    "phi3": LlmArch(gguf.MODEL_ARCH.PHI3, "phi3", rms_norm=True, activations=("silu",)),
    "llama": LlmArch(gguf.MODEL_ARCH.LLAMA, "llama", rms_norm=True, activations=("silu",), permute_qk=True),
}


def llm_arch(family: str) -> LlmArch:
    try:
        return LLM_ARCHS[family]
    except KeyError:
        raise ExportError(f"no GGUF export for LLM family {family!r}; known families: {sorted(LLM_ARCHS)}") from None


# ---------------------------------------------------------------------------------------------
# Chat template


def gguf_chat_template(template_name: str) -> str:
    """``tokenizer.chat_template`` for llama.cpp: the project's Jinja template (same text as
    ``render_prompt``) with the image placeholder written as llama.cpp's media marker.

    llama-cpp-python's ``MTMDChatHandler`` turns each ``image_url`` part into a text part holding the
    marker before rendering, so such a part counts as the image here, placed first with the
    template's separator as in training; ``{"type": "image"}`` and ``image_url`` parts are also
    accepted (rendered as the marker).
    """
    source = jinja_chat_template(get_template(template_name))
    image_test = "part['type'] == 'image'"
    replacements = {
        image_test: f"(part['type'] in ('image', 'image_url') or (part['type'] == 'text' and "
        f"part['text'] == {json.dumps(MEDIA_MARKER)}))",
        json.dumps(IMAGE_TOKEN)[:-1]: json.dumps(MEDIA_MARKER)[:-1],  # "<image>..." literals -> "<__media__>..."
    }
    for old, new in replacements.items():
        if old not in source:
            raise ExportError(
                f"chat template {template_name!r}: expected {old!r} in the Jinja source; "
                "impkit.data.templates.jinja_chat_template changed"
            )
        source = source.replace(old, new)
    return source


# ---------------------------------------------------------------------------------------------
# Tokenizer

# Pre-tokenizer regexes llama.cpp knows by name (its `tokenizer.ggml.pre`), for tokenizers that split
# with an explicit regex before byte-level encoding (Qwen1.5/Qwen2's tokenizer does).
_SPLIT_PRE: dict[str, str] = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
}


def bpe_pre(tokenizer_json: Mapping[str, Any], family: str) -> str:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer, read from how it really splits.

    ByteLevel with its built-in regex is GPT-2's split: "gpt-2" (called "phi-2" for the phi2 family,
    as llama.cpp's converter labels Phi-2; the same regex). The offline presets' tokenizers all split
    this way (``impkit.model.tokenizer.train_bpe``), whatever the family: labelling a nano qwen2
    tokenizer "qwen2" would split digits one by one where the BPE was trained on GPT-2 splits.
    A Split with Qwen's regex followed by ByteLevel without regex is "qwen2".
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "phi-2" if family == "phi2" else "gpt-2"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = steps[0].get("pattern", {}).get("Regex")
        if regex in _SPLIT_PRE:
            return _SPLIT_PRE[regex]
    raise ExportError(
        f"unsupported pre-tokenizer {json.dumps(pre)[:300]}: GGUF export handles byte-level BPE "
        "with GPT-2's split or Qwen2's regex split"
    )


def _merges(model: Mapping[str, Any]) -> list[str]:
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    if not merges:  # llama.cpp refuses a BPE vocabulary without merges
        raise ExportError("the BPE tokenizer has no merges; llama.cpp cannot load a gpt2 vocabulary without them")
    return merges


def _token_list(tokenizer: Any, n_vocab: int) -> tuple[dict[str, int], list[str], list[gguf.TokenType]]:
    """The tokenizer's vocabulary by id, padded to the embedding rows, with the added tokens' types."""
    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise ExportError(f"the tokenizer has {len(vocab)} tokens, the embedding only {n_vocab} rows")
    tokens: list[str | None] = [None] * n_vocab
    for text, idx in vocab.items():
        if not 0 <= idx < n_vocab or tokens[idx] is not None:
            raise ExportError(f"token {text!r} has id {idx}: outside 0..{n_vocab - 1} or shared")
        tokens[idx] = text
    types = [gguf.TokenType.NORMAL] * n_vocab
    for idx, added in tokenizer.added_tokens_decoder.items():
        types[idx] = gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED
    for idx, text in enumerate(tokens):
        if text is None:  # embedding rows beyond the tokenizer (padded vocabularies)
            tokens[idx], types[idx] = f"[PAD{idx}]", gguf.TokenType.UNUSED
    return vocab, tokens, types  # type: ignore[return-value]


def _special_ids(writer: gguf.GGUFWriter, tokenizer: Any, vocab: Mapping[str, int], template: str) -> dict[str, int]:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ExportError("the tokenizer has no eos token")
    ids = {
        "eos": eos,
        "bos": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos,
        "pad": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        "unk": tokenizer.unk_token_id,
    }
    # Generation ends at the template's answer end marker (ChatML's <|im_end|>, Phi-3's <|end|>,
    # Imp's </s>), as in write_release's generation_config (impkit.release): llama.cpp stops at end-of-turn tokens.
    stop = [vocab[s] for s in get_template(template).stop if s in vocab]
    if stop:
        ids["eot"] = stop[0]
    writer.add_eos_token_id(ids["eos"])
    writer.add_bos_token_id(ids["bos"])
    writer.add_pad_token_id(ids["pad"])
    if ids["unk"] is not None:
        writer.add_unk_token_id(ids["unk"])
    if "eot" in ids:
        writer.add_eot_token_id(ids["eot"])
    return ids


def add_tokenizer(writer: gguf.GGUFWriter, tokenizer: Any, *, family: str, template: str, n_vocab: int) -> dict:
    """The vocabulary, padded to the embedding rows, and the special-token ids: byte-level BPE as
    llama.cpp's gpt2 tokenizer, a SentencePiece vocabulary in BPE form (Phi-3-mini's) as its llama one."""
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    if data.get("model", {}).get("type") != "BPE":
        raise ExportError(
            f"GGUF export handles BPE tokenizers (byte-level or SentencePiece with byte fallback), "
            f"got {data.get('model', {}).get('type')!r}"
        )
    if data["model"].get("byte_fallback"):
        return _add_spm_tokenizer(writer, tokenizer, data, template=template, n_vocab=n_vocab)
    vocab, tokens, types = _token_list(tokenizer, n_vocab)
    pre = bpe_pre(data, family)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(data["model"]))
    ids = _special_ids(writer, tokenizer, vocab, template)
    # Prompts are the template's text exactly (the runners tokenize with add_special_tokens=False;
    # the templates carry their own markers): llama.cpp must not prepend or append anything.
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(gguf_chat_template(template))
    return {"pre": pre, "n_vocab": n_vocab, "n_tokens": len(vocab), **{f"{k}_id": v for k, v in ids.items()}}


# ---------------------------------------------------------------------------------------------
# SentencePiece vocabularies in BPE form (Phi-3-mini's tokenizer.json: "▁" for spaces, <0xNN> bytes)

SPACE = "\u2581"  # "▁", SentencePiece's whitespace symbol
_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")


def spm_space_prefix(tokenizer_json: Mapping[str, Any]) -> bool:
    """llama.cpp's ``tokenizer.ggml.add_space_prefix`` for a SentencePiece-in-BPE tokenizer, read from
    how it turns spaces into "▁".

    llama.cpp's SPM tokenizer (llama-vocab.cpp, LLAMA_VOCAB_TYPE_SPM) escapes " " as "▁" and, with the
    prefix on, puts one space before the text and before the text after every special token, whatever
    that text starts with. Forms it reproduces exactly:

    - normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer (the published Phi-3-mini and
      Llama tokenizer.json; transformers runs the normalizer on each piece between added tokens): on;
    - Replace(" ", "▁") alone, or pre-tokenizer Metaspace with prepend_scheme "never": off;
    - Metaspace "first" (what transformers' LlamaTokenizer builds with ``legacy: false``, Phi-3's
      setting): "▁" only at the start of the whole text, and not when it already starts with a space.
      Off matches it for every text that begins with an added token or with whitespace, which is every
      prompt the chat templates render (they open with a marker); a bare text starting with a letter
      gets no "▁" in llama.cpp where transformers adds one (docs/real-models.md).

    Metaspace "always" (prefix every piece unless it starts with "▁") has no llama.cpp form and is refused.
    """
    norm = tokenizer_json.get("normalizer") or {}
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = norm.get("normalizers", []) if norm.get("type") == "Sequence" else ([norm] if norm else [])
    kinds = [step.get("type") for step in steps]
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    if not pre and kinds == ["Prepend", "Replace"] and steps[0].get("prepend") == SPACE and steps[1] == replace:
        return True
    if not pre and steps == [replace]:
        return False
    if not norm and pre.get("type") == "Metaspace" and pre.get("replacement") == SPACE and not pre.get("split"):
        scheme = pre.get("prepend_scheme", "always")
        if scheme in ("never", "first"):
            return False
    raise ExportError(
        f"unsupported SentencePiece space handling (normalizer {json.dumps(norm)[:200]}, pre-tokenizer "
        f"{json.dumps(pre)[:200]}): GGUF export handles Prepend+Replace normalizers and Metaspace without "
        "split with prepend_scheme 'first' or 'never'"
    )


def spm_scores(tokens: list[str], merges: list[str], check: list[bool]) -> tuple[list[float], list[str]]:
    """Per-token merge priorities for llama.cpp's SPM tokenizer, and the pieces among ``check`` (the
    ordinary ones) that it could build from two pieces but that no merge of the BPE builds.

    llama.cpp merges, again and again, the adjacent pair whose concatenation is the vocabulary piece
    with the highest score; transformers' BPE applies the listed merge with the lowest rank. A piece's
    score is therefore minus the rank of the first merge that builds it. In a SentencePiece vocabulary
    converted to BPE form (transformers' SentencePieceExtractor) the merges list every split of every
    piece in piece order, so this is the piece order, which is what llama.cpp's converter writes from
    tokenizer.model's scores for Phi-3 (higher score = earlier piece). Pieces no merge builds (single
    characters, bytes, specials) get 0: llama.cpp never looks up their score.
    """
    index = {text: i for i, text in enumerate(tokens)}
    scores = [0.0] * len(tokens)
    built = set()
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ", 1)
        idx = index.get(left + right)
        if idx is not None and idx not in built:
            built.add(idx)
            scores[idx] = -float(rank)
    unreachable = [
        text
        for i, text in enumerate(tokens)
        if check[i]
        and i not in built
        and len(text) > 1
        and any(text[:k] in index and text[k:] in index for k in range(1, len(text)))
    ]
    return scores, unreachable


def _adds(tokenizer: Any) -> tuple[bool, bool]:
    """Whether the tokenizer itself puts BOS before / EOS after a text (its post-processor), measured."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos = len(full) > len(plain) and full[0] == tokenizer.bos_token_id
    eos = len(full) > len(plain) and full[-1] == tokenizer.eos_token_id
    return bos, eos


def _add_spm_tokenizer(
    writer: gguf.GGUFWriter, tokenizer: Any, data: Mapping[str, Any], *, template: str, n_vocab: int
) -> dict:
    vocab, tokens, types = _token_list(tokenizer, n_vocab)
    missing = [f"<0x{b:02X}>" for b in range(256) if f"<0x{b:02X}>" not in vocab]
    if missing:  # llama.cpp's SPM tokenizer falls back to these for any character outside the vocabulary
        raise ExportError(f"the byte-fallback vocabulary lacks {len(missing)} byte tokens, e.g. {missing[:3]}")
    added = set(tokenizer.added_tokens_decoder)
    for idx, text in enumerate(tokens):
        if idx not in added and _BYTE_TOKEN.fullmatch(text):
            types[idx] = gguf.TokenType.BYTE
    if tokenizer.unk_token_id is not None:  # SentencePiece's unknown piece, as llama.cpp's converter types it
        types[tokenizer.unk_token_id] = gguf.TokenType.UNKNOWN
    space_prefix = spm_space_prefix(data)
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    scores, unreachable = spm_scores(tokens, merges, [t == gguf.TokenType.NORMAL for t in types])
    if unreachable:
        raise ExportError(
            f"{len(unreachable)} pieces (e.g. {unreachable[:3]}) are two vocabulary pieces joined but no merge "
            "builds them: llama.cpp's SPM tokenizer would produce them where transformers does not"
        )
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(space_prefix)
    ids = _special_ids(writer, tokenizer, vocab, template)
    # llama.cpp puts BOS / EOS around a text only where the HF tokenizer's own post-processor does
    # (the runners ask for neither; a caller asking for special tokens gets what transformers gives).
    add_bos, add_eos = _adds(tokenizer)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    writer.add_chat_template(gguf_chat_template(template))
    return {
        "model": "llama",
        "add_space_prefix": space_prefix,
        "add_bos": add_bos,
        "n_vocab": n_vocab,
        "n_tokens": len(vocab),
        **{f"{k}_id": v for k, v in ids.items()},
    }


_RSTRIP_NAMES = re.compile(r"phi-?3", re.IGNORECASE)


def gguf_model_name(name: str, tokenizer: Any) -> str:
    """``general.name`` for the LLM file, kept from triggering a tokenizer rule it does not match.

    llama.cpp keys one tokenizer behaviour on the model *name*: when ``general.name`` contains "phi3"
    or "phi-3" it strips the whitespace after every special token (real Phi-3's added tokens carry
    ``rstrip``). A release whose special tokens do not strip (the offline phi3 analogs) would then
    tokenize "<|user|>\\n..." without the newline; its name is written with "phi_3" instead.
    """
    if not _RSTRIP_NAMES.search(name):
        return name
    exempt = {"<unk>", "<s>", "<|endoftext|>"}  # llama.cpp leaves these unstripped
    specials = [t for t in tokenizer.added_tokens_decoder.values() if t.special and t.content not in exempt]
    if specials and all(t.rstrip for t in specials):
        return name
    return _RSTRIP_NAMES.sub("phi_3", name)


# ---------------------------------------------------------------------------------------------
# Hyper-parameters and weights


def _rope(text_config: Any) -> tuple[float, float]:
    """(rope theta, partial rotary factor); rope scaling other than none is refused, not dropped."""
    params = dict(getattr(text_config, "rope_parameters", None) or {})
    kind = params.get("rope_type", "default")
    if kind != "default":
        raise ExportError(f"rope scaling {kind!r} is not exported (llama.cpp would run plain rope)")
    theta = params.get("rope_theta", getattr(text_config, "rope_theta", None))
    if theta is None:
        raise ExportError("the text config has no rope_theta")
    factor = params.get("partial_rotary_factor", getattr(text_config, "partial_rotary_factor", None))
    return float(theta), float(1.0 if factor is None else factor)


def add_hparams(writer: gguf.GGUFWriter, arch: LlmArch, text_config: Any) -> dict[str, Any]:
    c = text_config
    if c.model_type != arch.model_type:
        raise ExportError(f"text config is {c.model_type!r}; the {arch.name} export expects {arch.model_type!r}")
    if c.hidden_act not in arch.activations:
        raise ExportError(f"hidden_act {c.hidden_act!r}: llama.cpp's {arch.name} computes {arch.activations}")
    if getattr(c, "qk_layernorm", False):
        raise ExportError("qk_layernorm is not exported")
    n_head = c.num_attention_heads
    n_kv = getattr(c, "num_key_value_heads", None) or n_head
    head_dim = c.hidden_size // n_head
    if getattr(c, "head_dim", None) not in (None, head_dim):
        raise ExportError(f"head_dim {c.head_dim} != hidden_size / heads = {head_dim} is not exported")
    theta, factor = _rope(c)
    n_rot = int(head_dim * factor)
    if arch.arch == gguf.MODEL_ARCH.LLAMA and n_rot != head_dim:
        raise ExportError("llama: the rope dimension must equal head_dim (partial_rotary_factor 1)")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(theta)
    writer.add_rope_dimension_count(n_rot)  # Phi-2: partial_rotary_factor x head_dim
    if arch.rms_norm:
        writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    else:
        writer.add_layer_norm_eps(c.layer_norm_eps)
    window = getattr(c, "sliding_window", None)
    if arch.arch == gguf.MODEL_ARCH.PHI3 and window:
        writer.add_sliding_window(window)
    return {
        "n_embd": c.hidden_size,
        "n_layer": c.num_hidden_layers,
        "n_head": n_head,
        "n_head_kv": n_kv,
        "n_rot": n_rot,
        "rope_theta": theta,
    }


def _permute_qk(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF's rotate-half layout -> the interleaved pairs llama.cpp's llama rope expects, per head."""
    shape = weight.shape
    return weight.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).transpose(1, 2).reshape(shape)


def add_weights(
    writer: gguf.GGUFWriter, arch: LlmArch, state: Mapping[str, torch.Tensor], plan: TensorPlan, text_config: Any
) -> int:
    n_head = text_config.num_attention_heads
    n_kv = getattr(text_config, "num_key_value_heads", None) or n_head
    names = set()
    for hf, target in plan.llm.items():
        tensor = state[hf]
        if arch.permute_qk and target.split(".")[-2] in ("attn_q", "attn_k"):
            tensor = _permute_qk(tensor, n_head if ".attn_q." in target else n_kv)
        writer.add_tensor(target, export_array(target, tensor))
        names.add(target)
    if arch.explicit_output:
        # llama.cpp's phi2 requires output.weight and output.bias. A release from Phi-2 keeps its head
        # bias (LlavaWithHeadBias: lm_head.bias -> output.bias above); a head without one (the offline
        # analogs, trained with it at zero) gets a zero bias, which keeps the logits exact; a tied head
        # is written out in full.
        embedding = state[next(hf for hf, t in plan.llm.items() if t == "token_embd.weight")]
        if "output.weight" not in names:
            writer.add_tensor("output.weight", export_array("output.weight", embedding))
            names.add("output.weight")
        if "output.bias" not in names:
            writer.add_tensor("output.bias", np.zeros(embedding.shape[0], dtype=np.float32))
            names.add("output.bias")
    return len(names)
