"""Data-parallel training on a machine without a GPU: one process per core, one thread each.

The nano models are made of small matrices. Split over two OpenMP threads, each of their thousands
of small kernels a step pays a thread hand-over, and on the 2-core machines the default pipeline
targets two threads trained no faster than one (docs/training.md, "CPU data parallel"). Two processes of one
thread each, every one on half of each global batch (PyTorch DDP over gloo, as the HF Trainer runs
it under any launcher), keep both cores busy with no hand-over inside a step; they meet once per
optimizer step to average gradients.

The global batch stays the recipe's: the Trainer divides the gradient accumulation by the number of
processes (``impkit.train.trainer.training_arguments``), the grouped sampler draws global batches
and each process takes a consecutive slice, and the loss is averaged over the supervised tokens of
all processes (transformers' ``average_tokens_across_devices``), so the update is the one process's
update up to the order of float additions.

``launch_data_parallel`` reruns a stage's own command under ``torch.distributed.run`` (torchrun):
it is what ``accelerate launch`` does for GPU users, chosen here by ``train.cpu_processes`` so that
``dvc repro`` needs no launcher of its own. GPU machines and runs already under a launcher are left
as they are.
"""

from __future__ import annotations

import logging
import os

import torch

from impkit.hardware import usable_cores
from impkit.timings import LAUNCHED_ENV

log = logging.getLogger(__name__)


def under_launcher() -> bool:
    """True in a process started by torchrun / ``accelerate launch`` (they set WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """The process that writes outputs: rank 0, or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def use_every_core() -> None:
    """After training, in the one process left: threads on every usable core again."""
    torch.set_num_threads(usable_cores())


def cpu_processes_to_start(requested: int) -> int:
    """How many training processes this run should start: ``requested``, at most one per usable core;
    1 (train in this process) on a GPU machine or under a launcher."""
    if requested <= 1 or under_launcher() or torch.cuda.is_available():
        return 1
    cores = usable_cores()
    if requested > cores:
        log.info("train.cpu_processes is %d but %d core(s) are usable: starting %d", requested, cores, cores)
    return min(requested, cores)


def launch_data_parallel(processes: int, module: str, argv: list[str]) -> int:
    """Run ``python -m module *argv`` as ``processes`` data-parallel processes of one thread each and
    wait for them; returns the exit code (that of the first process to fail, 0 when all succeed).

    The processes print their own progress and errors; a failure is summed up in one line here instead
    of the launcher's traceback. An interrupt stops them all (their checkpoints stay for a resume).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # One OpenMP thread per process: the point of the split. An explicit setting by the user wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    log.info(
        "training in %d data-parallel processes of %s thread(s) each (train.cpu_processes)",
        processes,
        os.environ["OMP_NUM_THREADS"],
    )
    args = parse_args(["--standalone", f"--nproc-per-node={processes}", "--module", module, *argv])
    os.environ[LAUNCHED_ENV] = "1"  # this process records the stage's time, not the ones it starts
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        log.error(
            "training process %d of %d failed with exit code %d (its message is above)",
            rank,
            processes,
            failure.exitcode,
        )
        return failure.exitcode if failure.exitcode > 0 else 1
    except SignalException as exc:
        log.error("interrupted (%s); the training processes were stopped", exc.sigval.name)
        return 130
    finally:
        os.environ.pop(LAUNCHED_ENV, None)
    return 0
