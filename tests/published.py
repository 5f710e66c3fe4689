"""Tiny checkpoints in the published formats, built with ``save_pretrained`` (random weights, the real
configs scaled down): SigLIP (``SiglipModel``, text and vision towers, as google/siglip-so400m-patch14-384
ships), Phi-2 with its biased head, Qwen1.5 (``Qwen2ForCausalLM``), Phi-3-mini, each with a tokenizer
carrying the family's own special tokens (Phi-2's and Qwen's byte-level BPE; Phi-3-mini's SentencePiece
vocabulary in transformers' BPE form, laid out as the real one); and presets of the real kind
(``offline: false``) that point at them. The Imp checkpoint layouts are in ``imp_layouts.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from conftest import CORPUS
from sections import section_with
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    Phi3Config,
    Phi3ForCausalLM,
    PhiConfig,
    PhiForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipConfig,
    SiglipModel,
)

from impkit.config import StageTraining, TrainRecipe
from impkit.config.train import LoraTraining

# The special tokens each real tokenizer ships (before Imp adds its own): Phi-2's GPT-2 vocabulary ends
# in <|endoftext|> (its base has 50295 entries), Qwen1.5's three ChatML specials end at 151645, Phi-3's
# Llama vocabulary has <unk> <s> </s> at 0-2 and its chat markers up to 32010.
FAMILY_SPECIALS: dict[str, dict[str, Any]] = {
    "phi2": {
        "base": ["<|endoftext|>"],
        "added": [],
        "roles": dict(bos="<|endoftext|>", eos="<|endoftext|>", unk="<|endoftext|>"),
    },
    "qwen2": {
        "base": [],
        "added": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "roles": dict(eos="<|endoftext|>", pad="<|endoftext|>"),
    },
    "phi3": {
        "base": ["<unk>", "<s>", "</s>"],
        "added": ["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"],
        "roles": dict(bos="<s>", eos="<|endoftext|>", unk="<unk>", pad="<|endoftext|>"),
    },
}
SPARE_ROWS = 11  # embedding rows beyond the tokenizer (Phi-2: 51200 rows for 50295 tokens)

VISION_ARCH = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
    layer_norm_eps=1e-6,
    hidden_act="gelu_pytorch_tanh",
)
LLM_ARCH: dict[str, dict[str, Any]] = {
    "phi2": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=256,
        partial_rotary_factor=0.5,
        layer_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="gelu_new",
    ),
    "qwen2": dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    ),
    "phi3": dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=False,
    ),
}
CONFIGS = {
    "phi2": (PhiConfig, PhiForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "phi3": (Phi3Config, Phi3ForCausalLM),
}


SPACE = "\u2581"  # SentencePiece's "▁"
SPM_TEXTS = [*CORPUS, "USER ASSISTANT system user assistant", "count 123 lamps and 45 squares"]


def spm_tokenizer(base: list[str], texts: list[str] = SPM_TEXTS, n_merges: int = 120) -> Tokenizer:
    """A SentencePiece BPE vocabulary in transformers' fast form, as Phi-3-mini's tokenizer.json holds
    Llama's: ``base`` (<unk> <s> </s>) at ids 0-2, the 256 byte tokens <0x00>..<0xFF> at 3-258, then the
    merged pieces in merge order, then the single characters (SentencePiece sorts them last); merges
    listing every split of every piece into two pieces, in piece order (transformers'
    SentencePieceExtractor); byte fallback; the normalizer Prepend("▁") + Replace(" ", "▁") and the
    decoder that undoes it. The pieces are learnt from ``texts`` split at spaces, as SentencePiece would."""
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=10_000, limit_alphabet=100, show_progress=False)
    learner.train_from_iterator(texts * 10, trainer=trainer)
    learnt = json.loads(learner.to_str())["model"]
    merged = list(dict.fromkeys("".join(m if isinstance(m, list) else m.split(" ")) for m in learnt["merges"]))
    chars = sorted(t for t in learnt["vocab"] if len(t) == 1)
    vocab = {t: i for i, t in enumerate([*base, *(f"<0x{b:02X}>" for b in range(256))])}
    for piece in [*merged[:n_merges], *chars]:
        vocab.setdefault(piece, len(vocab))
    merges = [
        (piece[:k], piece[k:])
        for piece in sorted(vocab, key=vocab.get)
        if vocab[piece] >= len(base) + 256
        for k in sorted(range(1, len(piece)), key=lambda k: (vocab.get(piece[:k], -1), vocab.get(piece[k:], -1)))
        if piece[:k] in vocab and piece[k:] in vocab
    ]
    spm = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=base[0], byte_fallback=True, fuse_unk=True))
    spm.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    spm.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    spm.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in base])
    return spm


def save_tokenizer(tok: PreTrainedTokenizerFast, folder: Path, family: str) -> None:
    """As the hub repository holds it: Phi-3-mini's tokenizer_config.json names the Llama tokenizer class
    with ``legacy: false`` and no BOS added (transformers then rebuilds the space handling as Metaspace
    with prepend_scheme "first")."""
    tok.save_pretrained(folder)
    if family == "phi3":
        path = folder / "tokenizer_config.json"
        config = json.loads(path.read_text())
        config |= {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": False, "add_eos_token": False}
        path.write_text(json.dumps(config, indent=2))


def family_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """The real tokenizer's kind with its special tokens and roles (its tokenizer.json as transformers'
    fast tokenizer runs it): a byte-level BPE for Phi-2 and Qwen1.5, SentencePiece BPE for Phi-3-mini."""
    spec = FAMILY_SPECIALS[family]
    if family == "phi3":
        tok = PreTrainedTokenizerFast(tokenizer_object=spm_tokenizer(spec["base"]), clean_up_tokenization_spaces=False)
        tok.add_special_tokens({"additional_special_tokens": spec["added"]})
        for role, token in spec["roles"].items():
            setattr(tok, f"{role}_token", token)
        return tok
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=spec["base"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([*CORPUS, "USER ASSISTANT system user assistant"] * 10, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, clean_up_tokenization_spaces=False)
    if spec["added"]:
        tok.add_special_tokens({"additional_special_tokens": spec["added"]})
    for role, token in spec["roles"].items():
        setattr(tok, f"{role}_token", token)
    return tok


def save_llm(family: str, folder: Path, seed: int = 0) -> Path:
    """The family's causal LM and tokenizer, as its hub repository holds them. Phi-2's head gets a
    clearly non-zero bias (the real one's spans about +-2)."""
    tok = family_tokenizer(family)
    config_class, model_class = CONFIGS[family]
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    config = config_class(**LLM_ARCH[family], vocab_size=len(tok) + SPARE_ROWS, **ids, initializer_range=0.2)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    bias = getattr(model.lm_head, "bias", None)
    if bias is not None:
        with torch.no_grad():
            bias.copy_(torch.randn(bias.shape) * 2)
    model.save_pretrained(folder)
    save_tokenizer(tok, folder, family)
    return folder


def save_siglip(folder: Path, seed: int = 0, **vision) -> Path:
    """A SigLIP checkpoint (text and vision towers), as google/siglip-so400m-patch14-384 is published."""
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=64
        ),
        vision_config={**VISION_ARCH, **vision},
    )
    config.vision_config.initializer_range = 0.2
    SiglipModel(config).save_pretrained(folder)
    return folder


