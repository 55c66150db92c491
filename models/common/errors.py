"""Errors as data: what went wrong, classified once, shown to Dify at the edge.

Inside the shared floor a failure is an `XinferenceError`: a `Reason`, the HTTP status
(if any) and the server's full words. Classification reads the full words; only when the
error leaves for Dify (`to_dify`) is the text redacted (no piece of the API key) and then
shortened, in that order, and the reason turned into one of Dify's five `InvokeError`
classes. Dify's load balancer acts on the class: `InvokeRateLimitError` cools a credential
down for 60 s, `InvokeAuthorizationError` and `InvokeConnectionError` for 10 s, and then
it tries the next configured credential; every other class goes straight to the user.
"""

import enum
import json
import re

import requests
from dify_plugin.errors.model import (
    InvokeAuthorizationError,
    InvokeBadRequestError,
    InvokeConnectionError,
    InvokeError,
    InvokeRateLimitError,
    InvokeServerUnavailableError,
)

from models.common.credentials import CredentialsError
from models.common.redaction import MAX_DETAIL_CHARS, redact, shorten


class Reason(enum.Enum):
    UNKNOWN_MODEL = "unknown model"
    WRONG_MODEL_TYPE = "wrong model type"
    UNKNOWN_VOICE = "unknown voice"
    REJECTED_REQUEST = "rejected request"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate limited"
    COME_BACK_LATER = "come back later"
    SERVER_ERROR = "server error"
    UNREACHABLE = "unreachable"
    TIMED_OUT = "timed out"
    MALFORMED_ANSWER = "malformed answer"
    BAD_SETTINGS = "bad settings"


_DIFY_CLASS: dict[Reason, type[InvokeError]] = {
    Reason.UNKNOWN_MODEL: InvokeBadRequestError,
    Reason.WRONG_MODEL_TYPE: InvokeBadRequestError,
    Reason.UNKNOWN_VOICE: InvokeBadRequestError,
    Reason.REJECTED_REQUEST: InvokeBadRequestError,
    Reason.BAD_SETTINGS: InvokeBadRequestError,
    Reason.UNAUTHORIZED: InvokeAuthorizationError,
    Reason.RATE_LIMITED: InvokeRateLimitError,
    # Not ready yet (model loading, no ready Token Router backend, HTTP concurrency cap):
    # a class the load balancer acts on, so another configured server gets the call.
    Reason.COME_BACK_LATER: InvokeConnectionError,
    Reason.UNREACHABLE: InvokeConnectionError,
    Reason.TIMED_OUT: InvokeConnectionError,
    Reason.SERVER_ERROR: InvokeServerUnavailableError,
    Reason.MALFORMED_ANSWER: InvokeServerUnavailableError,
}

# What the SDK's error mapping does with exceptions that escape as they are (the model
# classes hand this to the SDK as `_invoke_error_mapping`); anything else is a plugin bug.
INVOKE_ERROR_MAPPING: dict[type[InvokeError], list[type[Exception]]] = {
    InvokeConnectionError: [requests.ConnectionError, requests.Timeout],
    InvokeServerUnavailableError: [requests.RequestException],
    InvokeRateLimitError: [],
    InvokeAuthorizationError: [],
    InvokeBadRequestError: [CredentialsError],
}

_WRONG_MODEL_TYPE = re.compile(r"\bis not for\b|does not support", re.IGNORECASE)
_MODEL_NOT_FOUND = re.compile(r"model not found", re.IGNORECASE)
_INVALID_BODY = re.compile(r"validation error", re.IGNORECASE)
# TTS engines answer an unknown voice with a 500 that lists the voices they know.
_UNKNOWN_VOICE = re.compile(r"invalid voice|available speakers|supported speakers", re.IGNORECASE)
_STATUS_PREFIX = re.compile(r"^\s*(\d{3})\s*:\s*")
_UNKNOWN_MODEL_HEADLINE = "Xinference has no running model with UID"


class XinferenceError(Exception):
    """A failure inside the shared floor, as data.

    `detail` is the server's full text (or ours); `headline` says what happened and
    `hint` what to do. `args` carry only the reason and status, never the detail, so
    logging the exception cannot leak what a server echoed.
    """

    def __init__(
        self, reason: Reason, headline: str, detail: str = "", *, status: int | None = None, hint: str = ""
    ) -> None:
        super().__init__(reason.value, status)
        self.reason = reason
        self.headline = headline
        self.detail = detail
        self.status = status
        self.hint = hint

    def message(self, secret: str | None) -> str:
        # Redact before shortening: a cut must never leave the start of the key behind.
        detail = shorten(redact(self.detail[: 4 * MAX_DETAIL_CHARS], secret))
        text = f"{self.headline}: {detail}" if detail else self.headline
        return redact(text + self.hint, secret)


