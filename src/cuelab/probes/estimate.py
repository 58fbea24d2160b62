"""A number with its confidence interval (`Estimate`, as results.json stores it) and the
bootstrap that makes one (`Bootstrap`).

Confidence intervals are percentile bootstraps over the independent units of each measure: images
for IID accuracy and cue conflicts, base scenes for sweeps and the background protocol (a base
scene's variants are paired, so they are resampled together). `Bootstrap` draws all resamples of
one measure at once as a (resamples, units) matrix of multiplicities, so a statistic is a matrix
product; its generator is seeded by (experiment seed, the measure's name), so every interval is
reproducible and does not depend on which other measures were computed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict

DIGITS = 6  # an estimate keeps this many decimals: what results.json holds is what is compared


class Strict(BaseModel):
    """A part of results.json: unknown keys are refused, so a foreign file is told apart."""
    model_config = ConfigDict(extra="forbid")


class Estimate(Strict):
    """A statistic, its bootstrap interval at `bootstrap.confidence`, and the number of resampled
    units (images, or base scenes where the images of a base scene are paired). value, low and
    high are None when undefined (no units, or a ratio over nothing)."""
    value: float | None
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, value: float, low: float, high: float, n: int) -> Estimate:
        """From raw numbers: NaN becomes None, the rest is rounded to DIGITS decimals."""
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else round(float(x), DIGITS)

        return cls(value=clean(value), low=clean(low), high=clean(high), n=n)

    @property
    def defined(self) -> bool:
        return self.value is not None

    def metrics(self, name: str) -> dict[str, float]:
        """{name, name_low, name_high}, the undefined ones left out: for `dvc metrics`."""
        return {k: v for k, v in ((name, self.value), (f"{name}_low", self.low),
                                  (f"{name}_high", self.high)) if v is not None}


Statistic = Callable[[np.ndarray], np.ndarray]  # weights (m, n) -> values (m,) or (m, k)


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def weights(self, key: str, n: int) -> np.ndarray:
        """(resamples, n): how often each unit is drawn in each resample (rows sum to n)."""
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode())])
        draws = rng.integers(0, n, size=(self.resamples, n))
        offsets = np.arange(self.resamples)[:, None] * n
        counts = np.bincount((draws + offsets).ravel(), minlength=self.resamples * n)
        return counts.reshape(self.resamples, n).astype(np.float64)

    def intervals(self, key: str, n: int, statistic: Statistic,
                  k: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, lows, highs), k each: the statistic on all n units (weights of one) and its
        percentile interval, unrounded (NaN where undefined)."""
        if n == 0:
            return (np.full(k, np.nan),) * 3
        with np.errstate(invalid="ignore", divide="ignore"):
            point = np.asarray(statistic(np.ones((1, n)))).reshape(1, k)[0].astype(float)
            boot = np.asarray(statistic(self.weights(key, n))).reshape(self.resamples, k)
        alpha = (1 - self.confidence) / 2
        lows, highs = np.full(k, np.nan), np.full(k, np.nan)
        for j in range(k):
            values = boot[:, j][~np.isnan(boot[:, j])]
            if len(values):
                lows[j], highs[j] = np.quantile(values, [alpha, 1 - alpha])
        return point, lows, highs

    def estimates(self, key: str, n: int, statistic: Statistic, k: int = 1) -> list[Estimate]:
        """The statistic with its interval; k values at once when it returns (m, k)."""
        return [Estimate.of(v, lo, hi, n) for v, lo, hi in zip(*self.intervals(key, n, statistic,
                                                                             k))]

    def estimate(self, key: str, n: int, statistic: Statistic) -> Estimate:
        return self.estimates(key, n, statistic)[0]

    def mean(self, key: str, x: np.ndarray) -> Estimate:
        x = np.asarray(x, dtype=np.float64)
        return self.estimate(key, len(x), lambda w: w @ x / w.sum(1))

    def ratio(self, key: str, num: np.ndarray, den: np.ndarray) -> Estimate:
        """sum(num) / sum(den), resampling units that each carry a numerator and a denominator."""
        num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
        return self.estimate(key, len(num), lambda w: (w @ num) / (w @ den))
