"""Shared entry-point wrapper for DVC stages and the ``impkit`` command: plain-words errors instead
of deep tracebacks, the stage's time in reports/timings.json, and the OpenMP wait policy each step
sets before torch or llama.cpp start their thread pools."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from types import ModuleType

from impkit.errors import ImpkitError
from impkit.progress import setup_logging
from impkit.timings import process_start_time, record_stage

WAIT_POLICIES = ("PASSIVE", "ACTIVE")


def openmp_wait_policy(policy: str) -> str:
    """Set ``OMP_WAIT_POLICY`` for this process and the processes it starts; returns the one in force.

    OpenMP reads the variable once, when its runtime loads (torch's on ``import torch``, ggml's with
    llama.cpp), so an entry point calls this before anything imports either. The right policy
    depends on the work, measured on the shared 2-core machines (docs/performance.md,
    docs/export-latency.md): PASSIVE (waiting threads sleep) made training 3x faster (nano-3b LoRA
    step 4 -> 13 samples/s), while ACTIVE (waiting threads spin) made llama.cpp generate 24x faster
    at 2 threads (6,150 against 261 tokens/s), ggml waiting for its threads after every operation.
    A policy already in the environment wins, so the other one can be measured; it is logged.
    """
    if policy not in WAIT_POLICIES:
        raise ValueError(f"OpenMP wait policy must be one of {WAIT_POLICIES}, got {policy!r}")
    current = os.environ.setdefault("OMP_WAIT_POLICY", policy)
    if current.upper() != policy:
        logging.getLogger("impkit").warning(
            "OMP_WAIT_POLICY=%s from the environment, not %s as this command sets it: timings differ", current, policy
        )
    return current


# Errors that describe bad input, a failed gate or a missing file: the message is the whole story.
USER_ERRORS = (ImpkitError, FileNotFoundError)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``: errors in plain words, and the stage's time in reports/timings.json."""
    setup_logging()
    started = process_start_time()
    try:
        main()
        try:
            record_stage(started)
        except OSError as exc:  # the stage's own outputs are written; a missing timing is no reason to fail it
            logging.getLogger("impkit").warning("could not record the stage's time: %s", exc)
    except USER_ERRORS as exc:
        logging.getLogger("impkit").error("%s", exc)
        sys.exit(1)
    except KeyboardInterrupt:
        logging.getLogger("impkit").error("interrupted; outputs were left as they were before this run")
        sys.exit(130)


def run_step(step: ModuleType, argv: list[str] | None = None) -> None:
    """Run a step of ``impkit.steps`` as a command: its arguments parsed from ``argv`` (the command line
    by default), then :func:`run_parsed_step`."""
    parser = argparse.ArgumentParser(prog=f"python -m {step.__name__}", description=step.__doc__)
    step.add_arguments(parser)
    args = parser.parse_args(argv)
    run_parsed_step(step, args)


def run_parsed_step(step: ModuleType, args: argparse.Namespace) -> None:
    """A step's ``main`` under :func:`run_stage`, after the OpenMP wait policy the step asks for
    (``OMP_WAIT_POLICY``; None for steps that never load torch or llama.cpp): the step imports the
    library inside ``main``, so the policy is in place before any OpenMP runtime loads."""
    if step.OMP_WAIT_POLICY is not None:
        openmp_wait_policy(step.OMP_WAIT_POLICY)
    run_stage(lambda: step.main(args))
