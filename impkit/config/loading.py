"""Reading ``params.yaml`` into the typed section classes: types, ranges (``Bound``) and errors that
name the key. ``load_section(Cls, "name")`` is how a stage gets its section."""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from impkit.errors import ImpkitError

T = TypeVar("T")


class ConfigError(ImpkitError, ValueError):
    """A params.yaml section is missing, misspelt or of the wrong type."""


@dataclass(frozen=True)
class Bound:
    """The range a number must lie in (``Annotated[int, Bound(1)]``); ``from_dict`` checks it and the
    error names the key: ``world.sizes.captions: must be >= 0, got -5``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is outside
    high_open: bool = False

    def check(self, value: float, where: str) -> None:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        if not (above and below):
            raise ConfigError(f"{where}: must be {self}, got {value!r}")

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


Count = Annotated[int, Bound(0)]  # sizes and counts; 0 builds none
AtLeastOne = Annotated[int, Bound(1)]  # steps, batch sizes, lengths, LoRA rank
Rate = Annotated[float, Bound(0, low_open=True)]  # learning rates, epochs
NonNegative = Annotated[float, Bound(0)]  # weight decay, sizes in MiB
Share = Annotated[float, Bound(0, 1)]  # fractions of a whole
Probability = Annotated[float, Bound(0, 1, high_open=True)]  # dropout: 1 would drop everything


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameters file not found (run from the repository root)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def section(params: Mapping[str, Any], name: str) -> Any:
    if name not in params:
        raise ConfigError(f"params.yaml has no section '{name}' (sections: {sorted(params)})")
    return params[name]


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Annotated:
        value = _check_type(value, args[0], where)
        for bound in (meta for meta in hint.__metadata__ if isinstance(meta, Bound)):
            bound.check(value, where)
        return value
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        if value is None and len(arms) < len(args):
            return None
        if len(arms) == 1:  # Optional[X]: report X's own error, which names the bad key
            return _check_type(value, arms[0], where)
        for arm in arms:
            try:
                return _check_type(value, arm, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} matches none of {hint}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return types.MappingProxyType(
            {_check_type(k, kt, where): _check_type(v, vt, f"{where}.{k}") for k, v in value.items()}
        )
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, where: str | None = None) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown or missing keys raise ``ConfigError``."""
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _check_type(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key '{name}'")
    return cls(**kwargs)


def load_section(
    cls: type[T], name: str, params: Mapping[str, Any] | None = None, path: str | Path = "params.yaml"
) -> T:
    """Section ``name`` of ``params`` (read from ``path`` when not given) as a ``cls``.

    ``name`` may be dotted (``"latency.paper"``, ``"model.presets.nano-3b"``): each part is looked up
    in turn and an error names the first part that is missing.
    """
    params = load_params(path) if params is None else params
    first, *rest = name.split(".")
    value, where = section(params, first), first
    for part in rest:
        if not isinstance(value, Mapping) or part not in value:
            known = sorted(value) if isinstance(value, Mapping) else []
            raise ConfigError(f"params.yaml: {where} has no '{part}' (known: {known})")
        value, where = value[part], f"{where}.{part}"
    return from_dict(cls, value, name)
