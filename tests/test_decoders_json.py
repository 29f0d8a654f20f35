"""JSON decoder: whole-batch decode, bad records isolated and counted, good ones kept in order."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.decoders.json import JsonDecoder

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)  # fmt: skip
keys = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=6)


@st.composite
def records(draw):
    """Objects sharing one type per field (as a topic's records do), fields sometimes missing."""
    fields = draw(
        st.dictionaries(keys, st.sampled_from(["int", "str", "bool", "float", "obj"]), min_size=1, max_size=5)
    )
    makers = {
        "int": st.integers(-(2**40), 2**40),
        "str": st.text(max_size=12),
        "bool": st.booleans(),
        "float": st.floats(-1e9, 1e9, allow_nan=False),
        "obj": st.dictionaries(keys, st.integers(0, 100), max_size=3),  # nested objects whose keys vary
    }
    n = draw(st.integers(1, 40))
    return [{k: draw(makers[t]) for k, t in fields.items() if draw(st.integers(0, 9)) > 0} for _ in range(n)]


BAD = {
    "invalid_json": [b'{"a": 1, "b', b"\x00\x9f\xff binary", b'{"a": 1} {"a": 2}', b"{not json}", b"\xff{}"],
    "not_object": [b"[1, 2]", b"42", b'"text"', b"null", b" [ ] "],
    "empty": [b"", b"   ", b"\n"],
}


@settings(max_examples=60, deadline=None)
@given(records())
def test_valid_objects_round_trip(rows):
    pretty = st.booleans()
    values = [
        json.dumps(r, indent=2 if i % 3 == 0 else None).encode() for i, r in enumerate(rows)
    ]  # newlines inside
    decoded = JsonDecoder().decode(values)
    assert decoded.errors == {}
    assert decoded.kept.all()
    assert decoded.df.height == len(rows)
    for column in decoded.df.columns:
        for got, row in zip(decoded.df[column].to_list(), rows, strict=True):
            want = row.get(column)
            if isinstance(want, dict):
                assert {k: v for k, v in (got or {}).items() if v is not None} == want
            elif isinstance(want, float) or isinstance(got, float):
                assert got == want or (want is not None and abs(got - want) <= 1e-9 * max(1, abs(want)))
            else:
                assert got == want
    del pretty


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mixed_batches_count_every_bad_record_and_keep_every_good_one(data):
    good = [
        {"trade_id": i, "symbol": data.draw(st.sampled_from(["BTC", "ETH"])), "price": float(i)}
        for i in range(50)
    ]
    bad = data.draw(st.lists(st.sampled_from([(r, v) for r, vs in BAD.items() for v in vs]), max_size=30))
    slots = data.draw(st.permutations(range(len(good) + len(bad))))
    values: list[bytes] = [b""] * len(slots)
    expected_good = []
    for slot, item in zip(slots, [("ok", json.dumps(g).encode()) for g in good] + bad, strict=True):
        values[slot] = item[1]
    order = sorted(range(len(good)), key=lambda i: slots[i])
    expected_good = [good[i]["trade_id"] for i in order]
    want_errors: dict[str, int] = {}
    for reason, _ in bad:
        want_errors[reason] = want_errors.get(reason, 0) + 1
    decoded = JsonDecoder().decode(values)
    assert decoded.errors == want_errors
    assert decoded.df["trade_id"].to_list() == expected_good  # in input order
    assert np.flatnonzero(decoded.kept).tolist() == sorted(slots[: len(good)])


def test_too_large_and_wrong_type_after_the_schema_is_learned():
    decoder = JsonDecoder(max_record_bytes=1_000_000)
    decoder.decode([json.dumps({"price": float(i), "qty": i}).encode() for i in range(10)])
    huge = b'{"price": 1.0, "pad": "' + b"x" * 1_048_576 + b'"}'
    batch = [b'{"price": 2.5, "qty": 3}', b'{"price": "abc", "qty": 1}', huge, b'{"price": 3.5, "qty": true}']
    decoded = decoder.decode([*batch, b'{"price": 4.5, "qty": 4}'])
    assert decoded.errors == {"wrong_type": 2, "too_large": 1}
    assert decoded.df["price"].to_list() == [2.5, 4.5]
    assert decoded.df.schema["price"] == pl.Float64


def test_a_changed_stream_is_relearned_not_rejected():
    decoder = JsonDecoder()
    decoder.decode([b'{"id": 1}', b'{"id": 2}'])
    decoded = decoder.decode([b'{"id": "a-1"}', b'{"id": "a-2"}', b'{"id": "a-3"}'])
    assert decoded.errors == {}
    assert decoded.df["id"].to_list() == ["a-1", "a-2", "a-3"]


def test_empty_batch():
    decoded = JsonDecoder().decode([])
    assert decoded.df.height == 0
    assert decoded.kept.size == 0
    assert decoded.errors == {}


def test_a_reverted_type_change_decodes_healthy_records_to_their_own_type():
    """Issue 10 #1: a field sent as a string for a while, then as a number again, must decode as a
    number again: the learned schema may spot wrong types but never re-type healthy records."""
    decoder = JsonDecoder()
    ints = [json.dumps({"id": i, "qty": i * 2}).encode() for i in range(20)]
    strings = [json.dumps({"id": str(i), "qty": i * 2}).encode() for i in range(20)]
    baseline = decoder.decode(ints).df.schema
    assert decoder.decode(strings).df.schema["id"] == pl.String
    reverted = decoder.decode(ints)
    assert reverted.errors == {}
    assert reverted.df.schema == baseline
    assert reverted.df["id"].to_list() == list(range(20))
    # and a few wrong-typed records among healthy ones are still spotted after the revert
    mixed = decoder.decode([*ints[:10], b'{"id": "oops", "qty": 1}', *ints[10:]])
    assert mixed.errors == {"wrong_type": 1}
    assert mixed.df.schema["id"] == pl.Int64


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["int", "str", "bool", "float"]), st.integers(1, 12)), max_size=6))
def test_a_clean_batch_decodes_as_if_nothing_was_learned(history):
    """Whatever came before, a batch whose records agree on a field's type decodes exactly as a
    fresh decoder would decode it (the reference: no learned state)."""
    makers = {
        "int": lambda i: i,
        "str": lambda i: f"s{i}",
        "bool": lambda i: i % 2 == 0,
        "float": lambda i: i + 0.5,
    }
    decoder = JsonDecoder()
    for kind, n in history:
        decoder.decode([json.dumps({"f": makers[kind](i), "k": i}).encode() for i in range(n)])
    for kind in makers:
        values = [json.dumps({"f": makers[kind](i), "k": i}).encode() for i in range(15)]
        got = decoder.decode(values)
        want = JsonDecoder().decode(values)
        assert got.errors == {}
        assert got.df.schema == want.df.schema
        assert got.df.to_dicts() == want.df.to_dicts()
