"""Latency harness (paper Table 4 protocol) on a tiny exported release, llama.cpp and PyTorch.

What is timed is exactly the protocol (image tokens + 41 text positions of prompt, 64 single-token
generation steps, llama.cpp's own perf counters agreeing), the summary is consistent (medians within
[min, max], equation (1) from the stage times), and bad settings fail with errors that say what is
wrong: config keys, unknown runner kinds, options and model formats.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sections import raw, section_with
from test_gguf_export import make_release

from impkit.config import ConfigError, DeviceProfile, LatencyConfig, from_dict
from impkit.export import export_and_quantize
from impkit.latency import (
    RUNNERS,
    GGUFPair,
    Protocol,
    RunTiming,
    TorchRelease,
    check_devices,
    cpu_info,
    prompt_ids,
    runner_class,
    runner_for,
    summarize,
    table_row,
)
from impkit.latency.protocol import PROMPT_SENTENCE
from impkit.latency.report import measure_release
from impkit.release import gguf_levels, mmproj_file

pytest.importorskip("llama_cpp")

THREADS = 2
STATS = ("t_ve_s", "s_prompt_tps", "s_gen_tps", "t_total_s", "wall_s", "t_other_s")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A random phi2-family release (16 image tokens) and its F16 + Q4_K_M GGUF export."""
    root = tmp_path_factory.mktemp("latency")
    release = make_release(root / "releases", "phi2", width=256)  # K-quants need rows of 256
    export_and_quantize(release, root / "gguf", levels=("F16", "Q4_K_M"), threads=THREADS)
    meta = json.loads((release / "impkit.json").read_text())
    return release, root / "gguf", meta


@pytest.fixture(scope="module")
def measured(tiny_export):
    """The protocol (41 + image, 64 generated; 2 runs after 1 warm-up) on both local runners."""
    release, gguf_dir, _ = tiny_export
    protocol = Protocol(runs=2, warmup=1)
    llama = runner_for(DeviceProfile("cpu", "llamacpp", threads=THREADS))
    torch_runner = runner_for(DeviceProfile("cpu-torch", "torch", threads=THREADS))
    pair = GGUFPair("tiny", gguf_dir / "llm-Q4_K_M.gguf", gguf_dir / "mmproj-F16.gguf", "Q4_K_M")
    return {
        "llamacpp": llama.measure(pair, protocol),
        "torch": torch_runner.measure(TorchRelease("tiny", release), protocol),
    }


@pytest.mark.parametrize("kind", ["llamacpp", "torch"])
def test_exactly_41_text_plus_image_positions_and_64_generated_tokens_are_timed(measured, tiny_export, kind):
    _, _, meta = tiny_export
    summary = measured[kind]["summary"]
    assert (summary["n_image"], summary["n_text"], summary["n_gen"]) == (meta["image_tokens"], 41, 64)
    assert summary["n_prompt"] == meta["image_tokens"] + 41
    for run in summary["per_run"] + summary["warmup_runs"]:
        assert (run["n_image"], run["n_text"], run["n_gen"]) == (16, 41, 64)
        if kind == "llamacpp":
            # llama.cpp's own counters: the prompt decodes (image embeddings + text) and exactly 64
            # single-token decodes, none of the vision encoder's time counted as prompt time
            perf = run["llama_perf"]
            assert (perf["n_p_eval"], perf["n_eval"]) == (16 + 41, 64)
            assert perf["t_p_eval_ms"] / 1e3 <= run["t_prompt_s"] * 1.05 + 1e-3
            assert run["image_decode_s"] + run["text_decode_s"] == pytest.approx(run["t_prompt_s"])


def test_both_backends_read_the_same_prompt_ids(tiny_export):
    from transformers import AutoTokenizer

    from impkit.llamacpp import GGUFSession

    release, gguf_dir, _ = tiny_export
    hf = AutoTokenizer.from_pretrained(release)
    ours = prompt_ids(lambda text: hf(text, add_special_tokens=False)["input_ids"], 41)
    with GGUFSession(gguf_dir / "llm-F16.gguf", n_threads=THREADS, n_ctx=256) as session:
        assert prompt_ids(session.tokenize, 41) == ours
    sentence = hf(PROMPT_SENTENCE, add_special_tokens=False)["input_ids"]
    assert len(ours) == 41 and ours[: min(41, len(sentence))] == sentence[:41]  # repeated only when too short
    assert prompt_ids(lambda _: [7, 8, 9], 5) == [7, 8, 9, 7, 8]


