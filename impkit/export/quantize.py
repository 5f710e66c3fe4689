"""Quantizing a GGUF file with llama.cpp's own quantizer (``llama_model_quantize``).

Row lengths must be multiples of 32 (Q4_0, Q8_0) or 256 (K-quants); llama.cpp falls back to another
type for tensors that are not (the summary's ``tensor_types`` shows what each file really holds).
The quantizer also accepts the mmproj file.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path
from typing import Any

from impkit.export.names import ExportError
from impkit.export.writer import summary
from impkit.io import atomic_path
from impkit.progress import watch_file
from impkit.release import QUANT_LEVELS

# Bits per weight of each level (llama.cpp's quantize tool lists them): the expected output size, for
# the quantizer's progress line only (it reports none of its own while it runs)
BITS_PER_WEIGHT: dict[str, float] = {"F16": 16.0, "Q4_0": 4.5, "Q8_0": 8.5, "Q4_K_M": 4.85, "Q6_K": 6.56}


def ftype(level: str) -> int:
    try:
        return QUANT_LEVELS[level]
    except KeyError:
        raise ExportError(f"unknown quantization level {level!r}; known levels: {', '.join(QUANT_LEVELS)}") from None


def quantize(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    ftype_name: str,
    *,
    threads: int | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Quantize the GGUF ``src`` to ``dst`` (written atomically) at level ``ftype_name``; returns the
    summary of ``dst`` (path, bytes, tensor count and types). ``verbose`` keeps llama.cpp's
    per-tensor log (on stderr)."""
    code = ftype(ftype_name)
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found")
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = code
    params.nthread = threads or os.cpu_count() or 1
    start = time.perf_counter()
    # llama-cpp-python forwards llama.cpp's log to this logger; the quantizer logs a line per tensor
    # (at warning level in this build): keep only errors unless asked.
    llama_log = logging.getLogger("llama-cpp-python")
    level = llama_log.level
    if not verbose:
        llama_log.setLevel(logging.ERROR)
    try:
        expected = int(src.stat().st_size * BITS_PER_WEIGHT[ftype_name] / 16)  # from F16 (about: norms stay F32)
        with atomic_path(dst) as tmp, watch_file(tmp, total=expected, desc=f"quantize {src.name} to {ftype_name}"):
            status = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
            if status != 0 or not tmp.is_file():
                raise ExportError(f"llama_model_quantize({src.name} -> {ftype_name}) failed with status {status}")
    finally:
        llama_log.setLevel(level)
    record: dict[str, Any] = {**summary(dst), "level": ftype_name, "seconds": round(time.perf_counter() - start, 3)}
    return record