def to_dify(error: XinferenceError, secret: str | None) -> InvokeError:
    """The error Dify gets: the reason's class, the text without any piece of the key."""
    return _DIFY_CLASS[error.reason](error.message(secret))


def unexpected(error: BaseException, secret: str | None) -> InvokeError:
    """An exception nobody classified (a plugin bug, or a library's surprise), still one of Dify's five."""
    return InvokeServerUnavailableError(
        shorten(redact(f"The Xinference plugin failed unexpectedly ({type(error).__name__}): {_text_of(error)}", secret))
    )


# ---- classification -------------------------------------------------------------------


def from_status(status: int, detail: str, model_uid: str, *, retry_after: bool = False) -> XinferenceError:
    """The error for an HTTP error status and the server's full text."""
    detail = detail.strip()
    shown = detail or f"HTTP {status} with an empty body"
    uid = _quoted(model_uid)
    if _MODEL_NOT_FOUND.search(detail) and status in (400, 404):
        return XinferenceError(Reason.UNKNOWN_MODEL, f"{_UNKNOWN_MODEL_HEADLINE} {uid} ({status})", shown, status=status)
    if _UNKNOWN_VOICE.search(detail):
        return XinferenceError(Reason.UNKNOWN_VOICE, f"Xinference does not know this voice ({status})", shown, status=status)
    if _WRONG_MODEL_TYPE.search(detail):
        return XinferenceError(
            Reason.WRONG_MODEL_TYPE,
            f"Model {uid} is the wrong model type for this request ({status})",
            shown,
            status=status,
        )
    if status == 500 and _INVALID_BODY.search(detail):
        return XinferenceError(Reason.REJECTED_REQUEST, f"Xinference rejected the request ({status})", shown, status=status)
    if status in (401, 403):
        return XinferenceError(
            Reason.UNAUTHORIZED,
            f"Xinference refused the credentials ({status})",
            shown,
            status=status,
            hint=". Check the API key and that it may use this model.",
        )
    if status == 429:
        return XinferenceError(Reason.RATE_LIMITED, f"Xinference answered {status}", shown, status=status)
    if status == 503 or (retry_after and status >= 500):
        return XinferenceError(
            Reason.COME_BACK_LATER,
            f"Xinference cannot take this request right now ({status}; try again later or another server)",
            shown,
            status=status,
        )
    reason = Reason.REJECTED_REQUEST if status < 500 or status == 501 else Reason.SERVER_ERROR
    return XinferenceError(reason, f"Xinference answered {status}", shown, status=status)


def from_stream_event(message: object, model_uid: str) -> XinferenceError:
    """A `data: {"error": ...}` event: the status is already 200, the real one may lead the text."""
    text = message if isinstance(message, str) else safe_json(message)
    status_match = _STATUS_PREFIX.match(text)
    status = int(status_match.group(1)) if status_match else 500
    detail = text[status_match.end() :] if status_match else text
    error = from_status(status, detail, model_uid)
    error.hint += " (reported mid-stream)"
    return error


def detail_of(body: bytes | str) -> str:
    """The server's own words from a JSON `detail`/`error`/`message` or a plain-text body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text.strip()
    if isinstance(parsed, dict):
        for key in ("detail", "error", "message"):
            if key in parsed:
                return _flatten_detail(parsed[key])
    return text.strip()


def _flatten_detail(detail: object) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": ...}]
        return "; ".join(
            f"{'.'.join(str(part) for part in _as_list(item.get('loc')))}: {item.get('msg')}"
            if isinstance(item, dict)
            else safe_json(item)
            for item in detail
        )
    if isinstance(detail, dict) and "message" in detail:
        return _flatten_detail(detail["message"])
    return safe_json(detail)


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


# ---- display steps ----------------------------------------------------------------------


def safe_json(value: object, limit: int = MAX_DETAIL_CHARS) -> str:
    """Compact JSON of a parsed answer for a message; nesting too deep to print is said so."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        return f"<{type(value).__name__} nested too deeply to show>"
    return text[:limit]


def _text_of(error: BaseException) -> str:
    try:
        return str(error)[: 4 * MAX_DETAIL_CHARS]
    except Exception:  # a broken __str__ must not hide the error it belongs to
        return ""


def _quoted(text: str) -> str:
    return f"'{text[:200]}'" + ("…" if len(text) > 200 else "")
