"""Paper-size GGUF pairs: the real Imp shapes (checked against the architectures' own arithmetic),
random weights, written by the release exporter's code; a reduced-depth pair loads in llama.cpp and
runs the latency protocol with the real widths, vocabulary and 196 visual tokens."""

from __future__ import annotations

import os

import gguf
import numpy as np
import pytest
from sections import raw

from impkit.config import ConfigError, PaperProfile, PaperSizeSettings, from_dict
from impkit.export import ExportError
from impkit.export import paper_size as ps
from impkit.export.paper_size import existing_paper_size, paper_preset, plan_paper_size, size_report, write_paper_size

PRESETS = raw("model.presets")
SHIPPED = from_dict(PaperSizeSettings, raw("latency.paper"), "latency.paper").profiles  # imp-3b-196
# The rest of Table 4's models, as params.yaml's comment lists them
PROFILES = {
    **{name: PaperProfile(preset=name) for name in ("imp-2b", "imp-4b")},
    **{f"{name}-196": PaperProfile(preset=name, image_size=196) for name in ("imp-2b", "imp-4b")},
    "imp-3b": PaperProfile(preset="imp-3b", paper="Imp-3B@384"),
    **SHIPPED,
}
IMP_3B_196 = PROFILES["imp-3b-196"]


def phi2_params(width: int, ffn: int, layers: int, vocab: int) -> int:
    """Phi-2 by its architecture: q/k/v/dense and fc1/fc2 with biases, one LayerNorm per block,
    a final LayerNorm, untied embeddings and LM head (with bias, as Phi-2's)."""
    block = 4 * (width * width + width) + (width * ffn + ffn) + (ffn * width + width) + 2 * width
    return vocab * width + layers * block + 2 * width + vocab * width + vocab


def siglip_params(width: int, ffn: int, layers: int, patch: int, tokens: int, llm_width: int) -> int:
    """SigLIP tower up to the feature layer (no post-LN, no head) + the 2-layer MLP projector."""
    block = 4 * (width * width + width) + (width * ffn + ffn) + (ffn * width + width) + 4 * width
    embed = width * 3 * patch * patch + width + tokens * width
    return embed + layers * block + (width * llm_width + llm_width) + (llm_width * llm_width + llm_width)


def test_imp_3b_196_plan_has_the_real_architecture():
    plan = plan_paper_size("imp-3b-196", IMP_3B_196, PRESETS)
    llm, vision = plan.gguf_shapes("llm"), plan.gguf_shapes("mmproj")
    # Phi-2: 32 blocks of 14 tensors + token_embd, output_norm (w, b), output (w, b)
    assert len(llm) == 32 * 14 + 5
    assert llm["token_embd.weight"] == llm["output.weight"] == (51200, 2560) and llm["output.bias"] == (51200,)
    assert llm["blk.31.attn_q.weight"] == (2560, 2560) and llm["blk.0.attn_q.bias"] == (2560,)
    assert llm["blk.0.ffn_up.weight"] == (10240, 2560) and llm["blk.0.ffn_down.weight"] == (2560, 10240)
    assert "blk.32.attn_q.weight" not in llm
    assert plan.n_params("llm") == phi2_params(2560, 10240, 32, 51200) == 2_779_683_840  # Phi-2's published count
    # SigLIP-SO400M/14 at 196 px: 14 x 14 = 196 patches; the penultimate layer's features -> 26 of 27 layers
    assert len(vision) == 26 * 16 + 3 + 4
    assert vision["v.position_embd.weight"] == (196, 1152) and vision["v.patch_embd.weight"] == (1152, 3, 14, 14)
    assert vision["v.blk.25.ffn_up.weight"] == (4304, 1152) and "v.blk.26.attn_q.weight" not in vision
    assert vision["mm.0.weight"] == (2560, 1152) and vision["mm.2.weight"] == (2560, 2560)
    assert plan.n_params("mmproj") == siglip_params(1152, 4304, 26, 14, 196, 2560)
    assert "model.vision_tower.post_layernorm.weight" in plan.plan.skipped
    # F16 bytes: matrices 2 bytes, vectors and position embeddings 4 -> about Table 4's 6.0 GB
    assert 5.8 < (plan.f16_bytes("llm") + plan.f16_bytes("mmproj")) / 2**30 < 6.1


