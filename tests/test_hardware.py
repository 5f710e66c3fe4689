"""Precision chosen by the hardware: bf16 where the CPU (or GPU) computes it natively, fp32 on an
AVX2-only CPU, where PyTorch emulates bf16 at a fraction of fp32's speed."""

from __future__ import annotations

import logging

import pytest
from sections import raw

from impkit.config import ConfigError, StageTraining, from_dict
from impkit.hardware import Machine, _cpuinfo, resolve_precision
from impkit.train.trainer import resolve_stage, training_arguments

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}
SAPPHIRE_RAPIDS = AVX512 | {"avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}  # AMX
ZEN4 = AVX512 | {"avx512_bf16"}  # AVX512-BF16, no AMX


def cpu(flags: frozenset[str], name: str = "test CPU", **kwargs) -> Machine:
    return Machine(cpu=name, flags=flags, cores=2, **kwargs)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(SAPPHIRE_RAPIDS, "bf16"), (ZEN4, "bf16"), (AVX512, "fp32"), (AVX2, "fp32")],
    ids=["amx", "avx512-bf16", "avx512-without-bf16", "avx2-only"],
)
def test_auto_picks_bf16_only_where_the_cpu_computes_it(flags, expected, caplog):
    with caplog.at_level(logging.INFO, logger="impkit.hardware"):
        assert resolve_precision("auto", cpu(flags), where="tune nano-3b") == expected
    assert [r.getMessage() for r in caplog.records if f"precision auto -> {expected}" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_library_cap_below_bf16_makes_bf16_emulated():
    """ONEDNN_MAX_CPU_ISA=AVX2 (how an AVX2 machine is approximated on a Xeon) rules bf16 out; a cap
    that still includes the bf16 instructions does not."""
    assert resolve_precision("auto", cpu(SAPPHIRE_RAPIDS, onednn_cap="AVX2"), where="x") == "fp32"
    assert resolve_precision("auto", cpu(SAPPHIRE_RAPIDS, onednn_cap="avx512_core_amx"), where="x") == "bf16"
    assert cpu(SAPPHIRE_RAPIDS, onednn_cap="AVX2").describe()["native_bf16"] is False


def test_gpus_use_what_the_device_supports():
    a100 = cpu(AVX2, gpu="A100", gpu_bf16=True)
    t4 = cpu(AVX2, gpu="T4", gpu_bf16=False)
    assert resolve_precision("auto", a100, where="x") == "bf16"
    assert resolve_precision("auto", t4, where="x") == "fp16"
    assert resolve_precision("auto", t4, where="x", allowed=("fp32", "bf16")) == "fp32"
    # work that runs on the CPU of a GPU machine is decided by the CPU
    assert resolve_precision("auto", a100, where="x", on_gpu=False) == "fp32"


def test_explicit_bf16_without_native_support_is_kept_with_one_warning(caplog):
    with caplog.at_level(logging.INFO, logger="impkit.hardware"):
        assert resolve_precision("bf16", cpu(AVX2, name="AMD EPYC"), where="backbones LMs") == "bf16"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "AMD EPYC" in warnings[0] and "slower than fp32" in warnings[0] and "auto" in warnings[0]
    caplog.clear()
    assert resolve_precision("bf16", cpu(ZEN4), where="x") == "bf16"
    assert resolve_precision("bf16", cpu(AVX2), where="x", quiet=True) == "bf16"
    assert not caplog.records


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be auto or one of"):
        resolve_precision("fp8", cpu(AVX2), where="x")


STAGE = {
    **raw("train.recipes.nano.stage1"),
    "learning_rate": 2e-3,
    "projector_lr": 2e-4,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "global_batch_size": 8,
    "per_device_batch_size": 4,
    "epochs": 1,
    "max_length": 512,
    "checkpoint_steps": 100,
    "gradient_checkpointing": False,
    "precision": "auto",
    "logging_steps": 20,
    "bf16_frozen_weights": True,
}


def test_a_stage_resolves_its_precision_and_drops_bf16_copies_on_fp32(tmp_path):
    stage = from_dict(StageTraining, STAGE)
    on_avx2 = resolve_stage(stage, cpu(AVX2), where="tune nano-3b")
    assert (on_avx2.precision, on_avx2.bf16_frozen_weights) == ("fp32", False)
    on_amx = resolve_stage(stage, cpu(SAPPHIRE_RAPIDS), where="tune nano-3b")
    assert (on_amx.precision, on_amx.bf16_frozen_weights) == ("bf16", True)
    assert training_arguments(on_avx2, tmp_path, seed=0).bf16 is False
    assert training_arguments(on_amx, tmp_path, seed=0).bf16 is True
    with pytest.raises(ConfigError, match="resolved precision"):
        training_arguments(stage, tmp_path, seed=0)
    with pytest.raises(ConfigError, match="bf16_frozen_weights needs precision bf16"):
        from_dict(StageTraining, {**STAGE, "precision": "fp32"})


def test_cpu_model_and_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n"
    )
    assert _cpuinfo(info) == ("AMD EPYC 7B13", frozenset({"fpu", "avx2", "fma"}))
    name, flags = _cpuinfo(tmp_path / "missing")
    assert name and flags == frozenset()
