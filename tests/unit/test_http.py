"""The shared HTTP layer: auth header, retries, stream framing, secrets."""

import socket
import threading

import pytest
import responses
from dify_plugin.errors.model import (
    InvokeAuthorizationError,
    InvokeConnectionError,
    InvokeServerUnavailableError,
)

from models.common import http, retry
from models.common.credentials import parse_settings
from models.common.http import XinferenceClient
from models.common.sse import sse_data
from tests.unit.xinference import SERVER, closed_port, credentials, sse

KEY = "xf-" + "k" * 48


def client(**overrides) -> XinferenceClient:
    return XinferenceClient(parse_settings(credentials(**overrides)))


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(http.time, "sleep", waited.append)
    return waited


@responses.activate
def test_bearer_header_only_when_a_key_is_set():
    responses.get(f"{SERVER}/v1/models", json={"data": []})
    client(api_key=KEY).get_json("/v1/models")
    client(server_url="http://xinference.test:9997/").get_json("/v1/models")  # a different session: no key
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in responses.calls[1].request.headers


def test_sessions_are_pooled_per_server_and_key():
    assert client()._session is client()._session
    assert client()._session is not client(api_key=KEY)._session
    assert client()._session is not client(server_url="http://other.test:9997")._session


@responses.activate
def test_503_with_retry_after_is_retried_then_succeeds(sleeps):
    url = f"{SERVER}/v1/models"
    responses.get(url, status=503, headers={"Retry-After": "2"}, json={"detail": "Model is loading, please retry later"})
    responses.get(url, json={"data": []})
    assert client().get_json("/v1/models") == {"data": []}
    assert sleeps == [2.0]


@responses.activate
def test_503_retries_stop_at_max_retries_with_the_servers_words(sleeps):
    responses.get(f"{SERVER}/v1/models", status=503, headers={"Retry-After": "1"}, json={"detail": "Model is loading, please retry later: qwen"})
    # InvokeConnectionError: Dify's load balancer then tries another configured server.
    with pytest.raises(InvokeConnectionError, match="Model is loading"):
        client(max_retries="2").get_json("/v1/models")
    assert len(responses.calls) == 3
    assert len(sleeps) == 2


@responses.activate
def test_long_retry_after_is_capped(sleeps):
    url = f"{SERVER}/v1/models"
    responses.get(url, status=503, headers={"Retry-After": "30"}, json={"detail": "loading"})
    responses.get(url, json={"data": []})
    client().get_json("/v1/models")
    assert sleeps == [retry.MAX_RETRY_AFTER_WAIT]


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500])
@responses.activate
def test_other_errors_are_never_retried(status, sleeps):
    responses.get(f"{SERVER}/v1/models", status=status, json={"detail": "no"})
    with pytest.raises(Exception):
        client().get_json("/v1/models")
    assert len(responses.calls) == 1
    assert sleeps == []


@responses.activate
def test_503_without_retry_after_is_not_retried(sleeps):
    responses.get(f"{SERVER}/v1/models", status=503, body="Service Unavailable", content_type="text/plain")
    with pytest.raises(InvokeConnectionError, match="Service Unavailable"):
        client().get_json("/v1/models")
    assert len(responses.calls) == 1


def test_refused_connections_are_retried_with_backoff_then_reported(sleeps):
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(InvokeConnectionError, match="connection refused"):
        client(server_url=url, max_retries="3").get_json("/v1/models")
    assert sleeps == [0.25, 0.5, 1.0]


def test_unresolvable_host_says_so(sleeps):
    with pytest.raises(InvokeConnectionError, match="does not resolve"):
        client(server_url="http://no-such-host.invalid:9997", max_retries="0").get_json("/v1/models")


@responses.activate
def test_api_key_echoed_by_a_proxy_never_reaches_the_message():
    responses.get(f"{SERVER}/v1/models", status=401, body=f"bad header Authorization: Bearer {KEY}")
    with pytest.raises(InvokeAuthorizationError) as raised:
        client(api_key=KEY).get_json("/v1/models")
    assert KEY not in str(raised.value)
    assert "***" in str(raised.value)


@responses.activate
def test_non_json_answer_is_a_clear_server_error():
    responses.get(f"{SERVER}/v1/models", body="<html>proxy page</html>", content_type="text/html")
    with pytest.raises(InvokeServerUnavailableError, match="not JSON.*proxy page"):
        client().get_json("/v1/models")


@responses.activate
def test_sse_framing_pings_and_done():
    body = b": ping - 2026-11-23\r\n\r\ndata: {\"n\": 1}\r\n\r\n: ping\r\n\r\ndata: {\"n\": 2}\r\n\r\ndata: [DONE]\r\n\r\ndata: {\"n\": 3}\r\n\r\n"
    responses.post(f"{SERVER}/v1/chat/completions", body=body)
    assert [e["n"] for e in client().post_events("/v1/chat/completions", {})] == [1, 2]


def test_sse_events_split_across_network_chunks_are_reassembled():
    pieces = [b"da", b"ta: {\"n\"", b": 1}\r", b"\n\r\ndata: {\"n\": 2}\n\n", b"data: {\"n\": 3}"]
    assert list(sse_data(iter(pieces))) == ['{"n": 1}', '{"n": 2}', '{"n": 3}']


@responses.activate
def test_stream_without_done_ends_at_the_end_of_the_body():
    responses.post(f"{SERVER}/v1/completions", body=sse({"n": 1}, {"n": 2}, done=False))
    assert len(list(client().post_events("/v1/completions", {}))) == 2


class _LoopbackServer:
    """A raw TCP server on 127.0.0.1 that hands each accepted connection to `_handle`."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        raise NotImplementedError


class _ServerThatDropsIdleConnections(_LoopbackServer):
    """Answers the first request on a connection, then closes it without answering the
    next one — what uvicorn does to a keep-alive connection idle for more than 5 s."""

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            body = b'{"data": []}'
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: keep-alive\r\n\r\n"
                + body
            )
            connection.recv(4096)  # the next request on this connection: dropped unanswered


def test_a_keep_alive_connection_closed_by_the_server_is_retried_transparently(sleeps):
    server = _ServerThatDropsIdleConnections()
    reused = client(server_url=f"http://127.0.0.1:{server.port}", max_retries="0")
    assert reused.get_json("/v1/models") == {"data": []}
    assert reused.get_json("/v1/models") == {"data": []}
    assert len(server.connections) == 2
    assert sleeps == []
    server.listener.close()


class _SilentServer(_LoopbackServer):
    """Sends `greeting` (maybe nothing) on each connection, then never answers."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        super().__init__()

    def _handle(self, connection: socket.socket) -> None:
        if self.greeting:
            connection.sendall(self.greeting)


def test_a_server_that_does_not_answer_times_out_with_the_invoke_timeout():
    server = _SilentServer()
    with pytest.raises(InvokeConnectionError, match="did not answer within 0.5 s"):
        client(server_url=f"http://127.0.0.1:{server.port}", invoke_timeout="0.5").get_json("/v1/models")
    server.listener.close()


def test_https_to_a_server_that_speaks_no_tls_is_a_tls_error():
    server = _SilentServer(greeting=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(InvokeConnectionError, match="TLS error talking to https://127.0.0.1"):
        client(server_url=f"https://127.0.0.1:{server.port}", invoke_timeout="5").get_json("/v1/models")
    server.listener.close()
