"""What machine a stage runs on, and the training precision it should use there.

The nano recipes train under ``precision: auto``: bf16 autocast where the hardware computes bf16
natively, fp32 elsewhere. On a CPU with AMX or AVX512-BF16 bf16 is the faster choice (the Xeon the
recipes were first timed on: 1.6x the fp32 step); on an AVX2-only CPU (most cloud VMs and laptops)
PyTorch emulates bf16, and a 1024x1024 bf16 matmul ran at 0.7 GFLOP/s on one thread against
61 GFLOP/s in fp32 on the same AMD EPYC (Zen 3), so a build that took minutes took hours.

Library caps are honoured: with ``ONEDNN_MAX_CPU_ISA`` set below the bf16 instruction sets (e.g.
``AVX2``, the way an AVX2-only machine is approximated on a newer one for timing), oneDNN, which
runs PyTorch's bf16 matmuls, cannot use them either, so bf16 is not native.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# /proc/cpuinfo flags that mean bf16 matmuls run in hardware
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# The flags worth recording beside a timing: what decides which kernels PyTorch and ggml pick.
REPORTED_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still allow bf16 instructions; any other value caps below them
_ONEDNN_CAPS_WITH_BF16 = (
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
    "ALL",
    "DEFAULT",
)
# The slowdown a user meets when bf16 is emulated (the step of the nano models, measured: see above)
EMULATED_BF16_SLOWDOWN = "about 10x slower than fp32"


@dataclass(frozen=True)
class Machine:
    """The hardware a stage sees: CPU model and flags, usable cores, GPU (None without one)."""

    cpu: str
    flags: frozenset[str] = field(default_factory=frozenset)
    cores: int = 1
    gpu: str | None = None
    gpu_bf16: bool = False
    onednn_cap: str | None = None  # ONEDNN_MAX_CPU_ISA, when set

    @property
    def cpu_bf16(self) -> bool:
        """True when the CPU runs bf16 matmuls natively and no library cap forbids it."""
        if not any(flag in self.flags for flag in NATIVE_BF16_FLAGS):
            return False
        return self.onednn_cap is None or self.onednn_cap.upper() in _ONEDNN_CAPS_WITH_BF16

    def describe(self) -> dict[str, object]:
        """What a report records of the machine."""
        return {
            "cpu": self.cpu,
            "flags": [flag for flag in REPORTED_FLAGS if flag in self.flags],
            "cores": self.cores,
            "gpu": self.gpu,
            "native_bf16": self.gpu_bf16 if self.gpu else self.cpu_bf16,
            **({"onednn_max_cpu_isa": self.onednn_cap} if self.onednn_cap else {}),
        }


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, frozenset[str]]:
    """CPU model name and flags of the first processor listed (Linux); elsewhere the platform's name."""
    fields: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine()
    return model, frozenset(fields.get("flags", "").split())


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def read_machine() -> Machine:
    """The machine this process runs on."""
    import torch

    cpu, flags = _cpuinfo()
    gpu, gpu_bf16 = None, False
    if torch.cuda.is_available():
        gpu, gpu_bf16 = torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported())
    return Machine(
        cpu=cpu,
        flags=flags,
        cores=usable_cores(),
        gpu=gpu,
        gpu_bf16=gpu_bf16,
        onednn_cap=os.environ.get("ONEDNN_MAX_CPU_ISA") or None,
    )


def resolve_precision(
    requested: str,
    machine: Machine,
    *,
    where: str,
    allowed: tuple[str, ...] = ("fp32", "bf16", "fp16"),
    on_gpu: bool | None = None,
    quiet: bool = False,
) -> str:
    """The precision ``where`` trains in: ``requested``, with ``auto`` decided by the hardware.

    ``auto``: on a GPU, bf16 where it supports it, else fp16 (when ``allowed``), else fp32; on a CPU,
    bf16 where it runs natively (AMX, AVX512-BF16), else fp32. An explicit bf16 on a CPU without
    native bf16 is kept, with a one-line warning. ``on_gpu``: whether this work runs on the GPU
    (default: whenever the machine has one). ``quiet``: decide without saying so (a process that
    only records the choice, while the ones that train log it).
    """
    gpu = bool(machine.gpu) if on_gpu is None else on_gpu
    if requested == "auto":
        if gpu:
            chosen = "bf16" if machine.gpu_bf16 else ("fp16" if "fp16" in allowed else "fp32")
            why = f"GPU {machine.gpu} {'supports' if machine.gpu_bf16 else 'lacks'} bf16"
        else:
            chosen = "bf16" if machine.cpu_bf16 else "fp32"
            why = _cpu_reason(machine)
        if not quiet:
            log.info("%s: precision auto -> %s (%s)", where, chosen, why)
        return chosen
    if requested not in allowed:
        raise ValueError(f"{where}: precision must be auto or one of {allowed}, got '{requested}'")
    if requested == "bf16" and not gpu and not machine.cpu_bf16 and not quiet:
        log.warning(
            "%s: precision bf16 on a CPU without native bf16 (%s): PyTorch emulates it, %s; "
            "precision: auto would pick fp32",
            where,
            _cpu_reason(machine),
            EMULATED_BF16_SLOWDOWN,
        )
    return requested


def _cpu_reason(machine: Machine) -> str:
    native = [flag for flag in NATIVE_BF16_FLAGS if flag in machine.flags]
    if native and not machine.cpu_bf16:
        return f"{machine.cpu} has {', '.join(native)} but ONEDNN_MAX_CPU_ISA={machine.onednn_cap} caps it"
    if native:
        return f"{machine.cpu} has {', '.join(native)}"
    return f"{machine.cpu} has neither AMX nor AVX512-BF16"
