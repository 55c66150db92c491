"""Pooled connections to Xinference: one `requests.Session` per (server URL, API key).

The SDK builds a new model object for every request, so anything worth reusing lives
here, at module level. The adapter adds two things to plain `requests`:
- quick ACKs on reused connections (see below), and
- telling a reused keep-alive connection that died while idle (closed or reset by the
  server, a proxy or a NAT) from every other failure: `StaleConnectionError`. Such a
  request never reached the model, so the client may send it again on a fresh connection.
"""

import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

from models.common.credentials import ServerSettings
from models.common.memory import FOREVER, Memory

MAX_POOLED_CONNECTIONS = 32
MAX_SESSIONS = 64

# Kept while used; closing one another thread still uses only closes its idle connections.
_sessions: Memory[tuple[str, str], requests.Session] = Memory(FOREVER, MAX_SESSIONS, on_drop=lambda session: session.close())


class StaleConnectionError(requests.ConnectionError):
    """A reused keep-alive connection was closed or reset before any answer came."""


def session_for(settings: ServerSettings) -> requests.Session:
    return _sessions.get_or_put(
        (settings.base_url, settings.key_fingerprint), lambda: _new_session(settings.base_url, settings.api_key)
    )


def _new_session(base_url: str, api_key: str | None) -> requests.Session:
    session = requests.Session()
    read_environment_once(session, base_url)
    adapter = QuickAckAdapter(pool_connections=1, pool_maxsize=MAX_POOLED_CONNECTIONS, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if api_key:
        session.headers["Authorization"] = f"Bearer {api_key}"
    return session


def read_environment_once(session: requests.Session, base_url: str) -> None:
    """The proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY: the daemon passes its own on)
    and CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) for this server, read once.

    A session that trusts the environment reads it, and looks for ~/.netrc, on every
    request: a quarter of a blocking chat's CPU in the plugin (bench/README.md). A session
    serves one server, so once is enough. ~/.netrc is not read: it would replace the API key.
    """
    settled = session.merge_environment_settings(base_url, {}, None, None, None)
    session.trust_env = False
    session.proxies = settled["proxies"]
    session.verify = settled["verify"]


def drop_idle_connections(session: requests.Session) -> None:
    """Closes the pooled idle connections: after one died while idle, its siblings likely did too."""
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            adapter.poolmanager.clear()


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (`args`, urllib3's `reason`, the cause chain)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (getattr(current, "reason", None), current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                pending.append(linked)


# ---- which connection a request went out on ----------------------------------------------
# urllib3 sends on the calling thread (a greenlet under the SDK's gevent), so a thread-local
# flag set when the request starts says whether this attempt used a reused connection.
_attempt = threading.local()
_DIED_WHILE_IDLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _mark_request_start(connection: Any) -> None:
    sent_before = getattr(connection, "requests_sent", 0)
    connection.requests_sent = sent_before + 1
    _attempt.reused = sent_before > 0


# ---- delayed ACKs on reused connections ---------------------------------------------------
# Xinference (4.1.0 measured) writes a response's headers and body as two segments with
# Nagle on; on a reused keep-alive connection Linux delays the client's ACK of the first
# one, so the body waits ~40 ms for it (a fresh connection starts in quick-ACK mode and
# does not). Asking for quick ACKs once the request is sent removes that wait and keeps
# the pooled connection. Linux only; elsewhere a no-op.
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _ack_at_once(sock: socket.socket | None) -> None:
    if _TCP_QUICKACK is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
    except OSError:
        pass


class _QuickAck:
    """Mixed into urllib3's HTTP and HTTPS connections."""

    sock: socket.socket | None

    def request(self, *args: Any, **kwargs: Any) -> None:
        _mark_request_start(self)
        super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _ack_at_once(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _QuickAckHTTPConnection(_QuickAck, urllib3.connection.HTTPConnection):
    pass


class _QuickAckHTTPSConnection(_QuickAck, urllib3.connection.HTTPSConnection):
    pass


class _QuickAckHTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _QuickAckHTTPConnection


class _QuickAckHTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _QuickAckHTTPSConnection


class QuickAckAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _QuickAckHTTPConnectionPool,
            "https": _QuickAckHTTPSConnectionPool,
        }

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        _attempt.reused = False
        try:
            return super().send(request, *args, **kwargs)
        except requests.ConnectionError as exc:
            if getattr(_attempt, "reused", False) and any(isinstance(c, _DIED_WHILE_IDLE) for c in causes(exc)):
                raise StaleConnectionError(*exc.args, request=request) from exc
            raise
