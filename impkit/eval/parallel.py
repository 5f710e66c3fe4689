"""Data-parallel answering under ``accelerate launch``: each process answers one contiguous shard of
the questions and the shards are gathered back in process order, so the merged answers are in the
questions' own order and equal to a single process's (greedy decoding; batching never changes an
answer, see ``impkit.eval.runners.torch_runner``).

Run the same command under ``accelerate launch --multi_gpu --num_processes N -m ...`` (on a machine
without GPUs too: the processes then talk over gloo on the CPU; ``accelerate launch --cpu`` would
need MPI for more than one process). Without a launcher there is one process and nothing is split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from impkit.eval.runners import Question, Runner

log = logging.getLogger(__name__)


def _state() -> Any:
    import torch
    from accelerate import PartialState

    # Without GPUs the processes that `accelerate launch --multi_gpu` (torchrun) starts must be told
    # they are CPU processes, or each one runs alone; with cpu=True they join a gloo process group.
    return PartialState(cpu=not torch.cuda.is_available())


def shard_bounds(n: int, processes: int, index: int) -> tuple[int, int]:
    """The [start, end) slice of ``n`` questions that process ``index`` of ``processes`` answers:
    contiguous, sizes differing by at most one, earlier processes taking the extra ones."""
    if processes < 1 or not 0 <= index < processes:
        raise ValueError(f"process {index} of {processes} does not exist")
    size, extra = divmod(n, processes)
    start = index * size + min(index, extra)
    return start, start + size + (index < extra)


def is_main_process() -> bool:
    """True in the one process that writes files (the only process without ``accelerate launch``)."""
    return _state().is_main_process


def device() -> Any:
    """This process's device (its own GPU under ``accelerate launch``, else cuda:0 or the CPU)."""
    return _state().device


def answer_all(runner: Runner, questions: Sequence[Question], *, blank_images: bool = False) -> list[str]:
    """Every process gets all ``questions``' answers, in order; each answers only its shard."""
    state = _state()
    if state.num_processes == 1:
        return runner.answer(questions, blank_images=blank_images)
    from accelerate.utils import gather_object

    start, end = shard_bounds(len(questions), state.num_processes, state.process_index)
    log.info(
        "process %d/%d answers questions %d-%d of %d",
        state.process_index + 1,
        state.num_processes,
        start,
        end - 1,
        len(questions),
    )
    mine = runner.answer(list(questions[start:end]), blank_images=blank_images)
    # gather_object concatenates the per-process lists in process order: shard order = input order.
    merged = gather_object([mine])
    answers = [answer for shard in merged for answer in shard]
    if len(answers) != len(questions):
        raise RuntimeError(f"gathered {len(answers)} answers for {len(questions)} questions")
    return answers


def wait_for_everyone() -> None:
    _state().wait_for_everyone()