def real_preset(family: str, vision: Path, llm: Path) -> dict[str, Any]:
    """A preset as params.yaml writes the real ones (``offline: false``, pinned revisions), at the tiny
    folders: transformers loads a local folder and ignores the hub revision."""
    return {
        "family": family,
        "template": family,
        "image_aspect": "pad",
        "offline": False,
        "train": "real",
        "vision": {"source": str(vision), "revision": "9fdffc58afc957d1a03a25b10dba0329ab15c2a3", "arch": VISION_ARCH},
        "llm": {"source": str(llm), "revision": "0" * 40, "arch": LLM_ARCH[family]},
    }


def tiny_recipe(**stage) -> TrainRecipe:
    """The real recipe at one step per stage: batch 2, fp32, LoRA r=4."""
    common = dict(global_batch_size=2, per_device_batch_size=2, epochs=1, max_length=256, checkpoint_steps=1)
    common |= dict(gradient_checkpointing=False, precision="fp32", logging_steps=1, warmup_ratio=0.0, **stage)
    return TrainRecipe(
        stage1=section_with(StageTraining, "train.recipes.real.stage1", **common),
        stage2=section_with(StageTraining, "train.recipes.real.stage2", **common),
        lora=LoraTraining(enabled=True, r=4, alpha=4, dropout=0.0),
        deepspeed=None,  # no GPU here (impkit.train.launch uses the recipe's configs on GPUs only)
    )
