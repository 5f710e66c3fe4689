"""The mixture recipe (paper Table 2 as data): include/exclude rules, seeded sampling, dedup.

Selection happens while the sources stream by, record by record, in recipe order: a record is
malformed (quarantined), or left out by the recipe (not included, excluded by a named rule, not in
the sample: the recipe's choice, counted, the record stays in its source), or a duplicate of an
earlier record (a repeated id, a repeated image+conversation: quarantined with the record it
repeats), or selected for the quality checks. Only a sampled source is read twice: once to count
the records eligible for its sample, once to take it. Dedup keeps two 64-bit hashes per selected
record in sorted numpy arrays, and of each first occurrence only its source, position and id
(Python's string hash: the tables live for one run only, and a 64-bit collision among a few
million records has a probability around 1e-7).
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from array import array
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
DUPLICATES = (DUPLICATE_ID, DUPLICATE_CONTENT)  # quarantined, not dropped


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
    """A map of 64-bit hashes to 64-bit payloads in two sorted numpy arrays: 16 bytes per member,
    where a Python dict of ints costs ~100. Queried and extended a chunk at a time."""

    def __init__(self) -> None:
        self.values = np.empty(0, dtype=np.int64)
        self.payload = np.empty(0, dtype=np.int64)

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """The payload of each hash, or -1 for a hash not in the set."""
        if not len(self.values):
            return np.full(len(hashes), -1, dtype=np.int64)
        idx = np.minimum(np.searchsorted(self.values, hashes), len(self.values) - 1)
        return np.where(self.values[idx] == hashes, self.payload[idx], -1)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        return self.lookup(hashes) >= 0

    def add_new(self, hashes: np.ndarray, payload: np.ndarray | None = None) -> None:
        """Add hashes known to be absent and distinct, each with its payload (default 0)."""
        payload = np.zeros(len(hashes), dtype=np.int64) if payload is None else np.asarray(payload, dtype=np.int64)
        values = np.concatenate([self.values, hashes])
        order = np.argsort(values, kind="stable")
        self.values = values[order]
        self.payload = np.concatenate([self.payload, payload])[order]


class RecordRefs:
    """Source, position and id of the first occurrences a duplicate may point back to, compactly:
    the ids as JSON in one byte buffer (a record's id is kept as given: a string or an integer)."""

    def __init__(self) -> None:
        self.source_names: list[str] = []
        self._source_index: dict[str, int] = {}
        self.sources = array("i")
        self.positions = array("q")
        self.ends = array("q")
        self.blob = bytearray()

    def add(self, source: str, position: int, record_id: Any) -> int:
        if source not in self._source_index:
            self._source_index[source] = len(self.source_names)
            self.source_names.append(source)
        self.sources.append(self._source_index[source])
        self.positions.append(position)
        self.blob += json.dumps(record_id if isinstance(record_id, (str, int)) else None).encode("ascii")
        self.ends.append(len(self.blob))
        return len(self.ends) - 1

    def get(self, ref: int) -> dict[str, Any]:
        start = self.ends[ref - 1] if ref else 0
        return {
            "source": self.source_names[self.sources[ref]],
            "position": self.positions[ref],
            "id": json.loads(self.blob[start : self.ends[ref]]),
        }


def _first_occurrences(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each hash is the first of its value in the chunk, and the row of that first one."""
    first = np.zeros(len(hashes), dtype=bool)
    first_row = np.arange(len(hashes))
    if len(hashes):
        _, index, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        first[index] = True
        first_row = index[inverse.reshape(-1)]
    return first, first_row


class Deduplicator:
    """First occurrence wins, in recipe order: ids within their source, content across the mixture.

    Ids are compared within a source because datasets reuse image ids as record ids (COCO ids
    appear in LLaVA-665K and ShareGPT-4V alike): equal ids in two sources are not duplicates.
    Works on chunks of selected records, in order, so memory stays a few dozen bytes per record.
    """

    def __init__(self, by_id: bool, by_content: bool):
        self.by_id, self.by_content = by_id, by_content
        self.ids: dict[str, SortedHashSet] = {}
        self.contents = SortedHashSet()
        self.refs = RecordRefs()

    def _find(self, table: SortedHashSet, hashes: np.ndarray, ref_of: Any) -> tuple[np.ndarray, np.ndarray]:
        """(repeat mask, ref of the repeated record or -1) for ``hashes``; new ones join ``table``."""
        found = table.lookup(hashes)
        first, first_row = _first_occurrences(hashes)
        new = first & (found < 0)
        new_rows = np.flatnonzero(new)
        refs = np.full(len(hashes), -1, dtype=np.int64)
        refs[new_rows] = [ref_of(i) for i in new_rows]
        table.add_new(hashes[new_rows], refs[new_rows])
        repeat = ~new
        of = np.where(found >= 0, found, refs[first_row])
        return repeat, np.where(repeat, of, -1)

    def judge(
        self,
        sources: list[str],
        id_hashes: list[int | None],
        content_hashes: list[int],
        refs: list[tuple[int, Any]] | None = None,
    ) -> tuple[list[str | None], list[bool], list[dict[str, Any] | None]]:
        """Per record: DUPLICATE_ID / DUPLICATE_CONTENT / None (keep); whether its id repeats (kept
        because ``by_id`` is off; the quality gate's unique-id check quarantines it); and, for both,
        the ``{source, position, id}`` of the record it repeats. ``refs``: each record's (position, id)."""
        n = len(sources)
        refs = refs if refs is not None else [(0, None)] * n
        row_ref: dict[int, int] = {}

        def ref_of(row: int) -> int:
            if row not in row_ref:
                row_ref[row] = self.refs.add(sources[row], *refs[row])
            return row_ref[row]

        status: list[str | None] = [None] * n
        id_repeat = np.zeros(n, dtype=bool)
        repeats = np.full(n, -1, dtype=np.int64)
        source_arr = np.array(sources, dtype=object)
        has_id = np.array([h is not None for h in id_hashes], dtype=bool)
        ids = np.array([h if h is not None else 0 for h in id_hashes], dtype=np.int64)
        for source in dict.fromkeys(sources):
            rows = np.flatnonzero((source_arr == source) & has_id)
            if not len(rows):
                continue
            table = self.ids.setdefault(source, SortedHashSet())
            repeat, of = self._find(table, ids[rows], lambda i, rows=rows: ref_of(int(rows[i])))
            id_repeat[rows[repeat]] = True
            repeats[rows[repeat]] = of[repeat]
        if self.by_id:
            for i in np.flatnonzero(id_repeat):
                status[i] = DUPLICATE_ID
            id_repeat[:] = False
        if self.by_content:
            rows = np.array([i for i in range(n) if status[i] is None], dtype=np.int64)
            contents = np.array(content_hashes, dtype=np.int64)[rows]
            dup, of = self._find(self.contents, contents, lambda i: ref_of(int(rows[i])))
            for i, ref in zip(rows[dup], of[dup], strict=True):
                status[i] = DUPLICATE_CONTENT
                repeats[i] = ref
        duplicate_of = [
            self.refs.get(int(repeats[i])) if (status[i] is not None or id_repeat[i]) and repeats[i] >= 0 else None
            for i in range(n)
        ]
        return status, id_repeat.tolist(), duplicate_of


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
        # ids compare as text: 7 and "7" are the same id; a boolean is no id (the gate says so)
        id_hash = hash(str(rid)) if isinstance(rid, (str, int)) and not isinstance(rid, bool) and rid != "" else None
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
        """Records the recipe left out (never data problems: those are quarantined)."""
        return sum(n for status, n in self.counts.items() if status not in (SELECTED, MALFORMED, *DUPLICATES))


def selectors_for(mixture_name: str, cfg: DataConfig) -> list[EntrySelector]:
    mixture = cfg.mixtures[mixture_name]
    rules = [r for r in mixture.exclude if cfg.exclude[r].enabled]
    return [EntrySelector(mixture_name, entry, cfg, rules) for entry in mixture.entries]
