"""Exact decimals for the decoders: Python `Decimal` values → a Polars Decimal column, or null.

A decimal column never goes through a float. Polars silently rounds a value with more fraction
digits than the column's scale, so every value is checked here first: one that the column
cannot hold exactly (too many fraction digits, too many digits for the precision, NaN or
infinity) becomes null and is reported in the returned mask, for the decoder to count.

When the schema declares precision and scale (Avro's `decimal` logical type, Confluent's
`confluent.field_meta` params on a Protobuf decimal field) the column has exactly those; when it
does not, the scale is the largest one in the batch and the precision is 38, Polars' maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal, InvalidOperation

import numpy as np
import numpy.typing as npt
import polars as pl

MAX_PRECISION = 38  # Polars Decimal is a 128-bit integer with a scale
_EXACT = Context(prec=10_000, Emax=10**9, Emin=-(10**9))  # wide enough never to round


def from_unscaled(unscaled: bytes, scale: int) -> Decimal:
    """A big-endian two's-complement unscaled integer and its scale (Avro, confluent.type.Decimal)."""
    return _EXACT.create_decimal(int.from_bytes(unscaled, "big", signed=True)).scaleb(-scale, _EXACT)


def parse_text(text: str) -> Decimal | None:
    """A decimal string (google.type.Decimal), or None when it is not one."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _fraction_digits(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _fits(value: Decimal, precision: int, scale: int) -> bool:
    """Whether Decimal(precision, scale) holds `value` exactly (from its digits, no arithmetic)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return False  # NaN or infinity
    if -exponent > scale:  # maybe only trailing zeros past the scale: "1.500" at scale 2
        _, digits, exponent = value.normalize(_EXACT).as_tuple()
        if not isinstance(exponent, int) or -exponent > scale:
            return False
    if digits == (0,):
        return True  # zero has no integer digits, whatever its exponent
    return len(digits) + exponent <= precision - scale


def exact_series(
    name: str,
    values: Sequence[Decimal | None],
    precision: int | None = None,
    scale: int | None = None,
) -> tuple[pl.Series, npt.NDArray[np.bool_]]:
    """The Polars Decimal column of `values` and the mask of values it could not hold exactly.

    None stays null and is not bad. Without a declared scale the batch's largest fraction-digit
    count is used (trailing zeros included: "1.50" says two places), capped at 38.
    """
    if scale is None:
        scale = max((_fraction_digits(v) for v in values if v is not None and v.is_finite()), default=0)
    scale = min(max(scale, 0), MAX_PRECISION)
    precision = MAX_PRECISION if precision is None else min(max(precision, 1), MAX_PRECISION)
    precision = max(precision, scale)
    bad = np.fromiter(
        (v is not None and not _fits(v, precision, scale) for v in values), dtype=np.bool_, count=len(values)
    )
    # a value that fits with more fraction digits than the scale (trailing zeros, a zero written
    # 0E-40) is re-written at the scale, exactly: Polars 2.1 panics rescaling past 38 digits
    quantum = Decimal(1).scaleb(-scale)
    kept = [
        None if b or v is None else v.quantize(quantum, context=_EXACT) if _fraction_digits(v) > scale else v
        for v, b in zip(values, bad.tolist(), strict=True)
    ]
    return pl.Series(name, kept, dtype=pl.Decimal(precision, scale)), bad
