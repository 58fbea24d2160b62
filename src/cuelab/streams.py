"""Named random streams: every per-row draw is keyed by what it is, never by where it sits.

A draw is a pure function of (experiment seed, group of rows, the draw's name, the row's index):
`Streams(seed, "train", n).uniform("color")` gives row i of the train split the same number
whatever other factors exist, however many rows there are and whatever order they are made in.
So adding a factor (a new stream) or a probe (a new group) never changes an existing dataset.

The generator is SplitMix64 (Steele, Lea & Flood 2014) run as a counter: the i-th output of a
generator seeded by a hash of the stream's name. It is vectorised over rows (a million rows x
forty streams in about a second) and the same on every platform.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (an array: numpy wraps uint64 arithmetic silently)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _key(text: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(),
                                    "little"))


@dataclass(frozen=True)
class Streams:
    """The random streams of `n` rows of one group (rows 0..n-1 of "train", "sweep:color"...)."""

    seed: int
    group: str
    n: int

    def bits(self, name: str) -> np.ndarray:
        """64 random bits per row from the stream `name`."""
        counter = (np.arange(1, self.n + 1, dtype=np.uint64) * _GOLDEN
                   + _key(f"{self.seed}/{self.group}/{name}"))
        return _mix(counter)

    def uniform(self, name: str) -> np.ndarray:
        """A uniform number in [0, 1) per row (53 bits)."""
        return (self.bits(name) >> _S11).astype(np.float64) * 2.0 ** -53

    def integers(self, name: str, high: int) -> np.ndarray:
        """A uniform integer in [0, high) per row."""
        return np.minimum((self.uniform(name) * high).astype(np.int64), high - 1)

    def seeds(self, name: str) -> np.ndarray:
        """A 31-bit seed per row, for code that seeds its own generator (sensor noise,
        where an occluder stands)."""
        return (self.bits(name) >> np.uint64(33)).astype(np.int64)

    def child(self, name: str) -> Streams:
        """Fresh streams for the same rows: a second, independent draw of the same things."""
        return Streams(self.seed, f"{self.group}/{name}", self.n)
