"""Shared entry-point wrapper for DVC stages and the ``impkit`` command: plain-words errors instead
of deep tracebacks, and the stage's time in reports/timings.json."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from types import ModuleType

from impkit.errors import ImpkitError
from impkit.progress import setup_logging
from impkit.timings import process_start_time, record_stage

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
    by default), then its ``main`` under :func:`run_stage`."""
    parser = argparse.ArgumentParser(prog=f"python -m {step.__name__}", description=step.__doc__)
    step.add_arguments(parser)
    args = parser.parse_args(argv)
    run_stage(lambda: step.main(args))