@pytest.mark.parametrize("kind", ["llamacpp", "torch"])
def test_report_has_the_fields_and_medians_lie_within_min_max(measured, kind):
    result = measured[kind]
    assert set(result) >= {"device", "model", "protocol", "environment", "load_s", "summary"}
    assert result["device"] == {
        "name": "cpu" if kind == "llamacpp" else "cpu-torch",
        "runner": kind,
        "threads": THREADS,
        "options": {},
    }
    assert result["protocol"]["prompt_tokens"] == 41 and result["protocol"]["gen_tokens"] == 64
    summary = result["summary"]
    assert summary["runs"] == len(summary["per_run"]) == 2 and summary["warmup"] == len(summary["warmup_runs"]) == 1
    for key in STATS:
        stat = summary[key]
        assert stat["min"] <= stat["median"] <= stat["max"], key
    for key in STATS[:5]:
        assert summary[key]["min"] > 0, key
    cpu = result["environment"]["cpu"]
    assert cpu["model"] and cpu["logical_cpus"] >= 1 and isinstance(cpu["flags"], list)
    software = result["environment"]["software"]
    assert ("llama_cpp_python" in software) == (kind == "llamacpp") and ("torch" in software) == (kind == "torch")
    if kind == "llamacpp":
        assert result["model"]["bytes"]["total"] == result["model"]["bytes"]["llm"] + result["model"]["bytes"]["mmproj"]


@pytest.mark.parametrize("kind", ["llamacpp", "torch"])
def test_equation_1_total_is_consistent_with_the_stage_times(measured, kind):
    summary = measured[kind]["summary"]
    for run in summary["per_run"]:
        eq1 = run["t_ve_s"] + run["n_prompt"] / run["s_prompt_tps"] + run["n_gen"] / run["s_gen_tps"]
        assert run["t_total_s"] == pytest.approx(eq1)
        assert run["t_total_s"] == pytest.approx(run["t_ve_s"] + run["t_prompt_s"] + run["t_gen_s"])
        assert run["s_prompt_tps"] == pytest.approx((16 + 41) / run["t_prompt_s"])  # image tokens count, T_VE not
        assert run["wall_s"] >= run["t_total_s"]  # T_other >= 0: the stages are inside the wall time
        assert run["t_other_s"] == pytest.approx(run["wall_s"] - run["t_total_s"])
    medians = (
        summary["t_ve_s"]["median"]
        + summary["n_prompt"] / summary["s_prompt_tps"]["median"]
        + summary["n_gen"] / summary["s_gen_tps"]["median"]
    )
    assert summary["t_total_eq1_s"] == pytest.approx(medians, rel=1e-5)
    assert table_row(summary)["t_total_s"] == summary["t_total_eq1_s"]


