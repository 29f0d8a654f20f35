"""Exact decimal columns (dqmon/decoders/decimals.py) against Python's decimal arithmetic."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.decoders import decimals

values = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.adjusted() < 45 and d.as_tuple().exponent > -45  # type: ignore[operator]
)


def reference_fits(value: Decimal, precision: int, scale: int) -> bool:
    """Plain definition: quantizing to `scale` places changes nothing and |unscaled| < 10**p."""
    with localcontext(prec=200):
        quantized = value.quantize(Decimal(1).scaleb(-scale))
        return quantized == value and abs(quantized.scaleb(scale)) < Decimal(10) ** precision


@settings(max_examples=400)
@given(
    st.lists(st.one_of(st.none(), values), max_size=12),
    st.integers(min_value=1, max_value=38),
    st.data(),
)
def test_a_declared_column_holds_exactly_what_fits_and_nulls_the_rest(column, precision, data) -> None:
    scale = data.draw(st.integers(min_value=0, max_value=precision))
    series, bad = decimals.exact_series("x", column, precision, scale)
    assert series.dtype.precision == precision and series.dtype.scale == scale  # type: ignore[attr-defined]
    for value, got, flagged in zip(column, series.to_list(), bad.tolist(), strict=True):
        if value is None:
            assert got is None and not flagged
        elif reference_fits(value, precision, scale):
            assert got == value and not flagged
        else:
            assert got is None and flagged


@settings(max_examples=300)
@given(st.lists(values, min_size=1, max_size=12))
def test_an_undeclared_column_takes_the_batch_scale(column) -> None:
    series, bad = decimals.exact_series("x", column)
    scale = series.dtype.scale  # type: ignore[attr-defined]
    for value, got, flagged in zip(column, series.to_list(), bad.tolist(), strict=True):
        assert flagged == (not reference_fits(value, 38, scale))
        if not flagged:
            assert got == value


def test_values_a_float_would_round() -> None:
    column = [Decimal("0.1"), Decimal("0.2"), Decimal("12345678901234567890.123456789")]
    series, bad = decimals.exact_series("x", column)
    assert not bad.any()
    assert series.sum() == Decimal("12345678901234567890.423456789")
    assert 0.1 + 0.2 != 0.3 and series[:2].sum() == Decimal("0.3")
    assert decimals.from_unscaled((-1).to_bytes(1, "big", signed=True), 2) == Decimal("-0.01")
    assert decimals.parse_text("nope") is None and decimals.parse_text("NaN") is None


@pytest.mark.parametrize("zero", ["0E-40", "-0E-39", "0.000"])
def test_zero_written_past_the_maximum_scale_is_zero_not_a_crash(zero: str) -> None:
    # Polars panics (a BaseException, which would stop a decoder thread) building this column
    series, bad = decimals.exact_series("x", [Decimal(zero), Decimal("0.5")])
    assert not bad.any()
    assert series.to_list() == [Decimal(0), Decimal("0.5")]


def test_trailing_zeros_past_the_declared_scale_are_kept_exactly() -> None:
    series, bad = decimals.exact_series("x", [Decimal("1.5000000000000000000000000000000000000000")], 38, 38)
    assert bad.tolist() == [True]  # 1.5 needs one integer digit: Decimal(38, 38) cannot hold it
    series, bad = decimals.exact_series("x", [Decimal("0.50000000000000000000000000000000000000000")], 38, 38)
    assert not bad.any() and series.to_list() == [Decimal("0.5")]
