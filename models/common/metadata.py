"""What Xinference says about a running model (`GET /v1/models/{uid}`), remembered.

The SDK asks for the model schema on every invoke, so the description must be cheap:
one memory for all model types, keyed by (server URL, UID, API-key fingerprint), with
a lock per key so a slow server never holds up calls to another one.
"""

import threading

from models.common.credentials import ServerSettings
from models.common.http import XinferenceClient
from models.common.memory import Memory
from models.common.wire import ModelDescription, parse_wire

_Key = tuple[str, str, str]
_descriptions: Memory[_Key, ModelDescription] = Memory()
_describing: Memory[_Key, threading.Lock] = Memory()


def describe(settings: ServerSettings, *, fresh: bool = False) -> ModelDescription:
    """The model's description, as remembered unless that is older than its lifetime or `fresh`."""
    key = (settings.base_url, settings.model_uid, settings.key_fingerprint)
    if not fresh:
        remembered = _descriptions.get(key)
        if remembered is not None:
            return remembered
    with _describing.get_or_put(key, threading.Lock):
        remembered = None if fresh else _descriptions.get(key)
        if remembered is not None:
            return remembered
        raw = XinferenceClient(settings).get_json(f"/v1/models/{settings.quoted_uid}")
        return _descriptions.put(key, parse_wire(ModelDescription, raw))


def running_model_uids(settings: ServerSettings) -> list[str]:
    """The UIDs the server lists (`GET /v1/models`), for telling a user what exists."""
    raw = XinferenceClient(settings).get_json("/v1/models")
    entries = raw.get("data", []) if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        return []
    return [str(entry.get("id"))[:200] for entry in entries if isinstance(entry, dict) and entry.get("id")]
