"""The client every model type talks to Xinference through.

- Connections come pooled from `transport.py`; retries follow `retry.py`; streams are
  framed by `sse.py`.
- The invoke timeout bounds the call: connecting, retries and their waits, and reading a
  blocking answer all end by the deadline in the settings. A stream, once open, may run
  longer as long as it keeps coming: it fails when Xinference is silent for the timeout.
- Failures leave every public method as `XinferenceError`s, classified (`errors.from_status`)
  and with no piece of the API key in their words (`hide`): a caller that can work around
  a reason catches it; the model class's edge turns the rest into Dify's classes.
"""

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
import urllib3.exceptions

from models.common.credentials import ServerSettings
from models.common.errors import Reason, XinferenceError, detail_of, from_status, from_stream_event, safe_json
from models.common.redaction import redact
from models.common.retry import Attempt, retry_delay
from models.common.sse import DONE, sse_data
from models.common.transport import StaleConnectionError, causes, drop_idle_connections, session_for

CONNECT_TIMEOUT = 5.0
READ_CHUNK_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 1024**3  # a blocking answer past 1 GiB is not one the plugin can hold
MAX_ERROR_BODY_BYTES = 1024**2

logger = logging.getLogger(__name__)


class XinferenceClient:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._session = session_for(settings)

    # ---- requests that answer JSON -------------------------------------------------

    def get_json(self, path: str) -> Any:
        with self._key_hidden():
            return self._json_of(self._read_all(self._open("GET", path)), path)

    def post_json(self, path: str, body: dict) -> Any:
        with self._key_hidden():
            return self._json_of(self._read_all(self._open("POST", path, json=body)), path)

    def post_form(self, path: str, fields: dict, files: dict) -> Any:
        with self._key_hidden():
            return self._json_of(self._read_all(self._open("POST", path, data=fields, files=files)), path)

    # ---- requests that answer a stream or raw bytes --------------------------------

    def post_events(self, path: str, body: dict) -> Iterator[dict]:
        """Opens an SSE stream now (so HTTP errors raise here) and yields its JSON events."""
        with self._key_hidden():
            response = self._open("POST", path, json=body)
        return self._key_hidden_in(self._events(response))

    def post_for_bytes(self, path: str, body: dict) -> bytes:
        with self._key_hidden():
            return self._read_all(self._open("POST", path, json=body))

    # ---- what leaves the client ---------------------------------------------------------

    @contextmanager
    def _key_hidden(self) -> Iterator[None]:
        try:
            yield
        except XinferenceError as error:
            error.hide(self.settings.api_key)
            raise

    def _key_hidden_in(self, items: Iterator[Any]) -> Iterator[Any]:
        with self._key_hidden():
            yield from items

    # ---- sending, with retries ---------------------------------------------------------

    def _open(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The response once its status says success; every failure as an `XinferenceError`."""
        url = self.settings.base_url + path
        attempt = Attempt()
        while True:
            time_left = self.settings.time_left()
            if time_left <= 0:
                raise self._out_of_time()
            failure: BaseException | requests.Response
            try:
                response = self._session.request(
                    method, url, stream=True, timeout=(min(CONNECT_TIMEOUT, time_left), time_left), **kwargs
                )
            except requests.RequestException as exc:
                failure = exc
            except (ValueError, UnicodeError):
                # A header or URL `requests` cannot encode; its message would quote the value.
                raise XinferenceError(Reason.BAD_SETTINGS, _UNSENDABLE) from None
            else:
                if response.status_code < 400:
                    return response
                failure = response
            delay = retry_delay(
                attempt, failure, max_retries=self.settings.max_retries, time_left=self.settings.time_left(),
                chance=random.random(),
            )
            if delay is None:
                raise self._error_of(failure)
            how = (
                "on a fresh connection" if isinstance(failure, StaleConnectionError)
                else f"retry {attempt.retries + 1} of at most {self.settings.max_retries}"
            )  # fmt: skip
            # The path holds the UID, where an API key may have been pasted too.
            line = f"Xinference {method} {path}: {_what_failed(failure)}, retrying in {delay:.2f} s ({how})"
            logger.debug("%s", redact(line, self.settings.api_key))
            if isinstance(failure, requests.Response):
                failure.close()
            if isinstance(failure, StaleConnectionError):
                drop_idle_connections(self._session)
            attempt = attempt.after(failure)
            if delay:
                time.sleep(delay)

    def _error_of(self, failure: BaseException | requests.Response) -> XinferenceError:
        if isinstance(failure, requests.Response):
            with failure:
                body = self._read_error_body(failure)
            retry_after = "Retry-After" in failure.headers
            return from_status(failure.status_code, detail_of(body), self.settings.model_uid, retry_after=retry_after)
        return self._transport_error(failure)

    def _transport_error(self, exc: BaseException) -> XinferenceError:
        server = self.settings.shown_url
        found = list(causes(exc))
        if isinstance(exc, (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL)):
            return XinferenceError(Reason.BAD_SETTINGS, _UNSENDABLE)
        if isinstance(exc, requests.exceptions.SSLError):
            return XinferenceError(Reason.UNREACHABLE, f"TLS error talking to {server}", str(exc))
        if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.exceptions.ConnectTimeout):
            if any(isinstance(cause, urllib3.exceptions.NameResolutionError) for cause in found):
                reason = "the host name does not resolve"
            elif any(isinstance(cause, ConnectionRefusedError) for cause in found):
                reason = "connection refused (is Xinference running and listening on that port?)"
            elif any(isinstance(cause, ConnectionResetError) for cause in found):
                reason = "the connection was reset before Xinference answered"
            else:
                reason = str(exc)
            return XinferenceError(Reason.UNREACHABLE, f"Cannot reach Xinference at {server}", reason)
        if any(isinstance(cause, urllib3.exceptions.ConnectTimeoutError) for cause in found):
            return XinferenceError(
                Reason.UNREACHABLE,
                f"Cannot reach Xinference at {server}",
                f"no answer to the connection attempt within {min(CONNECT_TIMEOUT, self.settings.invoke_timeout):g} s",
            )
        if isinstance(exc, requests.Timeout):
            return self._out_of_time()
        return XinferenceError(Reason.SERVER_ERROR, f"The request to Xinference at {server} failed", str(exc))

    def _out_of_time(self) -> XinferenceError:
        return XinferenceError(
            Reason.TIMED_OUT,
            f"Xinference at {self.settings.shown_url} did not answer within "
            f"{self.settings.invoke_timeout:g} s (the invoke timeout)",
        )

    # ---- reading ---------------------------------------------------------------------------

    def _read_all(self, response: requests.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
        """The whole body by the call's deadline: one socket read at a time, each allowed only
        the time left, so a server that trickles its answer cannot stretch the call."""
        parts: list[bytes] = []
        size = 0
        with response, self._reading(self._out_of_time):
            while True:
                time_left = self.settings.time_left()
                if time_left <= 0:
                    raise self._out_of_time()
                _set_read_timeout(response, time_left)
                chunk = response.raw.read1(READ_CHUNK_BYTES)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise XinferenceError(Reason.MALFORMED_ANSWER, f"Xinference sent an answer larger than {limit} bytes")

    def _read_error_body(self, response: requests.Response) -> bytes:
        try:
            return self._read_all(response, MAX_ERROR_BODY_BYTES)
        except XinferenceError:
            return b""

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        """A stream's chunks as they come; Xinference silent for the invoke timeout ends it."""
        with response, self._reading(self._went_silent):
            _set_read_timeout(response, self.settings.invoke_timeout)
            yield from response.iter_content(chunk_size=None)

    @contextmanager
    def _reading(self, timed_out: Callable[[], XinferenceError]) -> Iterator[None]:
        try:
            yield
        except (requests.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise timed_out() from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise XinferenceError(
                Reason.UNREACHABLE, "The connection to Xinference broke in the middle of an answer", str(exc)
            ) from exc

    def _went_silent(self) -> XinferenceError:
        return XinferenceError(
            Reason.TIMED_OUT,
            f"Xinference stopped sending for {self.settings.invoke_timeout:g} s (the invoke timeout) "
            "in the middle of an answer",
        )

    def _events(self, response: requests.Response) -> Iterator[dict]:
        done = False
        for data in sse_data(self._chunks(response)):
            # After [DONE] only the end of the body follows: read it, so the connection
            # goes back to the pool instead of being closed (a new one per stream).
            if done or data == DONE:
                done = True
                continue
            try:
                event = json.loads(data)
            except (ValueError, RecursionError):
                raise XinferenceError(
                    Reason.MALFORMED_ANSWER, "Xinference sent a malformed stream event", repr(data[:200])
                ) from None
            if isinstance(event, dict) and "error" in event:
                raise from_stream_event(event["error"], self.settings.model_uid)
            if not isinstance(event, dict):
                raise XinferenceError(
                    Reason.MALFORMED_ANSWER, "Xinference sent a stream event that is not an object", safe_json(event, 200)
                )
            yield event

    def _json_of(self, body: bytes, path: str) -> Any:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            text = body[:200].decode("utf-8", "replace")
            raise XinferenceError(
                Reason.MALFORMED_ANSWER, f"Xinference answered {path} with something that is not JSON", repr(text)
            ) from None


_UNSENDABLE = (
    "The request to Xinference cannot be sent with these settings: "
    "the server URL or the API key holds characters HTTP does not allow"
)


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Applies to the next reads of this response's socket (none with a test double)."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(seconds, 0.001))
        except OSError:
            pass


def _what_failed(failure: BaseException | requests.Response) -> str:
    if isinstance(failure, requests.Response):
        return f"HTTP {failure.status_code}"
    return type(failure).__name__
