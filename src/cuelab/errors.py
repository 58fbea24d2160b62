"""Errors a user can fix: each names where the problem is, what was found and what would work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str        # e.g. "factors.color.correlation.rho"
    value: object    # what was found (Problem.MISSING when absent)
    allowed: str     # what would be valid, in plain words

    MISSING = type("Missing", (), {"__repr__": lambda self: "nothing (the key is missing)"})()

    SHOWN = 160  # characters of a value an error shows: enough to recognise it

    def __str__(self) -> str:
        return f"{self.path or '(top level)'}: got {self.shown()}; {self.allowed}"

    def shown(self) -> str:
        """The value's repr, cut to SHOWN characters (a bad value may be huge)."""
        text = repr(self.value)
        if len(text) <= self.SHOWN:
            return text
        return f"{text[:self.SHOWN]}... ({len(text)} characters)"


class CuelabError(Exception):
    """A problem the user can fix. The CLI prints it and exits with status 2."""

    exit_code = 2


class ExperimentError(CuelabError):
    def __init__(self, problems: list[Problem], source: str = "the experiment"):
        self.problems = problems
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.source}: {n} problem{'s' if n > 1 else ''} in the experiment"
        return "\n".join([head] + [f"  - {p}" for p in self.problems])
