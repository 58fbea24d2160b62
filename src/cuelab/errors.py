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
        return f"{self.where()}: got {self.shown()}; {self.allowed}"

    def where(self) -> str:
        """The path, cut to SHOWN characters (an unknown key may be huge)."""
        path = self.path or "(top level)"
        if len(path) <= self.SHOWN:
            return path
        return f"{path[:self.SHOWN]}... ({len(path)} characters)"

    def shown(self) -> str:
        """The value's repr, cut to SHOWN characters (a bad value may be huge)."""
        text = repr(self.value)
        if len(text) <= self.SHOWN:
            return text
        return f"{text[:self.SHOWN]}... ({len(text)} characters)"


class Words(str):
    """A value told in words rather than shown ('an empty document', '200000 (the default)'):
    a problem prints it as it is, without quotes."""

    def __repr__(self) -> str:
        return str(self)


class CuelabError(Exception):
    """A problem the user can fix. The CLI prints it and exits with status 2."""

    exit_code = 2


class Interrupted(CuelabError):
    """Stopped by the user (Ctrl-C): what was finished is kept; 130, as a shell reports SIGINT."""

    exit_code = 130


class ExperimentError(CuelabError):
    LISTED = 20  # problems a message lists: a file of 10,000 unknown keys gets the first ones

    def __init__(self, problems: list[Problem], source: str = "the experiment", more: int = 0):
        self.problems = problems
        self.source = source
        self.more = more  # problems found beyond `problems`, counted but not described
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems) + self.more
        head = f"{self.source}: {n} problem{'s' if n > 1 else ''} in the experiment"
        listed = self.problems[:self.LISTED]
        tail = [f"  ... and {n - len(listed)} more"] if n > len(listed) else []
        return "\n".join([head] + [f"  - {p}" for p in listed] + tail)
