"""The credential form, parsed once per call into a typed structure.

Dify hands every model call the raw form as a dict. Everything here turns that dict into
`ServerSettings` (or the subclass of a model type with its own fields) or fails with a
`CredentialsError` that names the field. Echoed values are capped, and no piece of the
API key is ever echoed, whichever field it was typed into.

A model type's own field is one line in its settings class, `form_field(variable, parser)`
with the variable of `provider/xinference.yaml` and one of the parsers below: `whole_number`,
`choice`, `optional_text`. What an empty field means is the parser's answer for it.
"""

import dataclasses
import enum
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit

from models.common.redaction import redact

DEFAULT_INVOKE_TIMEOUT = 60.0
# The Dify plugin daemon ends every request after PLUGIN_MAX_EXECUTION_TIMEOUT (600 s by
# default) whatever the plugin waits for: a longer invoke timeout counts as this.
MAX_INVOKE_TIMEOUT = 600.0
DEFAULT_MAX_RETRIES = 3
MAX_RETRIES_LIMIT = 10  # 10 back-offs already outlast any default invoke timeout
# Measured on the testbed: 1,000 texts in batches of 32 take 1.09× one direct request,
# 256 take 0.99× (each request costs the server a few ms on its own).
DEFAULT_EMBEDDING_BATCH_SIZE = 256

ECHO_LIMIT = 100
_FORBIDDEN_UID_CHARACTERS = "/?#"


class CredentialsError(ValueError):
    """A credential field holds a value the plugin cannot use."""


_Value = TypeVar("_Value")
_Parser = Callable[[Mapping, str], _Value]


def form_field(variable: str, parse: "_Parser[_Value]") -> _Value:
    """A settings field read from the form's `variable` by `parse`; its default is what an empty field means."""
    return field(default=parse({}, variable), metadata={"variable": variable, "parse": parse})


@dataclass(frozen=True)
class ServerSettings:
    """Where the model runs and how long a call may take.

    `deadline` is the monotonic time by which this call must be over: parsing happens
    at the start of every Dify call, so the invoke timeout bounds the whole call.
    """

    base_url: str
    model_uid: str
    api_key: str | None = field(default=None, repr=False)
    invoke_timeout: float = DEFAULT_INVOKE_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    deadline: float = field(default=math.inf, repr=False, compare=False)

    @classmethod
    def own_fields(cls, credentials: Mapping) -> dict[str, Any]:
        """The fields a model type adds to the form (its `form_field`s), parsed."""
        return {
            each.name: each.metadata["parse"](credentials, each.metadata["variable"])
            for each in dataclasses.fields(cls)
            if "variable" in each.metadata
        }

    @property
    def key_fingerprint(self) -> str:
        """Identifies the key in cache keys without keeping the key itself there."""
        if not self.api_key:
            return ""
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:16]

    @property
    def shown_url(self) -> str:
        """The server URL as messages quote it, capped."""
        return self.base_url if len(self.base_url) <= ECHO_LIMIT else self.base_url[:ECHO_LIMIT] + "…"

    @property
    def quoted_uid(self) -> str:
        return quote(self.model_uid, safe="")

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def restarted(self) -> Self:
        """The same settings with a full invoke timeout from now (one piece of a stream)."""
        return dataclasses.replace(self, deadline=time.monotonic() + self.invoke_timeout)


_Settings = TypeVar("_Settings", bound=ServerSettings)


def parse_settings(credentials: Mapping, kind: type[_Settings] = ServerSettings) -> _Settings:  # type: ignore[assignment]
    """The form as `kind`; the call's deadline starts now."""
    try:
        return _parse(credentials, kind)
    except CredentialsError as exc:
        # Another field may hold (a piece of) the key, e.g. pasted into the wrong box.
        key = _text(credentials.get("api_key")).strip() if isinstance(credentials, Mapping) else ""
        raise CredentialsError(redact(str(exc), key)) from None


