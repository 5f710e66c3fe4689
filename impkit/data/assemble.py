"""Assemble the stage-1 and stage-2 mixtures: plan (rules, sampling, dedup), check, write.

Two streaming passes per mixture. Planning (``recipe.plan_mixture``) decides which records the
recipe selects; this module re-reads the sources, describes each selected record, checks its image,
lets the Great Expectations gate judge it chunk by chunk, and writes kept records, quarantined
records (with their reasons) and a manifest where, per source, in = kept + quarantined + dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from impkit.config import DataConfig
from impkit.data.images import ImageChecker, ImageStore
from impkit.data.llava_format import RecordStream, SourceError
from impkit.data.quality import GateProcess, InlineGate, QualityGateError, open_gate
from impkit.data.recipe import MALFORMED, SELECTED, EntryPlan, MixturePlan, plan_mixture
from impkit.io import atomic_open, dumps_line, write_json
from impkit.progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssemblyPaths:
    out_dir: Path  # <mixture>.jsonl, images/ (the content-addressed store), manifest.json
    quarantine_dir: Path  # <mixture>.jsonl: every rejected record with its reasons
    image_cache: Path  # SQLite cache of image checks, kept across runs
    docs_dir: Path  # Great Expectations Data Docs (HTML)

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
    """Pass two for one mixture: chunks of selected records through image checks and the gate."""

    def __init__(self, cfg: DataConfig, plan: MixturePlan, gate: InlineGate | GateProcess, checker: ImageChecker,
                 store: ImageStore, out: TextIO, quarantine: TextIO):  # fmt: skip
        self.cfg, self.plan, self.gate, self.checker, self.store = cfg, plan, gate, checker, store
        self.out, self.quarantine = out, quarantine
        self.pending: list[tuple[int, int, Any, dict[str, Any]]] = []  # (entry, position, record, known facts)
        self.in_flight: tuple | None = None  # the chunk the gate process is validating
        self.kept = Counter()  # entry index -> records kept
        self.quarantined = Counter()  # entry index -> records quarantined
        self.reasons: dict[int, Counter] = {}  # entry index -> check name -> records failing it
        self.seconds = Counter()  # where the time goes: image checks vs the GX record suite
        self.bar = progress(total=plan.n_selected + sum(p.count(MALFORMED) for p in plan.entries),
                            desc=f"check {plan.name}", unit="rec")  # fmt: skip

    def run(self) -> None:
        for e, entry_plan in enumerate(self.plan.entries):
            self._stream_entry(e, entry_plan)
        self._flush()
        self._finish_in_flight()
        self.bar.close()

    def _stream_entry(self, e: int, entry_plan: EntryPlan) -> None:
        source_cfg = self.cfg.sources[entry_plan.entry.source]
        stream = RecordStream(source_cfg.path)
        codes, positions = entry_plan.codes, entry_plan.positions
        for i, raw in enumerate(stream):
            if i >= len(codes) or raw.position != positions[i]:
                raise SourceError(f"{source_cfg.path}: file changed while the mixture was being assembled")
            code = codes[i]
            if code == MALFORMED:
                self._reject(e, raw.position, [raw.error or "malformed"], raw=raw.raw)
            elif code == SELECTED:
                known = {"id_repeat": bool(entry_plan.id_repeat[i])}
                self.pending.append((e, raw.position, raw.record, known))
                if len(self.pending) >= self.cfg.chunk_records:
                    self._flush()
        if stream.sha256 != entry_plan.source_sha256:
            raise SourceError(f"{source_cfg.path}: file changed while the mixture was being assembled")

    def _image_path(self, e: int, record: Any) -> str | None:
        root = self.cfg.sources[self.plan.entries[e].entry.source].image_root
        image = record.get("image") if isinstance(record, dict) else None
        if not isinstance(image, str) or root is None:
            return None
        return os.path.join(root, image)

    def _flush(self) -> None:
        """Check the pending chunk's images and hand it to the gate; finish the previous chunk."""
        if not self.pending:
            return
        paths = [self._image_path(e, rec) for e, _, rec, _ in self.pending]
        start = time.perf_counter()
        facts_by_path = self.checker.check(p for p in paths if p)
        self.seconds["image_checks_s"] += time.perf_counter() - start
        items = []
        for (_, _, rec, known), path in zip(self.pending, paths, strict=False):
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
        future = self.gate.submit_records(items)
        self._finish_in_flight()
        self.in_flight = (self.pending, paths, facts_by_path, future)
        self.pending = []

    def _finish_in_flight(self) -> None:
        """Write the chunk the gate has judged: kept records out, failures to quarantine."""
        if self.in_flight is None:
            return
        pending, paths, facts_by_path, future = self.in_flight
        self.in_flight = None
        start = time.perf_counter()
        verdict = future.result()
        self.seconds["waiting_for_gate_s"] += time.perf_counter() - start
        for row, ((e, position, rec, _), path) in enumerate(zip(pending, paths, strict=False)):
            reasons = verdict.reasons.get(row)
            if reasons:
                self._reject(e, position, reasons, record=rec, image_error=facts_by_path[path].error if path else None)
                continue
            source = self.plan.entries[e].entry.source
            out = {"id": f"{source}:{rec['id']}"}
            if path is not None:
                out["image"] = self.store.put(path, facts_by_path[path].sha256)
            out["conversations"] = rec["conversations"]
            out["source"] = source
            self.out.write(dumps_line(out))
            self.kept[e] += 1
        self.bar.update(len(pending))

    def _reject(self, e: int, position: int, reasons: list[str], record: Any = None, raw: str | None = None,
                image_error: str | None = None) -> None:  # fmt: skip
        entry = self.plan.entries[e].entry
        line: dict[str, Any] = {"mixture": self.plan.name, "source": entry.source, "position": position,
                                "reasons": reasons}  # fmt: skip
        if image_error is not None and "image_readable" in reasons:
            line["image_error"] = image_error
        if raw is not None:
            line["raw"] = raw
        else:
            line["record"] = record
        self.quarantine.write(dumps_line(line))
        self.quarantined[e] += 1
        self.reasons.setdefault(e, Counter()).update(reason.split(":")[0] for reason in reasons)
        if raw is not None:
            self.bar.update(1)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry_report(plan: MixturePlan, e: int, writer: _MixtureWriter, cfg: DataConfig) -> dict[str, Any]:
    p = plan.entries[e]
    counts = Counter(plan.status_name(int(c)) for c in p.codes)
    n_quarantined = writer.quarantined[e]
    kept = writer.kept[e]
    dropped = sum(n for name, n in counts.items() if name not in ("selected", "malformed"))
    read = len(p.codes)
    # Funnel: records left after each rule, in the order the recipe applies them.
    funnel, left = [("read", read)], read
    for name in ["malformed", "not_included", *[f"excluded:{r}" for r in plan.rule_names], "unsampled",
                 "duplicate_id", "duplicate_content"]:  # fmt: skip
        if name == "malformed":
            continue  # malformed records are quarantined, counted below with the other rejects
        left -= counts.get(name, 0)
        funnel.append((f"after {name}", left))
    funnel.append(("kept after quality checks", kept))
    assert read == kept + n_quarantined + dropped, "record accounting broke: in != kept + quarantined + dropped"
    return {
        "source": p.entry.source,
        "path": cfg.sources[p.entry.source].path,
        "sha256": p.source_sha256,
        "in": read,
        "kept": kept,
        "quarantined": n_quarantined,
        "dropped": dropped,
        "dropped_by_rule": {k: v for k, v in sorted(counts.items()) if k not in ("selected", "malformed")},
        "quarantine_reasons": dict(sorted(writer.reasons.get(e, Counter()).items())),
        "funnel": [{"step": s, "records": n} for s, n in funnel],
        **({"sample_note": p.sample_note} if p.sample_note else {}),
    }


