"""What a factor is: a name, a domain, where it acts, a default and a sentence of documentation.

The registry only *declares* factors. How a factor changes the picture lives with the code that
applies it (the renderer for scene factors, the camera simulation for sensor factors), keyed by the
factor's name, so adding a factor is one entry here and one apply function there.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

Stage = Literal["scene", "sensor"]
Value = str | float | int


@dataclass(frozen=True)
class Factor:
    name: str
    stage: Stage
    doc: str
    default: Value
    # categorical factors: the named levels, plus an optional family of open-ended values
    # (a user mesh file, an HSV colour, an image file)
    levels: tuple[str, ...] = ()
    open_form: OpenForm | None = None
    # numeric factors: the closed interval [low, high]
    low: float | None = None
    high: float | None = None
    unit: str = ""
    integer: bool = False
    notes: dict[str, str] = field(default_factory=dict)  # special values, e.g. {"0": "off"}
    seeded: bool = False  # away from its default, the factor draws from the row's seed

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
            if self.open_form:
                text += f", or {self.open_form.syntax}"
            return text
        kind = "an integer" if self.integer else "a number"
        unit = f" {self.unit}" if self.unit else ""
        text = f"{kind} from {_num(self.low)} to {_num(self.high)}{unit}"
        if self.notes:
            text += " (" + "; ".join(f"{k} = {v}" for k, v in self.notes.items()) + ")"
        return text

    def accepts(self, value: object) -> bool:
        """Is `value` in this factor's domain? The one test the schema, the renderer's row
        check and the data gate all use."""
        if self.is_categorical:
            if not isinstance(value, str):
                return False
            return value in self.levels or bool(self.open_form and self.open_form.parse(value))
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                             np.floating)):
            return False
        if not math.isfinite(value) or (self.integer and float(value) != int(value)):
            return False
        return self.low <= value <= self.high

    def problem(self, value: object) -> str | None:
        """What is wrong with `value`, in words, or None when it is allowed."""
        if self.accepts(value):
            return None
        return f"{self.name} must be {self.domain_text()}"

    def file_problem(self, value: object) -> str | None:
        """What is wrong with the file an open value names (missing, or not of its format:
        `OpenForm.check`), or None (fine, or no file)."""
        file = self.file_of(value)
        if file is None:
            return None
        path = Path(file)
        if not path.is_file():
            return (f"no such file {path.resolve()} (paths are relative to the directory "
                    "cuelab runs in)")
        return self.open_form.check(path) if self.open_form.check else None

    def file_of(self, value: object) -> str | None:
        """The path an open value names ('mesh:duck.obj' -> 'duck.obj'), else None."""
        form = self.open_form
        if form is None or not form.is_file or not isinstance(value, str):
            return None
        return value[len(form.prefix):] if form.parse(value) else None

    def __post_init__(self) -> None:
        # A registry entry that contradicts itself is a programming error: fail at import.
        if self.is_categorical == (self.low is not None):
            raise TypeError(f"factor {self.name}: give either levels or low/high")
        if not self.accepts(self.default):
            raise TypeError(f"factor {self.name}: default {self.default!r} outside its domain")


def _num(x: float | None) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class OpenForm:
    """Categorical values beyond the named levels, written `prefix` + something matching
    `pattern` (e.g. 'mesh:assets/duck.obj', 'hsv:200,0.5,0.8'); parsed here only."""
    prefix: str
    pattern: str
    syntax: str                      # how to write it, for messages
    is_file: bool = False            # the rest is a path (meshes, images)
    valid: Callable[[tuple], bool] = lambda groups: True  # a further test of the parts
    check: Callable[[Path], str | None] | None = None  # what is wrong with the file, if any

    def parse(self, value: str) -> tuple[str, ...] | None:
        """The pattern's groups (or the whole rest) of a well-formed value, else None."""
        m = re.fullmatch(re.escape(self.prefix) + self.pattern, value)
        if m is None:
            return None
        groups = m.groups() or (value[len(self.prefix):],)
        return groups if self.valid(groups) else None
