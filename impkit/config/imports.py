"""The `imports` section: published Imp checkpoints (local folders) that the pipeline imports as
releases and evaluates, exports and measures like the trained ones (``impkit.importer``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ImportedCheckpoint:
    """One published checkpoint: a local copy of e.g. MILVLG/imp-v1.5-3b (no network at import)."""

    folder: str
    vision_tower: str | None = None  # a local copy of the SigLIP its config names; None: read the weights' shapes


@dataclass(frozen=True)
class ImportsConfig:
    checkpoints: Mapping[str, ImportedCheckpoint]  # release name -> checkpoint; empty: the default pipeline