def test_summary_arithmetic_on_known_timings():
    def run(t_ve: float, t_prompt: float, t_gen: float, wall: float) -> RunTiming:
        return RunTiming(n_image=196, n_text=41, n_gen=64, t_ve=t_ve, t_prompt=t_prompt, t_gen=t_gen, wall=wall)

    runs = [run(2.0, 2.37, 6.4, 11.0), run(1.0, 4.74, 3.2, 9.0), run(3.0, 1.185, 12.8, 17.5)]
    summary = summarize(runs, [run(9.0, 9.0, 9.0, 30.0)])
    assert summary["n_prompt"] == 237 and summary["runs"] == 3 and summary["warmup"] == 1
    assert summary["t_ve_s"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert summary["s_prompt_tps"] == {"median": 100.0, "min": 50.0, "max": 200.0}
    assert summary["s_gen_tps"] == {"median": 10.0, "min": 5.0, "max": 20.0}
    assert summary["t_total_eq1_s"] == pytest.approx(2.0 + 237 / 100 + 64 / 10)
    assert summary["t_total_s"]["median"] == pytest.approx(10.77)  # per-run totals 10.77, 8.94, 16.985
    with pytest.raises(ValueError, match="different numbers of positions"):
        summarize([runs[0], RunTiming(196, 41, 63, 1.0, 1.0, 1.0, 4.0)])


def test_runner_registry_rejects_an_unknown_kind_clearly():
    assert {"llamacpp", "torch"} <= set(RUNNERS)
    with pytest.raises(ConfigError, match=r"unknown latency runner kind 'adb'; known kinds: \['llamacpp', 'torch'\]"):
        runner_for(DeviceProfile("phone", "adb", threads=4))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['serial'\] for runner 'llamacpp'"):
        runner_class("llamacpp")(DeviceProfile("cpu", "llamacpp", options={"serial": "x"}))
    with pytest.raises(ConfigError, match="runner 'torch' runs \\['torch'\\] models, not 'gguf'"):
        runner_for(DeviceProfile("cpu", "torch")).measure(GGUFPair("x", Path("a"), Path("b"), "F16"), Protocol())


DEVICES = [{"name": "cpu", "runner": "llamacpp", "threads": 2}, {"name": "cpu-torch", "runner": "torch"}]


def test_the_shipped_section_and_its_protocol():
    cfg = section_with(LatencyConfig, "latency", devices=DEVICES)
    assert (cfg.prompt_tokens, cfg.gen_tokens, cfg.levels) == (41, 64, None)  # Table 4's lengths
    assert list(cfg.paper.profiles) == ["imp-3b-196"] and cfg.paper.levels == ("Q4_K_M",)
    assert cfg.paper.profile("imp-3b-196").preset == "imp-3b" and cfg.paper.profile("imp-3b-196").image_size == 196
    assert Protocol.of(cfg) == Protocol(prompt_tokens=41, gen_tokens=64, runs=3, warmup=1)
    assert cfg.devices[0] == DeviceProfile("cpu", "llamacpp", 2) and cfg.devices[1].resolved_threads() >= 1
    with pytest.raises(ConfigError, match=r"unknown paper-size profile 'imp-7b'; known: \['imp-3b-196'\]"):
        cfg.paper.profile("imp-7b")


PAPER = raw("latency.paper")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runs": 0}, r"latency.runs must be at least 1, got 0"),
        ({"warmup": -1}, r"latency.warmup must be 0 or more"),
        ({"gen_tokens": 0}, r"latency.prompt_tokens and latency.gen_tokens must be at least 1"),
        ({"runs": 2.5}, r"latency.runs: expected an integer, got 2.5"),
        ({"devices": []}, r"latency.devices lists no device"),
        ({"devices": [DEVICES[0], DEVICES[0]]}, r"device name\(s\) \['cpu'\] used more than once"),
        ({"devices": [{"name": "phone", "runner": "adb"}]}, r"unknown latency runner kind 'adb'; known kinds"),
        ({"devices": [{"name": "cpu", "runner": "llamacpp", "threads": 0}]}, r"'cpu': threads must be at least 1"),
        ({"devices": [{"name": "t", "runner": "torch", "options": {"dtype": "fp8"}}]}, r"dtype must be fp32 or bf16"),
        ({"devices": [{"name": "cpu", "runner": "llamacpp", "cores": 2}]}, r"unknown key\(s\) \['cores'\]"),
        ({"levels": ["Q3_X"]}, r"latency.levels: unknown level\(s\) \['Q3_X'\]"),
        (
            {"paper": {**PAPER, "profiles": {"imp-3b-196": {"preset": "imp-3b", "size": 196}}}},
            r"unknown key\(s\) \['size'\]",
        ),
        (
            {"paper": {**PAPER, "profiles": {"tiny": {"preset": "imp-3b", "image_size": 0}}}},
            r"latency.paper.profiles.tiny.image_size: must be >= 1",
        ),
        ({"paper": {**PAPER, "levels": ["q4_k_m"]}}, r"latency.paper.levels: need at least one of"),
        ({"repeats": 3}, r"latency: unknown key\(s\) \['repeats'\]"),
    ],
)
def test_config_errors_name_what_is_wrong(change, message):
    section = {**raw("latency"), "devices": DEVICES, **change}
    with pytest.raises(ConfigError, match=message):
        check_devices(from_dict(LatencyConfig, section, "latency").devices)  # runners check their kinds and options
    without_runs = {key: value for key, value in raw("latency").items() if key != "runs"}
    with pytest.raises(ConfigError, match=r"latency: missing key 'runs'"):
        from_dict(LatencyConfig, without_runs, "latency")


def test_release_measurement_covers_every_exported_level_and_pytorch(tiny_export, tmp_path):
    release, gguf_dir, _ = tiny_export
    assert list(gguf_levels(gguf_dir)) == ["F16", "Q4_K_M"] and mmproj_file(gguf_dir).name == "mmproj-F16.gguf"
    cfg = section_with(LatencyConfig, "latency", devices=DEVICES, runs=1, warmup=0, gen_tokens=4)
    report = measure_release("tiny", cfg, gguf_dir=gguf_dir, release_dir=release)
    assert list(report["metrics"]) == ["cpu/F16", "cpu/Q4_K_M", "cpu-torch/torch"]
    assert report["host"]["cpu"]["model"] and "llama_cpp_python" in report["host"]["software"]
    assert all(r["summary"]["n_gen"] == 4 for r in report["results"])
    json.dumps(report)  # the stage writes it as JSON
    picked = section_with(LatencyConfig, "latency", devices=DEVICES[:1], runs=1, warmup=0, levels=["Q8_0"])
    with pytest.raises(FileNotFoundError, match=r"asks for \['Q8_0'\]"):
        measure_release("tiny", picked, gguf_dir=gguf_dir, release_dir=None)
    with pytest.raises(FileNotFoundError, match="run the export stage first"):
        measure_release("tiny", cfg, gguf_dir=tmp_path, release_dir=None)


def test_cpu_info_keeps_the_ggml_relevant_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(
        "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx avx2 fma f16c avx512f "
        "avx512_bf16 amx_tile avx_vnni aes\nprocessor\t: 1\nflags\t\t: fpu\n"
    )
    info = cpu_info(path)
    assert info["model"] == "Test CPU 9000"
    assert info["flags"] == ["amx_tile", "avx", "avx2", "avx512_bf16", "avx512f", "avx_vnni", "f16c", "fma"]