def _parse(credentials: Mapping, kind: type[_Settings]) -> _Settings:
    if not isinstance(credentials, Mapping):
        raise CredentialsError("the model's credentials are missing")
    invoke_timeout = _invoke_timeout(credentials)
    return kind(
        base_url=normalise_server_url(credentials.get("server_url")),
        model_uid=_model_uid(credentials.get("model_uid")),
        api_key=_api_key(credentials.get("api_key")),
        invoke_timeout=invoke_timeout,
        max_retries=_MAX_RETRIES(credentials, "max_retries"),
        deadline=time.monotonic() + invoke_timeout,
        **kind.own_fields(credentials),
    )


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user's input as a message quotes it: repr-quoted, at most `limit` characters of it."""
    text = _text(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def normalise_server_url(raw: object) -> str:
    url = _text(raw).strip()
    if not url:
        raise CredentialsError("server_url is required, e.g. http://192.168.1.100:9997")
    if any(character.isspace() or not character.isprintable() for character in url):
        raise CredentialsError(f"server_url must not contain spaces or control characters, got {echo(url)}")
    try:
        parts = urlsplit(url)
        port_is_valid = parts.port is None or parts.port > 0
    except ValueError:
        raise CredentialsError(f"server_url is not a valid URL (check brackets and the port), got {echo(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CredentialsError(f"server_url must start with http:// or https:// and name a host, got {echo(url)}")
    if not port_is_valid:
        raise CredentialsError(f"server_url has no valid port, got {echo(url)}")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise CredentialsError(f"server_url must not contain '?' or '#', got {echo(url)}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")].rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _model_uid(raw: object) -> str:
    uid = _text(raw).strip()
    if not uid:
        raise CredentialsError("model_uid is required: the UID of a running Xinference model")
    if any(character in uid for character in _FORBIDDEN_UID_CHARACTERS):
        raise CredentialsError(f"model_uid must not contain '/', '?' or '#', got {echo(uid)}")
    if not uid.isprintable():
        raise CredentialsError(f"model_uid must not contain control characters, got {echo(uid)}")
    return uid


def _api_key(raw: object) -> str | None:
    key = _text(raw).strip()
    if not key:
        return None
    # An HTTP header carries visible ASCII only; never quote the key back.
    if not all("!" <= character <= "~" for character in key):
        raise CredentialsError(
            "api_key contains a character an HTTP header cannot carry "
            "(a space, a line break or a non-ASCII character): paste the key again"
        )
    return key


def _invoke_timeout(credentials: Mapping) -> float:
    raw = credentials.get("invoke_timeout")
    if _is_empty(raw):
        return DEFAULT_INVOKE_TIMEOUT
    try:
        value = float(_text(raw).strip())
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise CredentialsError(
            f"invoke_timeout must be a positive number of seconds (more than {MAX_INVOKE_TIMEOUT:g} counts as "
            f"{MAX_INVOKE_TIMEOUT:g}), got {echo(raw)}"
        )
    return min(value, MAX_INVOKE_TIMEOUT)


def _is_empty(raw: object) -> bool:
    return raw is None or _text(raw).strip() == ""


def _text(raw: object) -> str:
    """A form value as text; Dify sends strings, anything else is read as its plain form."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool | float) or (isinstance(raw, int) and abs(raw) < 10**18):
        return str(raw)
    return f"<{type(raw).__name__}>"


# ---- the parsers of form fields ---------------------------------------------------------

_Default = TypeVar("_Default", int, None)


def whole_number(
    default: _Default, minimum: int, maximum: int | None = None, unit: str = ""
) -> Callable[[Mapping, str], int | _Default]:
    """A parser of whole numbers from `minimum` to `maximum`; `default` for an empty field."""
    wording = "a whole number" + (f" of {unit}" if unit else "")
    wording += f" from {minimum} to {maximum}" if maximum is not None else f", at least {minimum}"

    def parse(credentials: Mapping, name: str) -> int | _Default:
        raw = credentials.get(name)
        if _is_empty(raw):
            return default
        text = _text(raw).strip()
        # Digits only (an optional sign): int() would also take "1_000" and 4,300-digit strings.
        digits = text.removeprefix("-").removeprefix("+")
        if not digits.isascii() or not digits.isdigit() or len(digits) > 9:
            raise CredentialsError(f"{name} must be {wording}, got {echo(raw)}")
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise CredentialsError(f"{name} must be {wording}, got {echo(raw)}")
        return value

    return parse


_MAX_RETRIES = whole_number(DEFAULT_MAX_RETRIES, 0, MAX_RETRIES_LIMIT)


_Choice = TypeVar("_Choice", bound=enum.Enum)


def choice(options: type[_Choice], default: _Choice) -> "_Parser[_Choice]":
    """A parser of one of `options`' values (any case); `default` for an empty field."""
    values = [option.value for option in options]
    wording = f"{', '.join(values[:-1])} or {values[-1]}"

    def parse(credentials: Mapping, name: str) -> _Choice:
        raw = credentials.get(name)
        if _is_empty(raw):
            return default
        try:
            return options(_text(raw).strip().lower())
        except ValueError:
            raise CredentialsError(f"{name} must be {wording}, got {echo(raw)}") from None

    return parse


def optional_text(credentials: Mapping, name: str) -> str | None:
    return _text(credentials.get(name)).strip() or None


class Switch(enum.Enum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"

    def decide(self, from_description: bool) -> bool:
        return from_description if self is Switch.AUTO else self is Switch.ON


_TOKENS = whole_number(None, 1, unit="tokens")
_SWITCH = choice(Switch, Switch.AUTO)


@dataclass(frozen=True)
class LLMSettings(ServerSettings):
    """What an admin may save to complete what a model's description lacks: a Token Router
    UID is described with abilities ["chat"] only and no context length, and custom
    registrations can be as thin. Empty (or Auto) keeps what the description says."""

    context_size: int | None = form_field("llm_context_size", _TOKENS)
    max_output_tokens: int | None = form_field("llm_max_output_tokens", _TOKENS)
    tool_calling: Switch = form_field("llm_tool_calling", _SWITCH)
    vision: Switch = form_field("llm_vision", _SWITCH)
    structured_output: Switch = form_field("llm_structured_output", _SWITCH)


@dataclass(frozen=True)
class EmbeddingSettings(ServerSettings):
    batch_size: int = form_field("embedding_batch_size", whole_number(DEFAULT_EMBEDDING_BATCH_SIZE, 1))


@dataclass(frozen=True)
class TranscriptionSettings(ServerSettings):
    language: str | None = form_field("audio_language", optional_text)
    prompt: str | None = form_field("audio_prompt", optional_text)


@dataclass(frozen=True)
class SpeechSettings(ServerSettings):
    voice: str | None = form_field("tts_voice", optional_text)
