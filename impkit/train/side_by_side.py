"""Independent training jobs side by side on a machine without a GPU: one process per core, one
thread each.

The `backbones` stage pretrains parts that share nothing while they train (the vision tower, one
causal LM per family). On the 2-core machines the default pipeline targets, two OpenMP threads make
these small models far less than twice as fast (2026-12-02, Xeon: an LM 114-127 s on one thread,
75-108 s on two; the tower 152 s and 184 s; docs/training.md, "CPU data parallel"), so one job per core, each
on one thread, finishes the set sooner than the jobs one after another on every core. Each job is
deterministic for its seed and thread count, so the results do not depend on which process runs it
or in what order the jobs finish.

``impkit.train.launch`` is the counterpart for a single training job (data parallel).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

# (label, function, keyword arguments): the function must be importable by name (spawned processes
# import it) and its arguments and result picklable.
Job = tuple[str, Callable[..., Any], Mapping[str, Any]]


def _one_thread_worker() -> None:
    from impkit.progress import setup_logging, use_log_lines

    torch.set_num_threads(1)
    setup_logging()
    use_log_lines()  # the workers share one terminal: bars would overwrite each other, log lines interleave


def run_side_by_side(jobs: Sequence[Job], processes: int, *, poll_seconds: float = 0.5) -> dict[str, Any]:
    """Run every job and return its result by label, in the order of ``jobs``.

    ``processes`` > 1: that many worker processes of one thread each take the jobs in the order given
    (put the longest first). The first job to fail stops the others and its exception is raised here.
    ``processes`` <= 1: the jobs run one after another in this process, on its threads.
    """
    if processes <= 1 or len(jobs) <= 1:
        return {label: fn(**kwargs) for label, fn, kwargs in jobs}
    processes = min(processes, len(jobs))
    log.info(
        "%d independent jobs (%s) in %d processes of one thread each (train.cpu_processes)",
        len(jobs),
        ", ".join(label for label, _, _ in jobs),
        processes,
    )
    start = time.perf_counter()
    # spawn, not fork: the parent has OpenMP and torch's thread pools running
    with multiprocessing.get_context("spawn").Pool(processes, initializer=_one_thread_worker) as pool:
        pending = {label: pool.apply_async(fn, kwds=dict(kwargs)) for label, fn, kwargs in jobs}
        results: dict[str, Any] = {}
        while pending:
            for label, result in list(pending.items()):
                if result.ready():
                    # re-raises the job's exception; leaving the `with` then terminates the others
                    results[label] = result.get()
                    del pending[label]
                    log.info("%s done after %.0f s", label, time.perf_counter() - start)
            if pending:
                time.sleep(poll_seconds)
    return {label: results[label] for label, _, _ in jobs}
