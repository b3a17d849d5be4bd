"""Tests for the callback URL SSRF guard: URL checks, resolution checks and delivery-time checks."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations import url_safety
from integrations.url_safety import UnsafeURLError, post_json_safely, validate_callback_url


def fake_getaddrinfo(*addresses: str):
    """A getaddrinfo that resolves every name to ``addresses`` (IP literals still work)."""

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple]:
        results = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if ":" in address else (address, int(port))
            results.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return results

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/cb",
        "https://10.0.0.1/cb",
        "https://172.16.5.4/cb",
        "https://192.168.1.10/cb",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/cb",
        "https://[fe80::1]/cb",
        "https://[fd00::1]/cb",
        "https://0.0.0.0/cb",
        "https://224.0.0.1/cb",
        "https://240.0.0.1/cb",
        "https://100.64.0.1/cb",
        "https://[::ffff:127.0.0.1]/cb",
        "https://[::ffff:169.254.169.254]/cb",
        "https://[2002:7f00:1::]/cb",
        "https://[64:ff9b::a00:1]/cb",
        "https://localhost/cb",
    ],
)
def test_internal_addresses_are_refused(url):
    with pytest.raises(UnsafeURLError, match="resolves to"):
        validate_callback_url(url, allow_insecure=False)


@pytest.mark.parametrize("url", ["https://2130706433/cb", "https://0x7f.1/cb", "https://127.1/cb"])
def test_odd_spellings_of_loopback_are_refused(url):
    # The resolver turns these into 127.0.0.1; whatever it does, they must not pass.
    with pytest.raises(UnsafeURLError):
        validate_callback_url(url, allow_insecure=False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "file:// is not allowed"),
        ("ftp://93.184.216.34/cb", "ftp:// is not allowed"),
        ("gopher://93.184.216.34/", "gopher:// is not allowed"),
        ("http://93.184.216.34/cb", "http:// is not allowed"),
        ("//93.184.216.34/cb", "missing scheme"),
        ("https:///cb", "no host"),
        ("https://user:pw@93.184.216.34/cb", "credentials"),
        ("https://93.184.216.34:99999/cb", "malformed"),
    ],
)
def test_unsafe_url_shapes_are_refused(url, reason):
    with pytest.raises(UnsafeURLError, match=reason):
        validate_callback_url(url, allow_insecure=False)


def test_public_ip_literal_over_https_is_accepted():
    assert validate_callback_url("https://93.184.216.34/cb", allow_insecure=False) is None


def test_host_resolving_to_a_private_address_is_refused(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo("10.20.30.40"))

    with pytest.raises(UnsafeURLError, match=r"resolves to 10\.20\.30\.40, which is private"):
        validate_callback_url("https://partner.example.com/cb", allow_insecure=False)


def test_host_with_any_private_address_among_public_ones_is_refused(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo("93.184.216.34", "192.168.0.7"))

    with pytest.raises(UnsafeURLError, match=r"192\.168\.0\.7"):
        validate_callback_url("https://partner.example.com/cb", allow_insecure=False)


def test_host_resolving_to_public_addresses_is_accepted(monkeypatch):
    monkeypatch.setattr(
        socket, "getaddrinfo", fake_getaddrinfo("93.184.216.34", "2606:2800:220:1::1")
    )

    validate_callback_url("https://partner.example.com/cb", allow_insecure=False)


def test_host_that_does_not_resolve_is_refused(monkeypatch):
    def no_such_host(*args: Any, **kwargs: Any) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)

    with pytest.raises(UnsafeURLError, match="does not resolve"):
        validate_callback_url("https://nowhere.invalid/cb", allow_insecure=False)


def test_allow_insecure_accepts_http_loopback():
    validate_callback_url("http://127.0.0.1:8123/cb", allow_insecure=True)


def test_allow_insecure_still_refuses_other_schemes_and_credentials():
    with pytest.raises(UnsafeURLError):
        validate_callback_url("file:///etc/passwd", allow_insecure=True)
    with pytest.raises(UnsafeURLError):
        validate_callback_url("http://u:p@127.0.0.1/cb", allow_insecure=True)


# -- post_json_safely ---------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[list[dict[str, Any]], str]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append(
                {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
            )
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            reply = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_post_json_safely_posts_to_local_receiver_when_insecure_is_allowed(receiver):
    received, base_url = receiver

    response = post_json_safely(
        f"{base_url}/cb",
        body=b'{"status":"success"}',
        headers={"webhook-id": "msg_1"},
        timeout=2.0,
        allow_insecure=True,
    )

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    (request,) = received
    assert request["path"] == "/cb"
    assert request["body"] == b'{"status":"success"}'
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["webhook-id"] == "msg_1"


def test_post_json_safely_does_not_follow_redirects(receiver):
    received, base_url = receiver

    response = post_json_safely(
        f"{base_url}/redirect", body=b"{}", timeout=2.0, allow_insecure=True
    )

    assert response.status_code == 302
    assert len(received) == 1


def test_post_json_safely_refuses_local_receiver_without_insecure(receiver):
    received, base_url = receiver

    with pytest.raises(UnsafeURLError):
        post_json_safely(f"{base_url}/cb", body=b"{}", timeout=2.0, allow_insecure=False)
    https_url = base_url.replace("http://", "https://")
    with pytest.raises(UnsafeURLError, match="loopback"):
        post_json_safely(f"{https_url}/cb", body=b"{}", timeout=2.0, allow_insecure=False)

    assert received == []


def test_post_json_safely_refuses_dns_rebinding_to_loopback_before_sending(monkeypatch):
    # Given a host that resolves to a public address for the check, then to loopback.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    resolutions = iter([fake_getaddrinfo("93.184.216.34"), fake_getaddrinfo("127.0.0.1")])
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *args, **kwargs: next(resolutions)(*args, **kwargs)
    )
    bytes_seen: list[bytes] = []

    def accept_and_read() -> None:
        connection, _ = listener.accept()
        connection.settimeout(2)
        with connection:
            try:
                bytes_seen.append(connection.recv(1024))
            except OSError:
                bytes_seen.append(b"<error>")

    reader = threading.Thread(target=accept_and_read, daemon=True)
    reader.start()

    # When we deliver, then the connected peer is checked and nothing (not even TLS) is sent.
    with pytest.raises(UnsafeURLError, match=r"connected address 127\.0\.0\.1 is loopback"):
        post_json_safely(
            f"https://rebinding.example:{port}/cb", body=b"{}", timeout=2.0, allow_insecure=False
        )

    reader.join(timeout=3)
    listener.close()
    assert bytes_seen == [b""]


def test_response_body_is_capped(receiver, monkeypatch):
    _received, base_url = receiver
    monkeypatch.setattr(url_safety, "MAX_RESPONSE_BYTES", 4)

    response = post_json_safely(f"{base_url}/cb", body=b"{}", timeout=2.0, allow_insecure=True)

    assert response.content == b'{"ok'
