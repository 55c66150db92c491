"""The one HTTP layer between the plugin and Xinference.

- One pooled `requests.Session` per (server URL, API key), kept at module level: the SDK
  builds a new model object for every request, so anything worth reusing lives here.
- Retries only where repeating cannot do harm: the connection failed before anything
  was sent, a pooled keep-alive connection turned out to be closed by the server
  (uvicorn drops idle ones after 5 s), or a 503 that says when to come back.
- Every failure leaves as a Dify `InvokeError` (see `errors.py`).
"""

import http.client
import json
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from dify_plugin.errors.model import InvokeConnectionError, InvokeError, InvokeServerUnavailableError
from requests.adapters import HTTPAdapter

from models.common.credentials import ServerSettings
from models.common.errors import error_from_response, error_from_stream_event

CONNECT_TIMEOUT = 5.0
MAX_RETRY_AFTER_WAIT = 10.0
MAX_POOLED_CONNECTIONS = 32
MAX_SESSIONS = 64
_BACKOFF_START = 0.25
_BACKOFF_CAP = 4.0

_sessions: "OrderedDict[tuple[str, str], requests.Session]" = OrderedDict()
_sessions_lock = threading.Lock()


def _session_for(settings: ServerSettings) -> requests.Session:
    key = (settings.base_url, settings.key_fingerprint)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is not None:
            _sessions.move_to_end(key)
            return session
        session = requests.Session()
        adapter = _QuickAckAdapter(
            pool_connections=1, pool_maxsize=MAX_POOLED_CONNECTIONS, max_retries=0
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if settings.api_key:
            session.headers["Authorization"] = f"Bearer {settings.api_key}"
        _sessions[key] = session
        if len(_sessions) > MAX_SESSIONS:
            _, oldest = _sessions.popitem(last=False)
            oldest.close()
        return session


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


class _QuickAckHTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _ack_at_once(self.sock)
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _ack_at_once(self.sock)
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _QuickAckHTTPConnection


class _QuickAckHTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _QuickAckHTTPSConnection


class _QuickAckAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _QuickAckHTTPConnectionPool,
            "https": _QuickAckHTTPSConnectionPool,
        }


