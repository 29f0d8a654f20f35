"""Statistics used by the checks, on numpy arrays (vectorised, checked against scipy in tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
PSI_EPSILON = 1e-4


def _last_of_ties(sorted_values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Distinct values of a sorted sample and its right-continuous ECDF at each of them."""
    n = sorted_values.size
    last = np.empty(n, dtype=bool)
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=last[:-1])
    last[-1] = True
    if last.all():  # no ties (continuous values): no copy of the sample
        cdf = np.arange(1, n + 1, dtype=np.float64)
        cdf /= n
        return sorted_values, cdf
    positions = np.flatnonzero(last)
    return sorted_values[positions], (positions + 1) / n


def ks_statistic(reference_sorted: FloatArray, current_sorted: FloatArray) -> float:
    """Two-sample Kolmogorov-Smirnov D on sorted samples (the statistic scipy's ks_2samp reports).

    Both ECDFs are right-continuous steps. Between two distinct values of the smaller sample
    `a`, F_a is constant and F_b only rises, so the largest gap there is at one of its ends:
    at a's value itself, or just before a's next value. Two searchsorted calls of a's distinct
    values into b give D in O(|a| log |b|), without touching each value of the larger sample.
    The second search only runs for points tied with a value of b (see _to_left), and the
    gaps are computed in one reused buffer: this runs on every batch of a drift check.
    """
    a, b = reference_sorted, current_sorted
    if a.size == 0 or b.size == 0:
        return float("nan")
    if a.size > b.size:
        a, b = b, a
    points, cdf_a = _last_of_ties(a)
    positions = np.searchsorted(b, points, side="right")
    gap = positions / b.size  # F_b at each point
    np.subtract(cdf_a, gap, out=gap)
    at_points = float(np.abs(gap, out=gap).max())
    _to_left(b, points, positions, gap)
    np.divide(positions, b.size, out=gap)  # F_b just before each point
    # F_a just before point i is F_a at point i-1 (0 before the first)
    np.subtract(cdf_a[:-1], gap[1:], out=gap[1:])
    before_points = float(np.abs(gap, out=gap).max())
    return max(at_points, before_points)


def _to_left(b: FloatArray, points: FloatArray, positions: npt.NDArray[np.intp], scratch: FloatArray) -> None:
    """Turn `searchsorted(b, points, "right")` into the "left" positions, in place: they differ only
    where a point equals a value of b (b[right - 1] == point), so only those points are searched
    again. `scratch` (a float buffer of the points' size) receives b[right - 1]."""
    positions -= 1
    if b.dtype == scratch.dtype:
        b.take(positions, out=scratch, mode="clip")  # -1 (nothing of b below the point) is masked next
    else:
        scratch[:] = b.take(positions, mode="clip")
    tied = scratch == points
    tied &= positions >= 0
    positions += 1
    if tied.any():
        positions[tied] = np.searchsorted(b, points[tied], side="left")


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Asymptotic two-sided p-value of D (Kolmogorov distribution)."""
    if n == 0 or m == 0 or not np.isfinite(d):
        return float("nan")
    en = np.sqrt(n * m / (n + m))
    return float(kolmogorov((en + 0.12 + 0.11 / en) * d))


_K = np.arange(1, 21, dtype=np.float64)


def kolmogorov(x: float) -> float:
    """Survival function of the Kolmogorov distribution, P(K > x) (scipy.special.kolmogorov).

    Two series, each where it converges in a few terms; numpy only, so a sidecar running a KS
    check does not load scipy.special (~17 MB RSS). Tested against scipy to 1e-12.
    """
    if not x > 0.1:  # P(K <= 0.1) < 1e-50
        return 1.0
    if x < 1.0:  # 1 - sqrt(2 pi)/x sum exp(-(2k-1)^2 pi^2 / (8 x^2))
        odd = 2.0 * _K[:6] - 1.0
        return float(1.0 - np.sqrt(2.0 * np.pi) / x * np.exp(-(odd**2) * np.pi**2 / (8.0 * x * x)).sum())
    signs = np.where(_K % 2 == 1, 1.0, -1.0)  # 2 sum (-1)^(k-1) exp(-2 k^2 x^2)
    return float(min(1.0, max(0.0, 2.0 * (signs * np.exp(-2.0 * _K**2 * x * x)).sum())))


def quantile_edges(reference: FloatArray, bins: int) -> FloatArray:
    """Interior bin edges at the reference's quantiles, deduplicated (ties collapse bins)."""
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.unique(np.quantile(reference, qs))


def bin_counts(values: FloatArray, edges: FloatArray, *, is_sorted: bool = False) -> npt.NDArray[np.int64]:
    """Counts per bin (-inf, e1], (e1, e2], ..., (ek, inf).

    On sorted values the counts come from one search per edge (O(k log n)) instead of one per value.
    """
    if is_sorted:
        at_most = np.searchsorted(values, edges, side="right")  # values <= each edge
        return np.diff(at_most, prepend=0, append=values.size).astype(np.int64)
    index = np.searchsorted(edges, values, side="left")
    return np.bincount(index, minlength=edges.size + 1).astype(np.int64)


def psi(
    reference_counts: Sequence[float] | npt.NDArray[Any], current_counts: Sequence[float] | npt.NDArray[Any]
) -> float:
    """Population stability index over matching bins; empty bins clipped to PSI_EPSILON."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return float("nan")
    p = np.clip(ref / ref.sum(), PSI_EPSILON, None)
    q = np.clip(cur / cur.sum(), PSI_EPSILON, None)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_square(reference_counts: FloatArray, current_counts: FloatArray) -> tuple[float, float]:
    """Chi-square of current counts against reference proportions: (statistic, p-value)."""
    from scipy.special import chdtrc  # chi2.sf without importing scipy.stats (~64 MB RSS)

    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    expected = np.clip(ref / ref.sum(), PSI_EPSILON, None)
    expected = expected / expected.sum() * cur.sum()
    statistic = float(np.sum((cur - expected) ** 2 / expected))
    dof = max(1, ref.size - 1)
    return statistic, float(chdtrc(dof, statistic))


@dataclass(frozen=True)
class RobustScore:
    median: float
    scale: float
    z: float

    def band(self, sensitivity: float) -> tuple[float, float]:
        return self.median - sensitivity * self.scale, self.median + sensitivity * self.scale


def robust_z(history: FloatArray, value: float) -> RobustScore:
    """Median/MAD z-score. The MAD is scaled to a normal sigma (x1.4826) and floored at 5% of the
    median (and at 1) so a perfectly regular history does not make every wobble an anomaly."""
    median = float(np.median(history))
    mad = float(np.median(np.abs(history - median)))
    scale = max(1.4826 * mad, 0.05 * abs(median), 1.0)
    return RobustScore(median=median, scale=scale, z=(value - median) / scale)
