"""What Xinference says about a running model (`GET /v1/models/{uid}`), cached.

The SDK asks for the model schema on every invoke, so the description must be cheap:
one cache for all model types, keyed by (server URL, UID, API-key fingerprint), with
a lock per key so a slow server never holds up calls to another one.
"""

import threading
import time

from models.common.credentials import ServerSettings
from models.common.http import XinferenceClient
from models.common.wire import ModelDescription, parse_wire

CACHE_TTL_SECONDS = 300.0

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
        description = parse_wire(ModelDescription, raw)
        _entries[key] = (time.monotonic() + CACHE_TTL_SECONDS, description)
        return description


def forget(settings: ServerSettings) -> None:
    """Drops a cached description, e.g. when the server says the UID no longer runs."""
    _entries.pop((settings.base_url, settings.model_uid, settings.key_fingerprint), None)


def running_model_uids(settings: ServerSettings) -> list[str]:
    """The UIDs the server lists (`GET /v1/models`), for telling a user what exists."""
    raw = XinferenceClient(settings).get_json("/v1/models")
    entries = raw.get("data", []) if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        return []
    return [str(entry.get("id"))[:200] for entry in entries if isinstance(entry, dict) and entry.get("id")]
