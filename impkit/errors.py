"""The base of every error impkit raises on purpose.

An ``ImpkitError`` describes bad input, a failed gate or a missing file in words a user can act on:
entry points (``impkit`` commands, DVC stages, training processes) print its message in one line and
exit non-zero instead of showing a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ImpkitError(Exception):
    """An error whose message is the whole story (it names the file or key at fault)."""
