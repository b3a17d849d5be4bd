"""A real HTTP server on 127.0.0.1 that plays a partner, vendor or point master in tests.

It records every request (method, path, headers, raw body) and answers from a script of
responses, so a test can make the receiver fail twice and then accept.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)

    def json(self):
        return json.loads(self.body)


# Standard Webhooks' receivers refuse a timestamp more than 5 minutes from their clock.
WEBHOOK_TOLERANCE_SECONDS = 5 * 60


def verify_webhook_as_received(secret: str, request: RecordedRequest):
    """Verify a Standard Webhooks delivery as its receiver did when it arrived: the signature
    (computed by the standardwebhooks library) and the timestamp against the arrival time, not
    against now (a long test checks its deliveries at its end). Returns the parsed body."""
    sent_at = int(request.headers["webhook-timestamp"])
    assert abs(request.received_at - sent_at) <= WEBHOOK_TOLERANCE_SECONDS, "stale timestamp"
    expected = Webhook(secret).sign(
        msg_id=request.headers["webhook-id"],
        timestamp=dt.datetime.fromtimestamp(sent_at, tz=dt.UTC),
        data=request.body.decode(),
    )
    assert expected in request.headers["webhook-signature"].split(" "), "signature mismatch"
    return request.json()


@dataclass
class ScriptedResponse:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)


class RecordingServer:
    def __init__(self, responses: list[ScriptedResponse] | None = None, default=None):
        self.requests: list[RecordedRequest] = []
        self.responses = list(responses or [])
        self.default = default or ScriptedResponse()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[RecordedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    def _next_response(self) -> ScriptedResponse:
        with self._lock:
            return self.responses.pop(0) if self.responses else self.default

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.requests.append(
                        RecordedRequest(
                            method=self.command,
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                        )
                    )
                response = server._next_response()
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format, *args):  # keep test output quiet
                pass

        return Handler
