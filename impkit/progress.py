"""Progress of long work, with rate and ETA, that never goes silent.

On a terminal: a tqdm bar. Anywhere else (DVC or CI logs, a pipe, the side-by-side worker
processes of ``impkit.train.side_by_side``, whose bars would overwrite each other): a plain log line
at least every ``IMPKIT_PROGRESS_SECONDS`` (20 s by default), naming the work, how far it is, its
rate and its ETA. ``IMPKIT_PROGRESS=0`` turns the bars off; the log lines stay, so that no stage is
ever silent for more than the interval (a build that printed nothing for 25 minutes could not be
told from a hung one). ``IMPKIT_PROGRESS=log`` asks for the log lines on a terminal too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("impkit.progress")

MODE_ENV = "IMPKIT_PROGRESS"  # 1 (default): bars on a terminal, log lines elsewhere; log; 0: no bars
SECONDS_ENV = "IMPKIT_PROGRESS_SECONDS"
DEFAULT_SECONDS = 20.0  # under the 30 s a stage may stay silent


def enabled() -> bool:
    """Whether progress bars may be drawn (log lines are written whatever this says)."""
    return os.environ.get(MODE_ENV, "1") not in ("0", "log")


def interval() -> float:
    """Seconds between two progress log lines."""
    raw = os.environ.get(SECONDS_ENV)
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_SECONDS
    except ValueError:
        return DEFAULT_SECONDS


def bars() -> bool:
    """A tqdm bar (on a terminal, bars enabled) rather than log lines."""
    return enabled() and sys.stderr.isatty()


def use_log_lines() -> None:
    """Log lines instead of bars in this process and the ones it starts (side-by-side workers)."""
    if os.environ.get(MODE_ENV) != "0":
        os.environ[MODE_ENV] = "log"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _amount(n: float, unit_scale: bool) -> str:
    if not unit_scale or abs(n) < 1000:
        return f"{n:g}" if isinstance(n, float) else str(n)
    for prefix in ("k", "M", "G", "T"):
        n /= 1000
        if abs(n) < 1000 or prefix == "T":
            return f"{n:.1f}{prefix}"
    raise AssertionError("unreachable")


class _LastLine:
    """When a progress line was last written: shared by every bar of a process, so that short pieces of
    work in a row (loading images, then training) cannot each stay under the interval and add up to a
    long silence."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.at = clock()


_PROCESS_LAST_LINE = _LastLine(time.monotonic)


class LogProgress:
    """tqdm's interface (iterate, ``update``, ``set_postfix``, ``close``, a context manager) writing a
    log line when ``every`` seconds have passed since this process's last progress line, and one when
    long work ends. ``clock``: a clock of its own (tests), with its own last line."""

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        unit_scale: bool = False,
        initial: float = 0,
        every: float | None = None,
        clock: Callable[[], float] | None = None,
        **_ignored: Any,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit, self.unit_scale = iterable, total, desc, unit, unit_scale
        self.n = initial
        self.every = interval() if every is None else every
        self.last_line = _PROCESS_LAST_LINE if clock is None else _LastLine(clock)
        self.clock = self.last_line.clock
        self.start = self.clock()
        self.postfix = ""
        self.closed = False

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last_line.at >= self.every:
            self.last_line.at = now
            log.info("%s", self.line(now))

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{key} {value}" for key, value in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        """Nothing to redraw: lines are written by ``update``."""

    def line(self, now: float) -> str:
        """``desc: n/total unit (pct), rate, ETA`` as the work stands at ``now``."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        done = _amount(self.n, self.unit_scale)
        parts = [f"{self.desc}: " if self.desc else ""]
        if self.total:
            parts.append(
                f"{done}/{_amount(self.total, self.unit_scale)} {self.unit} ({100 * self.n / self.total:.0f} %)"
            )
        else:
            parts.append(f"{done} {self.unit}")
        parts.append(f", {rate:.0f} {self.unit}/s" if rate >= 100 else f", {rate:.3g} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f", ETA {_duration(max(self.total - self.n, 0) / rate)}")
        parts.append(f", {_duration(elapsed)} so far")
        if self.postfix:
            parts.append(f" [{self.postfix}]")
        return "".join(parts)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = self.clock()
        if now - self.start >= self.every:  # long work says when it ended; short work stays quiet
            self.last_line.at = now
            log.info(
                "%s: done, %s %s in %s",
                self.desc or "work",
                _amount(self.n, self.unit_scale),
                self.unit,
                _duration(now - self.start),
            )


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm | LogProgress:
    """Progress of ``iterable`` (or of ``update`` calls): a tqdm bar on a terminal, refreshed at most
    every 2 s; log lines elsewhere. ``disable=True`` silences it (for work too short to report)."""
    if kwargs.get("disable") is True:
        return tqdm(iterable, **kwargs)
    if not bars():
        return LogProgress(iterable, **kwargs)
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.pop("disable", None)
    return tqdm(iterable, **kwargs)


@contextlib.contextmanager
def watch_file(path: str | os.PathLike, *, poll: float = 0.5, **kwargs: Any) -> Iterator[None]:
    """Progress of work that reports none (a C call writing ``path``, e.g. llama.cpp's quantizer),
    read from the file's size while the block runs: bytes written, rate, and an ETA when ``total``
    (the expected size) is given."""
    path = Path(path)
    bar = progress(unit="B", unit_scale=True, **kwargs)
    done = threading.Event()

    def follow() -> None:
        while not done.wait(poll):
            with contextlib.suppress(OSError):
                bar.update(path.stat().st_size - bar.n)

    thread = threading.Thread(target=follow, name=f"watch {path.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # GX and friends log a lot at INFO; keep the stage log about the stage.
    for noisy in ("great_expectations", "urllib3", "asyncio", "filelock", "PIL", "torch.distributed.elastic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
