"""The credential form, parsed once into a typed structure.

Dify hands every model call the raw form as a dict of strings. Everything here turns
that dict into `ServerSettings` or fails with a `CredentialsError` that names the field.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

DEFAULT_INVOKE_TIMEOUT = 60.0
# The Dify plugin daemon ends every request after PLUGIN_MAX_EXECUTION_TIMEOUT (600 s by
# default) whatever the plugin waits for: a longer invoke timeout is cut to this.
MAX_INVOKE_TIMEOUT = 600.0
DEFAULT_MAX_RETRIES = 3

_FORBIDDEN_UID_CHARACTERS = "/?#"


class CredentialsError(ValueError):
    """A credential field holds a value the plugin cannot use."""


@dataclass(frozen=True)
class ServerSettings:
    base_url: str
    model_uid: str
    api_key: str | None = field(default=None, repr=False)
    invoke_timeout: float = DEFAULT_INVOKE_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES

    @property
    def key_fingerprint(self) -> str:
        """Identifies the key in cache keys without keeping the key itself there."""
        if not self.api_key:
            return ""
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:16]

    @property
    def quoted_uid(self) -> str:
        return quote(self.model_uid, safe="")


def parse_settings(credentials: Mapping) -> ServerSettings:
    return ServerSettings(
        base_url=normalise_server_url(credentials.get("server_url")),
        model_uid=_model_uid(credentials.get("model_uid")),
        api_key=(str(credentials.get("api_key") or "").strip() or None),
        invoke_timeout=min(positive_number(credentials, "invoke_timeout", DEFAULT_INVOKE_TIMEOUT), MAX_INVOKE_TIMEOUT),
        max_retries=non_negative_int(credentials, "max_retries", DEFAULT_MAX_RETRIES),
    )


def normalise_server_url(raw: object) -> str:
    url = str(raw or "").strip()
    if not url:
        raise CredentialsError("server_url is required, e.g. http://192.168.1.100:9997")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CredentialsError(
            f"server_url must start with http:// or https:// and name a host, got {url!r}"
        )
    if parts.query or parts.fragment:
        raise CredentialsError(f"server_url must not contain '?' or '#', got {url!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")].rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _model_uid(raw: object) -> str:
    uid = str(raw or "").strip()
    if not uid:
        raise CredentialsError("model_uid is required: the UID of a running Xinference model")
    if any(character in uid for character in _FORBIDDEN_UID_CHARACTERS):
        raise CredentialsError(f"model_uid must not contain '/', '?' or '#', got {uid!r}")
    return uid


def positive_number(credentials: Mapping, name: str, default: float) -> float:
    raw = credentials.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise CredentialsError(f"{name} must be a positive number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise CredentialsError(f"{name} must be a positive number, got {raw!r}")
    return value


def positive_int(credentials: Mapping, name: str, default: int) -> int:
    return _whole_number(credentials, name, default, minimum=1, wording="a positive whole number")


def non_negative_int(credentials: Mapping, name: str, default: int) -> int:
    return _whole_number(credentials, name, default, minimum=0, wording="a whole number ≥ 0")


def _whole_number(credentials: Mapping, name: str, default: int, minimum: int, wording: str) -> int:
    raw = credentials.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise CredentialsError(f"{name} must be {wording}, got {raw!r}") from None
    if value < minimum:
        raise CredentialsError(f"{name} must be {wording}, got {raw!r}")
    return value


def optional_text(credentials: Mapping, name: str) -> str | None:
    return str(credentials.get(name) or "").strip() or None
