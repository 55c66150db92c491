"""What Xinference says about a running model (`GET /v1/models/{uid}`), cached.

The SDK asks for the model schema on every invoke, so the description must be cheap:
one cache for all model types, keyed by (server URL, UID, API-key fingerprint), with
a lock per key so a slow server never holds up calls to another one.
"""

import threading
import time

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from models.common.credentials import ServerSettings
from models.common.http import XinferenceClient

CACHE_TTL_SECONDS = 300.0


class ModelDescription(BaseModel):
    """The fields of a describe answer the plugin uses; the rest differs by version."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_type: str = ""
    model_name: str | None = None
    model_family: str | None = None
    # Embedding and rerank descriptions carry this key from Xinference 3.1 on (null or not).
    model_engine: str | None = None
    model_ability: list[str] = Field(default_factory=list)
    context_length: int | None = None
    # embedding models
    dimensions: int | None = None
    max_tokens: int | None = None

    @property
    def kind(self) -> str:
        """The model type, lower-cased: 'llm', 'embedding', 'rerank', 'audio', 'image', ..."""
        return self.model_type.lower()

    def has(self, ability: str) -> bool:
        return ability in self.model_ability

    _derived: dict[Any, Any] = PrivateAttr(default_factory=dict)

    def derived(self, key: Any, build: Callable[[], Any]) -> Any:
        """A value built from this description (e.g. a Dify model schema), built once and
        kept exactly as long as the description stays in the cache."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]


_CacheKey = tuple[str, str, str]
_entries: dict[_CacheKey, tuple[float, ModelDescription]] = {}
_key_locks: dict[_CacheKey, threading.Lock] = {}
_registry_lock = threading.Lock()


def describe(settings: ServerSettings, *, fresh: bool = False) -> ModelDescription:
    """The model's description, from the cache unless it is older than the TTL or `fresh`."""
    key = (settings.base_url, settings.model_uid, settings.key_fingerprint)
    if not fresh:
        cached = _entries.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
    with _registry_lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        cached = _entries.get(key)
        if not fresh and cached and cached[0] > time.monotonic():
            return cached[1]
        raw = XinferenceClient(settings).get_json(f"/v1/models/{settings.quoted_uid}")
        description = ModelDescription.model_validate(raw)
        _entries[key] = (time.monotonic() + CACHE_TTL_SECONDS, description)
        return description


def forget(settings: ServerSettings) -> None:
    """Drops a cached description, e.g. when the server says the UID no longer runs."""
    _entries.pop((settings.base_url, settings.model_uid, settings.key_fingerprint), None)


def running_model_uids(settings: ServerSettings) -> list[str]:
    """The UIDs the server lists (`GET /v1/models`), for telling a user what exists."""
    raw = XinferenceClient(settings).get_json("/v1/models")
    entries = raw.get("data", []) if isinstance(raw, dict) else raw
    return [str(entry.get("id")) for entry in entries if isinstance(entry, dict) and entry.get("id")]
