"""Avro decoder against a local Schema Registry test double (the real registry cannot run here)."""

from __future__ import annotations

import io
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from dqmon.decoders.avro import AvroDecoder

SCHEMA = {
    "type": "record",
    "name": "Trade",
    "fields": [
        {"name": "trade_id", "type": "long"},
        {"name": "symbol", "type": "string"},
        {"name": "price", "type": "double"},
    ],
}


class FakeSchemaRegistry(BaseHTTPRequestHandler):
    """Test double of the Schema Registry REST subset the client uses: GET /schemas/ids/{id}."""

    schemas = {7: json.dumps(SCHEMA)}
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        parts = self.path.split("?")[0].strip("/").split("/")
        schema = (
            self.schemas.get(int(parts[2])) if len(parts) == 3 and parts[:2] == ["schemas", "ids"] else None
        )
        body = {"schema": schema} if schema else {"error_code": 40403, "message": "Schema not found"}
        payload = json.dumps(body).encode()
        self.send_response(200 if schema else 404)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def registry_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSchemaRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def framed(record: dict, schema_id: int = 7) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), record)
    return b"\x00" + struct.pack(">I", schema_id) + out.getvalue()


def test_wire_format_decodes_and_bad_records_are_counted(registry_url):
    decoder = AvroDecoder(SchemaRegistryClient({"url": registry_url}))
    good = [framed({"trade_id": i, "symbol": "BTC", "price": 1.5 * i}) for i in range(20)]
    bad = [
        framed({"trade_id": 1, "symbol": "X", "price": 1.0}, schema_id=99),
        b"\x01\x00\x00\x00\x07abc",
        b"\x00\x00",
        good[0][:7],
    ]
    values = good[:10] + bad + good[10:]
    decoded = decoder.decode(values)
    assert decoded.errors == {"unknown_schema": 1, "bad_magic": 1, "truncated": 2}
    assert decoded.df["trade_id"].to_list() == list(range(20))
    assert decoded.kept.tolist() == [True] * 10 + [False] * 4 + [True] * 10
    # schemas are cached: a second batch asks the registry nothing new for id 7
    asked = len(FakeSchemaRegistry.requests)
    decoder.decode(good)
    assert len(FakeSchemaRegistry.requests) == asked
