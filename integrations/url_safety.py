"""SSRF guard for callback and webhook URLs that partners and masters register with us.

Two checks, because a URL that is safe when it is registered need not be safe when we deliver:

* ``validate_callback_url`` (at registration and again before each delivery): https only, a host,
  no credentials, and every address the host resolves to is public (not loopback, private,
  link-local such as the 169.254.169.254 metadata service, multicast, reserved, unspecified, or an
  IPv4-mapped / 6to4 / NAT64 wrapping of those).
* ``post_json_safely`` (delivery): does not follow redirects, ignores proxy environment variables,
  and checks the address the socket *actually connected to* before a single byte (or the TLS
  handshake) is sent. That catches DNS rebinding, where the name resolves to a public address for
  the check and to an internal one for the connection.

Why check the connected peer rather than pin a pre-resolved IP: pinning means rewriting the URL to
the IP and then patching Host, SNI and certificate hostname checks back in, which is easy to get
subtly wrong; checking ``getpeername()`` after connect keeps urllib3's normal TLS verification and
needs only a small connection subclass. The price is that a TCP handshake with an internal address
can happen before we refuse; nothing is written to it.

Connections are pooled per process (a worker sends many callbacks to the same receivers): no TCP
or TLS handshake per message. The check stays as strict, because it runs on every new connection,
reconnects included: a reused connection is one whose peer was checked. Delivery uses urllib3's
pool directly (requests' session machinery cost more than the rest of a delivery); nothing is kept
between messages but the connections (no cookies).

``allow_insecure`` (``LOYALTY_ALLOW_INSECURE_CALLBACKS``, development and tests only) allows http
and skips the address checks.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, default_user_agent, get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["MAX_RESPONSE_BYTES", "UnsafeURLError", "post_json_safely", "validate_callback_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# We only look at the receiver's status code; a hostile receiver must not make us buffer gigabytes.
MAX_RESPONSE_BYTES = 64 * 1024

_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeURLError(ValueError):
    """The URL may not be called; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _address_problem(address: IPAddress) -> str | None:
    """Why ``address`` must not be called, or None when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        # Addresses that embed an IPv4 address reach that IPv4 host: judge the embedded one.
        if address.ipv4_mapped is not None:
            return _address_problem(address.ipv4_mapped)
        if address.sixtofour is not None:
            return _address_problem(address.sixtofour)
        if address in _NAT64_PREFIX:
            return _address_problem(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.teredo is not None:
            return "a Teredo tunnel address"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (e.g. a cloud metadata service)"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        # e.g. 100.64.0.0/10 carrier-grade NAT: not private, not reachable on the internet either.
        return "not globally routable"
    return None


def _parse_address(text: str) -> IPAddress:
    # getaddrinfo may append an IPv6 zone ("fe80::1%eth0"); the zone does not change the class.
    return ipaddress.ip_address(text.split("%", 1)[0])


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeURLError(f"host {host!r} does not resolve") from error
    addresses = [_parse_address(str(info[4][0])) for info in infos]
    if not addresses:
        raise UnsafeURLError(f"host {host!r} does not resolve")
    return addresses


def validate_callback_url(url: str, *, allow_insecure: bool) -> None:
    """Refuse a callback/webhook URL we must not call; return None when it is acceptable.

    Resolves the host (except with ``allow_insecure``) and refuses if ANY address is not public,
    because the HTTP client may pick any of them. Raises ``UnsafeURLError``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeURLError("URL is malformed") from error
    scheme = parts.scheme.lower()
    allowed_schemes = {"https", "http"} if allow_insecure else {"https"}
    if scheme not in allowed_schemes:
        shown = f"{scheme}://" if scheme else "a missing scheme"
        raise UnsafeURLError(f"{shown} is not allowed; use https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError("credentials in the URL are not allowed")
    host = parts.hostname
    if not host:
        raise UnsafeURLError("URL has no host")
    if allow_insecure:
        return
    for address in _resolve(host, port or (443 if scheme == "https" else 80)):
        problem = _address_problem(address)
        if problem is not None:
            raise UnsafeURLError(f"host {host!r} resolves to {address}, which is {problem}")


# -- delivery-time peer check ---------------------------------------------------------------


class _PeerCheckingMixin:
    """Refuses the connection right after TCP connect if the peer is not a public address."""

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        try:
            peer = str(sock.getpeername()[0])
            problem = _address_problem(_parse_address(peer))
        except (OSError, ValueError) as error:
            sock.close()
            raise UnsafeURLError("could not determine the connected address") from error
        if problem is not None:
            sock.close()
            raise UnsafeURLError(f"connected address {peer} is {problem}")
        return sock


class _PeerCheckingHTTPConnection(_PeerCheckingMixin, HTTPConnection):
    pass


class _PeerCheckingHTTPSConnection(_PeerCheckingMixin, HTTPSConnection):
    pass


class _PeerCheckingHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PeerCheckingHTTPConnection


class _PeerCheckingHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PeerCheckingHTTPSConnection


class _PeerCheckingAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PeerCheckingHTTPConnectionPool,
            "https": _PeerCheckingHTTPSConnectionPool,
        }


