"""GGUF export of releases for llama.cpp: LLM + mmproj writers, quantization (see gguf_export)."""

from impkit.export.gguf_export import export_and_quantize, export_release
from impkit.export.llm import MEDIA_MARKER, gguf_chat_template
from impkit.export.names import ExportError
from impkit.export.quantize import quantize
from impkit.release import QUANT_LEVELS, llm_filename, mmproj_filename

__all__ = [
    "MEDIA_MARKER",
    "QUANT_LEVELS",
    "ExportError",
    "export_and_quantize",
    "export_release",
    "gguf_chat_template",
    "llm_filename",
    "mmproj_filename",
    "quantize",
]
