"""Supervised samples for LLaVA-style training: a lazy JSONL dataset and a padding collator (the
batches' order is ``impkit.train.sampler``'s).

``SupervisedDataset`` indexes an assembled record file by byte offsets (8 bytes a record) and reads
one line per sample, so a million records cost megabytes, not the records. Every sample is encoded
with a chat template (``impkit.data.templates.encode``); tokenization mismatches and truncations
are kept, counted and logged by record id, never dropped in silence. ``scan`` encodes every record
once before training so a stage can report them all up front. With ``cache_mb``, encoded samples and
prepared images stay in memory up to that size, so epochs after the first skip the tokenizer and the
image decoding (multi-epoch runs on small data: the nano recipes' 10 stage-2 epochs).

``DataCollator`` pads a list of samples into the keyword arguments of
``LlavaForConditionalGeneration``: image tensors only for the samples that have an image, in batch
order, which is how LLaVA matches the image tokens of the batch to the images.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
import torch
from PIL import Image
from torch.utils.data import Dataset

from impkit.data.templates import IGNORE_INDEX, ChatTemplate, TemplateError, encode, get_template
from impkit.model.image_processing import ImageProcessor
from impkit.progress import progress

log = logging.getLogger(__name__)

IMAGE_LENGTH_WORDS = 700  # length estimate of an image, in words, for Imp's real sizes (729 SigLIP tokens)
REPORT_IDS = 50  # ids kept in a report
MAX_WARNINGS = 100  # individual warnings per kind; later ones are counted (and summarised once)


class ModalityLengths(NamedTuple):
    """Per-record length estimates (words, plus ``image_length_words`` for an image) and modality."""

    lengths: np.ndarray  # int32
    has_image: np.ndarray  # bool


def _words(record: Mapping[str, Any]) -> int:
    conversations = record.get("conversations") or ()
    return sum(len(turn.get("value", "").split()) for turn in conversations if isinstance(turn, Mapping))


def _has_image(record: Mapping[str, Any]) -> bool:
    return bool(record.get("image"))


def _record_id(record: Mapping[str, Any], index: int) -> str:
    rid = record.get("id")
    return str(rid) if rid is not None else f"#{index}"


class _Encoded(NamedTuple):
    """A record as training reads it, kept in memory: token ids and labels (int32), and the image's
    path relative to the image root (None for text-only)."""

    record_id: str
    input_ids: np.ndarray
    labels: np.ndarray
    image: str | None


ENTRY_OVERHEAD = 256  # bytes a cached entry costs beyond its arrays (tuple, strings, dict slot), roughly


class _Tally:
    """Distinct records flagged for one reason (mismatch, truncation), with a warning the first time."""

    def __init__(self, what: str, max_warnings: int) -> None:
        self.what = what
        self.max_warnings = max_warnings
        self.indices: set[int] = set()
        self.ids: list[str] = []

    def add(self, index: int, record_id: str, detail: str = "") -> None:
        if index in self.indices:
            return
        self.indices.add(index)
        if len(self.ids) < REPORT_IDS:
            self.ids.append(record_id)
        n = len(self.indices)
        if n <= self.max_warnings:
            log.warning("%s in record %s%s", self.what, record_id, detail)
        if n == self.max_warnings + 1:
            log.warning("more records with a %s; counted, no longer logged one by one", self.what)

    def report(self) -> dict[str, Any]:
        return {"count": len(self.indices), "ids": list(self.ids)}


class SupervisedDataset(Dataset):
    """Training samples of an assembled JSONL record file, read lazily.

    Each line is a record ``{"id", "image" (relative to ``image_root``; absent for text-only),
    "conversations", "source"}``. Construction reads the file once to index line offsets and to
    estimate lengths for batching (``modality_lengths``); records are parsed again on access.

    ``__getitem__`` returns ``{"input_ids": LongTensor[L], "labels": LongTensor[L],
    "pixel_values": FloatTensor[3, H, W] or None, "id": str}``.

    Mismatches and truncations seen by ``__getitem__`` are counted in the process that reads the
    sample: with DataLoader workers that is the workers, so call ``scan`` in the main process to
    get the full report before training.

    ``cache_mb`` > 0 keeps encoded samples (from ``scan`` or a first read) and prepared uint8 images
    in memory until they fill that many MiB; later reads of them touch neither the file, the
    tokenizer nor the image, and give the same tensors. Entries are never evicted: under a
    random order an evicting cache smaller than the data mostly misses anyway. 0 (the default) keeps
    nothing, so an edit of the records on disk shows on the next read.
    """

    def __init__(
        self,
        records_path: str | os.PathLike,
        image_root: str | os.PathLike,
        tokenizer: Any,
        template: ChatTemplate | str,
        *,
        image_processor: ImageProcessor,
        num_image_tokens: int,
        max_length: int | None,
        image_token: str = "<image>",
        image_length_words: int = IMAGE_LENGTH_WORDS,
        max_warnings: int = MAX_WARNINGS,
        cache_mb: float = 0,
    ) -> None:
        self.records_path = Path(records_path)
        self.image_root = Path(image_root)
        self.tokenizer = tokenizer
        self.template = get_template(template) if isinstance(template, str) else template
        self.image_processor = image_processor
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length
        self.image_token = image_token
        self.image_length_words = image_length_words
        self._mismatches = _Tally("tokenization mismatch", max_warnings)
        self._truncations = _Tally(f"truncation to max_length={max_length}", max_warnings)
        self._fd: int | None = None
        self._fd_pid: int | None = None
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be at least 0, got {cache_mb}")
        self.cache_limit = int(cache_mb * 2**20)
        self.cache_bytes = 0
        self._encoded: dict[int, _Encoded] = {}
        self._pixels_kept: dict[int, np.ndarray] = {}
        self.offsets, self.lengths, self.has_image = self._index()

    # --- index ----------------------------------------------------------------------------------

    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Byte offsets of the record lines (plus the end of the last one) and length estimates.

        Record ``i`` is ``offsets[i]:offsets[i + 1]`` (blank lines after it included, which JSON
        parsing ignores).
        """
        offsets = array("q")  # compact while growing: 8 bytes a record, not a Python int each
        lengths = array("l")
        images = bytearray()
        end = 0
        position = 0
        size = self.records_path.stat().st_size
        with (
            open(self.records_path, "rb") as f,
            progress(total=size, desc="indexing records", unit="B", unit_scale=True) as bar,
        ):
            for number, line in enumerate(f, start=1):
                start, position = position, position + len(line)
                if number % 4096 == 0:
                    bar.update(position - bar.n)
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    raise ValueError(f"{self.records_path}:{number}: not a JSON record ({err})") from None
                if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
                    raise ValueError(f"{self.records_path}:{number}: record without a 'conversations' list")
                image = _has_image(record)
                offsets.append(start)
                lengths.append(_words(record) + (self.image_length_words if image else 0))
                images.append(image)
                end = position
            bar.update(position - bar.n)
        offsets.append(end)
        return (
            np.frombuffer(offsets, dtype=np.int64).copy(),
            np.asarray(lengths, dtype=np.int32),
            np.frombuffer(bytes(images), dtype=np.bool_).copy(),
        )

    @property
    def modality_lengths(self) -> ModalityLengths:
        return ModalityLengths(self.lengths, self.has_image)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    # --- reading --------------------------------------------------------------------------------

    def _file(self) -> int:
        """A descriptor of the record file owned by this process (DataLoader workers reopen it)."""
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:
            self._fd = os.open(self.records_path, os.O_RDONLY)
            self._fd_pid = pid
        return self._fd

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fd"] = state["_fd_pid"] = None
        return state

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None and getattr(self, "_fd_pid", None) == os.getpid():
            try:
                os.close(fd)
            except OSError:
                pass

    def _position(self, index: int) -> int:
        n = len(self)
        index = int(index)  # numpy integers from a sampler's chunks: plain ints as the cache's keys
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"record index {index} out of range for {n} records")
        return index

    def record(self, index: int) -> dict[str, Any]:
        """The parsed record ``index``, read from disk."""
        index = self._position(index)
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        fd = self._file()
        data = os.pread(fd, stop - start, start)
        if len(data) != stop - start:
            raise OSError(f"{self.records_path} changed since it was indexed (short read of record {index})")
        return orjson.loads(data)

    def _encode(self, index: int, record: Mapping[str, Any]) -> tuple[Any, str]:
        record_id = _record_id(record, index)
        try:
            encoded = encode(
                self.template,
                record["conversations"],
                self.tokenizer,
                has_image=_has_image(record),
                image_token=self.image_token,
                num_image_tokens=self.num_image_tokens,
                max_length=self.max_length,
            )
        except TemplateError as err:
            raise TemplateError(f"record {record_id}: {err}") from err
        if encoded.mismatch:
            self._mismatches.add(index, record_id, " (kept; labels follow the segment-wise tokenization)")
        if encoded.truncated:
            self._truncations.add(index, record_id)
        return encoded, record_id

    def cache_summary(self) -> dict[str, Any]:
        """What the cache holds: ``{"records", "images", "mib", "limit_mib"}``."""
        return {
            "records": len(self._encoded),
            "images": len(self._pixels_kept),
            "mib": round(self.cache_bytes / 2**20, 1),
            "limit_mib": round(self.cache_limit / 2**20, 1),
        }

    def _keep(self, nbytes: int) -> bool:
        """Whether an entry of ``nbytes`` fits in the cache (and count it if so)."""
        if self.cache_bytes + nbytes + ENTRY_OVERHEAD > self.cache_limit:
            return False
        self.cache_bytes += nbytes + ENTRY_OVERHEAD
        return True

    def _encoded_record(self, index: int, record: Mapping[str, Any] | None = None) -> _Encoded:
        """Record ``index`` encoded (``record``: already parsed), from the cache when it is there."""
        kept = self._encoded.get(index)
        if kept is not None:
            return kept
        if record is None:
            record = self.record(index)
        encoded, record_id = self._encode(index, record)
        entry = _Encoded(
            record_id,
            np.asarray(encoded.input_ids, dtype=np.int32),
            np.asarray(encoded.labels, dtype=np.int32),
            record["image"] if _has_image(record) else None,
        )
        if self._keep(entry.input_ids.nbytes + entry.labels.nbytes):
            self._encoded[index] = entry
        return entry

    def _pixels(self, index: int, entry: _Encoded) -> torch.Tensor:
        pixels = self._pixels_kept.get(index)
        if pixels is None:
            path = self.image_root / entry.image
            try:
                with Image.open(path) as image:
                    image.load()
                    pixels = self.image_processor.pixels(image)
            except (OSError, ValueError) as err:
                raise OSError(f"record {entry.record_id}: cannot read image {path}: {err}") from err
            if index in self._encoded and self._keep(pixels.nbytes):
                self._pixels_kept[index] = pixels
        return self.image_processor.normalise([pixels])[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._position(index)
        entry = self._encoded_record(index)
        return {
            "input_ids": torch.from_numpy(entry.input_ids).long(),  # .long() copies: the cache stays as it is
            "labels": torch.from_numpy(entry.labels).long(),
            "pixel_values": self._pixels(index, entry) if entry.image is not None else None,
            "id": entry.record_id,
        }

    # --- reports --------------------------------------------------------------------------------

    def mismatch_report(self) -> dict[str, Any]:
        """``{"count", "ids"}`` of records with a tokenization mismatch seen so far (first 50 ids),
        and the same for truncated records under ``"truncated"``."""
        return {**self._mismatches.report(), "truncated": self._truncations.report()}

    def scan(self, limit: int | None = None) -> dict[str, Any]:
        """Encode every record (the first ``limit``) once, text only, and return ``mismatch_report``;
        the encoded records stay in the cache as far as ``cache_mb`` allows (training reads them next).

        A record the template cannot encode raises ``TemplateError`` naming it, before training
        starts rather than hours into it.
        """
        n = len(self) if limit is None else min(limit, len(self))
        with open(self.records_path, "rb") as f:
            for index in progress(range(n), desc="scanning records", unit="rec"):
                start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
                f.seek(start)
                self._encoded_record(index, orjson.loads(f.read(stop - start)))
        if self.cache_limit:
            kept = self.cache_summary()
            log.info(
                "%d of %d records' tokens kept in memory (%s of %s MiB; images join on first read)",
                kept["records"],
                n,
                kept["mib"],
                kept["limit_mib"],
            )
        report = self.mismatch_report()
        if report["count"] or report["truncated"]["count"]:
            log.warning(
                "%d of %d records have a tokenization mismatch, %d are truncated to %s tokens",
                report["count"],
                n,
                report["truncated"]["count"],
                self.max_length,
            )
        return report


# -------------------------------------------------------------------------------------------------
# Collation


@dataclass(frozen=True)
class DataCollator:
    """Pads samples into a batch for ``LlavaForConditionalGeneration(**batch)``.

    ``input_ids`` are right-padded with ``pad_token_id``, ``labels`` with -100, and
    ``attention_mask`` is 1 exactly on the real tokens (built from the lengths, so a pad id that
    also occurs in the text is still attended). ``pixel_values`` stacks the images of the samples
    that have one, in batch order; it is absent when no sample has an image. ``id`` is dropped.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        lengths = [len(f["input_ids"]) for f in features]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, (feature, length) in enumerate(zip(features, lengths, strict=True)):
            input_ids[row, :length] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            labels[row, :length] = torch.as_tensor(feature["labels"], dtype=torch.long)
            attention_mask[row, :length] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        images = [f["pixel_values"] for f in features if f.get("pixel_values") is not None]
        if images:
            batch["pixel_values"] = torch.stack(images)
        return batch