def _gate_message(mixture: str, failures: dict[str, list[str]], reports: list[dict], cfg: DataConfig) -> str:
    total_in = sum(r["kept"] + r["quarantined"] for r in reports)
    total_q = sum(r["quarantined"] for r in reports)
    reasons = Counter()
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

    Raises ``QualityGateError`` (after writing quarantine files, Data Docs and the manifest) when a
    mixture fails the gate; a failing mixture's record file is not published.
    """
    _check_sources(cfg)
    manifest: dict[str, Any] = {"recipe": recipe or _plain(cfg), "mixtures": {}}
    failed: list[str] = []
    timings: Counter = Counter()
    started = time.perf_counter()
    gate = open_gate(cfg.quality, "assembled", cfg.workers)
    store = ImageStore(paths.image_store, cfg.image_store)
    try:
        with ImageChecker(paths.image_cache, workers=cfg.workers) as checker:
            for name, mixture in cfg.mixtures.items():
                log.info("planning mixture '%s' (%d sources)", name, len(mixture.entries))
                start = time.perf_counter()
                plan = plan_mixture(name, mixture, cfg)
                timings["plan_s"] += time.perf_counter() - start
                log.info("mixture '%s': %d records selected by the recipe; checking them", name, plan.n_selected)
                out_path = paths.out_dir / f"{name}.jsonl"
                with atomic_open(paths.quarantine_dir / f"{name}.jsonl", "w", encoding="utf-8") as qf:
                    tmp_out = out_path.with_name(f".{out_path.name}.partial")
                    tmp_out.parent.mkdir(parents=True, exist_ok=True)
                    with open(tmp_out, "w", encoding="utf-8") as of:
                        writer = _MixtureWriter(cfg, plan, gate, checker, store, of, qf)
                        writer.run()
                timings.update(writer.seconds)
                reports = [_entry_report(plan, e, writer, cfg) for e in range(len(plan.entries))]
                total_kept = sum(r["kept"] for r in reports)
                planned = [r["kept"] + r["quarantined"] for r in reports]
                total_planned = sum(planned)
                rows = [
                    {"source": r["source"], "planned_share": n / max(total_planned, 1),
                     "kept_share": r["kept"] / max(total_kept, 1),
                     "share_drift": r["kept"] / max(total_kept, 1) - n / max(total_planned, 1),
                     "quarantined_share": None}
                    for r, n in zip(reports, planned, strict=False)
                ]  # fmt: skip
                total_q = sum(r["quarantined"] for r in reports)
                rows.append({"source": "(all sources)", "planned_share": 1.0, "kept_share": 1.0, "share_drift": 0.0,
                             "quarantined_share": total_q / max(total_planned, 1)})  # fmt: skip
                failures = gate.check_mixture(rows)
                entry = {
                    "in": sum(r["in"] for r in reports),
                    "kept": total_kept,
                    "quarantined": total_q,
                    "dropped": sum(r["dropped"] for r in reports),
                    "gate": "failed" if failures else "passed",
                    "sources": reports,
                    "shares": rows[:-1],
                }
                if failures:
                    tmp_out.unlink()
                    entry["gate_failures"] = failures
                    entry["gate_message"] = _gate_message(name, failures, reports, cfg)
                    failed.append(entry["gate_message"])
                else:
                    os.replace(tmp_out, out_path)
                    entry["output"] = {"path": str(out_path), "records": total_kept, "sha256": _file_sha256(out_path)}
                manifest["mixtures"][name] = entry
                log.info("mixture '%s': in %d = kept %d + quarantined %d + dropped by rules %d; gate %s",
                         name, entry["in"], total_kept, total_q, entry["dropped"], entry["gate"])  # fmt: skip
            manifest["images"] = {
                "stored": store.added, "hashed": checker.hashed, "decoded": checker.decoded,
                "cache_hits": checker.cache_hits, "store_mode": cfg.image_store,
            }  # fmt: skip
        manifest["data_docs"] = str(gate.publish(paths.docs_dir))
    finally:
        gate.close()
    timings["total_s"] = time.perf_counter() - started
    manifest["timings"] = {k: round(v, 3) for k, v in sorted(timings.items())}
    write_json(paths.out_dir / "manifest.json", manifest)
    if failed:
        raise QualityGateError("\n".join(failed))
    return manifest


def _plain(obj: Any) -> Any:
    """Dataclass/mapping config back to plain JSON types, for the manifest."""
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "items"):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


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
