"""Benchmark: is bf16 native on this CPU? A square matmul in fp32, bf16 and under bf16 autocast (how
training runs it), side by side in turns, and what `precision: auto` picks here.

    .venv/bin/python -m benchmarks.precision_matmul [--size 1024] [--threads 1] [--seconds 2] [--rounds 3]

On a CPU with AMX or AVX512-BF16 bf16 runs several times as fast as fp32; on an AVX2-only CPU PyTorch
emulates it and it runs tens of times slower, which is why the nano recipes train under
`precision: auto` (impkit/hardware.py). Each figure is the best of its rounds (noise only adds time).
"""

from __future__ import annotations

from impkit.stage import openmp_wait_policy

openmp_wait_policy("PASSIVE")  # first: before torch loads OpenMP, as the stages it measures set it

import argparse
import contextlib
import time

import torch

from impkit.hardware import read_machine, resolve_precision


def gflops(size: int, dtype: torch.dtype, autocast: bool, seconds: float) -> float:
    """Matmuls of two size x size matrices for about ``seconds``; GFLOP/s."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with context:
        a @ b  # warm-up: kernels chosen, caches filled
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a training process uses one)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = read_machine()
    runs = {
        "fp32": (torch.float32, False),
        "bf16": (torch.bfloat16, False),
        "fp32 under bf16 autocast": (torch.float32, True),
    }
    best = dict.fromkeys(runs, 0.0)
    for _ in range(args.rounds):
        for name, (dtype, autocast) in runs.items():
            best[name] = max(best[name], gflops(args.size, dtype, autocast, args.seconds))
    print(f"{machine.cpu}, {args.threads} thread(s); flags: {' '.join(machine.describe()['flags']) or '-'}")
    print(f"{args.size}x{args.size} matmul, best of {args.rounds} rounds of {args.seconds:g} s:")
    for name, value in best.items():
        print(f"  {name:<26} {value:8.1f} GFLOP/s  ({value / best['fp32']:.2f}x fp32)")
    print(f"precision: auto picks {resolve_precision('auto', machine, where='this machine', quiet=True)} here")


if __name__ == "__main__":
    main()
