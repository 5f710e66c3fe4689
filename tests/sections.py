"""Config objects for tests, built from the shipped params.yaml: a test names only the keys it
changes, so it never restates (and never drifts from) the pipeline's values."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from impkit.config import from_dict, load_params

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
PARAMS = load_params(PARAMS_FILE)


def raw(name: str) -> Any:
    """A copy of params.yaml's section ``name`` (dotted: ``"train.recipes.nano.stage2"``)."""
    value: Any = PARAMS
    for part in name.split("."):
        value = value[part]
    return copy.deepcopy(value)


def section_with(cls: type, name: str, **overrides: Any) -> Any:
    """Section ``name`` of params.yaml as a ``cls``, with ``overrides`` in place of its keys."""
    return from_dict(cls, {**raw(name), **overrides}, name)
