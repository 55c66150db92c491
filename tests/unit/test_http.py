"""The shared HTTP layer: auth header, retries, stream framing, secrets."""

import logging
import socket
import struct
import threading
import time
from types import SimpleNamespace

import pytest
import requests
import responses
import urllib3.exceptions
from dify_plugin.errors.model import (
    InvokeAuthorizationError,
    InvokeBadRequestError,
    InvokeConnectionError,
    InvokeRateLimitError,
    InvokeServerUnavailableError,
)

from models.common import http, retry
from models.common.credentials import CredentialsError, parse_settings
from models.common.http import XinferenceClient
from models.common.sse import sse_data
from models.common.transport import StaleConnectionError
from tests.unit.xinference import SERVER, UID, assert_no_key_piece, closed_port, credentials, dify_sees, sse

KEY = "xf-" + "k" * 48


def client(**overrides) -> XinferenceClient:
    return XinferenceClient(parse_settings(credentials(**overrides)))


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The client's waits between retries, recorded instead of slept (only the client's: a
    loopback server's thread that outlives its test must not count here)."""
    waited: list[float] = []
    monkeypatch.setattr(http, "time", SimpleNamespace(sleep=waited.append, monotonic=time.monotonic))
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
    with dify_sees(InvokeConnectionError, match="Model is loading"):
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


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, InvokeAuthorizationError),
        (403, InvokeAuthorizationError),
        (404, InvokeBadRequestError),
        (429, InvokeRateLimitError),
        (500, InvokeServerUnavailableError),
    ],
)
@responses.activate
def test_other_errors_are_never_retried(status, error, sleeps):
    responses.get(f"{SERVER}/v1/models", status=status, json={"detail": "no"})
    with dify_sees(error):
        client().get_json("/v1/models")
    assert len(responses.calls) == 1
    assert sleeps == []


@responses.activate
def test_503_without_retry_after_is_not_retried(sleeps):
    responses.get(f"{SERVER}/v1/models", status=503, body="Service Unavailable", content_type="text/plain")
    with dify_sees(InvokeConnectionError, match="Service Unavailable"):
        client().get_json("/v1/models")
    assert len(responses.calls) == 1


def test_refused_connections_are_retried_with_backoff_then_reported(sleeps, monkeypatch):
    monkeypatch.setattr(http.random, "random", lambda: 0.5)  # chance takes an eighth off each wait
    url = f"http://127.0.0.1:{closed_port()}"
    with dify_sees(InvokeConnectionError, match="connection refused"):
        client(server_url=url, max_retries="3").get_json("/v1/models")
    assert sleeps == [0.25 * 0.875, 0.5 * 0.875, 1.0 * 0.875]


def test_unresolvable_host_says_so(sleeps):
    with dify_sees(InvokeConnectionError, match="does not resolve"):
        client(server_url="http://no-such-host.invalid:9997", max_retries="0").get_json("/v1/models")


@responses.activate
def test_api_key_echoed_by_a_proxy_never_reaches_the_message():
    responses.get(f"{SERVER}/v1/models", status=401, body=f"bad header Authorization: Bearer {KEY}")
    with dify_sees(InvokeAuthorizationError) as raised:
        client(api_key=KEY).get_json("/v1/models")
    assert KEY not in str(raised.value)
    assert "***" in str(raised.value)


@responses.activate
def test_non_json_answer_is_a_clear_server_error():
    responses.get(f"{SERVER}/v1/models", body="<html>proxy page</html>", content_type="text/html")
    with dify_sees(InvokeServerUnavailableError, match="not JSON.*proxy page"):
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
        self.paused = threading.Event()  # never set: its wait() is a pause no test's patch of time.sleep touches
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
    _assert_the_second_call_is_answered_on_a_fresh_connection(_ServerThatDropsIdleConnections(), sleeps)


def _assert_the_second_call_is_answered_on_a_fresh_connection(server, sleeps) -> None:
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
    with dify_sees(InvokeConnectionError, match="did not answer within 0.5 s"):
        client(server_url=f"http://127.0.0.1:{server.port}", invoke_timeout="0.5").get_json("/v1/models")
    server.listener.close()


