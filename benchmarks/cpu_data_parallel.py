"""Benchmark: stage-2 training of nano-3b on the CPU in one process on every core's threads against
``train.cpu_processes`` data-parallel processes of one thread each (impkit.train.launch), side by side.

    .venv/bin/python -m benchmarks.cpu_data_parallel [--records 320] [--preset nano-3b] [--processes 2] [--rounds 2]
    .venv/bin/python -m benchmarks.cpu_data_parallel --batches 8/4,16/8 [--records 960]

Both run the project's trainer for one epoch of the same records, with the preset's stage-2 recipe as
the pipeline runs it (step speed-ups included), and see the same global batches (the grouped sampler
draws global batches; the processes split each one). The two take turns, ``--rounds`` times; each
one's fastest round counts, since noise on a shared machine only adds time. Two figures each: the
training loop's samples/s, and the wall time of the whole command (start-up, imports, the launcher's
rendezvous included), which is what a stage pays.

`--batches G/P,...` compares instead stage-2 global batches G (P per process) in the data-parallel
setup, side by side in the same way: what a larger global batch buys per sample.

Needs the assembled data (`make repro` builds it).
"""

from __future__ import annotations

from impkit.stage import openmp_wait_policy

openmp_wait_policy("PASSIVE")  # first: before torch loads OpenMP, as the stages it measures set it

import argparse
import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.train_throughput import build, preset_and_recipe, stage2_records
from impkit.progress import setup_logging
from impkit.train.launch import is_main_process, launch_data_parallel, usable_cores

MODULE = "benchmarks.cpu_data_parallel"


def worker(preset_name: str, records: int, out: Path, batch: tuple[int, int] | None = None) -> None:
    """One epoch of stage 2 through the trainer (``batch``: another global and per-process batch than
    the recipe's); the first process writes its training seconds."""
    import torch

    from impkit.train.dataset import DataCollator
    from impkit.train.sampler import ModalityLengthGroupedSampler
    from impkit.train.trainer import fit_stage

    preset, recipe = preset_and_recipe(preset_name)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, data = stage2_records(preset, recipe, records, Path(tmp))
        stage = dataclasses.replace(recipe.stage2, epochs=1, checkpoint_steps=10**9, logging_steps=10**9)
        if batch:
            stage = dataclasses.replace(stage, global_batch_size=batch[0], per_device_batch_size=batch[1])
        result = fit_stage(
            build(preset, tokenizer, recipe),
            data,
            DataCollator(tokenizer.pad_token_id),
            stage,
            checkpoint_dir=Path(tmp) / "checkpoints",
            fingerprint={"bench": "dp"},
            seed=0,
            label="bench",
            sampler_factory=lambda b, s: ModalityLengthGroupedSampler.for_dataset(data, b, seed=s),
        )
    if is_main_process():
        out.write_text(
            json.dumps(
                {
                    "seconds": result.seconds,
                    "records": len(data),
                    "threads": torch.get_num_threads(),
                    "processes": int(os.environ.get("WORLD_SIZE", "1")),
                    "batch": f"{stage.global_batch_size}/{stage.per_device_batch_size}",
                }
            )
        )


def _batch(text: str) -> tuple[int, int]:
    global_batch, per_process = (int(part) for part in text.split("/"))
    return global_batch, per_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="nano-3b")
    parser.add_argument("--records", type=int, default=320, help="stage-2 records (one epoch)")
    parser.add_argument("--processes", type=int, default=2, help="data-parallel processes of one thread each")
    parser.add_argument("--rounds", type=int, default=2, help="turns of both runs; each run's fastest counts")
    parser.add_argument("--batches", help="G/P,...: compare these global / per-process batches, data parallel")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # a run's result file (internal)
    parser.add_argument("--batch", help=argparse.SUPPRESS)  # the worker's G/P (internal)
    args = parser.parse_args()
    if args.worker:
        worker(args.preset, args.records, args.worker, _batch(args.batch) if args.batch else None)
        return
    setup_logging()
    preset_and_recipe(args.preset)  # a missing build says so before anything starts
    if args.processes > usable_cores():
        raise SystemExit(f"--processes {args.processes}: only {usable_cores()} usable core(s)")
    batches = [_batch(b) for b in args.batches.split(",")] if args.batches else []
    argv = ["--preset", args.preset, "--records", str(args.records)]
    env = {**os.environ, "IMPKIT_PROGRESS": "0"}
    env.pop("OMP_NUM_THREADS", None)  # one process: the default, a thread per core
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"

        def one_process() -> None:
            subprocess.run([sys.executable, "-m", MODULE, *argv, "--worker", str(result)], env=env, check=True)

        def data_parallel(extra: tuple[str, ...] = ()) -> None:
            os.environ["IMPKIT_PROGRESS"] = "0"
            if launch_data_parallel(args.processes, MODULE, [*argv, "--worker", str(result), *extra]) != 0:
                raise SystemExit("the data-parallel run failed (see above)")

        variants = (
            [functools.partial(data_parallel, ("--batch", f"{g}/{p}")) for g, p in batches]
            if batches
            else [one_process, data_parallel]
        )
        for _ in range(args.rounds):
            for run in variants:
                start = time.perf_counter()
                run()
                wall = time.perf_counter() - start
                done = json.loads(result.read_text())
                label = f"{done['processes']} process(es) x {done['threads']} thread(s)"
                if batches:
                    label += f", batch {done['batch']}"
                runs.setdefault(label, []).append((done["records"] / done["seconds"], wall))
    print(
        f"\n{args.preset} stage 2, one epoch of {args.records} records through the trainer, "
        f"fastest of {args.rounds} round(s) (rounds in brackets)"
    )
    print(f"{'':40}{'samples/s':>10}{'command s':>11}")
    best = {label: (max(r for r, _ in rounds), min(w for _, w in rounds)) for label, rounds in runs.items()}
    for label, (rate, wall) in best.items():
        spread = " / ".join(f"{r:.1f}" for r, _ in runs[label])
        print(f"{label:40}{rate:>10.1f}{wall:>11.1f}   [{spread}]")
    (first, (base_rate, base_wall)), *others = best.items()
    for label, (rate, wall) in others:
        print(
            f"{label}: training {rate / base_rate:.2f}x as fast as {first}; the whole command {base_wall / wall:.2f}x"
        )


if __name__ == "__main__":
    main()
