"""Does a nano model read its image whatever the training seed? Stage 1, stage 2 and the held-out
check (and, with --twins, the VQAv2 and POPE twins beside their majority baseline) for each seed, run
through the pipeline's own stage commands in a scratch copy of the workspace.

    python -m benchmarks.grounding_seeds --presets nano-3b nano-3b-196 --seeds 0 1
    python -m benchmarks.grounding_seeds --presets nano-3b --seeds 0 1 -S train.recipes.nano-long.stage1.epochs=4

Needs `dvc repro backbones twins` first (the world, the assembled data, the backbones and the twins
are shared, read-only). Each run lives in build/grounding/<tag>/seed-<n>/ with its own params.yaml
(train.seed and the -S overrides applied); a finished run is reused. Overrides of `world.*` or
`data.*` give the run its own world, assembled data and twins, and overrides of those or of
`backbones.*` its own backbones. The table gives held-out
accuracy with the image / a blank image / another question's image and the image's lead over the
better of the two; the acceptance bar for the nano-long models is a lead of at least 10 points.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = ("data", "models/backbones", "stages", "impkit")
OWN_DATA = ("world.", "data.")  # overrides that need the run's own data/
OWN_BACKBONES = ("backbones.", *OWN_DATA)  # ... and its own backbones


def _override(params: dict, dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = yaml.safe_load(value)


def _workspace(root: Path, seed: int, overrides: list[str], backbones_from: Path | None = None) -> Path:
    """The run's folder; with ``backbones_from`` (a workspace of the same setting and data), its
    backbones are linked instead of rebuilt: they do not depend on ``train.seed``."""
    work = root / f"seed-{seed}"
    work.mkdir(parents=True, exist_ok=True)
    own_data = any(item.startswith(OWN_DATA) for item in overrides)
    own_backbones = any(item.startswith(OWN_BACKBONES) for item in overrides)
    for rel in SHARED:
        if (own_data and rel == "data") or (own_backbones and rel == "models/backbones"):
            continue
        link = work / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(REPO / rel)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["seed"] = seed
    for item in overrides:
        key, _, value = item.partition("=")
        _override(params, key, value)
    text = yaml.safe_dump(params, sort_keys=False)
    if (work / "params.yaml").is_file() and (work / "params.yaml").read_text() != text:
        raise SystemExit(f"{work} was run with other params; remove it or use another --tag")
    (work / "params.yaml").write_text(text)
    if own_data and not (work / "data" / "twins").is_dir():
        _run(work, "stages.synth_world")
        _run(work, "stages.assemble_data")
        _run(work, "impkit.cli", "twins", "--out", "data/twins")
    if own_backbones and not (work / "models" / "backbones" / "backbones.json").is_file():
        if backbones_from is not None and not own_data:
            (work / "models").mkdir(exist_ok=True)
            (work / "models" / "backbones").symlink_to(backbones_from / "models" / "backbones")
        else:
            _run(work, "stages.backbones")
    return work


def _run(work: Path, *args: str) -> float:
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DVC_STAGE", None)  # not a pipeline stage: records no timing
    subprocess.run([sys.executable, "-m", *args], cwd=work, env=env, check=True)
    return time.perf_counter() - start


def _twins(work: Path, preset: str) -> dict[str, float]:
    """VQAv2 soft accuracy and POPE mean F1: the release, its blank-image run, the majority baseline."""
    metrics = json.loads((work / "reports" / "eval" / preset / "metrics.json").read_text())
    out = {}
    for bench, key in (("vqav2", "soft_accuracy"), ("pope", "mean_f1")):
        run, majority = metrics["torch"][bench], metrics["majority"][bench]
        out[bench] = {"release": run[key], "blind": run["blind"], "majority": majority[key]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["nano-3b", "nano-3b-196"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tag", default="default", help="folder name of this setting under build/grounding")
    parser.add_argument("--twins", action="store_true", help="also evaluate on the twins (VQAv2, POPE vs majority)")
    args = parser.parse_args()
    rows = []
    first = None
    for seed in args.seeds:
        work = _workspace(REPO / "build" / "grounding" / args.tag, seed, args.overrides, backbones_from=first)
        first = first or work
        for preset in args.presets:
            report = work / "reports" / "train" / f"{preset}.json"
            seconds = 0.0
            if not report.is_file():
                seconds += _run(work, "stages.train", "align", preset)
                seconds += _run(work, "stages.train", "tune", preset)
            if args.twins and not (work / "reports" / "eval" / preset / "metrics.json").is_file():
                _run(work, "stages.evaluate", preset)
            held = json.loads(report.read_text())["heldout"]["release"]
            acc = {k: 100 * held[k]["accuracy"] for k in ("with_image", "blank_image", "shuffled_image")}
            row = {
                "preset": preset,
                "seed": seed,
                **acc,
                "lead": acc["with_image"] - max(acc["blank_image"], acc["shuffled_image"]),
                "stage2_s": json.loads(report.read_text())["train"]["seconds"],
                "ran_s": round(seconds),
            }
            if args.twins:
                row["twins"] = _twins(work, preset)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.tag} ({' '.join(args.overrides) or 'params.yaml as it is'})")
    print(
        "| preset | seed | with its image | blank image | another image | lead | VQAv2 (majority) | POPE F1 (majority) "
        "| stage 2 |\n|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        twins = r.get("twins", {})
        cells = [
            f"{twins[b]['release']:.1f} ({twins[b]['majority']:.1f})" if b in twins else "-" for b in ("vqav2", "pope")
        ]
        print(
            f"| {r['preset']} | {r['seed']} | {r['with_image']:.1f} | {r['blank_image']:.1f} | "
            f"{r['shuffled_image']:.1f} | {r['lead']:+.1f} | {cells[0]} | {cells[1]} | {r['stage2_s']:.0f} s |"
        )


if __name__ == "__main__":
    main()
