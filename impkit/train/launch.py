"""Starting the training processes `dvc repro` needs: one per visible GPU, or without a GPU one per
core of one thread each (``train.launcher``); and the DeepSpeed config each stage trains under.

On GPUs (``launcher: auto``) a stage reruns its own command under ``torch.distributed.run``
(torchrun) with one process per visible GPU, each on its own device, the recipe's global batch kept
by gradient accumulation, and the recipe's DeepSpeed config per stage (Imp: ZeRO-2, then ZeRO-3)
handed to the HF Trainer, which runs DeepSpeed under any launcher. A run already under a launcher
(``accelerate launch``, ``torchrun``, ``srun``: they set WORLD_SIZE) trains where it is.

Data-parallel training on a machine without a GPU: one process per core, one thread each.

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

``launch_data_parallel`` reruns a stage's own command under ``torch.distributed.run`` (torchrun),
on GPUs and CPUs alike, so that ``dvc repro`` needs no launcher of its own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from impkit.config import ConfigError
from impkit.hardware import usable_cores
from impkit.timings import LAUNCHED_ENV

log = logging.getLogger(__name__)


def under_launcher() -> bool:
    """True in a process started by torchrun / ``accelerate launch`` (they set WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """The process that writes outputs: rank 0, or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def leave_process_group() -> None:
    """Every training process, once training and its collective steps (ZeRO-3's gather, the merge)
    are done: wait for the others, then leave the process group. A process that exits with the group
    still open can abort in its C++ teardown ("terminate called without an active exception", exit
    -6), and torchrun then fails the stage after training had finished."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def use_every_core() -> None:
    """After training, in the one process left: threads on every usable core again."""
    torch.set_num_threads(usable_cores())


def processes_to_start(launcher: str, cpu_processes: int) -> int:
    """How many training processes a stage starts (``train.launcher`` and ``train.cpu_processes``):
    one per visible GPU, or ``cpu_processes_to_start`` without a GPU; 1 (train in this process)
    with ``launcher: none`` or under a launcher."""
    if launcher == "none" or under_launcher():
        return 1
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return cpu_processes_to_start(cpu_processes)


def deepspeed_config(path: str | None) -> str | None:
    """The DeepSpeed config a stage trains under: the recipe's on GPUs (None without a GPU, where
    DDP over gloo needs none). A missing DeepSpeed says how to install it, in one line."""
    if path is None or not torch.cuda.is_available():
        return None
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"the recipe trains under DeepSpeed ({path}) but it is not installed: pip install -e '.[gpu]' "
            "(or set the recipe's deepspeed: null)"
        ) from None
    if not Path(path).is_file():
        raise ConfigError(f"DeepSpeed config {path} not found (run from the repository root)")
    return path


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
    """Run ``python -m module *argv`` as ``processes`` data-parallel processes (one per GPU, or
    without a GPU of one thread each) and wait for them; returns the exit code (that of the first
    process to fail, 0 when all succeed).

    The processes print their own progress and errors; a failure is summed up in one line here instead
    of the launcher's traceback. An interrupt stops them all (their checkpoints stay for a resume).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if torch.cuda.is_available():
        log.info("training in %d data-parallel processes, one per GPU (train.launcher)", processes)
    else:
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
