"""Assemble the stage-1 and stage-2 mixtures: select (rules, sampling, dedup), check, write.

The sources stream by once (a sampled source twice). The recipe decides each record's fate as it
passes (``recipe.EntrySelector``); selected records gather in chunks, their images are checked
(cached by content hash), and the Great Expectations gate judges each chunk in a second process
while the next chunk is read. Kept records go to ``<mixture>.jsonl`` with their images in a
content-addressed store, rejected ones to the quarantine file with the checks they failed (bytes
that are not UTF-8: ``encoding``; an image path leading outside the source's image root:
``image_path_outside_root``; a repeated id or image+conversation: ``duplicate_id`` /
``duplicate_content`` with the record it repeats), and the manifest accounts for every record: per
source, in = kept + quarantined + left out by the recipe's rules (include/exclude/sample), so a
source without rules has in = kept + quarantined.

Nothing is published unless every mixture passes the gate: records and images wait in hidden
partial files and a pending list, and only then go to the image store and ``<mixture>.jsonl``; a
failed run leaves the previous assembled data untouched (its quarantine files, Data Docs and a
``failed_manifest.json`` in the quarantine folder say why). The manifest holds only what the inputs
decide, so the same inputs give a byte-identical manifest; timings and image-cache counts go to the
timings report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from impkit.config import DataConfig
from impkit.data.images import ImageChecker, ImageStore
from impkit.data.llava_format import RecordStream, SourceError, contained_image_path
from impkit.data.quality import GateProcess, InlineGate, QualityGateError, open_gate
from impkit.data.recipe import DUPLICATES, MALFORMED, SELECTED, Deduplicator, EntrySelector, selectors_for
from impkit.io import atomic_open, dumps_line, write_json
from impkit.progress import progress

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 3  # chunks held while the gate works: memory is bounded by this times chunk_records


@dataclass(frozen=True)
class AssemblyPaths:
    out_dir: Path  # <mixture>.jsonl, images/ (the content-addressed store), manifest.json
    quarantine_dir: Path  # <mixture>.jsonl: every rejected record with its reasons
    image_cache: Path  # SQLite cache of image checks, kept across runs
    docs_dir: Path  # Great Expectations Data Docs (HTML)
    timings: Path | None = None  # where the run's timings and image-cache counts go (not the manifest)

    @property
    def image_store(self) -> Path:
        return self.out_dir / "images"


def _check_sources(cfg: DataConfig) -> None:
    """Fail early, in plain words, on sources that cannot be read at all."""
    used = {e.source for mix in cfg.mixtures.values() for e in mix.entries}
    for name in sorted(used):
        src = cfg.sources[name]
        if not Path(src.path).is_file():
            raise SourceError(f"source '{name}': file {src.path} not found")
        if src.image_root is not None and not Path(src.image_root).is_dir():
            raise SourceError(f"source '{name}': image root {src.image_root} is not a directory")


class _MixtureWriter:
    """One mixture: stream its entries, check selected records in chunks, write the outcome."""

    def __init__(
        self,
        cfg: DataConfig,
        name: str,
        gate: InlineGate | GateProcess,
        checker: ImageChecker,
        store: ImageStore,
        out: TextIO,
        quarantine: TextIO,
        pending_images: TextIO,
        planned_images: set[str],
    ):
        self.cfg, self.name, self.gate, self.checker, self.store = cfg, name, gate, checker, store
        self.out, self.quarantine = out, quarantine
        self.pending_images, self.planned_images = pending_images, planned_images
        self.real_roots = {}  # entry index -> the resolved image root, for the containment check
        self.selectors = selectors_for(name, cfg)
        self.dedup = Deduplicator(cfg.dedup.by_id, cfg.dedup.by_content)
        self.pending: list[
            tuple[int, int, Any, int | None, int]
        ] = []  # (entry, position, record, id hash, content hash)
        # Chunks handed to the gate, oldest first. Up to MAX_IN_FLIGHT of them let reading run ahead
        # while the gate process starts (importing GX takes seconds) or works on a slow chunk.
        self.in_flight: deque[tuple] = deque()
        self.kept: Counter[int] = Counter()  # entry index -> records kept
        self.quarantined: Counter[int] = Counter()  # entry index -> records quarantined
        self.reasons: dict[int, Counter] = {}  # entry index -> check name -> records failing it
        self.seconds: Counter[str] = Counter()  # where the time goes

    def run(self) -> None:
        for e, selector in enumerate(self.selectors):
            selector.prepare()
            self._stream_entry(e, selector)
        self._flush()
        while self.in_flight:
            self._finish_oldest()

    def _stream_entry(self, e: int, selector: EntrySelector) -> None:
        stream = RecordStream(selector.source.path)
        label = f"{self.name} [{e + 1}/{len(self.selectors)}] {selector.entry.source}"
        for raw in progress(stream, desc=label, unit="rec"):
            status, id_hash, content_hash = selector.decide(raw)
            if status == SELECTED:
                self.pending.append((e, raw.position, raw.record, id_hash, content_hash))
                if len(self.pending) >= self.cfg.chunk_records:
                    self._flush()
                continue
            selector.count(status)
            if status == MALFORMED:
                self._reject(e, raw.position, [raw.error or "malformed"], raw=raw.raw_fields())
        selector.finish(stream.sha256)

    def _image_path(self, e: int, record: Any) -> str | None:
        """The image's path under its source's root; "" when the path leads outside the root."""
        root = self.selectors[e].source.image_root
        image = record.get("image") if isinstance(record, dict) else None
        if not isinstance(image, str) or root is None:
            return None
        if e not in self.real_roots:
            self.real_roots[e] = os.path.realpath(root)
        return contained_image_path(root, self.real_roots[e], image) or ""

    def _flush(self) -> None:
        """Check the pending chunk's images and hand it to the gate; then finish the previous chunk."""
        if not self.pending:
            return
        chunk = self.pending
        self.pending = []
        verdicts, id_repeats, repeated = self.dedup.judge(
            [self.selectors[e].entry.source for e, *_ in chunk],
            [c[3] for c in chunk],
            [c[4] for c in chunk],
            [(position, rec.get("id") if isinstance(rec, dict) else None) for _, position, rec, _, _ in chunk],
        )
        selected, paths = [], []
        for (e, position, rec, _, _), dup, id_repeat, of in zip(chunk, verdicts, id_repeats, repeated, strict=True):
            self.selectors[e].count(dup or SELECTED)
            if dup is not None:
                self._reject(e, position, [dup], record=rec, duplicate_of=of)
                continue
            path = self._image_path(e, rec)
            if path == "":
                self._reject(e, position, ["image_path_outside_root"], record=rec)
                continue
            selected.append((e, position, rec, {"id_repeat": id_repeat}, of))
            paths.append(path)
        if not selected:
            return
        start = time.perf_counter()
        facts_by_path = self.checker.check(p for p in paths if p)
        self.seconds["image_checks_s"] += time.perf_counter() - start
        items = []
        for (_, _, rec, known, _), path in zip(selected, paths, strict=True):
            image = rec.get("image") if isinstance(rec, dict) else None
            if image is None:
                known.update(image_status="none", image_min_side=None)
            elif path is None:  # an image on a source declared text-only, or a non-string path
                known.update(image_status="no_image_root" if isinstance(image, str) else None, image_min_side=None)
            else:
                img = facts_by_path[path]
                side = min(img.width, img.height) if img.status == "ok" else None
                known.update(image_status=img.status, image_min_side=side)
            items.append((rec, known))
        self.in_flight.append((selected, paths, facts_by_path, self.gate.submit_records(items)))
        while len(self.in_flight) >= MAX_IN_FLIGHT:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        """Write the oldest chunk once the gate has judged it: kept records out, failures to quarantine."""
        pending, paths, facts_by_path, future = self.in_flight.popleft()
        start = time.perf_counter()
        verdict = future.result()
        self.seconds["waiting_for_gate_s"] += time.perf_counter() - start
        for row, ((e, position, rec, _, of), path) in enumerate(zip(pending, paths, strict=True)):
            reasons = verdict.reasons.get(row)
            if reasons:
                image_error = facts_by_path[path].error if path else None
                repeat = of if "id_unique" in reasons else None
                self._reject(e, position, reasons, record=rec, image_error=image_error, duplicate_of=repeat)
                continue
            source = self.selectors[e].entry.source
            out = {"id": f"{source}:{rec['id']}"}
            if path is not None:
                # The store is filled only once every mixture passed its gate (``assemble``).
                sha = facts_by_path[path].sha256
                out["image"] = self.store.plan(path, sha)
                if out["image"] not in self.planned_images:
                    self.planned_images.add(out["image"])
                    self.pending_images.write(dumps_line([path, sha]))
            out["conversations"] = rec["conversations"]
            out["source"] = source
            self.out.write(dumps_line(out))
            self.kept[e] += 1

    def _reject(
        self,
        e: int,
        position: int,
        reasons: list[str],
        record: Any = None,
        raw: dict[str, str] | None = None,
        image_error: str | None = None,
        duplicate_of: dict[str, Any] | None = None,
    ) -> None:
        line: dict[str, Any] = {
            "mixture": self.name,
            "source": self.selectors[e].entry.source,
            "position": position,
            "reasons": reasons,
        }
        if image_error is not None and "image_readable" in reasons:
            line["image_error"] = image_error
        if duplicate_of is not None:
            line["duplicate_of"] = duplicate_of
        if raw is not None:
            line.update(raw)
        else:
            line["record"] = record
        self.quarantine.write(dumps_line(line))
        self.quarantined[e] += 1
        self.reasons.setdefault(e, Counter()).update(reason.split(":")[0] for reason in reasons)

    def entry_report(self, e: int) -> dict[str, Any]:
        selector = self.selectors[e]
        counts = selector.counts
        read, kept, quarantined, dropped = counts.total(), self.kept[e], self.quarantined[e], selector.dropped
        if read != kept + quarantined + dropped:
            raise RuntimeError(
                f"record accounting broke for {selector.entry.source}: "
                f"{read} in != {kept} kept + {quarantined} quarantined + {dropped} dropped"
            )
        # Funnel: records left after each recipe rule, in the order the rules apply.
        rule_steps = [s for s in counts if s.startswith("excluded:")]
        funnel, left = [("read", read), ("after malformed", read - counts[MALFORMED])], read - counts[MALFORMED]
        for step in ["not_included", *rule_steps, "unsampled", "duplicate_id", "duplicate_content"]:
            left -= counts[step]
            funnel.append((f"after {step}", left))
        funnel.append(("kept after quality checks", kept))
        return {
            "source": selector.entry.source,
            "path": selector.source.path,
            "sha256": selector.sha256,
            "in": read,
            "kept": kept,
            "quarantined": quarantined,
            "dropped": dropped,
            "accounting": f"in {read} = kept {kept} + quarantined {quarantined} + left out by the recipe {dropped}",
            "dropped_by_rule": {k: v for k, v in sorted(counts.items()) if k not in (SELECTED, MALFORMED, *DUPLICATES)},
            "quarantine_reasons": dict(sorted(self.reasons.get(e, Counter()).items())),
            "funnel": [{"step": s, "records": n} for s, n in funnel],
            **({"sample_note": selector.sample_note} if selector.sample_note else {}),
        }


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _share_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mixture table the gate judges: per source, planned vs kept share; overall quarantine share."""
    planned = [r["kept"] + r["quarantined"] for r in reports]  # what the recipe selected
    total_planned, total_kept = max(sum(planned), 1), max(sum(r["kept"] for r in reports), 1)
    rows = [
        {
            "source": r["source"],
            "planned_share": n / total_planned,
            "kept_share": r["kept"] / total_kept,
            "share_drift": r["kept"] / total_kept - n / total_planned,
            "quarantined_share": None,
        }
        for r, n in zip(reports, planned, strict=False)
    ]
    quarantined = sum(r["quarantined"] for r in reports)
    rows.append(
        {
            "source": "(all sources)",
            "planned_share": 1.0,
            "kept_share": 1.0,
            "share_drift": 0.0,
            "quarantined_share": quarantined / total_planned,
        }
    )
    return rows


def _gate_message(mixture: str, failures: dict[str, list[str]], reports: list[dict], cfg: DataConfig) -> str:
    total_in = sum(r["kept"] + r["quarantined"] for r in reports)
    total_q = sum(r["quarantined"] for r in reports)
    reasons: Counter[str] = Counter()
    for r in reports:
        reasons.update(r["quarantine_reasons"])
    lines = [f"data-quality gate failed for mixture '{mixture}':"]
    if "quarantine_share" in failures:
        top = ", ".join(f"{k} {v:,}" for k, v in reasons.most_common(5))
        lines.append(
            f"  quarantine_share: {total_q:,} of {total_in:,} checked records quarantined "
            f"({total_q / max(total_in, 1):.1%}), above the {cfg.quality.max_quarantine_share:.1%} limit; "
            f"failing checks: {top}"
        )
    if "source_share" in failures:
        lines.append(
            f"  source_share: kept share drifted more than {cfg.quality.share_tolerance:.1%} from the plan "
            f"for {', '.join(failures['source_share'])}"
        )
    lines.append("  see the quarantine file and the Data Docs for every rejected record and its reason")
    return "\n".join(lines)


def assemble(cfg: DataConfig, paths: AssemblyPaths, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build every mixture; return the manifest (also written to ``out_dir/manifest.json``).

    Raises ``QualityGateError`` when a mixture fails the gate, after writing the quarantine files, the
    Data Docs and ``failed_manifest.json`` in the quarantine folder; nothing in ``out_dir`` changes then.
    """
    _check_sources(cfg)
    started = time.perf_counter()
    manifest: dict[str, Any] = {"recipe": recipe or _plain(cfg), "mixtures": {}}
    failed: list[str] = []
    timings: Counter[str] = Counter()
    paths.out_dir.mkdir(parents=True, exist_ok=True)
    pending_path = paths.out_dir / ".images.pending"
    partials: dict[Path, Path] = {}  # final record file -> its hidden partial
    planned: set[str] = set()
    gate = open_gate(cfg.quality, "assembled", cfg.workers)
    store = ImageStore(paths.image_store, cfg.image_store)
    try:
        with (
            ImageChecker(paths.image_cache, workers=cfg.workers) as checker,
            open(pending_path, "w", encoding="utf-8") as pending,
        ):
            for name in cfg.mixtures:
                log.info("assembling mixture '%s' (%d sources)", name, len(cfg.mixtures[name].entries))
                out_path = paths.out_dir / f"{name}.jsonl"
                partial = out_path.with_name(f".{out_path.name}.partial")
                partials[out_path] = partial
                with atomic_open(paths.quarantine_dir / f"{name}.jsonl", "w", encoding="utf-8") as qf:
                    with open(partial, "w", encoding="utf-8") as of:
                        writer = _MixtureWriter(cfg, name, gate, checker, store, of, qf, pending, planned)
                        writer.run()
                timings.update(writer.seconds)
                reports = [writer.entry_report(e) for e in range(len(writer.selectors))]
                rows = _share_rows(reports)
                failures = gate.check_mixture(rows)
                entry: dict[str, Any] = {
                    "in": sum(r["in"] for r in reports),
                    "kept": sum(r["kept"] for r in reports),
                    "quarantined": sum(r["quarantined"] for r in reports),
                    "dropped": sum(r["dropped"] for r in reports),
                    "gate": "failed" if failures else "passed",
                    "sources": reports,
                    "shares": rows[:-1],
                }
                if failures:
                    entry["gate_failures"] = failures
                    entry["gate_message"] = _gate_message(name, failures, reports, cfg)
                    failed.append(entry["gate_message"])
                else:
                    entry["output"] = {
                        "path": str(out_path),
                        "records": entry["kept"],
                        "sha256": _file_sha256(partial),
                    }
                manifest["mixtures"][name] = entry
                log.info(
                    "mixture '%s': in %d = kept %d + quarantined %d + left out by the recipe %d; gate %s",
                    name,
                    entry["in"],
                    entry["kept"],
                    entry["quarantined"],
                    entry["dropped"],
                    entry["gate"],
                )
            hashed, decoded, cache_hits = checker.hashed, checker.decoded, checker.cache_hits
        manifest["images"] = {"referenced": len(planned), "store_mode": cfg.image_store}
        manifest["data_docs"] = str(gate.publish(paths.docs_dir))
        if not failed:
            _publish(store, pending_path, partials)
    finally:
        gate.close()
        for partial in partials.values():
            partial.unlink(missing_ok=True)
        pending_path.unlink(missing_ok=True)
    timings["total_s"] = time.perf_counter() - started
    report = {
        "timings": {k: round(v, 3) for k, v in sorted(timings.items())},
        "images": {"stored": store.added, "hashed": hashed, "decoded": decoded, "cache_hits": cache_hits},
    }
    log.info("assemble: %s", json.dumps(report))
    if paths.timings is not None:
        write_json(paths.timings, report)
    failed_manifest = paths.quarantine_dir / "failed_manifest.json"
    if failed:
        write_json(failed_manifest, manifest)
        raise QualityGateError("\n".join(failed) + f"\n  nothing was published; the run's manifest: {failed_manifest}")
    failed_manifest.unlink(missing_ok=True)
    write_json(paths.out_dir / "manifest.json", manifest)
    return manifest


def _publish(store: ImageStore, pending_path: Path, partials: dict[Path, Path]) -> None:
    """Every mixture passed: fill the image store, then move the record files into place (images
    first, so a record file never names an image the store lacks)."""
    with open(pending_path, encoding="utf-8") as pending:
        for line in pending:
            src, sha = json.loads(line)
            store.put(src, sha)
    for out_path, partial in partials.items():
        os.replace(partial, out_path)


def manifest_metrics(manifest: dict[str, Any]) -> dict[str, Any]:
    """The headline counts, flat enough for `dvc metrics show/diff`."""
    return {
        name: {
            "records": m["kept"],
            "quarantined": m["quarantined"],
            "dropped_by_rules": m["dropped"],
            "quarantined_share": round(m["quarantined"] / max(m["kept"] + m["quarantined"], 1), 6),
        }
        for name, m in manifest["mixtures"].items()
    }


def _plain(obj: Any) -> Any:
    """Dataclass/mapping config back to plain JSON types, for the manifest."""
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "items"):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