@pytest.mark.parametrize(
    ("profile", "arch", "width", "vocab", "tokens"),
    [
        ("imp-2b", "qwen2", 2048, 151936, 729),
        ("imp-2b-196", "qwen2", 2048, 151936, 196),
        ("imp-3b", "phi2", 2560, 51200, 729),
        ("imp-4b", "phi3", 3072, 32064, 729),
        ("imp-4b-196", "phi3", 3072, 32064, 196),
    ],
)
def test_every_profile_has_its_vocabulary_width_and_visual_tokens(profile, arch, width, vocab, tokens):
    plan = plan_paper_size(profile, PROFILES[profile], PRESETS, llm_layers=1, vision_layers=2)
    assert plan.arch.name == arch
    assert plan.gguf_shapes("llm")["token_embd.weight"] == (vocab, width)
    assert plan.gguf_shapes("mmproj")["v.position_embd.weight"] == (tokens, 1152)


def test_a_profile_is_its_preset_at_its_image_size_and_an_unknown_preset_fails():
    low, base = (
        paper_preset("imp-2b-196", PROFILES["imp-2b-196"], PRESETS),
        paper_preset("imp-2b", PROFILES["imp-2b"], PRESETS),
    )
    assert low.vision.arch["image_size"] == 196 and base.vision.arch["image_size"] == 384
    assert low.llm == base.llm and {**low.vision.arch, "image_size": 384} == dict(base.vision.arch)
    # the shipped profile (imp-3b at 196 px) is exactly params.yaml's own imp-3b-196 preset
    shipped = paper_preset("imp-3b-196", IMP_3B_196, PRESETS)
    assert shipped == from_dict(type(shipped), PRESETS["imp-3b-196"]) and shipped.vision.arch["image_size"] == 196
    with pytest.raises(ConfigError, match=r"latency.paper.profiles.imp-4b-196: no preset 'imp-4b' in model.presets"):
        paper_preset("imp-4b-196", PROFILES["imp-4b-196"], {k: v for k, v in PRESETS.items() if k != "imp-4b"})


def test_size_report_compares_with_table_4():
    report = size_report({"Q4_K_M": {"llm": 2 * 2**30, "mmproj": 2**29, "total": 5 * 2**29}}, IMP_3B_196.table4_gb)
    row = report["Q4_K_M"]
    assert row["gib"] == {"llm": 2.0, "mmproj": 0.5, "total": 2.5} and row["table4_gb"] == 2.3
    assert row["total_gib_over_table4"] == round(2.5 / 2.3, 3)
    no_sizes = PROFILES["imp-4b"].table4_gb
    assert "table4_gb" not in size_report({"F16": {"llm": 1, "mmproj": 1, "total": 2}}, no_sizes)["F16"]


def test_not_enough_disk_is_an_error_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(ps.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 5 * 2**30})())
    # the vision file and its scratch weights (2 x 0.76 GiB) + the LLM at most at F16's 5.2 GiB
    with pytest.raises(ExportError, match=r"imp-3b-196: writing needs about 6\.\d GiB .* only 5\.0 GiB free"):
        write_paper_size("imp-3b-196", IMP_3B_196, tmp_path, presets=PRESETS, levels=("Q4_K_M",))
    assert os.listdir(tmp_path) == []


