"""What a factor is: a name, a domain, where it acts, a default and a sentence of documentation.

The registry only *declares* factors. How a factor changes the picture lives with the code that
applies it (the renderer for scene factors, the camera simulation for sensor factors), keyed by the
factor's name, so adding a factor is one entry here and one apply function there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Literal

Stage = Literal["scene", "sensor"]
Value = str | float | int


@dataclass(frozen=True)
class Factor:
    name: str
    stage: Stage
    doc: str
    default: Value
    # categorical factors: the named levels, plus an optional family of open-ended values
    # (a user mesh file, an HSV colour, an image file) recognised by `open_value`
    levels: tuple[str, ...] = ()
    open_value: tuple[str, Callable[[str], bool]] | None = None  # (how to write it, test)
    # numeric factors: the closed interval [low, high]
    low: float | None = None
    high: float | None = None
    unit: str = ""
    integer: bool = False
    notes: dict[str, str] = field(default_factory=dict)  # special values, e.g. {"0": "off"}

    @property
    def kind(self) -> Literal["categorical", "numeric"]:
        return "categorical" if self.levels else "numeric"

    @property
    def is_categorical(self) -> bool:
        return bool(self.levels)

    def domain_text(self) -> str:
        """The allowed values, as a person would write them in an error message."""
        if self.is_categorical:
            text = "one of " + ", ".join(self.levels)
            if self.open_value:
                text += f", or {self.open_value[0]}"
            return text
        kind = "an integer" if self.integer else "a number"
        unit = f" {self.unit}" if self.unit else ""
        text = f"{kind} from {_num(self.low)} to {_num(self.high)}{unit}"
        if self.notes:
            text += " (" + "; ".join(f"{k} = {v}" for k, v in self.notes.items()) + ")"
        return text

    def accepts(self, value: object) -> bool:
        if self.is_categorical:
            if not isinstance(value, str):
                return False
            return value in self.levels or bool(self.open_value and self.open_value[1](value))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and float(value) != int(value):
            return False
        return self.low <= value <= self.high

    def __post_init__(self) -> None:
        # A registry entry that contradicts itself is a programming error: fail at import.
        if self.is_categorical == (self.low is not None):
            raise TypeError(f"factor {self.name}: give either levels or low/high")
        if not self.accepts(self.default):
            raise TypeError(f"factor {self.name}: default {self.default!r} outside its domain")


def _num(x: float | None) -> str:
    return f"{x:g}"


def prefixed(prefix: str, pattern: str) -> Callable[[str], bool]:
    """A test for open-ended categorical values such as 'mesh:assets/duck.obj'."""
    rx = re.compile(re.escape(prefix) + pattern)
    return lambda v: bool(rx.fullmatch(v))
