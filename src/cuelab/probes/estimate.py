"""A number with its confidence interval (`Estimate`, as results.json stores it) and the
bootstrap that makes one (`Bootstrap`).

Every estimate is a statistic of one or more trained models (replicates: the same data, other
training seeds) on the same probe units. Its interval is a hierarchical percentile bootstrap:
each resample draws the models with replacement, then the units (images, or base scenes where
a base scene's images are paired) with replacement, the same units for every drawn model, as
every model saw the same probe scenes; the statistic is the mean over the drawn models of each
model's statistic. With few models, resampling them understates their spread, so an interval is
never narrower than the range of the per-model values, which the estimate keeps.

What the interval covers: trained models (initialisation, batch order, augmentation) and probe
scenes. Not the training data draw: re-run with another experiment `seed` for that.

`Bootstrap` draws all resamples at once as multiplicity matrices, so a statistic is a product:
it takes unit weights (R, n) and returns one value per resample and model, (R, M) or (R, M, k).
Unit arrays carry the models first: (M, n, ...). Its generator is seeded by (the evaluation's
seed, the measure's name), so every interval is reproducible and does not depend on which other
measures were computed.
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


def _clean(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), DIGITS)


class Estimate(Strict):
    """A statistic (the mean over the trained models of each one's), its interval at
    `bootstrap.confidence`, the number of resampled units (images, or base scenes where the
    images of a base scene are paired), and each model's own value. value, low and high are None
    when undefined (no units, or a ratio over nothing)."""
    value: float | None
    low: float | None
    high: float | None
    n: int
    per_model: list[float | None] = []

    @classmethod
    def of(cls, value: float, low: float, high: float, n: int,
           per_model=()) -> Estimate:
        """From raw numbers: NaN becomes None, the rest is rounded to DIGITS decimals."""
        return cls(value=_clean(value), low=_clean(low), high=_clean(high), n=n,
                   per_model=[_clean(v) for v in per_model])

    @property
    def defined(self) -> bool:
        return self.value is not None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)

    def metrics(self, name: str) -> dict[str, float]:
        """{name, name_low, name_high}, the undefined ones left out: for `dvc metrics`."""
        return {k: v for k, v in ((name, self.value), (f"{name}_low", self.low),
                                  (f"{name}_high", self.high)) if v is not None}


Statistic = Callable[[np.ndarray], np.ndarray]  # unit weights (R, n) -> (R, M) or (R, M, k)


def total(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Weighted sums over units of per-model arrays: w (R, n), x (M, n, ...) -> (R, M, ...)."""
    x = np.asarray(x, np.float64)
    return np.einsum("rn,mn...->rm...", w, x)


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def _rng(self, key: str, level: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(key.encode()),
                                      zlib.crc32(level.encode())])

    def weights(self, key: str, n: int) -> np.ndarray:
        """(resamples, n): how often each unit is drawn in each resample (rows sum to n)."""
        return self._multiplicities(self._rng(key, "units"), n)

    def model_weights(self, key: str, m: int) -> np.ndarray:
        """(resamples, m): how often each model is drawn in each resample (rows sum to m)."""
        return self._multiplicities(self._rng(key, "models"), m)

    def _multiplicities(self, rng: np.random.Generator, n: int) -> np.ndarray:
        draws = rng.integers(0, n, size=(self.resamples, n))
        offsets = np.arange(self.resamples)[:, None] * n
        counts = np.bincount((draws + offsets).ravel(), minlength=self.resamples * n)
        return counts.reshape(self.resamples, n).astype(np.float64)

    def intervals(self, key: str, n: int, models: int, statistic: Statistic,
                  k: int = 1) -> list[Estimate]:
        """The statistic (k values) of `models` models on n units: each model's value, their
        mean, and its hierarchical interval (see the module's doc)."""
        if n == 0 or models == 0:
            return [Estimate.of(np.nan, np.nan, np.nan, n) for _ in range(k)]
        with np.errstate(invalid="ignore", divide="ignore"):
            each = np.asarray(statistic(np.ones((1, n))), np.float64).reshape(models, k)
            boot = np.asarray(statistic(self.weights(key, n)), np.float64).reshape(
                self.resamples, models, k)
            drawn = self.model_weights(key, models)[:, :, None] * ~np.isnan(boot)
            mean = np.nansum(boot * drawn, 1) / drawn.sum(1)  # NaN where no drawn model has one
        alpha = (1 - self.confidence) / 2
        out = []
        for j in range(k):
            defined = ~np.isnan(each[:, j])
            value = each[defined, j].mean() if defined.any() else np.nan
            low = high = np.nan
            values = mean[:, j][~np.isnan(mean[:, j])]
            if len(values) and defined.any():
                low, high = np.quantile(values, [alpha, 1 - alpha])
                low, high = min(low, each[defined, j].min()), max(high, each[defined, j].max())
            out.append(Estimate.of(value, low, high, n, each[:, j]))
        return out

    def estimate(self, key: str, n: int, models: int, statistic: Statistic) -> Estimate:
        return self.intervals(key, n, models, statistic)[0]

    def mean(self, key: str, x) -> Estimate:
        """The mean of per-unit values x (M, n) over units, per model."""
        x = np.asarray(x, np.float64)
        x = x.reshape(1, -1) if x.ndim == 1 else x
        return self.estimate(key, x.shape[1], x.shape[0], lambda w: total(w, x) / w.sum(1)[:, None])

    def ratio(self, key: str, num, den) -> Estimate:
        """sum(num) / sum(den) per model, resampling units that each carry a numerator and a
        denominator: (M, n) each."""
        num, den = (np.asarray(a, np.float64) for a in (num, den))
        num, den = (a.reshape(1, -1) if a.ndim == 1 else a for a in (num, den))
        return self.estimate(key, num.shape[1], num.shape[0],
                             lambda w: total(w, num) / total(w, den))
