"""Protobuf decode throughput: dqmon's per-field column build vs MessageToDict per record.

    PYTHONPATH=. python -m bench.protobuf_decode [N]

Both paths parse every record with the same upb message class; they differ in how the parsed
messages become a DataFrame. Uses the test material in tests/protobuf_helpers.py.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import polars as pl
from google.protobuf import json_format

from dqmon.decoders.protobuf_columns import Columns
from tests import protobuf_helpers as h


def main(n: int) -> None:
    bodies = [h.trade(i).SerializeToString() for i in range(n)]
    descriptor = h.Trade.DESCRIPTOR
    t0 = time.perf_counter()
    messages = list(map(h.Trade.FromString, bodies))
    t1 = time.perf_counter()
    df = Columns(n).frame(descriptor, messages)
    t2 = time.perf_counter()
    dicts = [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in messages]
    slow = pl.from_dicts(dicts, infer_schema_length=None)
    t3 = time.perf_counter()
    assert df.height == slow.height == n
    print(f"records: {n}, fields: {len(descriptor.fields)} (nested, repeated, map, decimals, timestamps)")
    print(f"parse (upb FromString):      {n / (t1 - t0):>10,.0f} rec/s")
    print(f"columns per field (dqmon):   {n / (t2 - t1):>10,.0f} rec/s")
    print(f"MessageToDict + from_dicts:  {n / (t3 - t2):>10,.0f} rec/s  (and untyped: strings for int64s)")
    print(f"speed-up of the column build: {np.round((t3 - t2) / (t2 - t1), 1)}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
