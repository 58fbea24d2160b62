"""Names and numbers in plain words: the pieces every sentence of the pages is built from.

An estimate is said with its interval and how sure it is: a verdict only when the interval is on
one side of the line, "no clear ..." when it straddles it, a caveat when it is wide. Functions
return plain text; the page escapes it. (A leaf module: the probe kinds import it.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..factors import REGISTRY

if TYPE_CHECKING:
    from ..probes.estimate import Estimate

WIDE = 0.30            # an interval wider than this (in shares) is called wide
FEW_DECISIONS = 20     # conflict images decided for either cue: fewer and we do not judge
NOTABLE = 0.05         # a factor that moves fewer decisions than this barely matters

# How the page names a factor, where its registry name is not plain English.
NAMES = {"color": "colour", "iso": "ISO noise", "jpeg_quality": "JPEG quality",
         "jpeg_subsampling": "JPEG chroma subsampling", "blur_sigma": "defocus blur",
         "lens_k1": "lens distortion k1", "lens_k2": "lens distortion k2",
         "lens_p1": "lens tilt p1", "lens_p2": "lens tilt p2",
         "position_x": "horizontal position", "position_y": "vertical position",
         "white_balance": "white balance", "resample_scale": "resampling scale",
         "resample_method": "resampling method", "demosaic": "demosaicing"}
UNITS = {"deg": "°", "x": "×", "px": " px", "K": " K", "mm": " mm"}


def name(factor: str) -> str:
    return NAMES.get(factor, factor.replace("_", " "))


def title(factor: str) -> str:
    """The factor's name at the start of a sentence: "Colour", "JPEG quality"."""
    text = name(factor)
    return text[:1].upper() + text[1:]


def level(factor: str, value: str) -> str:
    """A sweep level as a person reads it: "40°", "0 (no JPEG, lossless)"."""
    f = REGISTRY.get(factor)
    if f is None or f.is_categorical:
        return value
    text = value + UNITS.get(f.unit, "")
    note = f.notes.get(value)
    if note:  # notes may hold parentheses themselves: keep one level of them
        text += f" ({note.replace(' (', ', ').replace(')', '')})"
    return text


def pct(x: float | None) -> str:
    if x is None:
        return "–"
    text = f"{abs(x) * 100:.0f}"
    return ("−" if x < 0 and text != "0" else "") + text + "%"


def interval(e: Estimate) -> str:
    """'[83–91%]'; '[−3% to 7%]' when an end is negative (a dash would read as a minus)."""
    lo, hi = e.low, e.high
    if lo is None or hi is None:
        return "(no interval)"
    if lo < 0 or hi < 0:
        return f"[{pct(lo)} to {pct(hi)}]"
    return f"[{pct(lo)[:-1]}–{pct(hi)}]"


def estimate(e: Estimate | None) -> str:
    """'87% [83–91%]'."""
    if not defined(e):
        return "undefined"
    return f"{pct(e.value)} {interval(e)}"


def defined(e: Estimate | None) -> bool:
    return e is not None and e.value is not None


def wide(e: Estimate) -> bool:
    return e.low is None or e.high is None or e.high - e.low > WIDE


def width_caveat(e: Estimate, units: str) -> str:
    """A clause for a wide interval, naming how little data it rests on."""
    if not defined(e) or not wide(e):
        return ""
    return f" (a wide interval: only {e.n} {units}; treat it as a hint)"


def direction(e: Estimate | None) -> str:
    """How sure a difference is: 'up' or 'down' when its interval excludes zero, 'none' when it
    includes zero and is small, 'unclear' when it includes zero but could be large, 'undefined'
    without a number."""
    if not defined(e):
        return "undefined"
    if e.low is not None and e.low > 0:
        return "up"
    if e.high is not None and e.high < 0:
        return "down"
    return "none" if abs(e.value) < NOTABLE else "unclear"


def complement(e: Estimate) -> Estimate:
    """1 - e: the preference for b from the preference for a."""
    flip = lambda x: None if x is None else 1 - x  # noqa: E731
    return e.model_copy(update={"value": flip(e.value), "low": flip(e.high),
                                "high": flip(e.low)})
