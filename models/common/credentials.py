"""The credential form, parsed once per call into a typed structure.

Dify hands every model call the raw form as a dict. Everything here turns that dict into
`ServerSettings` (or the subclass of a model type with extra fields) or fails with a
`CredentialsError` that names the field. Echoed values are capped, and the API key is
never echoed at all.
"""

import dataclasses
import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit

from models.common.redaction import redact

DEFAULT_INVOKE_TIMEOUT = 60.0
MAX_ACCEPTED_INVOKE_TIMEOUT = 86_400.0  # a day; more is a typo, not a wish
# The Dify plugin daemon ends every request after PLUGIN_MAX_EXECUTION_TIMEOUT (600 s by
# default) whatever the plugin waits for: a longer invoke timeout is cut to this.
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
    def extra_fields(cls, credentials: Mapping) -> dict[str, Any]:
        """The fields a model type adds to the form, parsed (none for the base)."""
        return {}

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


@dataclass(frozen=True)
class EmbeddingSettings(ServerSettings):
    batch_size: int = DEFAULT_EMBEDDING_BATCH_SIZE

    @classmethod
    def extra_fields(cls, credentials: Mapping) -> dict[str, Any]:
        return {"batch_size": positive_int(credentials, "embedding_batch_size", DEFAULT_EMBEDDING_BATCH_SIZE)}


@dataclass(frozen=True)
class TranscriptionSettings(ServerSettings):
    language: str | None = None
    prompt: str | None = None

    @classmethod
    def extra_fields(cls, credentials: Mapping) -> dict[str, Any]:
        return {
            "language": optional_text(credentials, "audio_language"),
            "prompt": optional_text(credentials, "audio_prompt"),
        }


@dataclass(frozen=True)
class SpeechSettings(ServerSettings):
    voice: str | None = None

    @classmethod
    def extra_fields(cls, credentials: Mapping) -> dict[str, Any]:
        return {"voice": optional_text(credentials, "tts_voice")}


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
    invoke_timeout = min(
        positive_number(credentials, "invoke_timeout", DEFAULT_INVOKE_TIMEOUT, MAX_ACCEPTED_INVOKE_TIMEOUT),
        MAX_INVOKE_TIMEOUT,
    )
    return kind(
        base_url=normalise_server_url(credentials.get("server_url")),
        model_uid=_model_uid(credentials.get("model_uid")),
        api_key=_api_key(credentials.get("api_key")),
        invoke_timeout=invoke_timeout,
        max_retries=_whole_number(
            credentials, "max_retries", DEFAULT_MAX_RETRIES, 0, MAX_RETRIES_LIMIT,
            f"a whole number from 0 to {MAX_RETRIES_LIMIT}",
        ),
        deadline=time.monotonic() + invoke_timeout,
        **kind.extra_fields(credentials),
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


def positive_number(credentials: Mapping, name: str, default: float, maximum: float = math.inf) -> float:
    raw = credentials.get(name)
    if _is_empty(raw):
        return default
    wording = "a positive number" + (f" of at most {maximum:g}" if maximum < math.inf else "")
    try:
        value = float(_text(raw).strip())
    except ValueError:
        raise CredentialsError(f"{name} must be {wording}, got {echo(raw)}") from None
    if not 0 < value <= maximum or not math.isfinite(value):
        raise CredentialsError(f"{name} must be {wording}, got {echo(raw)}")
    return value


def positive_int(credentials: Mapping, name: str, default: int) -> int:
    return _whole_number(credentials, name, default, 1, None, "a positive whole number")


def _whole_number(
    credentials: Mapping, name: str, default: int, minimum: int, maximum: int | None, wording: str
) -> int:
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


def optional_text(credentials: Mapping, name: str) -> str | None:
    return _text(credentials.get(name)).strip() or None


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
