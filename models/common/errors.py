"""One table from what Xinference answered to the error Dify shows.

Every failure leaves the plugin as one of Dify's `InvokeError` types carrying the
server's own words, so a Dify admin reads what Xinference said, not a generic text.
"""

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

_MAX_DETAIL_CHARS = 1000
_WRONG_MODEL_TYPE = re.compile(r"\bis not for\b|does not support", re.IGNORECASE)
_MODEL_NOT_FOUND = re.compile(r"model not found", re.IGNORECASE)
_INVALID_BODY = re.compile(r"validation error", re.IGNORECASE)
# TTS engines answer an unknown voice with a 500 that lists the voices they know.
_UNKNOWN_VOICE = re.compile(r"invalid voice|available speakers|supported speakers", re.IGNORECASE)
_UNKNOWN_MODEL = "Xinference has no running model with UID"
_STATUS_PREFIX = re.compile(r"^\s*(\d{3})\s*:\s*")

_ERROR_BY_STATUS: dict[int, type[InvokeError]] = {
    400: InvokeBadRequestError,
    401: InvokeAuthorizationError,
    403: InvokeAuthorizationError,
    404: InvokeBadRequestError,
    413: InvokeBadRequestError,
    422: InvokeBadRequestError,
    429: InvokeRateLimitError,
    501: InvokeBadRequestError,
}

# What Dify's own error mapping should do with exceptions that escape the table
# (the model classes hand this to the SDK as `_invoke_error_mapping`).
INVOKE_ERROR_MAPPING: dict[type[InvokeError], list[type[Exception]]] = {
    InvokeConnectionError: [requests.ConnectionError, requests.Timeout],
    InvokeServerUnavailableError: [requests.RequestException],
    InvokeRateLimitError: [],
    InvokeAuthorizationError: [],
    InvokeBadRequestError: [CredentialsError, ValueError, KeyError, TypeError],
}


def error_for_status(status: int, detail: str, model_uid: str) -> InvokeError:
    """The Dify error for an HTTP error status and the server's message."""
    detail = _shorten(detail) or f"HTTP {status} with an empty body"
    if _MODEL_NOT_FOUND.search(detail) and status in (400, 404):
        return InvokeBadRequestError(f"{_UNKNOWN_MODEL} '{model_uid}' ({status}): {detail}")
    if _UNKNOWN_VOICE.search(detail):
        return InvokeBadRequestError(f"Xinference does not know this voice ({status}): {detail}")
    if _WRONG_MODEL_TYPE.search(detail):
        return InvokeBadRequestError(
            f"Model '{model_uid}' is the wrong model type for this request ({status}): {detail}"
        )
    if status == 500 and _INVALID_BODY.search(detail):
        return InvokeBadRequestError(f"Xinference rejected the request ({status}): {detail}")
    if status in (401, 403):
        return InvokeAuthorizationError(
            f"Xinference refused the credentials ({status}): {detail}. "
            "Check the API key and that it may use this model."
        )
    error_type = _ERROR_BY_STATUS.get(status)
    if error_type is None:
        error_type = InvokeBadRequestError if status < 500 else InvokeServerUnavailableError
    return error_type(f"Xinference answered {status}: {detail}")


def names_unknown_model(error: InvokeError) -> bool:
    """Whether this error is the table's "no running model with that UID"."""
    return str(error).startswith(_UNKNOWN_MODEL)


def error_from_response(response: requests.Response, model_uid: str) -> InvokeError:
    return error_for_status(response.status_code, detail_of(response.content), model_uid)


def error_from_stream_event(message: object, model_uid: str) -> InvokeError:
    """A `data: {"error": ...}` event: the status is already 200, the real one may lead the text."""
    text = message if isinstance(message, str) else json.dumps(message)
    status_match = _STATUS_PREFIX.match(text)
    status = int(status_match.group(1)) if status_match else 500
    detail = text[status_match.end() :] if status_match else text
    error = error_for_status(status, detail, model_uid)
    error.description = f"{error.description} (reported mid-stream)"
    return error


def detail_of(body: bytes | str) -> str:
    """The server's own words from a JSON `detail`/`error`/`message` or a plain-text body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
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
            f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    if isinstance(detail, dict) and "message" in detail:
        return str(detail["message"])
    return json.dumps(detail)


def _shorten(text: str) -> str:
    text = text.strip()
    if len(text) > _MAX_DETAIL_CHARS:
        return text[:_MAX_DETAIL_CHARS] + "…"
    return text
