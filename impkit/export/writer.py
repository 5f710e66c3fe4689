"""Shared GGUF writing helpers: dtype rules, atomic writing, reading a written file's summary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from impkit.export.names import ExportError
from impkit.io import atomic_path
from impkit.progress import bars as progress_bars


def export_array(name: str, tensor: torch.Tensor, *, f32: bool = False) -> np.ndarray:
    """A state-dict tensor as the array the writer stores: float16 for matrices, float32 for
    vectors (norms, biases) and for ``f32=True``, in torch's (out, in) shape — the writer reverses
    the dimensions into GGML order itself. An overflow to inf in float16 is an error, not a silent
    loss (f16's largest value is 65504)."""
    keep_f32 = f32 or tensor.ndim <= 1
    array = tensor.detach().to(torch.float32 if keep_f32 else torch.float16).cpu().contiguous().numpy()
    if not keep_f32 and not np.isfinite(array).all():
        raise ExportError(f"{name}: values overflow float16 (max |w| = {float(tensor.abs().max()):.4g})")
    return array


def write_gguf(path: Path, arch: str, fill: Callable[[gguf.GGUFWriter], None]) -> dict[str, Any]:
    """Write one GGUF file atomically: ``fill`` adds the metadata and tensors to the writer."""
    start = time.perf_counter()
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        try:
            fill(writer)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file(progress=progress_bars())
        finally:
            writer.close()
    return {**summary(path), "seconds": round(time.perf_counter() - start, 3)}


def summary(path: Path, reader: gguf.GGUFReader | None = None) -> dict[str, Any]:
    """Path, size in bytes, tensor count and tensors per GGML type of a GGUF file; ``reader`` (of a
    file with the same tensors and types) saves reading it again, which takes seconds for a file with
    a large vocabulary."""
    reader = reader or gguf.GGUFReader(str(path))
    types = Counter(gguf.GGMLQuantizationType(t.tensor_type).name for t in reader.tensors)
    return {
        "path": str(path),
        "bytes": Path(path).stat().st_size,
        "n_tensors": len(reader.tensors),
        "tensor_types": dict(sorted(types.items())),
    }