def test_https_to_a_server_that_speaks_no_tls_is_a_tls_error():
    server = _SilentServer(greeting=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    with dify_sees(InvokeConnectionError, match="TLS error talking to https://127.0.0.1"):
        client(server_url=f"https://127.0.0.1:{server.port}", invoke_timeout="5").get_json("/v1/models")
    server.listener.close()


# ---- resets on reused connections ---------------------------------------------------------


def _reset(connection: socket.socket) -> None:
    """Closes with a TCP reset (RST) instead of a clean close (FIN)."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def _read_request(connection: socket.socket) -> bool:
    request = b""
    while b"\r\n\r\n" not in request:
        data = connection.recv(65536)
        if not data:
            return False
        request += data
    return True


_MODELS_ANSWER = b'{"data": []}'
_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: "


class _ServerThatResetsIdleConnections(_LoopbackServer):
    """Answers the first request on a connection, then resets the connection when the next
    request arrives — what a proxy or NAT that forgot an idle connection does."""

    def _handle(self, connection: socket.socket) -> None:
        if _read_request(connection):
            connection.sendall(_OK_HEAD + str(len(_MODELS_ANSWER)).encode() + b"\r\n\r\n" + _MODELS_ANSWER)
        if _read_request(connection):
            _reset(connection)


class _ServerThatResetsEveryRequest(_LoopbackServer):
    def _handle(self, connection: socket.socket) -> None:
        if _read_request(connection):
            _reset(connection)


def test_a_reset_on_a_reused_keep_alive_connection_is_retried_once_on_a_fresh_one(sleeps):
    _assert_the_second_call_is_answered_on_a_fresh_connection(_ServerThatResetsIdleConnections(), sleeps)


def test_a_reset_on_a_fresh_connection_is_not_sent_again(sleeps):
    # The request may have reached the model: repeating it could run it twice.
    server = _ServerThatResetsEveryRequest()
    with dify_sees(InvokeConnectionError, match="connection was reset"):
        client(server_url=f"http://127.0.0.1:{server.port}", max_retries="3").get_json("/v1/models")
    assert len(server.connections) == 1
    assert sleeps == []
    server.listener.close()


class _Proxy(_LoopbackServer):
    """An HTTP proxy that answers every request itself and keeps the request lines it got."""

    def __init__(self) -> None:
        self.request_lines: list[bytes] = []
        super().__init__()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            self.request_lines.append(request.split(b"\r\n", 1)[0])
            connection.sendall(_OK_HEAD.replace(b"keep-alive", b"close") + str(len(_MODELS_ANSWER)).encode()
                               + b"\r\n\r\n" + _MODELS_ANSWER)  # fmt: skip


def test_the_proxy_named_in_the_environment_carries_the_requests(monkeypatch):
    proxy = _Proxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "localhost")
    client(server_url="http://xinference-behind-a-proxy.test:9997").get_json("/v1/models")
    assert proxy.request_lines == [b"GET http://xinference-behind-a-proxy.test:9997/v1/models HTTP/1.1"]
    proxy.listener.close()


def test_a_server_named_in_no_proxy_is_reached_directly(monkeypatch):
    proxy, server = _Proxy(), _Proxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client(server_url=f"http://127.0.0.1:{server.port}").get_json("/v1/models")
    assert (proxy.request_lines, server.request_lines) == ([], [b"GET /v1/models HTTP/1.1"])
    proxy.listener.close()
    server.listener.close()


# ---- streams give their connection back ------------------------------------------------------


class _ServerOfChunkedStreams(_LoopbackServer):
    """Answers every request on a connection with a chunked SSE stream whose last chunk
    (the end of the body) comes after [DONE], in a write of its own."""

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            while _read_request(connection):
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                for event in (b'data: {"n": 1}\r\n\r\n', b"data: [DONE]\r\n\r\n"):
                    connection.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                self.paused.wait(0.05)
                connection.sendall(b"0\r\n\r\n")


def test_a_stream_is_read_past_done_so_its_connection_is_reused():
    server = _ServerOfChunkedStreams()
    streaming = client(server_url=f"http://127.0.0.1:{server.port}")
    for _ in range(3):
        assert [event["n"] for event in streaming.post_events("/v1/chat/completions", {})] == [1]
    assert len(server.connections) == 1
    server.listener.close()


@responses.activate
def test_an_error_event_mid_stream_is_redacted_and_classified():
    responses.post(
        f"{SERVER}/v1/chat/completions",
        body=sse({"error": f"401: bad key {KEY[:20]} in Authorization: Bearer {KEY}"}, done=False),
    )
    with dify_sees(InvokeAuthorizationError) as raised:
        list(client(api_key=KEY).post_events("/v1/chat/completions", {}))
    assert "reported mid-stream" in str(raised.value)
    assert_no_key_piece(raised.value, KEY)


# ---- the invoke timeout bounds the whole call -------------------------------------------------


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """Sleeping advances the clock without waiting: the sleeps made so far."""
    slept: list[float] = []
    real_monotonic = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + sum(slept))
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_retries_against_a_closed_port_stop_at_the_invoke_timeout(clock, monkeypatch):
    monkeypatch.setattr(http.random, "random", lambda: 0.0)
    url = f"http://127.0.0.1:{closed_port()}"
    with dify_sees(InvokeConnectionError, match="connection refused"):
        client(server_url=url, invoke_timeout="2", max_retries="10").get_json("/v1/models")
    # 0.25 + 0.5 + 1 = 1.75 s; the next back-off (2 s) would end past the deadline.
    assert clock == [0.25, 0.5, 1.0]


def test_max_retries_has_a_ceiling():
    with pytest.raises(CredentialsError, match="max_retries must be a whole number from 0 to 10"):
        parse_settings(credentials(max_retries="1000000"))
    assert parse_settings(credentials(max_retries="10")).max_retries == 10


@responses.activate
def test_a_retry_after_that_would_outlast_the_invoke_timeout_is_not_waited_for(clock):
    responses.get(f"{SERVER}/v1/models", status=503, headers={"Retry-After": "5"}, json={"detail": "Model is loading"})
    with dify_sees(InvokeConnectionError, match="Model is loading"):
        client(invoke_timeout="3").get_json("/v1/models")
    assert clock == []


@responses.activate
def test_one_deadline_covers_every_request_of_a_call(clock):
    """What the describe request used up is gone for the request after it."""
    settings = parse_settings(credentials(invoke_timeout="2", max_retries="5"))
    models, chat = f"{SERVER}/v1/models/{UID}", f"{SERVER}/v1/chat/completions"
    responses.get(models, status=503, headers={"Retry-After": "1.5"}, json={"detail": "Model is loading"})
    responses.get(models, json={"model_type": "LLM"})
    responses.post(chat, status=503, headers={"Retry-After": "1"}, json={"detail": "Model is loading"})
    XinferenceClient(settings).get_json(f"/v1/models/{UID}")
    with dify_sees(InvokeConnectionError, match="Model is loading"):
        XinferenceClient(settings).post_json("/v1/chat/completions", {})
    assert clock == [1.5]


@responses.activate
def test_each_retry_is_logged_at_debug_level_without_the_key(caplog, sleeps):
    url = f"{SERVER}/v1/models"
    responses.get(url, status=503, headers={"Retry-After": "2"}, json={"detail": f"loading; you sent {KEY}"})
    responses.get(url, json={"data": []})
    with caplog.at_level(logging.DEBUG, logger="models.common.http"):
        client(api_key=KEY).get_json("/v1/models")
    retries = [record.getMessage() for record in caplog.records if record.name == "models.common.http"]
    assert retries == ["Xinference GET /v1/models: HTTP 503, retrying in 2.00 s (retry 1 of at most 3)"]


# ---- the retry decision on its own -----------------------------------------------------------


def _answer(status: int, retry_after: str | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def _refused() -> requests.ConnectionError:
    return requests.ConnectionError(urllib3.exceptions.NewConnectionError(None, "refused"))


@pytest.mark.parametrize(
    ("attempt", "failure", "max_retries", "time_left", "delay"),
    [
        (retry.Attempt(), _answer(503, "2"), 3, 60.0, 2.0),
        (retry.Attempt(), _answer(503, "30"), 3, 60.0, retry.MAX_RETRY_AFTER_WAIT),
        (retry.Attempt(), _answer(503, "-4"), 3, 60.0, 0.0),
        (retry.Attempt(), _answer(503, "nan"), 3, 60.0, None),
        (retry.Attempt(), _answer(503, "Wed, 21 Oct 2026 07:28:00 GMT"), 3, 60.0, None),
        (retry.Attempt(), _answer(503), 3, 60.0, None),
        (retry.Attempt(), _answer(500, "1"), 3, 60.0, None),
        (retry.Attempt(retries=3), _answer(503, "1"), 3, 60.0, None),
        (retry.Attempt(), _answer(503, "2"), 3, 1.5, None),
        (retry.Attempt(), _refused(), 3, 60.0, 0.25),
        (retry.Attempt(retries=2), _refused(), 3, 60.0, 1.0),
        (retry.Attempt(retries=6), _refused(), 10, 60.0, retry.BACKOFF_CAP),
        (retry.Attempt(), _refused(), 0, 60.0, None),
        (retry.Attempt(), requests.ConnectionError("reset mid-answer"), 3, 60.0, None),
        (retry.Attempt(retries=3), StaleConnectionError("idle connection reset"), 3, 60.0, 0.0),
        (retry.Attempt(fresh_connection_tried=True), StaleConnectionError("reset again"), 3, 60.0, None),
        (retry.Attempt(), StaleConnectionError("idle connection reset"), 3, 0.0, None),
    ],
)
def test_the_retry_decision(attempt, failure, max_retries, time_left, delay):
    assert retry.retry_delay(attempt, failure, max_retries=max_retries, time_left=time_left, chance=0.0) == delay


@pytest.mark.parametrize(("chance", "delay"), [(0.0, 1.0), (0.5, 0.875), (0.999, 0.75025)])
def test_chance_takes_up_to_a_quarter_off_a_back_off_but_not_off_a_wait_the_server_asked_for(chance, delay):
    backed_off = retry.retry_delay(retry.Attempt(retries=2), _refused(), max_retries=3, time_left=60.0, chance=chance)
    assert backed_off == pytest.approx(delay)
    asked = retry.retry_delay(retry.Attempt(), _answer(503, "2"), max_retries=3, time_left=60.0, chance=chance)
    assert asked == 2.0


class _ServerThatTricklesItsAnswer(_LoopbackServer):
    """Sends the headers at once, then one byte of the body every 0.2 s (20 bytes: 4 s)."""

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            if not _read_request(connection):
                return
            connection.sendall(_OK_HEAD + b"20\r\n\r\n")
            try:
                for _ in range(20):
                    self.paused.wait(0.2)
                    connection.sendall(b" ")
            except OSError:
                pass


def test_a_blocking_answer_that_trickles_in_ends_at_the_invoke_timeout():
    server = _ServerThatTricklesItsAnswer()
    started = time.monotonic()
    with dify_sees(InvokeConnectionError, match="within 0.5 s"):
        client(server_url=f"http://127.0.0.1:{server.port}", invoke_timeout="0.5").get_json("/v1/models")
    # The whole answer would take 4 s; the call ends near 0.5 s (generous bound for a busy machine).
    assert time.monotonic() - started < 3
    server.listener.close()


class _KeepAliveServer(_LoopbackServer):
    def _handle(self, connection: socket.socket) -> None:
        with connection:
            while _read_request(connection):
                connection.sendall(_OK_HEAD + str(len(_MODELS_ANSWER)).encode() + b"\r\n\r\n" + _MODELS_ANSWER)


def test_blocking_answers_give_their_connection_back_to_the_pool():
    server = _KeepAliveServer()
    pooled = client(server_url=f"http://127.0.0.1:{server.port}")
    for _ in range(3):
        assert pooled.get_json("/v1/models") == {"data": []}
    assert len(server.connections) == 1
    server.listener.close()