def test_reduced_depth_pair_loads_in_llama_cpp_and_runs_the_protocol(tmp_path):
    pytest.importorskip("llama_cpp")
    from impkit.config import DeviceProfile
    from impkit.latency import GGUFPair, Protocol, runner_for

    record = write_paper_size(
        "imp-3b-196", IMP_3B_196, tmp_path, presets=PRESETS, levels=("F16",), llm_layers=1, vision_layers=2, threads=2
    )
    assert sorted(os.listdir(tmp_path)) == ["llm-F16.gguf", "mmproj-F16.gguf", "paper-size.json"]  # no scratch left
    assert record["image_tokens"] == 196 and record["vision_layers"] == 1 and record["arch"] == "phi2"
    sizes = record["sizes"]["F16"]["bytes"]
    assert (
        sizes["llm"] == os.path.getsize(tmp_path / "llm-F16.gguf") and sizes["total"] == sizes["llm"] + sizes["mmproj"]
    )
    reader = gguf.GGUFReader(str(tmp_path / "llm-F16.gguf"))
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}  # GGML order -> torch
    assert shapes["token_embd.weight"] == (51200, 2560) and len(shapes) == 14 + 5
    assert reader.fields["phi2.rope.dimension_count"].contents() == 32  # 0.4 x 80 (Phi-2's partial rotary)
    weights = np.asarray(reader.get_tensor(1).data, dtype=np.float32)
    assert 0.01 < weights.std() < 0.03 and np.isfinite(weights).all()  # random, small, no NaN

    runner = runner_for(DeviceProfile("cpu", "llamacpp", threads=2))
    pair = GGUFPair("imp-3b-196", tmp_path / "llm-F16.gguf", tmp_path / "mmproj-F16.gguf", "F16")
    with runner.load(pair) as model:
        timing = model.run_once(Protocol(gen_tokens=4, runs=1, warmup=0))
        assert np.isfinite(model.session.last_logits()).all()
    assert (timing.n_image, timing.n_text, timing.n_gen) == (196, 41, 4)
    assert timing.t_ve > 0 and timing.s_prompt > 0 and timing.s_gen > 0

    # reused only when shapes, seed and every requested level match what is on disk
    kwargs = {"presets": PRESETS, "llm_layers": 1, "vision_layers": 2}
    assert existing_paper_size("imp-3b-196", IMP_3B_196, tmp_path, levels=("F16",), **kwargs) == record
    assert existing_paper_size("imp-3b-196", IMP_3B_196, tmp_path, levels=("Q4_K_M",), **kwargs) is None
    assert existing_paper_size("imp-3b-196", IMP_3B_196, tmp_path, levels=("F16",), seed=1, **kwargs) is None
    assert (
        existing_paper_size("imp-3b-196", IMP_3B_196, tmp_path, levels=("F16",), presets=PRESETS) is None
    )  # full depth


def _tensors(reader: gguf.GGUFReader) -> dict[str, tuple[str, tuple[int, ...], np.ndarray]]:
    return {t.name: (t.tensor_type.name, tuple(int(d) for d in t.shape), t.data) for t in reader.tensors}


@pytest.mark.parametrize("preset", ["nano-3b", "nano-4b"])  # phi2 (Imp-3B), phi3 (fused qkv and gate-up)
def test_repeated_rows_are_what_llama_cpp_makes_of_the_full_file(tmp_path, preset):
    """The LLM is quantized as a row-thin copy whose rows are then repeated: every tensor must have
    the type, shape and bytes llama.cpp writes when it quantizes the full F16 file, and the metadata
    must be the quantizer's. (The nano shapes with a 2048-token vocabulary keep this fast: 256-wide
    rows take the K-quants, and 4 layers give llama.cpp's per-layer type mix.)"""
    pytest.importorskip("llama_cpp")
    from impkit.export.quantize import quantize

    small = {**PRESETS[preset], "llm": {"arch": {**PRESETS[preset]["llm"]["arch"], "vocab_size": 2048}}}
    record = write_paper_size(
        preset, PaperProfile(preset=preset), tmp_path, presets={preset: small}, levels=("F16", "Q4_K_M"), threads=2
    )
    assert record["llm_distinct_rows"] == ps.DISTINCT_ROWS
    written, reference = tmp_path / "llm-Q4_K_M.gguf", tmp_path / "reference" / "llm-Q4_K_M.gguf"
    quantize(tmp_path / "llm-F16.gguf", reference, "Q4_K_M", threads=2)
    readers = [gguf.GGUFReader(str(path)) for path in (written, reference)]  # seconds each: the vocabulary
    ours, theirs = _tensors(readers[0]), _tensors(readers[1])
    assert ours.keys() == theirs.keys()
    for name, (kind, shape, data) in ours.items():
        assert (kind, shape) == theirs[name][:2], name
        assert np.array_equal(data, theirs[name][2]), name  # quantizing repeated rows repeats blocks
    kinds = {kind for kind, _, _ in ours.values()}
    assert {"Q4_K", "F32"} <= kinds and kinds & {"Q6_K", "Q5_K"}  # a real K-quant mix, not one type
    assert os.path.getsize(written) == os.path.getsize(reference) == record["sizes"]["Q4_K_M"]["bytes"]["llm"]
    fields = [{k: f.contents() for k, f in reader.fields.items()} for reader in readers]
    assert fields[0] == fields[1]
    # the rows do repeat: the embedding's row DISTINCT_ROWS is row 0 again, its row 1 is not
    embedding = ours["token_embd.weight"][2]
    assert np.array_equal(embedding[ps.DISTINCT_ROWS], embedding[0]) and not np.array_equal(embedding[1], embedding[0])