# This process's pools, by allow_insecure; urllib3's PoolManager is thread-safe.
_pool_managers: dict[bool, urllib3.PoolManager] = {}
# A forked child (a Celery pool process) must not share its parent's open sockets.
os.register_at_fork(after_in_child=_pool_managers.clear)


def _pool_manager(*, allow_insecure: bool) -> urllib3.PoolManager:
    manager = _pool_managers.get(allow_insecure)
    if manager is None:
        # As requests would send it: its CA bundle, its pool size, no retries. urllib3 never
        # reads HTTP(S)_PROXY, which would make the proxy the peer we check.
        manager = urllib3.PoolManager(
            maxsize=DEFAULT_POOLSIZE, retries=False, ca_certs=DEFAULT_CA_BUNDLE_PATH
        )
        if not allow_insecure:
            manager.pool_classes_by_scheme = {
                "http": _PeerCheckingHTTPConnectionPool,
                "https": _PeerCheckingHTTPSConnectionPool,
            }
        _pool_managers[allow_insecure] = manager
    return manager


def post_json_safely(
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    timeout: float | tuple[float, float],
    allow_insecure: bool,
) -> requests.Response:
    """POST ``body`` (JSON bytes) to a callback URL without letting it reach internal addresses.

    Validates the URL, then sends with redirects NOT followed (a 3xx comes back as the response)
    and with the connected peer address checked. The response body is read up to
    ``MAX_RESPONSE_BYTES``; a connection whose response was read to its end goes back to the
    pool, any other is closed. Returns the response as requests would (``.status_code``,
    ``.headers``, ``.text``, ``.json()``). Raises ``UnsafeURLError`` when refused, and urllib3's
    exceptions for network failures (the caller's retry policy decides what to do with those).
    """
    validate_callback_url(url, allow_insecure=allow_insecure)
    connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    raw = _pool_manager(allow_insecure=allow_insecure).request(
        "POST",
        url,
        body=body,
        headers={
            "User-Agent": default_user_agent(),
            "Content-Type": "application/json",
            **(headers or {}),
        },
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        redirect=False,
        preload_content=False,
    )
    try:
        content = raw.read(MAX_RESPONSE_BYTES, decode_content=True) or b""
    finally:
        # urllib3 has already pooled the connection if the body was read to its end; otherwise
        # it is closed here (a body beyond the cap is never drained).
        raw.close()
        raw.release_conn()
    # What requests' own adapter builds from a urllib3 response.
    response = requests.Response()
    response.status_code = raw.status
    response.reason = raw.reason
    response.headers = CaseInsensitiveDict(raw.headers)
    response.encoding = get_encoding_from_headers(response.headers)
    response.url = url
    response._content = content
    return response
