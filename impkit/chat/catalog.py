"""The models ImpChat serves: every (release, GGUF level) pair the registry lists whose files are on disk.

A client names a model as ``<release id>:<level>`` (``nano-3b-0aaf1830253a:Q4_K_M``) or by preset,
``<preset>:<level>`` (the preset's newest release, as ``Registry.current`` gives it); the files come
from the record, relative to the workspace that holds the registry. Nothing a client sends becomes a
path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from impkit.registry import Registry
from impkit.release import gguf_levels, mmproj_file

LATENCY_DEVICE = "cpu-llamacpp"  # the latency profile measured on this machine class with llama.cpp


@dataclass(frozen=True)
class CatalogEntry:
    id: str  # <release id>:<level>
    alias: str  # <preset>:<level>, for the preset's newest release; "" otherwise
    release_id: str
    preset: str
    level: str
    llm: Path
    mmproj: Path
    release_dir: Path
    created: str
    info: dict[str, Any] = field(default_factory=dict)  # the figures the picker shows

    @property
    def file_bytes(self) -> int:
        return self.llm.stat().st_size + self.mmproj.stat().st_size


def _figures(record: dict[str, Any], level: str) -> dict[str, Any]:
    """Headline accuracy (mean of the level's benchmark headlines, MME on its 0-100 scale), size and the
    latency measured for this level on the llama.cpp CPU profile; None where the record lacks one."""
    scores = (record.get("benchmarks") or {}).get("gguf", {}).get(level) or {}
    values = [v / 20 if name == "mme" else v for name, v in scores.items() if isinstance(v, (int, float))]
    size = ((record.get("sizes") or {}).get(level) or {}).get("total")
    latency = (record.get("latency") or {}).get(f"{LATENCY_DEVICE}/{level}") or {}

    def median(key: str) -> float | None:
        value = latency.get(key)
        return value.get("median") if isinstance(value, dict) else value

    recommended = ((record.get("recommendation") or {}).get(LATENCY_DEVICE) or {}).get("level")
    return {
        "accuracy": round(mean(values), 2) if values else None,
        "size_mb": round(size / 1e6, 2) if size else None,
        "t_total_s": median("t_total_s"),
        "t_ve_s": median("t_ve_s"),
        "s_prompt_tps": median("s_prompt_tps"),
        "s_gen_tps": median("s_gen_tps"),
        "recommended": recommended == level,
    }


class Catalog:
    """The servable models of a registry; ``root`` is the workspace its records' folders are relative to."""

    def __init__(self, registry: Path | str, root: Path | str | None = None) -> None:
        self.registry = Registry(Path(registry))
        self.root = Path(root) if root is not None else Path(registry).resolve().parent
        self.entries: dict[str, CatalogEntry] = {}
        self.aliases: dict[str, str] = {}
        self.skipped: list[str] = []  # records whose files are not on disk, and why
        current = self.registry.current()
        for record in self.registry.records():
            files = record.get("files") or {}
            gguf_dir = self.root / (files.get("gguf") or {}).get("folder", "")
            release_dir = self.root / (files.get("release") or {}).get("folder", "")
            if not (gguf_dir.is_dir() and (release_dir / "impkit.json").is_file()):
                self.skipped.append(f"{record['id']}: {gguf_dir} or {release_dir} is missing (dvc pull?)")
                continue
            try:
                mmproj = mmproj_file(gguf_dir)
            except FileNotFoundError as exc:
                self.skipped.append(f"{record['id']}: {exc}")
                continue
            for level, llm in gguf_levels(gguf_dir).items():
                newest = current.get(record["preset"]) == record["id"]
                entry = CatalogEntry(
                    id=f"{record['id']}:{level}",
                    alias=f"{record['preset']}:{level}" if newest else "",
                    release_id=record["id"],
                    preset=record["preset"],
                    level=level,
                    llm=llm,
                    mmproj=mmproj,
                    release_dir=release_dir,
                    created=record.get("created", ""),
                    info=_figures(record, level),
                )
                self.entries[entry.id] = entry
                if entry.alias:
                    self.aliases[entry.alias] = entry.id

    def resolve(self, name: str) -> CatalogEntry | None:
        """The entry a client's model name means (an id or a preset alias), or None."""
        return self.entries.get(self.aliases.get(name, name))

    def names(self) -> list[str]:
        return sorted(self.entries)
