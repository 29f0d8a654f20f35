"""Statistics against reference implementations (scipy, direct numpy) on random data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as scipy_stats

from dqmon.checks.stats import (
    bin_counts,
    chi_square,
    kolmogorov,
    ks_statistic,
    psi,
    quantile_edges,
    robust_z,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = arrays(np.float64, st.integers(min_value=1, max_value=300), elements=finite)
# small integer-valued samples force ties, the hard case for an ECDF
tied = arrays(np.float64, st.integers(min_value=1, max_value=200), elements=st.integers(-5, 5).map(float))


@pytest.mark.filterwarnings("ignore:ks_2samp:RuntimeWarning")
@settings(max_examples=300, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied))
def test_ks_statistic_equals_scipy(a: np.ndarray, b: np.ndarray) -> None:
    ours = ks_statistic(np.sort(a), np.sort(b))
    theirs = scipy_stats.ks_2samp(a, b).statistic
    assert abs(ours - theirs) <= 1e-9


@settings(max_examples=300, deadline=None)
@given(x=st.floats(min_value=-1.0, max_value=8.0, allow_nan=False))
@example(x=1.0)
@example(x=0.9999999)
@example(x=0.0)
def test_kolmogorov_survival_equals_scipy(x: float) -> None:
    from scipy.special import kolmogorov as scipy_kolmogorov

    assert abs(kolmogorov(x) - float(scipy_kolmogorov(x))) <= 1e-12


def _direct_psi(ref: np.ndarray, cur: np.ndarray, bins: int) -> float:
    """PSI spelled out with a loop over bins: the textbook definition."""
    # the same probabilities as the implementation: with heavy ties, an ulp of difference in a
    # probability moves an edge onto or off a tied value and changes the bins (both are valid PSIs)
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    lows = np.concatenate([[-np.inf], edges])
    highs = np.concatenate([edges, [np.inf]])
    total = 0.0
    for lo, hi in zip(lows, highs, strict=True):
        p = max(np.mean((ref > lo) & (ref <= hi)), 1e-4)
        q = max(np.mean((cur > lo) & (cur <= hi)), 1e-4)
        total += (q - p) * np.log(q / p)
    return float(total)


@example(  # found by hypothesis in CI: heavy ties where an edge lands on a tied value
    a=np.array([0.0] * 15 + [-2.0] * 3), b=np.array([-1.0]), bins=17
)
@settings(max_examples=200, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied), bins=st.integers(2, 20))
def test_numeric_psi_equals_direct_computation(a: np.ndarray, b: np.ndarray, bins: int) -> None:
    edges = quantile_edges(a, bins)
    ours = psi(bin_counts(a, edges), bin_counts(b, edges))
    assert ours == pytest.approx(_direct_psi(a, b, bins), rel=1e-9, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(a=st.one_of(samples, tied), b=st.one_of(samples, tied), bins=st.integers(2, 20))
def test_bin_counts_of_sorted_values_equal_the_per_value_count(
    a: np.ndarray, b: np.ndarray, bins: int
) -> None:
    edges = quantile_edges(a, bins)
    direct = [
        int(np.sum((b > lo) & (b <= hi))) for lo, hi in zip([-np.inf, *edges], [*edges, np.inf], strict=True)
    ]
    assert bin_counts(np.sort(b), edges, is_sorted=True).tolist() == direct
    assert bin_counts(b, edges).tolist() == direct


def test_psi_is_zero_for_identical_and_large_for_shifted() -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 1, 10_000)
    edges = quantile_edges(ref, 10)
    assert psi(bin_counts(ref, edges), bin_counts(ref, edges)) == pytest.approx(0.0, abs=1e-12)
    shifted = rng.normal(1.5, 1, 10_000)
    assert psi(bin_counts(ref, edges), bin_counts(shifted, edges)) > 1.0


@settings(max_examples=100, deadline=None)
@given(
    ref=arrays(np.float64, st.integers(2, 8), elements=st.integers(1, 1000).map(float)),
    scale=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
)
def test_chi_square_equals_scipy(ref: np.ndarray, scale: int, seed: int) -> None:
    cur = np.random.default_rng(seed).multinomial(int(ref.sum()) * scale, ref / ref.sum()).astype(float)
    statistic, p = chi_square(ref, cur)
    expected = np.clip(ref / ref.sum(), 1e-4, None)
    expected = expected / expected.sum() * cur.sum()
    reference = scipy_stats.chisquare(cur, expected)
    assert statistic == pytest.approx(reference.statistic, rel=1e-9)
    assert p == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-12)


@given(arrays(np.float64, st.integers(3, 200), elements=st.floats(0, 1e6)), st.floats(0, 1e6))
def test_robust_z_matches_scipy_mad(history: np.ndarray, value: float) -> None:
    score = robust_z(history, value)
    mad = scipy_stats.median_abs_deviation(history, scale="normal")
    expected_scale = max(mad, 0.05 * abs(np.median(history)), 1.0)
    assert score.scale == pytest.approx(expected_scale, rel=1e-3)
    assert score.z == pytest.approx((value - np.median(history)) / expected_scale, rel=1e-3, abs=1e-9)