class XinferenceClient:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._session = _session_for(settings)

    # ---- requests that answer JSON -------------------------------------------------

    def get_json(self, path: str) -> Any:
        return _json_of(self._send("GET", path), path)

    def post_json(self, path: str, body: dict) -> Any:
        return _json_of(self._send("POST", path, json=body), path)

    def post_form(self, path: str, fields: dict, files: dict) -> Any:
        return _json_of(self._send("POST", path, data=fields, files=files), path)

    # ---- requests that answer a stream or raw bytes --------------------------------

    def post_events(self, path: str, body: dict) -> Iterator[dict]:
        """Opens an SSE stream now (so HTTP errors raise here) and yields its JSON events."""
        response = self._send("POST", path, json=body, stream=True)
        return self._events(response)

    def post_for_bytes(self, path: str, body: dict) -> bytes:
        response = self._send("POST", path, json=body)
        return response.content

    def post_for_byte_stream(self, path: str, body: dict) -> Iterator[bytes]:
        response = self._send("POST", path, json=body, stream=True)
        return self._chunks(response)

    # ---- the machinery -------------------------------------------------------------

    def _send(self, method: str, path: str, stream: bool = False, **kwargs: Any) -> requests.Response:
        url = self.settings.base_url + path
        timeout = (min(CONNECT_TIMEOUT, self.settings.invoke_timeout), self.settings.invoke_timeout)
        deadline = time.monotonic() + self.settings.invoke_timeout
        retries_left = self.settings.max_retries
        stale_connection_retried = False
        backoff = _BACKOFF_START
        while True:
            try:
                response = self._session.request(method, url, timeout=timeout, stream=stream, **kwargs)
            except requests.exceptions.SSLError as exc:
                raise InvokeConnectionError(f"TLS error talking to {self.settings.base_url}: {exc}") from exc
            except requests.ConnectionError as exc:
                if _closed_keep_alive(exc) and not stale_connection_retried:
                    stale_connection_retried = True
                    continue
                if _nothing_was_sent(exc) and retries_left > 0:
                    retries_left -= 1
                    time.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_CAP)
                    continue
                raise _connection_error(exc, self.settings) from exc
            except requests.Timeout as exc:
                raise InvokeConnectionError(
                    f"Xinference at {self.settings.base_url} did not answer within "
                    f"{self.settings.invoke_timeout:g} s (the invoke timeout)"
                ) from exc

            if response.status_code < 400:
                return response
            wait = _retry_after(response)
            if wait is not None and retries_left > 0 and time.monotonic() + wait < deadline:
                response.close()
                retries_left -= 1
                time.sleep(wait)
                continue
            try:
                raise self._without_secret(error_from_response(response, self.settings.model_uid))
            finally:
                response.close()

    def _without_secret(self, error: InvokeError) -> InvokeError:
        # A proxy in front of Xinference may echo request headers into its error text.
        if self.settings.api_key and error.description and self.settings.api_key in error.description:
            error.description = error.description.replace(self.settings.api_key, "***")
        return error

    def _events(self, response: requests.Response) -> Iterator[dict]:
        with response:
            done = False
            for data in _sse_data(self._chunks(response)):
                # After [DONE] only the end of the body follows: read it, so the connection
                # goes back to the pool instead of being closed (a new one per stream).
                if done or data == "[DONE]":
                    done = True
                    continue
                try:
                    event = json.loads(data)
                except ValueError:
                    raise InvokeServerUnavailableError(
                        f"Xinference sent a malformed stream event: {data[:200]!r}"
                    ) from None
                if isinstance(event, dict) and "error" in event:
                    raise self._without_secret(error_from_stream_event(event["error"], self.settings.model_uid))
                yield event

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        with response:
            try:
                yield from response.iter_content(chunk_size=None)
            except requests.Timeout as exc:
                raise InvokeConnectionError(
                    f"Xinference stopped sending for {self.settings.invoke_timeout:g} s "
                    "(the invoke timeout) in the middle of a stream"
                ) from exc
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                raise InvokeConnectionError(
                    f"The connection to Xinference broke in the middle of a stream: {exc}"
                ) from exc


def _sse_data(chunks: Iterator[bytes]) -> Iterator[str]:
    """The data of each server-sent event: `\\r\\n` framing, comment lines (`: ping`) skipped."""
    pending = b""
    data_lines: list[str] = []
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw_line in lines:
            line = raw_line.rstrip(b"\r")
            if not line:
                if data_lines:
                    yield "\n".join(data_lines)
                    data_lines = []
            elif line.startswith(b"data:"):
                data_lines.append(line[5:].decode("utf-8").removeprefix(" "))
    if pending.rstrip(b"\r").startswith(b"data:"):
        data_lines.append(pending.rstrip(b"\r")[5:].decode("utf-8").removeprefix(" "))
    if data_lines:
        yield "\n".join(data_lines)


def _json_of(response: requests.Response, path: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise InvokeServerUnavailableError(
            f"Xinference answered {path} with something that is not JSON: {response.text[:200]!r}"
        ) from None


def _retry_after(response: requests.Response) -> float | None:
    if response.status_code != 503:
        return None
    header = response.headers.get("Retry-After", "")
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER_WAIT)
    except ValueError:
        return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
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


def _nothing_was_sent(exc: requests.ConnectionError) -> bool:
    return any(
        isinstance(cause, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
        for cause in _causes(exc)
    )


def _closed_keep_alive(exc: requests.ConnectionError) -> bool:
    return any(isinstance(cause, http.client.RemoteDisconnected) for cause in _causes(exc))


def _connection_error(exc: requests.ConnectionError, settings: ServerSettings) -> InvokeConnectionError:
    causes = list(_causes(exc))
    if any(isinstance(cause, urllib3.exceptions.NameResolutionError) for cause in causes):
        reason = "the host name does not resolve"
    elif any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        reason = "connection refused (is Xinference running and listening on that port?)"
    elif any(isinstance(cause, urllib3.exceptions.ConnectTimeoutError) for cause in causes):
        reason = f"no answer to the connection attempt within {CONNECT_TIMEOUT:g} s"
    else:
        reason = str(exc)
    return InvokeConnectionError(f"Cannot reach Xinference at {settings.base_url}: {reason}")
