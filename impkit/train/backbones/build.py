"""The ``backbones`` stage as a typed function: the offline presets' tokenizer, their shared vision
tower and one causal LM per family, trained from the synthetic world; for the real presets, a record
of the sources they load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from impkit.config import BackbonesConfig, PresetConfig
from impkit.hardware import read_machine, resolve_precision
from impkit.io import write_json
from impkit.model.tokenizer import family_tokenizer
from impkit.train.backbones.classification import pretrain_classifier_vision_tower
from impkit.train.backbones.contrastive import pretrain_vision_tower
from impkit.train.backbones.lm import pretrain_causal_lm
from impkit.train.backbones.tokenizer import train_tokenizer
from impkit.train.backbones.vision import random_vision_tower
from impkit.train.layout import TOKENIZER_FILE, VISION_DIR, llm_dir
from impkit.train.side_by_side import Job, run_side_by_side

log = logging.getLogger(__name__)


def _round_up(n: int, multiple: int = 256) -> int:
    """Embedding rows padded to a multiple of 256, so GGUF K-quants apply to embeddings too."""
    return math.ceil(n / multiple) * multiple


def _folder_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def describe_sources(presets: dict[str, PresetConfig]) -> dict[str, Any]:
    """What the real presets load: a local folder's content hash, or the hub id and pinned revision
    (upstream Phi-2 changes once broke Imp: an unpinned hub source is reported as such)."""
    described: dict[str, Any] = {}
    for name, preset in presets.items():
        for part, spec in (("vision", preset.vision), ("llm", preset.llm)):
            if spec.source is None:
                continue
            if Path(spec.source).is_dir():
                entry = {"local": spec.source, "sha256": _folder_sha256(Path(spec.source))}
            else:
                entry = {"hub": spec.source, "revision": spec.revision or "UNPINNED"}
                if spec.revision is None:
                    log.warning("%s %s: hub source %s has no pinned revision", name, part, spec.source)
            described[f"{name}.{part}"] = entry
    return described


def _shared_tower(
    offline: dict[str, PresetConfig], multi_resolution: bool
) -> tuple[PresetConfig, dict[str, Any], list[int]]:
    """The preset whose tower is saved, the tower's arch and the lower sizes it also trains at.

    The tower is saved at the largest resolution; lower-resolution twins resize its position
    embeddings when they load it (as Imp-3B@196 does with SigLIP@384). With ``multi_resolution`` it
    has also trained at their sizes with the positions resized the same way.
    """
    visions = {
        json.dumps({k: v for k, v in p.vision.arch.items() if k != "image_size"}, sort_keys=True)
        for p in offline.values()
    }
    if len(visions) > 1:
        raise ValueError("offline presets must share one vision tower (they may differ only in image_size)")
    first = max(offline.values(), key=lambda p: p.vision.arch["image_size"])
    also_sizes = sorted({p.vision.arch["image_size"] for p in offline.values()}) if multi_resolution else []
    return first, dict(first.vision.arch), also_sizes


def _precisions(cfg: BackbonesConfig) -> dict[str, str]:
    """The precision of the tower and of the LMs; the parts train on the CPU (autocast "cpu"),
    whatever else the machine has."""
    machine = read_machine()
    return {
        "vision": resolve_precision(
            cfg.vision.precision, machine, where="backbones vision tower", allowed=("fp32", "bf16"), on_gpu=False
        ),
        "llm": resolve_precision(
            cfg.llm.precision, machine, where="backbones LMs", allowed=("fp32", "bf16"), on_gpu=False
        ),
    }


def _vision_job(
    cfg: BackbonesConfig,
    world: Path,
    tokenizer: Any,
    vision_arch: dict[str, Any],
    also_sizes: list[int],
    precision: str,
    out: Path,
) -> Job:
    """The tower's job for the encoder ``backbones.vision.encoder`` names (paper Table 1's ablation)."""
    v = cfg.vision
    if v.encoder == "contrastive":
        return (
            "vision",
            pretrain_vision_tower,
            dict(
                pairs=world / "backbone" / "vision_pairs.jsonl",
                image_root=world / "images",
                tokenizer=tokenizer,
                vision_arch=vision_arch,
                text_arch=dict(v.text_arch),
                steps=v.steps,
                batch_size=v.batch_size,
                lr=v.lr,
                seed=cfg.seed,
                out_dir=out / VISION_DIR,
                precision=precision,
                also_sizes=also_sizes,
            ),
        )
    if v.encoder == "classification":
        return (
            "vision",
            pretrain_classifier_vision_tower,
            dict(
                scenes=world / "scenes.jsonl",
                image_root=world / "images",
                vision_arch=vision_arch,
                steps=v.steps,
                batch_size=v.batch_size,
                lr=v.lr,
                seed=cfg.seed,
                out_dir=out / VISION_DIR,
                precision=precision,
                also_sizes=also_sizes,
            ),
        )
    return ("vision", random_vision_tower, dict(vision_arch=vision_arch, seed=cfg.seed, out_dir=out / VISION_DIR))


def _lm_jobs(
    cfg: BackbonesConfig, offline: dict[str, PresetConfig], base: Tokenizer, world: Path, precision: str, out: Path
) -> list[Job]:
    """One LM job per family of the offline presets, in the order of the family names."""
    jobs: list[Job] = []
    for family in sorted({p.family for p in offline.values()}):
        preset = next(p for p in offline.values() if p.family == family)
        tok = family_tokenizer(base, family)
        arch = {**preset.llm.arch, "vocab_size": _round_up(len(tok))}
        jobs.append(
            (
                f"llm-{family}",
                pretrain_causal_lm,
                dict(
                    family=family,
                    arch=arch,
                    tokenizer=tok,
                    texts=world / "backbone" / "lm_corpus.txt",
                    steps=cfg.llm.steps,
                    batch_size=cfg.llm.batch_size,
                    seq_len=cfg.llm.seq_len,
                    lr=cfg.llm.lr,
                    seed=cfg.seed,
                    out_dir=llm_dir(out, family),
                    precision=precision,
                ),
            )
        )
    return jobs


def build_backbones(
    cfg: BackbonesConfig,
    presets: dict[str, PresetConfig],
    world: Path,
    assembled: Path,
    out: Path,
    *,
    processes: int = 1,
    timings_out: Path | None = None,
) -> dict[str, Any]:
    """Tokenizer, one shared vision tower, one causal LM per family of the offline presets; for the
    real presets, a record of the sources they load. ``out/backbones.json`` holds what the inputs
    decide; how long each part took and how fast it ran go to ``timings_out`` (a rebuild that trains
    the same weights then writes the same folder, and nothing downstream reruns for a timing).

    The tower and the LMs train independently: with ``processes`` > 1 they train side by side, one
    process of one thread each (``impkit.train.side_by_side``); with 1, one after another here."""
    out.mkdir(parents=True, exist_ok=True)
    offline = {name: p for name, p in presets.items() if p.offline}
    real = describe_sources({name: p for name, p in presets.items() if not p.offline})
    if not offline:
        report = {"real_sources": real}
        write_json(out / "backbones.json", report)
        return report
    first, vision_arch, also_sizes = _shared_tower(offline, cfg.vision.multi_resolution)
    report: dict[str, Any] = {"real_sources": real}
    start = time.perf_counter()
    base = train_tokenizer(world, assembled, cfg.vocab_size)
    base.save(str(out / TOKENIZER_FILE))
    report["tokenizer"] = {"vocab": base.get_vocab_size(), "seconds": round(time.perf_counter() - start, 1)}
    log.info("tokenizer: %d tokens", base.get_vocab_size())

    precision = _precisions(cfg)
    report["precision"] = precision
    # the jobs in the order the workers take them: the tower first, the longest (`wall_s` in backbones.json)
    jobs = [
        _vision_job(
            cfg, world, family_tokenizer(base, first.family), vision_arch, also_sizes, precision["vision"], out
        ),
        *_lm_jobs(cfg, offline, base, world, precision["llm"], out),
    ]
    report.update(run_side_by_side(jobs, processes))
    report["vision"]["encoder"] = cfg.vision.encoder
    report["processes"] = min(processes, len(jobs))
    report["seconds"] = round(time.perf_counter() - start, 1)
    decided, timings = split_timings(report)
    write_json(out / "backbones.json", decided)
    if timings_out is not None:
        write_json(timings_out, timings)
    return report


# the figures of a run that depend on the machine and its load, not on the inputs
TIMING_KEYS = ("seconds", "wall_s", "samples_per_s", "tokens_per_s")


def split_timings(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``report`` without its timing figures (``TIMING_KEYS`` at any depth), and those figures alone,
    nested as they were."""
    decided: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    for key, value in report.items():
        if key in TIMING_KEYS:
            timings[key] = value
        elif isinstance(value, dict):
            kept, timed = split_timings(value)
            decided[key] = kept
            if timed:
                timings[key] = timed
        else:
            decided[key] = value
    return decided, timings
