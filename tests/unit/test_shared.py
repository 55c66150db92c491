"""Credential parsing, the describe cache and the error table, shared by every model type."""

import threading

import pytest
import responses

from models.common import metadata
from models.common.credentials import CredentialsError, parse_settings
from models.common.errors import detail_of
from tests.unit.xinference import SERVER, UID, credentials, describe_llm

DESCRIBE = f"{SERVER}/v1/models/{UID}"


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("  http://10.0.0.5:9997  ", "http://10.0.0.5:9997"),
        ("http://10.0.0.5:9997/", "http://10.0.0.5:9997"),
        ("http://10.0.0.5:9997/v1", "http://10.0.0.5:9997"),
        ("https://gpu.example.org/xinference/v1/", "https://gpu.example.org/xinference"),
    ],
)
def test_server_url_is_normalised(typed, normalised):
    assert parse_settings(credentials(server_url=typed)).base_url == normalised


def test_uid_is_quoted_in_paths_and_defaults_apply():
    settings = parse_settings(credentials(model_uid=" qwen 2.5 "))
    assert settings.model_uid == "qwen 2.5"
    assert settings.quoted_uid == "qwen%202.5"
    assert (settings.invoke_timeout, settings.max_retries) == (60.0, 3)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf", "nan"])
def test_timeout_must_be_a_positive_number(value):
    with pytest.raises(CredentialsError, match="invoke_timeout"):
        parse_settings(credentials(invoke_timeout=value))


def test_api_key_is_not_in_the_settings_repr():
    settings = parse_settings(credentials(api_key="xf-secret-value"))
    assert "xf-secret-value" not in repr(settings)
    assert settings.key_fingerprint and "xf-secret" not in settings.key_fingerprint


@responses.activate
def test_describe_cache_expires_after_its_ttl(monkeypatch):
    responses.get(DESCRIBE, json=describe_llm(context_length=4096))
    now = [1000.0]
    monkeypatch.setattr(metadata.time, "monotonic", lambda: now[0])
    # Settings are parsed at the start of each call: each call's deadline follows the clock.
    assert metadata.describe(parse_settings(credentials())).context_length == 4096
    now[0] += metadata.CACHE_TTL_SECONDS - 1
    metadata.describe(parse_settings(credentials()))
    assert len(responses.calls) == 1
    now[0] += 2
    metadata.describe(parse_settings(credentials()))
    assert len(responses.calls) == 2


@responses.activate
def test_describe_cache_is_separate_per_api_key():
    responses.get(DESCRIBE, json=describe_llm())
    metadata.describe(parse_settings(credentials(api_key="xf-one")))
    metadata.describe(parse_settings(credentials(api_key="xf-two")))
    assert len(responses.calls) == 2


def test_a_slow_server_does_not_block_describing_a_model_on_another(monkeypatch):
    slow_started, release_slow = threading.Event(), threading.Event()

    def fake_get_json(self, path):
        if self.settings.base_url.startswith("http://slow"):
            slow_started.set()
            release_slow.wait(5)
        return describe_llm()

    monkeypatch.setattr(metadata.XinferenceClient, "get_json", fake_get_json)
    slow = threading.Thread(target=metadata.describe, args=(parse_settings(credentials(server_url="http://slow:1")),))
    slow.start()
    assert slow_started.wait(5)
    fast = metadata.describe(parse_settings(credentials(server_url="http://fast:1")))
    finished_while_slow_was_stuck = not release_slow.is_set()
    release_slow.set()
    slow.join(5)
    assert fast.model_type == "LLM"
    assert finished_while_slow_was_stuck


def test_concurrent_describes_of_one_model_make_one_request(monkeypatch):
    calls = []
    gate = threading.Event()

    def fake_get_json(self, path):
        calls.append(path)
        gate.wait(5)
        return describe_llm()

    monkeypatch.setattr(metadata.XinferenceClient, "get_json", fake_get_json)
    settings = parse_settings(credentials())
    threads = [threading.Thread(target=metadata.describe, args=(settings,)) for _ in range(5)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"detail": "Not authenticated"}', "Not authenticated"),
        (b'{"detail": [{"loc": ["body", "file"], "msg": "Field required", "type": "missing"}]}', "body.file: Field required"),
        (b"Internal Server Error: boom", "Internal Server Error: boom"),
        (b'{"error": "CUDA out of memory"}', "CUDA out of memory"),
    ],
)
def test_the_servers_words_are_taken_from_json_or_plain_text(body, words):
    assert detail_of(body) == words
