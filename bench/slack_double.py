"""A local HTTP server speaking the subset of the Slack Web API dqmon uses: a TEST DOUBLE.

Slack is a SaaS we cannot run, so this stands in for it over loopback. It speaks:
- `POST /api/chat.postMessage` (JSON or form body, `Authorization: Bearer <token>`): returns
  `{"ok": true, "channel": "C...", "ts": "..."}`; replies (`thread_ts`) must name a known parent.
- `POST /api/chat.update`: edits a known message.
- `POST /hooks/<path>`: an incoming webhook, answers `ok` as text.
Faults are scripted with `fail_next(n, status, retry_after=..., delay=...)` (429 with
Retry-After, 500, slow responses) and apply to the next n requests of any endpoint.

The server records every accepted call (body and headers) in `calls`; failed calls are recorded
in `rejected`.
It lives in bench/ because the incident scenario's scorer (bench/incidents.py) reads it outside
pytest; tests/fixtures/slack_api.py wraps it in the `slack_api` fixture.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TOKEN = "xoxb-test-0000-SECRET-token"  # noqa: S105 - the double's own fake token
WEBHOOK_PATH = "/hooks/T000/B000/SECRETwebhookPATH"


@dataclass
class Fault:
    status: int
    retry_after: str | None = None
    delay: float = 0.0
    body: str | None = None


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    at: float
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    ts: str | None = None  # the message posted (chat.postMessage) or edited (chat.update)


@dataclass
class FakeSlack:
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    rejected: list[tuple[str, int]] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # ts -> message
    faults: list[Fault] = field(default_factory=list)
    delay: float = 0.0  # applied to every successful response
    max_concurrent: int = 0
    _active: int = 0
    _seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def fail_next(self, n: int, status: int, *, retry_after: str | None = None, delay: float = 0.0) -> None:
        with self.lock:
            self.faults.extend(Fault(status, retry_after, delay) for _ in range(n))

    def posts(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == "chat.postMessage"]

    def top_level(self) -> list[Call]:
        return [c for c in self.posts() if not c.body.get("thread_ts")]

    def replies(self, thread_ts: str) -> list[Call]:
        return [c for c in self.posts() if c.body.get("thread_ts") == thread_ts]

    def updates(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == "chat.update"]

    def hooks(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == "webhook"]


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the test asserts on logs of the code under test

        def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            ctype = "application/json" if not isinstance(payload, bytes) else "text/plain"
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                body = json.loads(raw or "{}")
            else:
                body = {k: v[0] for k, v in parse_qs(raw).items()}
            with fake.lock:
                fake._active += 1
                fake.max_concurrent = max(fake.max_concurrent, fake._active)
                fault = fake.faults.pop(0) if fake.faults else None
            try:
                self._handle(body, fault)
            finally:
                with fake.lock:
                    fake._active -= 1

        def _handle(self, body: dict[str, Any], fault: Fault | None) -> None:
            path = self.path.split("?", 1)[0]
            if fault is not None:
                time.sleep(fault.delay)
                with fake.lock:
                    fake.rejected.append((path, fault.status))
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                error = "ratelimited" if fault.status == 429 else "internal_error"
                self._reply(fault.status, {"ok": False, "error": error}, headers)
                return
            time.sleep(fake.delay)
            if path == WEBHOOK_PATH:
                with fake.lock:
                    fake.calls.append(Call("webhook", body, time.time(), self._headers()))
                self._reply(200, b"ok")
                return
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._reply(200, {"ok": False, "error": "invalid_auth"})
                return
            method = path.removeprefix("/api/")
            with fake.lock:
                if method == "chat.postMessage":
                    parent = body.get("thread_ts")
                    if parent and parent not in fake.messages:
                        self._reply(200, {"ok": False, "error": "thread_not_found"})
                        return
                    fake._seq += 1
                    ts = f"{1700000000 + fake._seq}.{fake._seq:06d}"
                    channel_id = "C" + str(body.get("channel", "")).strip("#").upper().replace("-", "")[:10]
                    fake.messages[ts] = {"channel": channel_id, **body}
                    fake.calls.append(Call(method, body, time.time(), ts=ts))
                    reply = {"ok": True, "channel": channel_id, "ts": ts, "message": {"ts": ts}}
                elif method == "chat.update":
                    ts = str(body.get("ts"))
                    if ts not in fake.messages:
                        self._reply(200, {"ok": False, "error": "message_not_found"})
                        return
                    fake.messages[ts].update(body)
                    fake.calls.append(Call(method, body, time.time(), ts=ts))
                    reply = {"ok": True, "channel": body.get("channel"), "ts": ts}
                else:
                    self._reply(404, {"ok": False, "error": "unknown_method"})
                    return
            self._reply(200, reply)

    return Handler


def start_fake_slack(port: int = 0) -> tuple[FakeSlack, ThreadingHTTPServer]:
    """Serve a fresh double on loopback (port 0: a free one); stop it with server.shutdown()."""
    fake = FakeSlack()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(fake))
    server.daemon_threads = True
    fake.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="fake-slack", daemon=True).start()
    return fake, server
