"""GGUF export of a SentencePiece vocabulary in BPE form (Phi-3-mini's, so Imp-4B's): llama.cpp's SPM
tokenizer ("llama") gives the transformers tokenizer's ids, with the merge order as scores and
SentencePiece's token types; an imported imp-v1.5-4b exports, passes the parity check and quantizes.

Two space handlings are checked: the published tokenizer.json's Prepend + Replace normalizer (exact on
every text) and the Metaspace "first" that transformers' LlamaTokenizer builds from Phi-3's
``legacy: false`` (exact on every text that starts with a marker or whitespace, as the templates'
prompts do; a bare text starting with a letter lacks the leading "▁" in llama.cpp).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from imp_layouts import _imp_tokenizer, save_imp
from published import LLM_ARCH, save_tokenizer
from test_import import assert_f16_parity
from transformers import AutoModelForCausalLM, AutoTokenizer, Phi3Config

from impkit.export import ExportError, export_and_quantize, export_release
from impkit.export.llm import add_hparams, add_tokenizer, gguf_model_name, llm_arch, spm_space_prefix
from impkit.export.writer import write_gguf
from impkit.importer import import_checkpoint
from impkit.model.tokenizer import IMAGE_TOKEN

llama_cpp = pytest.importorskip("llama_cpp")

SPACE = "\u2581"
# Texts that start with a chat marker or whitespace (every rendered prompt does): exact in both forms
MARKED = [
    "<|user|>\nWhat colour is the shape?<|end|>\n<|assistant|>\n",
    f"<|user|>\n{IMAGE_TOKEN}\nhow many objects<|end|>\n<|assistant|>\nTwo.<|end|>",
    f"<|system|>\nA chat between a curious user.<|end|>\n<|user|>\n {IMAGE_TOKEN} x<|end|>\n",
    "<|user|>count 123 lamps, 45 squares!<|end|>",
    "<|user|>café 中文 🙂 naïve<|end|>",
    " the circle",
    "  two  blue  squares  ",
    "",
    "<s>the word</s>",
]
# Bare texts: plain words, spaces inside and at the end, newlines, digits, bytes
BARE = [
    "the circle",
    "a red circle\n\nhow many",
    "123 lamps, 45!",
    "café 中 🙂",
    "trailing ",
    "\n",
    "\ta red circle",
    "USER ASSISTANT answer the question using a single word or phrase",
]


@contextlib.contextmanager
def vocab(path: Path):
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    try:
        yield llm
    finally:
        llm.close()


def write_vocab(path: Path, tok) -> dict:
    """An LLM file with the tiny Phi-3's hyper-parameters and ``tok``'s vocabulary, without weights."""
    facts = {}

    def fill(writer: gguf.GGUFWriter) -> None:
        writer.add_name(gguf_model_name("tiny-phi3", tok))
        add_hparams(writer, llm_arch("phi3"), Phi3Config(**LLM_ARCH["phi3"], vocab_size=len(tok) + 3))
        facts.update(add_tokenizer(writer, tok, family="phi3", template="phi3", n_vocab=len(tok) + 3))

    write_gguf(path, "phi3", fill)
    return facts


def ids(llm, tok, text: str, special: bool) -> tuple[list[int], list[int]]:
    theirs = tok(text, add_special_tokens=special)["input_ids"]
    ours = llm.tokenize(text.encode(), add_bos=special, special=True)
    return ours, theirs


def test_published_normalizer_tokenizes_every_text_as_transformers(tmp_path):
    tok = _imp_tokenizer("phi3")  # the tokenizer.json as published, run verbatim, with Imp's <image>
    facts = write_vocab(tmp_path / "v.gguf", tok)
    assert facts["model"] == "llama" and facts["add_space_prefix"] is True and facts["add_bos"] is False
    with vocab(tmp_path / "v.gguf") as llm:
        for text in MARKED + BARE:
            for special in (False, True):
                ours, theirs = ids(llm, tok, text, special)
                assert ours == theirs, (text, tok.convert_ids_to_tokens(ours), tok.convert_ids_to_tokens(theirs))


def test_llama_tokenizer_class_tokenizes_prompts_as_transformers(tmp_path):
    """Phi-3's tokenizer_config (LlamaTokenizer, legacy false): transformers puts "▁" only at the very
    start; llama.cpp runs without the prefix, so a bare text differs by exactly that "▁"."""
    save_tokenizer(_imp_tokenizer("phi3"), tmp_path / "tok", "phi3")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert json.loads(tok.backend_tokenizer.to_str())["pre_tokenizer"]["prepend_scheme"] == "first"
    facts = write_vocab(tmp_path / "v.gguf", tok)
    assert facts["add_space_prefix"] is False
    with vocab(tmp_path / "v.gguf") as llm:
        for text in MARKED:
            for special in (False, True):
                ours, theirs = ids(llm, tok, text, special)
                assert ours == theirs, (text, tok.convert_ids_to_tokens(ours), tok.convert_ids_to_tokens(theirs))
        for text in BARE:
            ours = llm.tokenize(text.encode(), add_bos=False, special=True)
            assert ours == tok("<|user|>" + text, add_special_tokens=False)["input_ids"][1:], text
            assert ours != tok(text, add_special_tokens=False)["input_ids"], text  # the documented difference


def test_vocabulary_scores_and_types_follow_sentencepiece(tmp_path):
    tok = _imp_tokenizer("phi3")
    write_vocab(tmp_path / "v.gguf", tok)
    reader = gguf.GGUFReader(tmp_path / "v.gguf")
    fields = reader.fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    scores = fields["tokenizer.ggml.scores"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    assert fields["tokenizer.ggml.model"].contents() == "llama"
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3] == "<0x00>" and tokens[258] == "<0xFF>"
    assert len(tokens) == len(scores) == len(types) == len(tok) + 3
    kinds = gguf.TokenType
    assert types[0] == kinds.UNKNOWN and types[1] == types[2] == kinds.CONTROL
    assert all(t == kinds.BYTE for t in types[3:259])
    added = {t: i for i, t in enumerate(tokens) if t in ("<|user|>", "<|end|>", IMAGE_TOKEN)}
    assert all(types[i] == kinds.CONTROL for i in added.values())
    assert all(types[i] == kinds.UNUSED and tokens[i] == f"[PAD{i}]" for i in range(len(tok), len(tok) + 3))
    # merged pieces come in merge order: scores fall with the id; characters and bytes are never merged
    vocab = tok.get_vocab()
    merged = [i for t, i in sorted(vocab.items(), key=lambda x: x[1]) if i >= 259 and len(t) > 1 and types[i] == 1]
    assert len(merged) > 50
    assert [scores[i] for i in merged] == sorted((scores[i] for i in merged), reverse=True)
    assert scores[merged[0]] == 0.0 and scores[merged[-1]] < 0 and scores[vocab["e"]] == 0.0
    assert fields["tokenizer.ggml.add_space_prefix"].contents() is True
    eot = fields["tokenizer.ggml.eot_token_id"].contents()
    assert tokens[eot] == "<|end|>"


def test_space_handling_forms():
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    legacy = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPACE}, replace]}
    assert spm_space_prefix({"normalizer": legacy, "pre_tokenizer": None}) is True
    assert spm_space_prefix({"normalizer": replace, "pre_tokenizer": None}) is False
    for scheme in ("first", "never"):
        meta = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": scheme, "split": False}
        assert spm_space_prefix({"normalizer": None, "pre_tokenizer": meta}) is False
    meta = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": False}
    with pytest.raises(ExportError, match="unsupported SentencePiece space handling"):
        spm_space_prefix({"normalizer": None, "pre_tokenizer": meta})


def test_a_piece_no_merge_builds_is_refused(tmp_path):
    """llama.cpp joins any two adjacent pieces whose concatenation is in the vocabulary; transformers
    only those a merge lists: a vocabulary where the two disagree cannot be exported faithfully."""
    tok = _imp_tokenizer("phi3")
    data = json.loads(tok.backend_tokenizer.to_str())
    data["model"]["merges"] = [m for m in data["model"]["merges"] if "".join(m) != "▁the"]
    from tokenizers import Tokenizer

    tok._tokenizer = Tokenizer.from_str(json.dumps(data))
    with pytest.raises(ExportError, match=r"no merge builds them.*▁the|▁the.*no merge builds them"):
        write_vocab(tmp_path / "v.gguf", tok)
    assert not (tmp_path / "v.gguf").exists()


@pytest.fixture(scope="module")
def imported_4b(tmp_path_factory):
    """A tiny imp-v1.5-4b folder imported as a release (its tokenizer as transformers loads Phi-3's)."""
    root = tmp_path_factory.mktemp("imp4b")
    save_imp("imp-v1.5-4b", root / "hub" / "imp-v1.5-4b")
    return import_checkpoint(root / "hub" / "imp-v1.5-4b", root / "releases" / "imp-4b").folder


def test_imported_imp_4b_exports_and_passes_the_parity_check(tmp_path, imported_4b, eval_world, eval_twins):

    record = export_release(imported_4b, tmp_path / "gguf")
    assert record["llm"]["tokenizer"]["model"] == "llama"
    assert_f16_parity(imported_4b, tmp_path / "gguf", eval_world, eval_twins)


def test_imported_imp_4b_quantized_levels_load_and_run(tmp_path):
    """An imp-v1.5-4b with rows of 256 (K-quants' block, as Phi-3-mini's 3072 / 8192 are; the init gain of
    test_gguf_export's 256-wide releases) quantizes to
    Q8_0 and Q4_K_M; llama.cpp loads each level, tokenizes the prompt as transformers and runs it."""
    from impkit.data.templates import get_template, render_prompt
    from impkit.release import Release

    save_imp(
        "imp-v1.5-4b", tmp_path / "hub" / "imp-v1.5-4b", hidden_size=256, intermediate_size=512, initializer_range=0.1
    )
    release = import_checkpoint(tmp_path / "hub" / "imp-v1.5-4b", tmp_path / "release").folder
    _, tok = Release.open(release).load()
    record = export_and_quantize(release, tmp_path / "q", levels=("F16", "Q8_0", "Q4_K_M"), threads=1)
    sizes = record["sizes"]
    assert sizes["F16"]["llm"] > sizes["Q8_0"]["llm"] > sizes["Q4_K_M"]["llm"]
    assert "Q8_0" in record["llm"]["Q8_0"]["tensor_types"] and "Q4_K" in record["llm"]["Q4_K_M"]["tensor_types"]
    prompt = render_prompt(get_template("phi3"), "How many objects? 12 lamps, café.", has_image=False)
    expected = tok(prompt, add_special_tokens=False)["input_ids"]
    for level in ("F16", "Q8_0", "Q4_K_M"):
        path = Path(record["llm"][level]["path"])
        llm = llama_cpp.Llama(str(path), logits_all=True, n_ctx=256, n_threads=1, verbose=False)
        try:
            assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == expected
            llm.eval(expected)
            ours = np.array(llm.scores[: len(expected)])
        finally:
            llm.close()
        # the file's own weights, dequantized by transformers' GGUF reader, run in PyTorch: llama.cpp
        # computes the same up to its 8-bit activations in quantized matmuls (test_gguf_export's check)
        own = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
        with torch.no_grad():
            theirs = own(input_ids=torch.tensor([expected])).logits[0].numpy()
        rel = np.abs(ours - theirs).max() / np.abs(theirs).max()
        same = (ours.argmax(-1) == theirs.argmax(-1)).mean()
        assert rel < {"F16": 1e-2, "Q8_0": 5e-2, "Q4_K_M": 0.1}[level] and same > 0.9, (level, rel, same)
