"""Benchmark: the data side of a multi-epoch stage 2 with and without the sample cache
(``train.sample_cache_mb``, ``SupervisedDataset(cache_mb=...)``), side by side.

    .venv/bin/python -m benchmarks.sample_cache [--records 2130] [--epochs 4] [--preset nano-3b] [--cache-mb 256]

Two datasets of the same stage-2 records (the preset's template and image size, a tokenizer trained
on them) are read as the trainer reads them: the modality-length grouped sampler's batches, one
process, no DataLoader workers, each batch collated. Both scan their records first, as the pipeline
does before training. They take turns epoch by epoch, so noise on a shared machine hits both alike.
Printed: seconds per epoch for each, the first epoch (images read either way) and the later ones
(the cached dataset reads none), the speed-up of the later ones, the cache's size, and whether
every batch came out identical.

Needs the assembled data (`make repro` builds it).
"""

from __future__ import annotations

from impkit.stage import openmp_wait_policy

openmp_wait_policy("PASSIVE")  # first: before torch loads OpenMP, as the stages it measures set it

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.train_throughput import preset_and_recipe, stage2_records
from impkit.train.dataset import DataCollator
from impkit.train.sampler import ModalityLengthGroupedSampler, chunked


def _epoch(data, collate, batches: list[list[int]]) -> tuple[float, list[dict[str, torch.Tensor]]]:
    start = time.perf_counter()
    out = [collate([data[i] for i in batch]) for batch in batches]
    return time.perf_counter() - start, out


def _same(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2130, help="stage-2 records (the default build has 2,130)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--preset", default="nano-3b")
    parser.add_argument("--cache-mb", type=float, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as each training process runs
    preset, recipe = preset_and_recipe(args.preset)
    batch = recipe.stage2.per_device_batch_size
    with tempfile.TemporaryDirectory() as tmp_plain, tempfile.TemporaryDirectory() as tmp_cached:
        tokenizer, plain = stage2_records(preset, recipe, args.records, Path(tmp_plain))
        _, cached = stage2_records(preset, recipe, args.records, Path(tmp_cached), cache_mb=args.cache_mb)
        collate = DataCollator(tokenizer.pad_token_id)
        scans = {}
        for name, data in (("without", plain), ("with", cached)):
            start = time.perf_counter()
            data.scan()
            scans[name] = time.perf_counter() - start
        seconds: dict[str, list[float]] = {"without": [], "with": []}
        identical = True
        for epoch in range(args.epochs):
            sampler = ModalityLengthGroupedSampler.for_dataset(plain, batch, seed=0)
            sampler.set_epoch(epoch)
            batches = list(chunked(list(sampler), batch))
            t_plain, out_plain = _epoch(plain, collate, batches)
            t_cached, out_cached = _epoch(cached, collate, batches)
            seconds["without"].append(t_plain)
            seconds["with"].append(t_cached)
            identical &= _same(out_plain, out_cached)
            print(f"epoch {epoch + 1}: without cache {t_plain:.2f} s, with {t_cached:.2f} s", flush=True)
    later = {name: statistics.median(s[1:]) for name, s in seconds.items()}
    print(f"\n{args.records} records, {args.preset}, batches of {batch}, one thread")
    print(f"scan: without cache {scans['without']:.2f} s, with {scans['with']:.2f} s")
    print(f"first epoch: without cache {seconds['without'][0]:.2f} s, with {seconds['with'][0]:.2f} s")
    print(
        f"later epochs (median): without cache {later['without']:.2f} s, with {later['with']:.2f} s: "
        f"{later['without'] / later['with']:.1f}x"
    )
    kept = cached.cache_summary()
    print(f"cache: {kept['mib']} MiB ({kept['records']} records' tokens, {kept['images']} images)")
    print(f"every batch identical with and without the cache: {identical}")


if __name__ == "__main__":
    main()
