"""The real-weight path, offline: presets of the real kind (``offline: false``) pointing at tiny
checkpoints in the published formats (``published.py``) assemble with Imp's tokens and ids, keep the
LLM's logits exactly (Phi-2's head bias included), train one step of each stage, release, and export
the head bias to GGUF; missing or mismatched weights fail in one line naming the preset and source.
"""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from conftest import qa, rgb_image, write_jsonl
from published import FAMILY_SPECIALS, family_tokenizer, real_preset, save_llm, save_siglip, tiny_recipe
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from impkit.config import PresetConfig, from_dict
from impkit.model.tokenizer import IMAGE_TOKEN
from impkit.release import Release
from impkit.train.pipeline import align, tune
from impkit.train.starting_model import WeightsNotFound, add_imp_tokens, starting_model

FAMILIES = ("phi2", "qwen2", "phi3")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return {"vision": save_siglip(root / "siglip"), **{f: save_llm(f, root / f) for f in FAMILIES}}


def preset_of(published, family: str, **llm) -> PresetConfig:
    spec = real_preset(family, published["vision"], published[family])
    spec["llm"].update(llm)
    return from_dict(PresetConfig, spec)


@pytest.mark.parametrize("family", FAMILIES)
def test_imp_tokens_get_imps_ids_per_family(family):
    """Imp's order: the template's answer end where the vocabulary lacks it, then <image>. On the real
    vocabularies this gives Phi-2 </s> 50295 and <image> 50296, Qwen1.5 <image> 151646, Phi-3-mini
    <image> 32011; here the same positions relative to each tiny vocabulary."""
    tok = family_tokenizer(family)
    base = len(tok)
    add_imp_tokens(tok, family)
    end = {"phi2": "</s>", "qwen2": "<|im_end|>", "phi3": "<|end|>"}[family]
    if family == "phi2":
        assert tok.convert_tokens_to_ids("</s>") == base
        assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == base + 1
    else:
        assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == base
        assert end in FAMILY_SPECIALS[family]["added"]
    for marker in (end, IMAGE_TOKEN):  # one id each, inside text too
        ids = tok(f"a red circle{marker}two", add_special_tokens=False)["input_ids"]
        assert tok.convert_tokens_to_ids(marker) in ids
    assert len(tok) == base + (2 if family == "phi2" else 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_assembled_model_gives_the_llms_own_text_logits(published, family):
    preset = preset_of(published, family)
    model, tok = starting_model(preset, name=f"tiny-{family}")
    llm = AutoModelForCausalLM.from_pretrained(published[family]).eval()
    ids = torch.tensor([tok("a red circle and two blue squares", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        ours, theirs = model.eval()(input_ids=ids).logits, llm(input_ids=ids).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    has_bias = getattr(llm.lm_head, "bias", None) is not None
    assert (getattr(model.lm_head, "bias", None) is not None) == has_bias
    assert model.config.model_type == ("llava_head_bias" if has_bias else "llava")
    assert model.config.image_token_index == tok.convert_tokens_to_ids(IMAGE_TOKEN)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_real_preset_trains_each_stage_releases_and_exports_its_head(published, tmp_path, family):
    from impkit.export import export_release

    preset = preset_of(published, family)
    head = AutoModelForCausalLM.from_pretrained(published[family]).lm_head
    data = tmp_path / "assembled"
    for i in range(2):
        rgb_image(data / "images" / f"{i}.png", (40, 24), colour=(40 * i, 90, 200))
    captions = [{"id": f"p{i}", "image": f"{i}.png", "conversations": qa("", "a red circle")} for i in range(2)]
    write_jsonl(data / "pretrain.jsonl", captions)
    write_jsonl(
        data / "finetune.jsonl", [{"id": f"f{i}", "image": f"{i}.png", "conversations": qa()} for i in range(2)]
    )
    recipe = tiny_recipe()
    name = f"tiny-{family}"
    kw = dict(assembled=data, seed=0)
    align(name, preset, recipe, backbones=None, checkpoints=tmp_path / "ck1", out=tmp_path / "aligned", **kw)
    tune(
        name,
        preset,
        recipe,
        aligned=tmp_path / "aligned",
        checkpoints=tmp_path / "ck2",
        out=tmp_path / "release",
        adapter_out=tmp_path / "adapter",
        **kw,
    )
    release = Release.open(tmp_path / "release")
    assert release.meta["train"]["steps"] == 1 and release.meta["stage"] == "tune"
    # the stock Auto class loads it (impkit registered the biased-head class); Phi-2's bias is intact
    # after LoRA on lm_head was merged
    model = AutoModelForImageTextToText.from_pretrained(release.folder)
    if head.bias is not None:
        assert type(model).__name__ == "LlavaWithHeadBias"
        torch.testing.assert_close(model.lm_head.bias.detach(), head.bias.detach(), rtol=0, atol=1e-6)
    else:
        assert type(model).__name__ == "LlavaForConditionalGeneration"
    tok = release.load()[1]
    end = tok.convert_tokens_to_ids({"phi2": "</s>", "qwen2": "<|im_end|>", "phi3": "<|end|>"}[family])
    assert end in json.loads((release.folder / "generation_config.json").read_text())["eos_token_id"]
    # GGUF: Phi-2's real output.bias, and the template's answer end as end of turn
    export_release(release.folder, tmp_path / "gguf")
    reader = gguf.GGUFReader(tmp_path / "gguf" / "llm-F16.gguf")
    tensors = {t.name: t for t in reader.tensors}
    if head.bias is not None:
        np.testing.assert_allclose(np.asarray(tensors["output.bias"].data), head.bias.detach().numpy(), atol=1e-6)
    eot = reader.fields["tokenizer.ggml.eot_token_id"]
    assert int(eot.parts[eot.data[0]][0]) == end


def test_missing_and_mismatched_weights_are_one_line_naming_preset_and_source(published, tmp_path):
    empty = tmp_path / "phi-2"
    empty.mkdir()
    family_tokenizer("phi2").save_pretrained(empty)  # a tokenizer but no weights
    with pytest.raises(WeightsNotFound, match=rf"preset tiny-imp-3b: .*llm\.source '{empty}'") as info:
        starting_model(preset_of(published, "phi2", source=str(empty)), name="tiny-imp-3b")
    assert "\n" not in str(info.value)
    wider = {**real_preset("phi2", published["vision"], published["phi2"])["llm"]["arch"], "intermediate_size": 256}
    with pytest.raises(
        WeightsNotFound, match=r"preset tiny-imp-3b: the llm weights of .* do not fit: other shapes: "
    ) as info:
        starting_model(preset_of(published, "phi2", arch=wider), name="tiny-imp-3b")
    assert "\n" not in str(info.value) and "fc1.weight" in str(info.value)
