"""Benchmark: what the latency harness itself costs, and llama.cpp vs PyTorch on a nano release.

    .venv/bin/python benchmarks/latency_overhead.py [--gguf models/gguf/nano-3b] [--release releases/nano-3b]
        [--level Q4_K_M] [--threads N] [--runs 3] [--warmup 1]

Two comparisons, side by side in one run:

(i) Generation speed S_gen of ``llm-<level>.gguf`` measured by the harness (``impkit.latency``:
    ``GGUFSession.decode_token`` and ``next_greedy`` per token, each step synchronised) against a bare decode
    loop over the same file with llama.cpp's raw API (``llama_decode`` of one token, argmax of
    ``llama_get_logits_ith``), after a text prompt as long as the harness's prompt (image tokens +
    41), so both attend over the same number of positions. Target: within 5 %.
(ii) T_total (equation (1)) of the nano release at ``--level`` with llama.cpp against the PyTorch
    fp32 release, same protocol and threads. Target: llama.cpp at most 1/3 of PyTorch.

Needs the export stage's files (``dvc repro`` builds models/gguf/nano-3b and releases/nano-3b).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from pathlib import Path

from impkit.stage import openmp_wait_policy

openmp_wait_policy("ACTIVE")  # first: before torch and llama.cpp load OpenMP, as the latency stages set it

import numpy as np

from impkit.config import DeviceProfile
from impkit.latency import GGUFPair, Protocol, TorchRelease, prompt_ids, runner_for, table_row
from impkit.latency.protocol import PROMPT_SENTENCE


def bare_decode_s_gen(llm: Path, n_prompt: int, n_gen: int, threads: int, runs: int, warmup: int) -> list[float]:
    """Tokens/s of ``n_gen`` single-token ``llama_decode`` calls after an ``n_prompt``-token prompt."""
    import llama_cpp as lc

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load log, as Llama(verbose=False)
    lc.llama_backend_init()
    mparams = lc.llama_model_default_params()
    model = lc.llama_model_load_from_file(str(llm).encode(), mparams)
    if not model:
        raise SystemExit(f"llama.cpp could not load {llm}")
    cparams = lc.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = 2048, 512, 512  # as GGUFSession
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as llama-cpp-python's Llama default
    ctx = lc.llama_init_from_model(model, cparams)
    vocab = lc.llama_model_get_vocab(model)
    n_vocab = lc.llama_vocab_n_tokens(vocab)
    buffer = (lc.llama_token * 512)()
    text = PROMPT_SENTENCE.encode()
    n = lc.llama_tokenize(vocab, text, len(text), buffer, 512, False, True)
    ids = prompt_ids(lambda _: list(buffer[:n]), n_prompt)
    speeds = []
    try:
        for run in range(warmup + runs):
            lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
            for start in range(0, len(ids), 512):  # the prompt in n_batch pieces
                piece = ids[start : start + 512]
                tokens = (lc.llama_token * len(piece))(*piece)  # alive until decoded: the batch keeps a raw pointer
                if lc.llama_decode(ctx, lc.llama_batch_get_one(tokens, len(piece))) != 0:
                    raise SystemExit("llama_decode failed on the prompt")
            lc.llama_synchronize(ctx)
            token = (lc.llama_token * 1)()
            start_t = time.perf_counter()
            for _ in range(n_gen):
                logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
                token[0] = int(np.argmax(logits))
                if lc.llama_decode(ctx, lc.llama_batch_get_one(token, 1)) != 0:
                    raise SystemExit("llama_decode failed while generating")
            lc.llama_synchronize(ctx)
            if run >= warmup:
                speeds.append(n_gen / (time.perf_counter() - start_t))
    finally:
        lc.llama_free(ctx)
        lc.llama_model_free(model)
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, default=Path("models/gguf/nano-3b"))
    parser.add_argument("--release", type=Path, default=Path("releases/nano-3b"))
    parser.add_argument("--level", default="Q4_K_M")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    llm, mmproj = args.gguf / f"llm-{args.level}.gguf", args.gguf / "mmproj-F16.gguf"
    for path in (llm, mmproj, args.release / "impkit.json"):
        if not path.is_file():
            raise SystemExit(f"{path} not found: run `dvc repro` (export stage) or pass --gguf / --release")
    protocol = Protocol(runs=args.runs, warmup=args.warmup)
    llama = runner_for(DeviceProfile("local-llamacpp", "llamacpp", threads=args.threads))
    torch_runner = runner_for(DeviceProfile("local-torch-fp32", "torch", threads=args.threads))

    harness = llama.measure(GGUFPair(args.gguf.name, llm, mmproj, args.level), protocol)["summary"]
    bare = bare_decode_s_gen(llm, harness["n_prompt"], protocol.gen_tokens, args.threads, args.runs, args.warmup)
    reference = torch_runner.measure(TorchRelease(args.release.name, args.release), protocol)["summary"]

    h_gen, b_gen = harness["s_gen_tps"]["median"], statistics.median(bare)
    gap = 1 - h_gen / b_gen
    print(f"{llm}  ({args.threads} threads, median of {args.runs} runs after {args.warmup} warm-up)")
    print(
        f"(i)  S_gen harness {h_gen:9.1f} tok/s   bare llama_decode loop {b_gen:9.1f} tok/s   "
        f"harness slower by {100 * gap:5.1f} % ({1e6 * (1 / h_gen - 1 / b_gen):.0f} us/token)   "
        f"(target: within 5 %: {'met' if abs(gap) <= 0.05 else 'NOT met'})"
    )
    ours, theirs = table_row(harness), table_row(reference)
    ratio = ours["t_total_s"] / theirs["t_total_s"]
    print(
        f"(ii) T_total llama.cpp {args.level} {ours['t_total_s']:.4f} s   PyTorch fp32 {theirs['t_total_s']:.4f} s   "
        f"ratio {ratio:.3f}   (target: at most 1/3: {'met' if ratio <= 1 / 3 else 'NOT met'})"
    )
    for name, row in (("llama.cpp " + args.level, ours), ("PyTorch fp32", theirs)):
        print(
            f"     {name:18s} T_VE {row['t_ve_s']:.4f} s  S_prompt {row['s_prompt_tps']:9.1f} tok/s  "
            f"S_gen {row['s_gen_tps']:8.1f} tok/s  T_total {row['t_total_s']:.4f} s  wall {row['wall_s']:.4f} s"
        )


if __name__ == "__main__":
    main()
