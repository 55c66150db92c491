"""Errors as data: what went wrong, classified once, shown to Dify at the edge.

A failure of a request to Xinference is an `XinferenceError`: a `Reason` (with what a
caller needs to act on it, e.g. the missing prompt's name), the HTTP status (if any) and
the server's words. `from_status` classifies once, on the server's full words; callers
branch on `error.reason`, never on the text. Before the error leaves the client its words
are fixed with no piece of the API key (`hide`); at the model class's edge it becomes one
of Dify's five `InvokeError` classes (`to_dify`). Dify's load balancer acts on the class:
`InvokeRateLimitError` cools a credential down for 60 s, `InvokeAuthorizationError` and
`InvokeConnectionError` for 10 s, and then it tries the next configured credential; every
other class goes straight to the user.
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
    # Refusals the plugin works around (models/llm/refusals.py, tool_stream.py, text_embedding/retrieval.py).
    TOOLS_REFUSED = "tools refused"
    STREAMED_TOOLS_REFUSED = "streamed tools refused"
    MISSING_PROMPT = "missing prompt"


_DIFY_CLASS: dict[Reason, type[InvokeError]] = {
    Reason.UNKNOWN_MODEL: InvokeBadRequestError,
    Reason.WRONG_MODEL_TYPE: InvokeBadRequestError,
    Reason.UNKNOWN_VOICE: InvokeBadRequestError,
    Reason.REJECTED_REQUEST: InvokeBadRequestError,
    Reason.BAD_SETTINGS: InvokeBadRequestError,
    Reason.TOOLS_REFUSED: InvokeBadRequestError,
    Reason.STREAMED_TOOLS_REFUSED: InvokeBadRequestError,
    Reason.UNAUTHORIZED: InvokeAuthorizationError,
    Reason.RATE_LIMITED: InvokeRateLimitError,
    # Not ready yet (model loading, no ready Token Router backend, HTTP concurrency cap):
    # a class the load balancer acts on, so another configured server gets the call.
    Reason.COME_BACK_LATER: InvokeConnectionError,
    Reason.UNREACHABLE: InvokeConnectionError,
    Reason.TIMED_OUT: InvokeConnectionError,
    Reason.SERVER_ERROR: InvokeServerUnavailableError,
    Reason.MALFORMED_ANSWER: InvokeServerUnavailableError,
    # The sentence-transformers engine fails the request with a 500.
    Reason.MISSING_PROMPT: InvokeServerUnavailableError,
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
# Xinference's actors prefix what they raise with where they run: "[address=127.0.0.1:58997, pid=4242] ".
_ACTOR_PREFIX = re.compile(r"\[address=[^\]]*, pid=\d+\]\s*")
# Families without a tool parser: 400 "Only {'qwen2.5-instruct', …} support tool calls" (or "… tool messages").
_TOOLS_REFUSED = re.compile(r"\bOnly \{[^}]*\} support tool (?:calls|messages)\b")
# Xinference 1.10 to 2.1: 400 "Streaming support for tool calls is available only when using Qwen models …".
_STREAMED_TOOLS_REFUSED = re.compile(r"streaming support for tool calls", re.IGNORECASE)
# sentence-transformers: "Prompt name 'query' not found in the configured prompts dictionary …".
_MISSING_PROMPT = re.compile(r"Prompt name '([^']*)' not found")
_UNKNOWN_MODEL_HEADLINE = "Xinference has no running model with UID"
_TERMINAL_PUNCTUATION = (".", "!", "?", "…")


class XinferenceError(Exception):
    """A failed request to Xinference, as data.

    `detail` is the server's full text (or ours); `headline` says what happened and
    `hint` what to do (a sentence). `args` carry only the reason and status, never the
    detail, so logging the exception cannot leak what a server echoed.
    """

    def __init__(
        self,
        reason: Reason,
        headline: str,
        detail: str = "",
        *,
        status: int | None = None,
        hint: str = "",
        prompt_name: str | None = None,
    ) -> None:
        super().__init__(reason.value, status)
        self.reason = reason
        self.headline = headline
        self.detail = detail
        self.status = status
        self.hint = hint
        self.prompt_name = prompt_name  # MISSING_PROMPT: the prompt the model lacks
        self.mid_stream = False
        self._shown: str | None = None

    def hide(self, secret: str | None) -> "XinferenceError":
        """Fixes the words to show, without any piece of `secret` (done once, as the error leaves the client)."""
        if self._shown is None:
            self._shown = self._words(secret)
            self.headline, self.detail, self.hint = (redact(text, secret) for text in (self.headline, self.detail, self.hint))
        return self

    def message(self) -> str:
        return self._shown if self._shown is not None else self._words(None)

    def _words(self, secret: str | None) -> str:
        # Redact before shortening: a cut must never leave the start of the key behind.
        detail = shorten(redact(self.detail[: 4 * MAX_DETAIL_CHARS], secret))
        text = f"{self.headline}: {detail}" if detail else self.headline
        if self.mid_stream:
            text += " (reported mid-stream)"
        return redact(with_sentence(text, self.hint), secret)


def to_dify(error: XinferenceError) -> InvokeError:
    """The error Dify gets: the reason's class, the words `hide` fixed."""
    return _DIFY_CLASS[error.reason](error.message())


def with_sentence(text: str, sentence: str) -> str:
    """`text`, ended with a full stop where it has none, and `sentence` after it (if any)."""
    if not sentence:
        return text
    return f"{text if text.endswith(_TERMINAL_PUNCTUATION) else text + '.'} {sentence}"


def unexpected(error: BaseException, secret: str | None) -> InvokeError:
    """An exception nobody classified (a plugin bug, or a library's surprise), still one of Dify's five."""
    return InvokeServerUnavailableError(
        shorten(redact(f"The Xinference plugin failed unexpectedly ({type(error).__name__}): {_text_of(error)}", secret))
    )


# ---- classification -------------------------------------------------------------------


def from_status(status: int, detail: str, model_uid: str, *, retry_after: bool = False) -> XinferenceError:
    """The error for an HTTP error status and the server's full text: the one classifier."""
    detail = _ACTOR_PREFIX.sub("", detail).strip()
    shown = detail or f"HTTP {status} with an empty body"
    uid = _quoted(model_uid)
    if _TOOLS_REFUSED.search(detail):
        return XinferenceError(Reason.TOOLS_REFUSED, f"Xinference answered {status}", shown, status=status)
    if _STREAMED_TOOLS_REFUSED.search(detail):
        return XinferenceError(Reason.STREAMED_TOOLS_REFUSED, f"Xinference answered {status}", shown, status=status)
    missing_prompt = _MISSING_PROMPT.search(detail)
    if missing_prompt:
        return XinferenceError(
            Reason.MISSING_PROMPT, f"Xinference answered {status}", shown, status=status, prompt_name=missing_prompt.group(1)
        )
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
            hint="Check the API key and that it may use this model.",
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
    error.mid_stream = True
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
