"""The vectorised Confluent header / message-index parser against a plain reference encoder
(tests/protobuf_helpers.py) and against confluent-kafka's own per-record reader."""

from __future__ import annotations

import io
import struct

import numpy as np
from confluent_kafka.schema_registry.common.serde import SchemaId
from hypothesis import given, settings
from hypothesis import strategies as st

from dqmon.decoders import wire
from tests.protobuf_helpers import header, zigzag_varint

ids = st.integers(min_value=0, max_value=2**32 - 1)
paths = st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=1, max_size=wire.MAX_DEPTH)
bodies = st.binary(max_size=40)


def parsed(values: list[bytes]) -> list[tuple[int, int, list[int], int]]:
    h = wire.parse_protobuf_headers(values)
    out = []
    for i in range(len(values)):
        ok = h.status[i] == wire.OK
        path = h.paths[i, : h.depth[i]].tolist() if ok else []
        out.append((int(h.status[i]), int(h.schema_ids[i]), path, int(h.body_start[i]) if ok else -1))
    return out


def test_known_encodings() -> None:
    values = [
        b"\x00\x00\x00\x00\x07\x00body",  # [0] in its short form
        b"\x00\x00\x00\x01\x00\x02\x00body",  # [0] written as count 1, index 0
        b"\x00\x00\x00\x00\x07\x04\x02\x06",  # [1, 3]
        b"\x00\xff\xff\xff\xff\x02\xac\x02",  # id 2**32-1, [150]
        b"\x01\x00\x00\x00\x07\x00",  # magic byte 1
        b"\x00\x00\x00",  # shorter than the 5-byte header
        b"\x00\x00\x00\x00\x07",  # no message indexes at all
        b"\x00\x00\x00\x00\x07\x04\x02",  # count 2, one index
        b"\x00\x00\x00\x00\x07\x01",  # count -1
        b"\x00\x00\x00\x00\x07\x02\x01",  # index -1
        b"\x00\x00\x00\x00\x07" + zigzag_varint(wire.MAX_DEPTH + 1),  # deeper than any schema
        b"\x00\x00\x00\x00\x07\x02" + b"\xff" * 11,  # an index varint that never ends
    ]
    assert parsed(values) == [
        (wire.OK, 7, [0], 6),
        (wire.OK, 256, [0], 7),
        (wire.OK, 7, [1, 3], 8),
        (wire.OK, 2**32 - 1, [150], 8),
        (wire.BAD_MAGIC, 7, [], -1),
        (wire.TRUNCATED, 0, [], -1),
        (wire.TRUNCATED, 7, [], -1),
        (wire.TRUNCATED, 7, [], -1),
        (wire.BAD_INDEX, 7, [], -1),
        (wire.BAD_INDEX, 7, [], -1),
        (wire.BAD_INDEX, 7, [], -1),
        (wire.BAD_INDEX, 7, [], -1),
    ]


@settings(max_examples=300)
@given(st.lists(st.tuples(ids, paths, st.booleans(), bodies), min_size=1, max_size=20))
def test_reference_encoded_headers_parse_back(records) -> None:
    values = [header(i, p, short) + body for i, p, short, body in records]
    got = parsed(values)
    for (schema_id, path, _short, body), (status, gid, gpath, start), value in zip(
        records, got, values, strict=True
    ):
        assert (status, gid, gpath) == (wire.OK, schema_id, path)
        assert value[start:] == body


@settings(max_examples=300)
@given(ids, paths, st.booleans(), st.data())
def test_a_cut_header_is_truncated(schema_id, path, short, data) -> None:
    full = header(schema_id, path, short)
    cut = data.draw(st.integers(min_value=0, max_value=len(full) - 1))
    status, *_ = parsed([full[:cut]])[0]
    assert status == wire.TRUNCATED


@settings(max_examples=500)
@given(st.lists(st.binary(min_size=0, max_size=30), min_size=1, max_size=10))
def test_agrees_with_confluents_reader_on_arbitrary_bytes(tails) -> None:
    values = [b"\x00" + tail for tail in tails]
    for value, (status, schema_id, path, start) in zip(values, parsed(values), strict=True):
        reader = SchemaId("PROTOBUF")
        buf = io.BytesIO(value)
        try:
            reader.from_bytes(buf)
            theirs = (reader.id, reader.message_indexes, buf.tell())
        except Exception:  # noqa: BLE001 - whatever confluent rejects
            theirs = None
        if status == wire.OK:
            assert theirs == (schema_id, path, start)
        if theirs is None:
            assert status != wire.OK


def test_schema_id_only_header() -> None:
    values = [b"\x00" + struct.pack(">I", 300) + b"{}", b"\x07\x00\x00\x00\x01", b"\x00\x00"]
    h = wire.parse_schema_ids(values)
    assert h.status.tolist() == [wire.OK, wire.BAD_MAGIC, wire.TRUNCATED]
    assert h.schema_ids[0] == 300
    assert np.all(h.body_start == wire.HEADER)
