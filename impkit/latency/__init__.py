"""Latency of Imp models as the paper's Table 4 measures it (§5.2), on pluggable devices.

``protocol``: the prompt (41 text tokens after the image), 64 forced generated tokens, the timings
of one run and the summary (T_VE, S_prompt, S_gen, T_total by equation (1), wall time; median, min,
max). ``runners``: the runners that measure on a device profile (llama.cpp, PyTorch). ``report``:
what the latency stages measure (``stages.latency``: a release's GGUF levels and PyTorch;
``stages.latency_paper``: a paper-size pair from ``impkit.export.paper_size``).
"""

from impkit.latency.protocol import Protocol, RunTiming, cpu_info, host_info, prompt_ids, summarize, table_row
from impkit.latency.runners import (
    RUNNERS,
    GGUFPair,
    LatencyRunner,
    LoadedModel,
    LocalLlamaCppRunner,
    LocalTorchRunner,
    TorchRelease,
    check_devices,
    register_runner,
    runner_class,
    runner_for,
)

__all__ = [
    "RUNNERS",
    "GGUFPair",
    "LatencyRunner",
    "LoadedModel",
    "LocalLlamaCppRunner",
    "LocalTorchRunner",
    "Protocol",
    "RunTiming",
    "TorchRelease",
    "check_devices",
    "cpu_info",
    "host_info",
    "prompt_ids",
    "register_runner",
    "runner_class",
    "runner_for",
    "summarize",
    "table_row",
]
