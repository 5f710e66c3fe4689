"""Writing every registered benchmark's twin, in its official file formats, from the held-out world
(the layout is in ``impkit.eval.twins``'s docstring)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from impkit.config import TwinSizes
from impkit.eval import benchmarks
from impkit.eval.benchmarks.base import TwinContext
from impkit.eval.twins.common import MANIFEST, Jsonl, dump, load_heldout
from impkit.io import atomic_path


def generate_twins(heldout_dir: Path, out_dir: Path, *, seed: int, sizes: TwinSizes) -> dict[str, Any]:
    """Write every benchmark's twin under ``out_dir`` (replacing it as a whole, atomically) from the
    held-out split at ``heldout_dir`` (``scenes.jsonl`` + ``images/``); return the manifest
    (``twins.json``)."""
    ctx = TwinContext(load_heldout(Path(heldout_dir)), seed, sizes)
    manifest: dict[str, Any] = {"seed": seed, "sizes": asdict(sizes), "benchmarks": {}}
    with atomic_path(Path(out_dir)) as root:
        for name in benchmarks.names():
            bench = benchmarks.get(name)
            twin = bench.build_twin(ctx)
            folder = root / name
            for rel, value in twin.files.items():
                dump(folder / rel, value)
            dump(folder / "prompts.jsonl", Jsonl(p.line(name) for p in twin.prompts))
            dump(folder / "gold.jsonl", Jsonl({"id": p.id, "answer": p.gold} for p in twin.prompts))
            manifest["benchmarks"][name] = {
                "annotations": f"{name}/{twin.annotations}",
                "questions": f"{name}/{twin.questions}" if twin.questions else None,
                "prompts": f"{name}/prompts.jsonl",
                "gold": f"{name}/gold.jsonl",
                "predictions": bench.predictions,
                "n_prompts": len(twin.prompts),
                **twin.info,
            }
        dump(root / MANIFEST, manifest)  # last: its presence marks a complete set
    return manifest
