"""Benchmark: assembling a LLaVA-665K-sized mixture (records/s, peak memory) and image checks (images/s).

    .venv/bin/python benchmarks/assemble_throughput.py [--records 665000] [--images 4000]

Generates a LLaVA-format mixture shaped like LLaVA-1.5's 665K file (a JSON list with a TextCaps
sub-source under ``textvqa/`` that the recipe removes, plus text-only records) and a JSONL
"ALLaVA" source the recipe subsamples, then runs the real assembly in a child process per size so
each peak RSS is measured on its own. Two sizes (a tenth and the full count) show how peak memory
grows with the record count. The record pass (parse, rules, dedup, schema checks) and the image
checks are timed separately; images are then checked again to show the content-hash cache.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

N_IMAGE_VARIANTS = 2000  # records of the large runs share these images, as 665K records share COCO images


def make_images(root: Path, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    names = []
    for i in range(n):
        name = f"{'textvqa' if i % 30 == 0 else 'coco'}/{i:07d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 48), (rng.randrange(256), rng.randrange(256), i % 256)).save(root / name)
        names.append(name)
    return names


def make_sources(folder: Path, n_records: int, images: list[str]) -> dict:
    rng = random.Random(1)
    questions = ["What is in the image?", "What colour is the object?", "How many are there?", "Describe the scene."]
    main = folder / "llava_mix.json"
    with open(main, "w") as f:
        f.write("[")
        for i in range(n_records):
            image = images[i % len(images)]
            turns = []
            for t in range(rng.choice((1, 1, 2, 3))):
                q = rng.choice(questions) + f" ({i}.{t})"
                turns += [
                    {"from": "human", "value": ("<image>\n" if t == 0 else "") + q},
                    {"from": "gpt", "value": "An answer of a typical length for this kind of question."},
                ]
            rec = {"id": f"{i:09d}", "conversations": turns}
            if i % 25 != 0:  # ~4 % text-only records, like the ShareGPT share of 665K
                rec["image"] = image
            else:
                turns[0]["value"] = turns[0]["value"].replace("<image>\n", "")
            f.write(("," if i else "") + json.dumps(rec))
        f.write("]")
    allava = folder / "allava.jsonl"
    with open(allava, "w") as f:
        for i in range(n_records // 10):
            f.write(
                json.dumps(
                    {
                        "id": f"al{i}",
                        "image": images[(i * 7) % len(images)],
                        "conversations": [
                            {"from": "human", "value": f"<image>\nExplain the picture in detail ({i})."},
                            {"from": "gpt", "value": "A long, detailed answer. " * 8},
                        ],
                    }
                )
                + "\n"
            )
    # the paper's "random 300K of ALLaVA's 708K"
    return {"main": str(main), "allava": str(allava), "allava_sample": max(1, (n_records // 10) * 300 // 708)}


def data_config(sources: dict, image_root: str, workers: int):
    from impkit.config import DataConfig, from_dict

    return from_dict(
        DataConfig,
        {
            "sources": {
                "llava665k": {"path": sources["main"], "image_root": image_root, "tags": ["llava"]},
                "allava": {"path": sources["allava"], "image_root": image_root, "tags": ["gpt4v"]},
            },
            "mixtures": {
                "finetune": {
                    "exclude": ["textcaps"],
                    "entries": [{"source": "llava665k"}, {"source": "allava", "sample": sources["allava_sample"]}],
                }
            },
            "exclude": {"textcaps": {"match": {"image": "^textvqa/"}}},
            "dedup": {"by_id": True, "by_content": True},
            "quality": {
                "min_image_side": 32,
                "max_prompt_chars": 6000,
                "max_answer_chars": 8000,
                "max_quarantine_share": 0.02,
                "share_tolerance": 0.05,
            },
            "sample_seed": 0,
            "image_store": "hardlink",
            "chunk_records": 50000,
            "workers": workers,
        },
    )


def child(args: argparse.Namespace) -> None:
    """Run one assembly and print its figures as JSON (peak RSS of this process only)."""
    from impkit.data.assemble import AssemblyPaths, assemble

    work = Path(args.work)
    cfg = data_config(json.loads(args.sources), str(work / "images"), args.workers)
    out = work / f"out-{args.tag}"
    paths = AssemblyPaths(out / "assembled", out / "quarantine", work / "cache.sqlite", out / "docs")
    start = time.perf_counter()
    manifest = assemble(cfg, paths)
    wall = time.perf_counter() - start
    mix = manifest["mixtures"]["finetune"]
    print(
        json.dumps(
            {
                "records_in": mix["in"],
                "kept": mix["kept"],
                "wall_s": wall,
                "timings": manifest["timings"],
                "avg_record_bytes": sum(
                    os.path.getsize(p) for p in (json.loads(args.sources)[k] for k in ("main", "allava"))
                )
                / mix["in"],
                "images": manifest["images"],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(work: Path, sources: dict, tag: str, workers: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--work",
        str(work),
        "--sources",
        json.dumps(sources),
        "--tag",
        tag,
        "--workers",
        str(workers),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "IMPKIT_PROGRESS": "0"})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=665_000)
    parser.add_argument("--images", type=int, default=4000, help="distinct images for the image-check figures")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--sources", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory(prefix="impkit-bench-") as tmp:
        work = Path(tmp)
        sizes = (args.records // 4, args.records // 2, args.records)
        print(
            f"generating {N_IMAGE_VARIANTS} shared images and sources of {', '.join(f'{n:,}' for n in sizes)} records ..."
        )
        shared = make_images(work / "images", N_IMAGE_VARIANTS)
        rows = []
        for n in sizes:
            folder = work / f"src-{n}"
            folder.mkdir()
            sources = make_sources(folder, n, shared)
            rows.append((n, run_child(work, sources, f"n{n}", args.workers)))
        print("\nrecord pass (parse, rules, sampling, dedup, Great Expectations checks; images cached):")
        print(f"{'records':>10} {'records/s':>10} {'peak RSS MB':>12}  wall s")
        for _, r in rows:
            t = r["timings"]
            record_s = r["wall_s"] - t.get("image_checks_s", 0.0)
            print(
                f"{r['records_in']:>10,} {r['records_in'] / record_s:>10,.0f} {r['peak_rss_mb']:>12,.0f}  {r['wall_s']:.1f}"
            )
        (_, small), _, (_, big) = rows
        extra = (big["peak_rss_mb"] - small["peak_rss_mb"]) * 2**20 / (big["records_in"] - small["records_in"])
        print(
            f"records x{big['records_in'] / small['records_in']:.1f} -> peak memory x{big['peak_rss_mb'] / small['peak_rss_mb']:.2f} "
            f"({extra:.0f} bytes per extra record; the records themselves average {big['avg_record_bytes']:.0f} bytes of JSON)"
        )

        print(f"\nimage checks over {args.images:,} distinct 48x48 PNGs (hash + decode + RGB + size):")
        images = make_images(work / "images", args.images, seed=1)
        from impkit.data.images import ImageChecker

        paths = [str(work / "images" / name) for name in images]
        for workers in (1, 2):
            cache = work / f"img-cache-{workers}.sqlite"
            with ImageChecker(cache, workers=workers) as checker:
                start = time.perf_counter()
                checker.check(paths)
                cold = time.perf_counter() - start
            with ImageChecker(cache, workers=workers) as checker:
                start = time.perf_counter()
                checker.check(paths)
                warm = time.perf_counter() - start
                assert checker.decoded == 0
            print(
                f"  workers={workers}: cold {len(paths) / cold:,.0f} images/s, "
                f"cached (hash only, no decode) {len(paths) / warm:,.0f} images/s"
            )


if __name__ == "__main__":
    main()
