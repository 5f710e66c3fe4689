"""The mixture recipe (paper Table 2 as data): include/exclude rules, seeded sampling, dedup.

Planning is the first streaming pass over the sources: it keeps only a few bytes per record (a
status code and two 64-bit hashes), so a 1M-record mixture is planned without materialising it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from array import array
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

import numpy as np

from impkit.config import DataConfig, MatchSpec, Mixture, MixtureEntry
from impkit.data.llava_format import RecordStream
from impkit.progress import progress

log = logging.getLogger(__name__)

# Status of every record after planning. SELECTED records go on to the quality checks; MALFORMED
# ones go straight to quarantine; the rest were dropped by a recipe rule and are only counted.
SELECTED, MALFORMED, NOT_INCLUDED, UNSAMPLED, DUPLICATE_ID, DUPLICATE_CONTENT = range(6)
FIRST_EXCLUDE_CODE = 16  # codes FIRST_EXCLUDE_CODE + k: excluded by the k-th rule of the mixture
STATUS_NAMES = {
    SELECTED: "selected",
    MALFORMED: "malformed",
    NOT_INCLUDED: "not_included",
    UNSAMPLED: "unsampled",
    DUPLICATE_ID: "duplicate_id",
    DUPLICATE_CONTENT: "duplicate_content",
}


def _hash64(text: str) -> int:
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _content_key(image_key: str | None, conversations: Any) -> str:
    """Image + every (role, text) turn: what makes two records the same training sample."""
    try:
        turns = "\x1e".join(f"{t['from']}\x1f{t['value']}" for t in conversations)
    except (TypeError, KeyError):  # malformed turns: fall back to the full structure
        turns = json.dumps(conversations, sort_keys=True, default=str)
    return f"{image_key}\x1d{turns}"


def stable_seed(*parts: str | int) -> int:
    """A seed that depends only on the given names/numbers (never on Python's salted ``hash``)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def matches(spec: MatchSpec, source_tags: tuple[str, ...], record: dict[str, Any]) -> bool:
    if spec.tags and not set(spec.tags) & set(source_tags):
        return False
    if spec.id is not None and not re.search(spec.id, str(record.get("id", ""))):
        return False
    image = record.get("image")
    if spec.image is not None and not (isinstance(image, str) and re.search(spec.image, image)):
        return False
    if spec.text_only is not None and spec.text_only != (image is None):
        return False
    return True


@dataclass
class EntryPlan:
    entry: MixtureEntry
    codes: np.ndarray  # uint8 status per record position (JSONL: per non-blank line)
    positions: np.ndarray  # int64 file position of each record (JSONL line index)
    id_repeat: np.ndarray  # bool: this record's id already appeared in its source (among selected)
    source_sha256: str
    sample_note: str | None = None

    def count(self, code: int) -> int:
        return int((self.codes == code).sum())


@dataclass
class MixturePlan:
    name: str
    entries: list[EntryPlan]
    rule_names: tuple[str, ...]
    stats: dict[str, Any] = field(default_factory=dict)

    def status_name(self, code: int) -> str:
        if code >= FIRST_EXCLUDE_CODE:
            return f"excluded:{self.rule_names[code - FIRST_EXCLUDE_CODE]}"
        return STATUS_NAMES[code]

    @property
    def n_selected(self) -> int:
        return sum(p.count(SELECTED) for p in self.entries)


def _scan_entry(
    entry: MixtureEntry, cfg: DataConfig, rules: list[tuple[str, MatchSpec]], label: str
) -> tuple[EntryPlan, array, array]:
    source = cfg.sources[entry.source]
    stream = RecordStream(source.path)
    codes, positions, id_hashes, content_hashes = array("B"), array("q"), array("Q"), array("Q")
    image_root = source.image_root or ""
    for raw in progress(stream, desc=label, unit="rec"):
        positions.append(raw.position)
        rec = raw.record
        if raw.error is not None or not isinstance(rec, dict):
            # Not a JSON object: nothing to match rules on; the quality stage quarantines it.
            codes.append(MALFORMED if raw.error is not None else SELECTED)
            id_hashes.append(0)
            content_hashes.append(_hash64(raw.raw or repr(rec)))
            continue
        code = SELECTED
        if entry.include is not None and not matches(entry.include, source.tags, rec):
            code = NOT_INCLUDED
        else:
            for k, (_, spec) in enumerate(rules):
                if matches(spec, source.tags, rec):
                    code = FIRST_EXCLUDE_CODE + k
                    break
        codes.append(code)
        rid = rec.get("id")
        id_hashes.append(_hash64(str(rid)) if isinstance(rid, (str, int)) and rid != "" else 0)
        image = rec.get("image")
        image_key = os.path.normpath(os.path.join(image_root, image)) if isinstance(image, str) else None
        content_hashes.append(_hash64(_content_key(image_key, rec.get("conversations"))))
    plan = EntryPlan(
        entry=entry,
        codes=np.frombuffer(codes, dtype=np.uint8).copy(),
        positions=np.frombuffer(positions, dtype=np.int64).copy(),
        id_repeat=np.zeros(len(codes), dtype=bool),
        source_sha256=stream.sha256 or "",
    )
    return plan, id_hashes, content_hashes


def _apply_sample(plan: EntryPlan, mixture_name: str, seed: int) -> None:
    want = plan.entry.sample
    if want is None:
        return
    eligible = np.flatnonzero(plan.codes == SELECTED)
    if want >= len(eligible):
        plan.sample_note = f"asked for {want}, only {len(eligible)} eligible: all kept"
        log.warning("%s/%s: %s", mixture_name, plan.entry.source, plan.sample_note)
        return
    rng = np.random.default_rng([seed, stable_seed(mixture_name, plan.entry.source)])
    keep = rng.choice(len(eligible), size=want, replace=False)
    dropped = np.ones(len(eligible), dtype=bool)
    dropped[keep] = False
    plan.codes[eligible[dropped]] = UNSAMPLED


def _first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """Boolean mask of the first occurrence of each hash value, in order."""
    first = np.zeros(len(hashes), dtype=bool)
    if len(hashes):
        _, index = np.unique(hashes, return_index=True)
        first[index] = True
    return first


def plan_mixture(name: str, mixture: Mixture, cfg: DataConfig) -> MixturePlan:
    rules = [(r, cfg.exclude[r].match) for r in mixture.exclude if cfg.exclude[r].enabled]
    plan = MixturePlan(name=name, entries=[], rule_names=tuple(r for r, _ in rules))
    id_hashes: list[np.ndarray] = []
    content_hashes: list[np.ndarray] = []
    for i, entry in enumerate(mixture.entries):
        entry_plan, ids, contents = _scan_entry(entry, cfg, rules, f"plan {name} [{i + 1}/{len(mixture.entries)}] {entry.source}")
        _apply_sample(entry_plan, name, cfg.sample_seed)
        plan.entries.append(entry_plan)
        id_hashes.append(np.frombuffer(ids, dtype=np.uint64))
        content_hashes.append(np.frombuffer(contents, dtype=np.uint64))

    # Ids are compared within a source: datasets reuse image ids as record ids (COCO ids appear in
    # LLaVA-665K and ShareGPT-4V alike), so equal ids across sources are not duplicates.
    by_source: dict[str, list[int]] = {}
    for i, p in enumerate(plan.entries):
        by_source.setdefault(p.entry.source, []).append(i)
    for indices in by_source.values():
        sel = [plan.entries[i].codes == SELECTED for i in indices]
        hashes = np.concatenate([id_hashes[i][m] for i, m in zip(indices, sel, strict=False)])
        has_id = hashes != 0
        first = _first_occurrences(hashes) | ~has_id
        start = 0
        for i, m in zip(indices, sel, strict=False):
            n = int(m.sum())
            repeat = ~first[start : start + n]
            start += n
            where = np.flatnonzero(m)
            if cfg.dedup.by_id:
                plan.entries[i].codes[where[repeat]] = DUPLICATE_ID
            else:  # left for the quality gate's unique-id expectation to quarantine
                plan.entries[i].id_repeat[where[repeat]] = True

    if cfg.dedup.by_content:
        sel = [p.codes == SELECTED for p in plan.entries]
        hashes = np.concatenate([h[m] for h, m in zip(content_hashes, sel, strict=False)]) if sel else np.array([], np.uint64)
        first = _first_occurrences(hashes)
        start = 0
        for p, m in zip(plan.entries, sel, strict=False):
            n = int(m.sum())
            where = np.flatnonzero(m)
            p.codes[where[~first[start : start + n]]] = DUPLICATE_CONTENT
            start += n
    return plan
