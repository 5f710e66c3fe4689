"""The mixture recipe (paper Table 2 as data): include/exclude rules, seeded sampling, dedup.

Selection happens while the sources stream by, record by record, in recipe order: a record is
malformed, or dropped by a rule (not included, excluded by a named rule, not in the sample, a
repeated id, a repeated image+conversation), or selected for the quality checks. Only a sampled
source is read twice: once to count the records eligible for its sample, once to take it. Dedup
keeps two 64-bit hashes per selected record in sorted numpy arrays, never the records (Python's
string hash: the tables live for one run only, and a 64-bit collision among a few million
records has a probability around 1e-7).
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections import Counter
from typing import Any

import numpy as np

from impkit.config import DataConfig, MatchSpec, MixtureEntry
from impkit.data.llava_format import RawRecord, RecordStream, SourceError
from impkit.progress import progress

log = logging.getLogger(__name__)

SELECTED = "selected"  # goes on to the quality checks
MALFORMED = "malformed"  # not JSON: straight to quarantine
# Everything else a record can become is a recipe rule that dropped it (counted, not quarantined):
NOT_INCLUDED, UNSAMPLED, DUPLICATE_ID, DUPLICATE_CONTENT = (
    "not_included",
    "unsampled",
    "duplicate_id",
    "duplicate_content",
)
EXCLUDED = "excluded:{}"


def stable_seed(*parts: str | int) -> int:
    """A seed that depends only on the given names/numbers (never on Python's salted ``hash``)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def content_key(image_key: str | None, conversations: Any) -> str:
    """Image + every (role, text) turn: what makes two records the same training sample."""
    try:
        turns = "\x1e".join(f"{t['from']}\x1f{t['value']}" for t in conversations)
    except (TypeError, KeyError):  # malformed turns: fall back to the full structure
        turns = json.dumps(conversations, sort_keys=True, default=str)
    return f"{image_key}\x1d{turns}"


class Matcher:
    """A compiled ``MatchSpec`` for one source: the tag test is decided once, patterns compiled once."""

    def __init__(self, spec: MatchSpec, source_tags: tuple[str, ...]):
        self.tags_ok = not spec.tags or bool(set(spec.tags) & set(source_tags))
        self.id = re.compile(spec.id) if spec.id is not None else None
        self.image = re.compile(spec.image) if spec.image is not None else None
        self.text_only = spec.text_only

    def __call__(self, record: dict[str, Any]) -> bool:
        if not self.tags_ok:
            return False
        if self.id is not None and not self.id.search(str(record.get("id", ""))):
            return False
        image = record.get("image")
        if self.image is not None and not (isinstance(image, str) and self.image.search(image)):
            return False
        if self.text_only is not None and self.text_only != (image is None):
            return False
        return True


class SortedHashSet:
    """A set of 64-bit hashes in one sorted numpy array: 8 bytes per member, where a Python set
    of ints costs ~70. Queried and extended a chunk at a time."""

    def __init__(self) -> None:
        self.values = np.empty(0, dtype=np.int64)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        if not len(self.values):
            return np.zeros(len(hashes), dtype=bool)
        idx = np.minimum(np.searchsorted(self.values, hashes), len(self.values) - 1)
        return self.values[idx] == hashes

    def add_new(self, hashes: np.ndarray) -> None:
        """Add hashes known to be absent and distinct (two sorted runs: the stable sort merges them)."""
        self.values = np.sort(np.concatenate([self.values, np.sort(hashes)]), kind="stable")


def _first_occurrences(hashes: np.ndarray) -> np.ndarray:
    first = np.zeros(len(hashes), dtype=bool)
    if len(hashes):
        first[np.unique(hashes, return_index=True)[1]] = True
    return first


class Deduplicator:
    """First occurrence wins, in recipe order: ids within their source, content across the mixture.

    Ids are compared within a source because datasets reuse image ids as record ids (COCO ids
    appear in LLaVA-665K and ShareGPT-4V alike): equal ids in two sources are not duplicates.
    Works on chunks of selected records, in order, so memory is 16 bytes per record.
    """

    def __init__(self, by_id: bool, by_content: bool):
        self.by_id, self.by_content = by_id, by_content
        self.ids: dict[str, SortedHashSet] = {}
        self.contents = SortedHashSet()

    def judge(
        self, sources: list[str], id_hashes: list[int | None], content_hashes: list[int]
    ) -> tuple[list[str | None], list[bool]]:
        """Per record: DUPLICATE_ID / DUPLICATE_CONTENT / None (keep), and whether its id repeats
        (kept because ``by_id`` is off; the quality gate's unique-id check quarantines it)."""
        n = len(sources)
        status: list[str | None] = [None] * n
        id_repeat = np.zeros(n, dtype=bool)
        source_arr = np.array(sources, dtype=object)
        has_id = np.array([h is not None for h in id_hashes], dtype=bool)
        ids = np.array([h if h is not None else 0 for h in id_hashes], dtype=np.int64)
        for source in dict.fromkeys(sources):
            rows = np.flatnonzero((source_arr == source) & has_id)
            if not len(rows):
                continue
            table = self.ids.setdefault(source, SortedHashSet())
            first = _first_occurrences(ids[rows])
            repeat = table.contains(ids[rows]) | ~first
            table.add_new(ids[rows][first & ~repeat])
            id_repeat[rows[repeat]] = True
        if self.by_id:
            for i in np.flatnonzero(id_repeat):
                status[i] = DUPLICATE_ID
            id_repeat[:] = False
        if self.by_content:
            rows = np.array([i for i in range(n) if status[i] is None], dtype=np.int64)
            contents = np.array(content_hashes, dtype=np.int64)[rows]
            first = _first_occurrences(contents)
            dup = self.contents.contains(contents) | ~first
            self.contents.add_new(contents[~dup])
            for i in rows[dup]:
                status[i] = DUPLICATE_CONTENT
        return status, id_repeat.tolist()


class EntrySelector:
    """Decides, record by record, what the recipe does with one mixture entry's records."""

    def __init__(self, mixture: str, entry: MixtureEntry, cfg: DataConfig, rules: list[str]):
        self.mixture, self.entry, self.cfg = mixture, entry, cfg
        self.source = cfg.sources[entry.source]
        self.include = Matcher(entry.include, self.source.tags) if entry.include is not None else None
        self.rules = [(EXCLUDED.format(name), Matcher(cfg.exclude[name].match, self.source.tags)) for name in rules]
        self.image_root = self.source.image_root or ""  # part of an image's identity for content dedup
        self.counts: Counter[str] = Counter()
        self.sample_note: str | None = None
        self._sample: np.ndarray | None = None  # over eligible records, in order: taken or not
        self._eligible_seen = 0
        self.prepass_sha256: str | None = None
        self.sha256: str | None = None  # of the source file, once it has been read

    def _rule_outcome(self, rec: dict[str, Any]) -> str | None:
        if self.include is not None and not self.include(rec):
            return NOT_INCLUDED
        for status, matcher in self.rules:
            if matcher(rec):
                return status
        return None

    def prepare(self) -> None:
        """For a sampled entry, count its eligible records and draw the seeded sample."""
        want = self.entry.sample
        if want is None:
            return
        stream = RecordStream(self.source.path)
        eligible = 0
        for raw in progress(stream, desc=f"count {self.mixture}/{self.entry.source} for sampling", unit="rec"):
            if raw.error is None and isinstance(raw.record, dict) and self._rule_outcome(raw.record) is None:
                eligible += 1
        self.prepass_sha256 = stream.sha256
        self._sample = np.ones(eligible, dtype=bool)
        if want >= eligible:
            self.sample_note = f"asked for {want}, only {eligible} eligible: all kept"
            log.warning("%s/%s: %s", self.mixture, self.entry.source, self.sample_note)
            return
        rng = np.random.default_rng([self.cfg.sample_seed, stable_seed(self.mixture, self.entry.source)])
        self._sample[:] = False
        self._sample[rng.choice(eligible, size=want, replace=False)] = True

    def decide(self, raw: RawRecord) -> tuple[str, int | None, int]:
        """(status, id hash, content hash) by the rules and the sample. A SELECTED record may still
        be a duplicate: ``Deduplicator.judge`` decides that a chunk at a time; ``count`` records
        the final status."""
        if raw.error is not None:
            return MALFORMED, None, 0
        rec = raw.record
        if not isinstance(rec, dict):
            return SELECTED, None, hash(repr(rec))  # no rules apply; the quality gate quarantines it
        outcome = self._rule_outcome(rec)
        if outcome is not None:
            return outcome, None, 0
        if self._sample is not None:
            taken = self._eligible_seen < len(self._sample) and self._sample[self._eligible_seen]
            self._eligible_seen += 1
            if not taken:
                return UNSAMPLED, None, 0
        rid = rec.get("id")
        id_hash = hash(str(rid)) if isinstance(rid, (str, int)) and rid != "" else None
        image = rec.get("image")
        image_key = f"{self.image_root}/{image}" if isinstance(image, str) else None
        return SELECTED, id_hash, hash(content_key(image_key, rec.get("conversations")))

    def count(self, status: str) -> None:
        self.counts[status] += 1

    def finish(self, sha256: str | None) -> None:
        """Called after the selecting pass: a sampled source must not change between its passes."""
        if self.prepass_sha256 is not None and sha256 != self.prepass_sha256:
            raise SourceError(f"{self.source.path}: file changed while the mixture was being assembled")
        self.sha256 = sha256

    @property
    def dropped(self) -> int:
        return sum(n for status, n in self.counts.items() if status not in (SELECTED, MALFORMED))


def selectors_for(mixture_name: str, cfg: DataConfig) -> list[EntrySelector]:
    mixture = cfg.mixtures[mixture_name]
    rules = [r for r in mixture.exclude if cfg.exclude[r].enabled]
    return [EntrySelector(mixture_name, entry, cfg, rules) for entry in mixture.entries]
