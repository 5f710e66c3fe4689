"""The order of training samples: ``ModalityLengthGroupedSampler`` orders indices as LLaVA's
``get_modality_length_grouped_indices`` does: batches hold only image records or only text records,
and records of similar length, so little compute goes to padding; the order of batches is random.
``chunked`` and ``padding_waste`` cut an order into batches and measure what padding they cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.data import Sampler

if TYPE_CHECKING:
    from impkit.train.dataset import SupervisedDataset


def chunked(indices: Sequence[int] | np.ndarray, size: int) -> list[np.ndarray]:
    """Consecutive batches of ``size`` (the last may be shorter), as a DataLoader forms them."""
    indices = np.asarray(indices, dtype=np.int64)
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def padding_waste(lengths: Sequence[int] | np.ndarray, batches: Iterable[Sequence[int] | np.ndarray]) -> float:
    """Share of padding among all token positions when each batch is padded to its longest member."""
    lengths = np.asarray(lengths, dtype=np.int64)
    padded = total = 0
    for batch in batches:
        batch_lengths = lengths[np.asarray(batch, dtype=np.int64)]
        if batch_lengths.size == 0:
            continue
        slots = int(batch_lengths.max()) * batch_lengths.size
        total += slots
        padded += slots - int(batch_lengths.sum())
    return padded / total if total else 0.0


class ModalityLengthGroupedSampler(Sampler[int]):
    """Indices in batches of one modality and similar lengths, the batches in random order.

    ``batch_size`` is the global batch: the per-device batch size times the number of processes
    times the gradient accumulation steps. The DataLoader (and, distributed, accelerate's
    per-process split of consecutive batches) cuts the stream into per-device batches, so the
    micro-batches of one optimizer step, on every process, come from one global batch here, and the
    batches are the same however the global batch is split.

    Image and text-only records are grouped apart. Within each group the indices are shuffled,
    cut into megabatches of ``batch_size * megabatch_factor``, each sorted by length (longest
    first) and cut into batches of ``batch_size``. The full batches of both groups are shuffled
    together, and the one holding the longest record is moved to the front so an out-of-memory
    error shows on the first step. A group whose size is not a multiple of ``batch_size`` leaves
    a remainder (the shortest records of its last megabatch); the remainders come last. When both
    groups leave one, one batch at the end of the stream mixes them: with every index yielded once
    and fixed-size batches, that one batch cannot be avoided (LLaVA mixes them the same way).

    The order depends only on ``(seed, epoch)``; ``set_epoch`` (called by the Trainer each epoch)
    changes it.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        has_image: Sequence[bool] | np.ndarray,
        batch_size: int,
        *,
        megabatch_factor: int = 50,
        seed: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.has_image = np.asarray(has_image, dtype=np.bool_)
        if self.lengths.shape != self.has_image.shape or self.lengths.ndim != 1:
            raise ValueError(f"lengths {self.lengths.shape} and has_image {self.has_image.shape} must be equal 1-d")
        if batch_size < 1 or megabatch_factor < 1:
            raise ValueError(f"batch_size ({batch_size}) and megabatch_factor ({megabatch_factor}) must be >= 1")
        self.batch_size = batch_size
        self.megabatch_factor = megabatch_factor
        self.seed = seed
        self.epoch = 0

    @classmethod
    def for_dataset(cls, dataset: SupervisedDataset, batch_size: int, **kwargs: Any) -> ModalityLengthGroupedSampler:
        return cls(dataset.lengths, dataset.has_image, batch_size, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def _group_batches(self, indices: np.ndarray, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
        """Full batches of one group and its remainder (fewer than ``batch_size`` indices)."""
        bs = self.batch_size
        size = bs * self.megabatch_factor
        shuffled = indices[rng.permutation(len(indices))]
        megabatches = [shuffled[i : i + size] for i in range(0, len(shuffled), size)]
        if len(megabatches) > 1 and len(megabatches[-1]) < bs:
            # a last megabatch shorter than a batch joins the one before, so the remainder is
            # always the tail of a sorted megabatch and never holds that megabatch's longest record
            megabatches[-2:] = [np.concatenate(megabatches[-2:])]
        batches: list[np.ndarray] = []
        for megabatch in megabatches:
            ordered = megabatch[np.argsort(-self.lengths[megabatch], kind="stable")]
            batches += [ordered[i : i + bs] for i in range(0, len(ordered), bs)]
        if batches and len(batches[-1]) < bs:
            return batches[:-1], batches[-1]
        return batches, indices[:0]

    def batches(self) -> list[np.ndarray]:
        """The batches of ``batch_size`` indices of this epoch, in order (the last may be shorter)."""
        rng = np.random.default_rng((self.seed, self.epoch))
        everything = np.arange(len(self.lengths), dtype=np.int64)
        full: list[np.ndarray] = []
        remainders: list[np.ndarray] = []
        for mask in (self.has_image, ~self.has_image):
            group_full, remainder = self._group_batches(everything[mask], rng)
            full += group_full
            remainders.append(remainder)
        full = [full[i] for i in rng.permutation(len(full))]
        if full:
            longest = int(np.argmax([self.lengths[batch[0]] for batch in full]))
            full.insert(0, full.pop(longest))
        tail = np.concatenate(remainders)
        return full + chunked(tail, self.batch_size)

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from (int(i) for i in batch)
